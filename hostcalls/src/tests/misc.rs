//! Non-filesystem hostcalls: stdio, args, environ, clocks, random, poll, exit, tracing, and
//! hostile pointers.

use super::*;
use crate::types::{clockid, eventtype, subclockflags};
use crate::{Output, Stdin, HOSTCALLS};
use std::time::{Duration, Instant};

#[test]
fn fd_write_to_captured_stdout_and_stderr() {
    let mut g = Guest::new(WasiCtx::builder());
    assert_eq!(g.write(1, b"hello, world"), Ok(12));
    assert_eq!(g.write(2, b"oops\n"), Ok(5));
    // Two iovecs in one call, one of them empty.
    g.put(BUF, b"abcdef");
    for (i, (p, l)) in [(BUF, 3u32), (BUF, 0), (BUF + 3, 3)].iter().enumerate() {
        g.set_u32(IOV + 8 * i as u32, *p);
        g.set_u32(IOV + 8 * i as u32 + 4, *l);
    }
    g.ok("fd_write", &[1, IOV as u64, 3, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 6);
    assert_eq!(g.ctx.stdout(), b"hello, worldabcdef");
    assert_eq!(g.ctx.take_stderr(), b"oops\n");
    assert!(g.ctx.stderr().is_empty());
    // stdin is not writable, stdout not readable.
    assert_eq!(g.write(0, b"x"), Err(Errno::Badf.raw()));
    assert_eq!(g.read(1, 4), Err(Errno::Badf.raw()));
    assert_eq!(g.write(77, b"x"), Err(Errno::Badf.raw()));
    // Closing stdout keeps what was captured.
    g.ok("fd_close", &[1]);
    assert_eq!(g.write(1, b"x"), Err(Errno::Badf.raw()));
    assert_eq!(g.ctx.take_stdout(), b"hello, worldabcdef");
}

#[test]
fn output_limit_gives_short_write_then_efbig() {
    let mut g = Guest::new(WasiCtx::builder().output_limit(10));
    assert_eq!(g.write(1, b"0123456"), Ok(7));
    assert_eq!(g.write(1, b"789abc"), Ok(3));
    assert_eq!(g.write(1, b"x"), Err(Errno::Fbig.raw()));
    assert_eq!(g.ctx.stdout(), b"0123456789");
    let mut g = Guest::new(WasiCtx::builder().stdout(Output::Null));
    assert_eq!(g.write(1, b"gone"), Ok(4));
    assert!(g.ctx.stdout().is_empty());
}

#[test]
fn stdin_bytes() {
    let mut g = Guest::new(WasiCtx::builder().stdin(Stdin::Bytes(b"request body".to_vec())));
    assert_eq!(g.read(0, 7).unwrap(), b"request");
    assert_eq!(g.read(0, 100).unwrap(), b" body");
    assert_eq!(g.read(0, 100).unwrap(), b"");
    let mut g = Guest::new(WasiCtx::builder());
    assert_eq!(g.read(0, 10).unwrap(), b"");
    // stdio cannot seek.
    g.err("fd_seek", &[0, 0, 0, OUT as u64], Errno::Spipe);
    g.err("fd_tell", &[1, OUT as u64], Errno::Spipe);
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 4);
    g.err("fd_pread", &[0, IOV as u64, 1, 0, OUT as u64], Errno::Spipe);
    g.err(
        "fd_pwrite",
        &[1, IOV as u64, 1, 0, OUT as u64],
        Errno::Spipe,
    );
}

#[test]
fn args_and_environ() {
    let mut g = Guest::new(
        WasiCtx::builder()
            .args(["prog.wasm", "--flag", ""])
            .env("HOME", "/sandbox")
            .env("EMPTY", ""),
    );
    g.ok("args_sizes_get", &[OUT as u64, OUT as u64 + 4]);
    assert_eq!(g.u32_at(OUT), 3);
    assert_eq!(g.u32_at(OUT + 4), 10 + 7 + 1);
    g.ok("args_get", &[IOV as u64, BUF as u64]);
    let ptrs: Vec<u32> = (0..3).map(|i| g.u32_at(IOV + 4 * i)).collect();
    assert_eq!(ptrs, [BUF, BUF + 10, BUF + 17]);
    assert_eq!(g.get(BUF, 18), b"prog.wasm\0--flag\0\0");

    g.ok("environ_sizes_get", &[OUT as u64, OUT as u64 + 4]);
    assert_eq!(g.u32_at(OUT), 2);
    assert_eq!(g.u32_at(OUT + 4), 14 + 7);
    g.ok("environ_get", &[IOV as u64, BUF as u64]);
    assert_eq!(g.u32_at(IOV), BUF);
    assert_eq!(g.u32_at(IOV + 4), BUF + 14);
    assert_eq!(g.get(BUF, 21), b"HOME=/sandbox\0EMPTY=\0");

    // The string area running off the end of memory.
    g.err("args_get", &[IOV as u64, MEM as u64 - 5], Errno::Fault);
    g.err("environ_get", &[MEM as u64 - 4, BUF as u64], Errno::Fault);
    g.err(
        "args_sizes_get",
        &[MEM as u64 - 2, OUT as u64],
        Errno::Fault,
    );
}

