//! Sleeping (poll_oneoff with a clock subscription): std::thread::sleep(50 ms), then one raw
//! poll_oneoff on a relative 50 ms monotonic-clock timeout; each measured with the monotonic
//! clock inside the guest. Prints whether at least 50 ms passed, and the event poll_oneoff
//! returned.
use std::time::{Duration, Instant};

mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn poll_oneoff(
            subscriptions: i32,
            events: i32,
            nsubscriptions: i32,
            nevents: i32,
        ) -> i32;
    }
}

/// 48-byte `subscription` and 32-byte `event` records, 8-byte aligned as WASI lays them out.
#[repr(C, align(8))]
struct Record<const N: usize>([u8; N]);

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn main() {
    let wait = Duration::from_millis(50);
    let start = Instant::now();
    std::thread::sleep(wait);
    println!("sleep >= 50ms: {}", yes(start.elapsed() >= wait));

    let mut sub = Record([0u8; 48]);
    sub.0[0..8].copy_from_slice(&42u64.to_le_bytes()); // userdata
    sub.0[8] = 0; // tag: clock
    sub.0[16..20].copy_from_slice(&1u32.to_le_bytes()); // clock id: monotonic
    sub.0[24..32].copy_from_slice(&50_000_000u64.to_le_bytes()); // timeout (ns), relative
    let mut event = Record([0xffu8; 32]);
    let mut nevents: u32 = 0;
    let start = Instant::now();
    // SAFETY: the pointers are to live guest records of the sizes WASI expects.
    let errno = unsafe {
        wasi::poll_oneoff(
            sub.0.as_ptr() as i32,
            event.0.as_mut_ptr() as i32,
            1,
            &mut nevents as *mut u32 as i32,
        )
    };
    let elapsed = start.elapsed();
    println!("poll_oneoff: errno {errno}");
    println!("poll_oneoff >= 50ms: {}", yes(elapsed >= wait));
    let userdata = u64::from_le_bytes(event.0[0..8].try_into().unwrap());
    let error = u16::from_le_bytes(event.0[8..10].try_into().unwrap());
    let kind = if event.0[10] == 0 { "clock" } else { "other" };
    println!("events: {nevents} userdata: {userdata} error: {error} type: {kind}");
}
