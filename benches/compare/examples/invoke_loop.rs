//! Loops whole invocations of one guest on one engine configuration, for profiling (`perf
//! stat`, `perf record`, `strace -c -f`):
//!
//! ```text
//! invoke_loop ENGINE GUEST-PREFIX [SECONDS]
//! ```
//!
//! ENGINE: `fnvm`, `fnvm-inline`, `wasmtime`, `wasmtime-tuned`; GUEST-PREFIX as in the report
//! (`hello.wat`, `hello-rust`, `hello-go`, `quickjs`, ...). Prints invocations per second and
//! the mean time of one.

use fnvm_bench_compare::invoke::{self, Engine, Prepared};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, guest, rest @ ..] = args.as_slice() else {
        eprintln!("usage: invoke_loop ENGINE GUEST-PREFIX [SECONDS]");
        std::process::exit(2);
    };
    let engine = match engine.as_str() {
        "fnvm" => Engine::Fnvm,
        "fnvm-inline" => Engine::FnvmInline,
        "wasmtime" => Engine::Wasmtime,
        "wasmtime-tuned" => Engine::WasmtimeTuned,
        other => panic!("unknown engine {other:?}"),
    };
    let seconds: f64 = rest.first().map_or(5.0, |s| s.parse().expect("seconds"));
    let mut notes = Vec::new();
    let guest = invoke::wasi_guests(&mut notes)
        .into_iter()
        .find(|g| g.name.starts_with(guest.as_str()))
        .unwrap_or_else(|| panic!("no guest {guest:?} ({notes:?})"));
    fnvm_bench_compare::on_big_stack(move || {
        let p = Prepared::new(engine, &guest.wasm, invoke::POOL_SLOTS).expect("prepare");
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            p.invoke(&guest.stdin).expect("invocation");
            n += 1;
        }
        let t = start.elapsed();
        println!(
            "{} on {}: {n} invocations in {:.2} s: {:.0}/s, {:.2} µs each",
            guest.name,
            engine.label(),
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64(),
            t.as_secs_f64() * 1e6 / n as f64
        );
    });
}