#[test]
fn clocks() {
    let mut g = Guest::new(WasiCtx::builder());
    g.ok(
        "clock_time_get",
        &[clockid::MONOTONIC as u64, 0, OUT as u64],
    );
    let t1 = g.u64_at(OUT);
    g.ok(
        "clock_time_get",
        &[clockid::MONOTONIC as u64, 1, OUT as u64],
    );
    assert!(g.u64_at(OUT) >= t1);
    g.ok("clock_time_get", &[clockid::REALTIME as u64, 0, OUT as u64]);
    let real = g.u64_at(OUT);
    let sys = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(sys.abs_diff(real) < 5_000_000_000, "{sys} vs {real}");
    for id in [clockid::PROCESS_CPUTIME_ID, clockid::THREAD_CPUTIME_ID] {
        g.ok("clock_time_get", &[id as u64, 0, OUT as u64]);
        assert!(g.u64_at(OUT) > 0);
    }
    for id in 0..4u64 {
        g.ok("clock_res_get", &[id, OUT as u64]);
        let res = g.u64_at(OUT);
        assert!((1..=1_000_000_000).contains(&res), "{res}");
    }
    g.err("clock_time_get", &[4, 0, OUT as u64], Errno::Inval);
    g.err("clock_res_get", &[99, OUT as u64], Errno::Inval);
    g.err("clock_time_get", &[1, 0, MEM as u64 - 7], Errno::Fault);
}

#[test]
fn random() {
    let mut g = Guest::new(WasiCtx::builder());
    g.ok("random_get", &[BUF as u64, 64]);
    assert!(g.get(BUF, 64).iter().any(|&b| b != 0));
    g.ok("random_get", &[BUF as u64, 0]);
    g.err("random_get", &[MEM as u64 - 8, 9], Errno::Fault);
    g.err(
        "random_get",
        &[u32::MAX as u64, u32::MAX as u64],
        Errno::Fault,
    );
    // A big buffer is filled in place.
    g.ok("random_get", &[0, MEM as u64]);
}

#[test]
fn sched_yield_proc_raise_and_sockets() {
    let mut g = Guest::new(WasiCtx::builder());
    g.ok("sched_yield", &[]);
    g.err("proc_raise", &[9], Errno::Notsup);
    g.err("proc_raise", &[200], Errno::Inval);
    g.err("sock_accept", &[1, 0, OUT as u64], Errno::Notsock);
    g.err("sock_accept", &[9, 0, OUT as u64], Errno::Badf);
    g.err(
        "sock_recv",
        &[0, IOV as u64, 1, 0, OUT as u64, OUT as u64 + 4],
        Errno::Notsock,
    );
    g.err(
        "sock_send",
        &[1, IOV as u64, 1, 0, OUT as u64],
        Errno::Notsock,
    );
    g.err(
        "sock_send",
        &[1, IOV as u64, 1, 1, OUT as u64],
        Errno::Inval,
    );
    g.err("sock_shutdown", &[2, 3], Errno::Notsock);
    g.err("sock_shutdown", &[2, 4], Errno::Inval);
    g.err("sock_shutdown", &[42, 1], Errno::Badf);
}

