//! Hostcall cost: a wasm export calls an import in a loop (`fd_write` of 12 bytes to an
//! in-memory stdout, `clock_time_get` of the monotonic clock, an empty host function), on fnvm
//! and on wasmtime 48 with `wasmtime-wasi`'s preview1. Criterion's iteration is one hostcall:
//! each measurement calls the loop export with the iteration count (in chunks of at most
//! 100 000 calls, each on a fresh instance whose instantiation is not timed).

use criterion::{BenchmarkId, Criterion};
use fnvm_bench_compare::invoke::{self, Engine, Prepared};
use fnvm_bench_compare::on_big_stack;
use std::time::Duration;

const CHUNK: u64 = 100_000;

fn hostcalls(c: &mut Criterion) {
    let wasm = invoke::wat(invoke::HOSTCALL_WAT);
    let mut sides = Vec::new();
    for engine in [Engine::Fnvm, Engine::Wasmtime] {
        match Prepared::new(engine, &wasm, 4) {
            Ok(p) => sides.push((engine, p)),
            Err(e) => eprintln!("SKIP hostcall/{}: {e}", engine.label()),
        }
    }
    for (export, label) in invoke::HOSTCALLS {
        let mut group = c.benchmark_group(format!("hostcall/{label}"));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for (engine, p) in &sides {
            if let Err(e) = invoke::hostcall_sample(p, export, 1000) {
                eprintln!("SKIP hostcall/{label}/{}: {e}", engine.label());
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(engine.label()), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        total +=
                            invoke::hostcall_sample(p, export, n as u32).expect("hostcall loop");
                        left -= n;
                    }
                    total
                })
            });
        }
        group.finish();
    }
}

fn main() {
    on_big_stack(|| {
        let mut c = Criterion::default().configure_from_args();
        hostcalls(&mut c);
        c.final_summary();
    });
}
