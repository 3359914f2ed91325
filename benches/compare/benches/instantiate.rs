//! Instantiation and whole invocations: fnvm's instance pool (background and inline reset)
//! against wasmtime 48's pooling allocator (defaults and tuned), both with copy-on-write memory
//! images, a pre-linked module and epoch interruption.
//!
//! - `instantiate/empty`: instantiate + drop of a one-page module without imports.
//! - `invoke/<guest>`: a fresh WASI context, instantiate, `_start`, check that stdout is
//!   "Hello World\n", drop; for the wat hello, the 1 MiB-data hello, the Rust and Go hellos
//!   and QuickJS (those built by `benches/build-guests.sh`).

use criterion::{BenchmarkId, Criterion};
use fnvm_bench_compare::invoke::{self, Bare, Engine, Prepared};
use fnvm_bench_compare::on_big_stack;
use std::time::Duration;

fn instantiate(c: &mut Criterion) {
    let wasm = invoke::wat(invoke::EMPTY_WAT);
    let mut group = c.benchmark_group("instantiate/empty");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for engine in Engine::ALL {
        match Bare::new(engine, &wasm, invoke::POOL_SLOTS) {
            Ok(bare) => {
                group.bench_function(BenchmarkId::from_parameter(engine.label()), |b| {
                    b.iter(|| drop(bare.instantiate().expect("instantiate")))
                });
            }
            Err(e) => eprintln!("SKIP instantiate/empty/{}: {e}", engine.label()),
        }
    }
    group.finish();
}

fn invocations(c: &mut Criterion) {
    let mut notes = Vec::new();
    let guests = invoke::wasi_guests(&mut notes);
    for n in notes {
        eprintln!("SKIP invoke/{n}");
    }
    for guest in &guests {
        let mut group = c.benchmark_group(format!("invoke/{}", guest.name));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for engine in Engine::ALL {
            let p = Prepared::new(engine, &guest.wasm, invoke::POOL_SLOTS).and_then(|p| {
                p.invoke(&guest.stdin)?;
                Ok(p)
            });
            match p {
                Ok(p) => {
                    group.bench_function(BenchmarkId::from_parameter(engine.label()), |b| {
                        b.iter(|| p.invoke(&guest.stdin).expect("invocation"))
                    });
                }
                Err(e) => eprintln!("SKIP invoke/{}/{}: {e}", guest.name, engine.label()),
            }
        }
        group.finish();
    }
}

fn main() {
    on_big_stack(|| {
        let mut c = Criterion::default().configure_from_args();
        instantiate(&mut c);
        invocations(&mut c);
        c.final_summary();
    });
}