#[test]
fn proc_exit_and_host_halt() {
    let mut g = Guest::new(WasiCtx::builder().trace(true).trace_id(0x1000));
    assert_eq!(
        g.call_in(WASI_MODULE, "proc_exit", &[7]),
        Err(HostExit::Exit(7))
    );
    assert_eq!(
        g.call_in(WASI_MODULE, "proc_exit", &[u32::MAX as u64]),
        Err(HostExit::Exit(-1))
    );
    assert_eq!(
        g.call_in(FNVM_MODULE, "host_halt", &[0]),
        Err(HostExit::Exit(0))
    );
    let d = g.ctx.take_dmesg().unwrap();
    assert_eq!(
        d.as_str(),
        "WASI_PROC_EXIT(vmctx=1000, 07)\n\texit: 7\n\
         WASI_PROC_EXIT(vmctx=1000, ffffffff)\n\texit: -1\n\
         HOST_HALT(vmctx=1000, 00)\n\tGRACEFULLY EXIT\n"
    );
}

#[test]
fn tracer_format() {
    let mut g = Guest::new(WasiCtx::builder().trace(true).trace_id(0x1000));
    g.put(BUF, b"hello world\n");
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 12);
    g.ok("fd_write", &[1, IOV as u64, 1, OUT as u64]);
    g.err("fd_close", &[9], Errno::Badf);
    g.ok("sched_yield", &[]);
    assert_eq!(g.ctx.hostcalls(), 3);
    let d = g.ctx.dmesg_mut().unwrap();
    d.halt(0);
    let out = g.ctx.take_dmesg().unwrap().finish(
        "host_halt",
        &[(0x1003, "internal::graceful_exit".into())],
        Duration::from_micros(3),
        Duration::from_millis(5),
    );
    assert_eq!(
        out,
        "WASI_FD_WRITE(vmctx=1000, 01, 3000, 01, 100)\n\tnwritten: 12\n\
         WASI_FD_CLOSE(vmctx=1000, 09)\n\terrno: EBADF\n\
         WASI_SCHED_YIELD(vmctx=1000)\n\terrno: SUCCESS\n\
         HOST_HALT(vmctx=1000, 00)\n\tGRACEFULLY EXIT\n\
         \nHalt reason: host_halt\n\n\tat 0x00001003: internal::graceful_exit\n\
         \nRun time: 3µs\nTotal time: 5ms\n"
    );
    // Off means no log at all.
    let mut g = Guest::new(WasiCtx::builder());
    g.ok("sched_yield", &[]);
    assert!(g.ctx.take_dmesg().is_none());
}

/// Stores a clock subscription at index `i` of the array at `at`.
fn clock_sub(g: &mut Guest, at: u32, i: u32, userdata: u64, id: u32, timeout: u64, flags: u16) {
    let s = at + 48 * i;
    g.put(s, &[0; 48]);
    g.put(s, &userdata.to_le_bytes());
    g.put(s + 8, &[eventtype::CLOCK]);
    g.put(s + 16, &id.to_le_bytes());
    g.put(s + 24, &timeout.to_le_bytes());
    g.put(s + 40, &flags.to_le_bytes());
}

/// Stores an fd subscription at index `i`.
fn fd_sub(g: &mut Guest, at: u32, i: u32, userdata: u64, kind: u8, fd: u32) {
    let s = at + 48 * i;
    g.put(s, &[0; 48]);
    g.put(s, &userdata.to_le_bytes());
    g.put(s + 8, &[kind]);
    g.put(s + 16, &fd.to_le_bytes());
}

#[test]
fn poll_oneoff_relative_clock_waits() {
    let mut g = Guest::new(WasiCtx::builder());
    clock_sub(&mut g, BUF, 0, 0xfeed, clockid::MONOTONIC, 10_000_000, 0);
    let t = Instant::now();
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 1, OUT as u64]);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(10), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(STR), 0xfeed);
    assert_eq!(g.get(STR + 8, 3), [0, 0, eventtype::CLOCK]);

    // Absolute realtime deadline 20 ms ahead, and a later monotonic one that must not fire.
    g.ok("clock_time_get", &[clockid::REALTIME as u64, 0, OUT as u64]);
    let now = g.u64_at(OUT);
    clock_sub(
        &mut g,
        BUF,
        0,
        1,
        clockid::REALTIME,
        now + 20_000_000,
        subclockflags::ABSTIME,
    );
    clock_sub(&mut g, BUF, 1, 2, clockid::MONOTONIC, 5_000_000_000, 0);
    let t = Instant::now();
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 2, OUT as u64]);
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(STR), 1);
}

