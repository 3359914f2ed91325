//! Clocks and randomness (clock_time_get, random_get): prints the realtime clock in whole
//! seconds since the epoch (the test compares it with the host's), whether the monotonic clock
//! moved forward across some work, and whether two 32-byte random reads differ and are not all
//! zero.
use std::time::{Instant, SystemTime, UNIX_EPOCH};

mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn random_get(buf: i32, len: i32) -> i32;
    }
}

fn random32() -> [u8; 32] {
    let mut buf = [0u8; 32];
    // SAFETY: the buffer is live guest memory of 32 bytes.
    let errno = unsafe { wasi::random_get(buf.as_mut_ptr() as i32, 32) };
    assert_eq!(errno, 0, "random_get");
    buf
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn main() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("realtime");
    println!("realtime: {}", now.as_secs());

    let start = Instant::now();
    let mut x: u64 = 1;
    for i in 0..1_000_000u64 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    let end = Instant::now();
    println!("monotonic increases: {}", yes(end > start));

    let (a, b) = (random32(), random32());
    println!("random differs: {}", yes(a != b));
    println!("random nonzero: {}", yes(a != [0; 32] && b != [0; 32]));
}