/// A poll that would outlast the invocation's deadline wakes at the deadline and ends the
/// invocation (`DeadlineExceeded`, traced as such); one that ends before it is unaffected.
#[test]
fn poll_oneoff_stops_at_the_invocation_deadline() {
    use fnvm_host_interface::Deadline;
    let mut g = Guest::new(WasiCtx::builder().trace(true).trace_id(0x1000));
    let t = Instant::now();
    g.deadline = Deadline::at(t + Duration::from_millis(50));
    // A relative monotonic clock of 60 s.
    clock_sub(&mut g, BUF, 0, 7, clockid::MONOTONIC, 60_000_000_000, 0);
    assert_eq!(
        g.call_in(
            WASI_MODULE,
            "poll_oneoff",
            &[BUF as u64, STR as u64, 1, OUT as u64]
        ),
        Err(HostExit::DeadlineExceeded)
    );
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(45), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(
        g.ctx.dmesg_mut().unwrap().as_str(),
        format!(
            "WASI_POLL_ONEOFF(vmctx=1000, {:02x}, {:02x}, 01, {:02x})\n\tDEADLINE EXCEEDED\n",
            BUF, STR, OUT
        )
    );
    // Past the deadline, a poll with nothing ready stops at once.
    let t = Instant::now();
    assert_eq!(
        g.call_in(
            WASI_MODULE,
            "poll_oneoff",
            &[BUF as u64, STR as u64, 1, OUT as u64]
        ),
        Err(HostExit::DeadlineExceeded)
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // A clock that fires before the deadline is reported as usual.
    g.deadline = Deadline::at(Instant::now() + Duration::from_secs(60));
    clock_sub(&mut g, BUF, 0, 8, clockid::MONOTONIC, 1_000_000, 0);
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 1, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(STR), 8);
}

#[test]
fn poll_oneoff_fds_and_errors() {
    let mut g = Guest::new(WasiCtx::builder().stdin(Stdin::Bytes(b"abc".to_vec())));
    // stdin readable, stdout writable, a long clock: returns at once with two events.
    fd_sub(&mut g, BUF, 0, 10, eventtype::FD_READ, 0);
    fd_sub(&mut g, BUF, 1, 11, eventtype::FD_WRITE, 1);
    clock_sub(&mut g, BUF, 2, 12, clockid::MONOTONIC, 60_000_000_000, 0);
    let t = Instant::now();
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 3, OUT as u64]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(g.u32_at(OUT), 2);
    assert_eq!(g.u64_at(STR), 10);
    assert_eq!(g.get(STR + 10, 1), [eventtype::FD_READ]);
    assert_eq!(g.u64_at(STR + 16), 3);
    assert_eq!(g.u64_at(STR + 32), 11);
    assert_eq!(g.get(STR + 42, 1), [eventtype::FD_WRITE]);
    // Events written over the subscriptions themselves.
    g.ok("poll_oneoff", &[BUF as u64, BUF as u64, 3, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 2);
    assert_eq!(g.u64_at(BUF + 32), 11);

    g.err(
        "poll_oneoff",
        &[BUF as u64, STR as u64, 0, OUT as u64],
        Errno::Inval,
    );
    fd_sub(&mut g, BUF, 0, 1, eventtype::FD_READ, 99);
    g.err(
        "poll_oneoff",
        &[BUF as u64, STR as u64, 1, OUT as u64],
        Errno::Badf,
    );
    fd_sub(&mut g, BUF, 0, 1, 7, 0);
    g.err(
        "poll_oneoff",
        &[BUF as u64, STR as u64, 1, OUT as u64],
        Errno::Inval,
    );
    clock_sub(&mut g, BUF, 0, 1, clockid::PROCESS_CPUTIME_ID, 1, 0);
    g.err(
        "poll_oneoff",
        &[BUF as u64, STR as u64, 1, OUT as u64],
        Errno::Inval,
    );
    // Arrays running off memory, or overflowing.
    g.err(
        "poll_oneoff",
        &[MEM as u64 - 47, STR as u64, 1, OUT as u64],
        Errno::Fault,
    );
    g.err(
        "poll_oneoff",
        &[BUF as u64, MEM as u64 - 31, 1, OUT as u64],
        Errno::Fault,
    );
    g.err(
        "poll_oneoff",
        &[BUF as u64, STR as u64, u32::MAX as u64, OUT as u64],
        Errno::Fault,
    );
}

#[test]
fn hostile_pointers_fault_without_panicking() {
    let mut g = Guest::new(WasiCtx::builder());
    let end = MEM as u64;
    // iovec array past the end, overflowing, and a buffer past the end.
    g.err("fd_write", &[1, end - 4, 1, OUT as u64], Errno::Fault);
    g.err(
        "fd_write",
        &[1, u32::MAX as u64, u32::MAX as u64, OUT as u64],
        Errno::Fault,
    );
    g.set_u32(IOV, (MEM - 2) as u32);
    g.set_u32(IOV + 4, 3);
    g.err("fd_write", &[1, IOV as u64, 1, OUT as u64], Errno::Fault);
    g.set_u32(IOV, u32::MAX);
    g.set_u32(IOV + 4, u32::MAX);
    g.err("fd_write", &[1, IOV as u64, 1, OUT as u64], Errno::Fault);
    g.err("fd_read", &[0, IOV as u64, 1, OUT as u64], Errno::Fault);
    // Result pointer past the end: nothing is written to stdout.
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 1);
    g.err("fd_write", &[1, IOV as u64, 1, end - 3], Errno::Fault);
    assert!(g.ctx.stdout().is_empty());
    g.err("fd_fdstat_get", &[1, end - 23], Errno::Fault);
    g.err("fd_filestat_get", &[1, end - 1], Errno::Fault);
    g.err("fd_prestat_get", &[1, end], Errno::Fault);
    // No memory at all.
    let mut g = Guest {
        mem: Vec::new(),
        ctx: WasiCtx::builder().build().unwrap(),
        deadline: fnvm_host_interface::Deadline::NEVER,
    };
    g.err("fd_write", &[1, 0, 1, 0], Errno::Fault);
    g.err("args_sizes_get", &[0, 4], Errno::Fault);
    g.ok("args_get", &[0, 0]);
}

/// Calls every hostcall (except the ones that end the run or can legitimately sleep for a
/// guest-chosen time) with pseudo-random arguments over pseudo-random memory: no panic, and
/// every answer is an errno.
#[test]
fn random_calls_never_panic() {
    let dir = TempDir::new();
    let mut g = Guest::new(
        WasiCtx::builder()
            .preopen_dir(dir.path(), "/d")
            .stdin(Stdin::Bytes(vec![1; 100]))
            .output_limit(1 << 16)
            .trace(true)
            .trace_limit(1 << 16),
    );
    let mut rnd = super::xorshift(0x9e37_79b9_7f4a_7c15);
    for b in g.mem.iter_mut() {
        *b = rnd() as u8;
    }
    for round in 0..3000 {
        let h = &HOSTCALLS[(rnd() % HOSTCALLS.len() as u64) as usize];
        if matches!(h.name, "proc_exit" | "host_halt" | "poll_oneoff") {
            continue;
        }
        let args = super::random_args(h, MEM as u64, &mut rnd);
        let r = g.call_in(h.module, h.name, &args);
        let e = r.unwrap_or_else(|e| panic!("round {round}: {} -> {e:?}", h.name));
        assert!(e <= 76, "{} returned {e}", h.name);
    }
    // The sandbox is still the only thing touched: nothing escaped into the parent.
    assert!(dir.path().exists());
}

#[test]
fn i32_slots_ignore_their_upper_half() {
    // The runtime may leave garbage above an i32 in its 64-bit slot.
    let junk = 0x7f43_0000_0000_0000u64;
    let mut g = Guest::new(WasiCtx::builder().trace(true).trace_id(0x1000));
    g.put(BUF, b"hi");
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 2);
    g.ok(
        "fd_write",
        &[junk | 1, junk | IOV as u64, junk | 1, junk | OUT as u64],
    );
    assert_eq!(g.ctx.stdout(), b"hi");
    // i64 parameters keep all their bits.
    g.ok("clock_time_get", &[junk | 1, u64::MAX, junk | OUT as u64]);
    assert_eq!(
        g.call_in(WASI_MODULE, "proc_exit", &[junk | 5]),
        Err(HostExit::Exit(5))
    );
    assert_eq!(
        g.ctx
            .take_dmesg()
            .unwrap()
            .as_str()
            .lines()
            .collect::<Vec<_>>()[..5],
        [
            "WASI_FD_WRITE(vmctx=1000, 01, 3000, 01, 100)",
            "\tnwritten: 2",
            "WASI_CLOCK_TIME_GET(vmctx=1000, 01, ffffffffffffffff, 100)",
            &format!("\ttime: {}", g.u64_at(OUT)),
            "WASI_PROC_EXIT(vmctx=1000, 05)",
        ]
    );
}
