//! Compile throughput: fnvm's `compile` against wasmtime's `Engine::precompile_module` on the
//! two large guest modules (QuickJS and a serde_json + regex program), both wasm to serialized
//! artifact, both on Cranelift 0.135 at opt level `speed` with parallel compilation.
//! Criterion reports wasm bytes per second in decimal units (KB/s, MB/s), like `report`.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use fnvm_bench_compare::{
    fnvm_compile, on_big_stack, read_guest, wasmtime_compile, wasmtime_engine, COMPILE_INPUTS,
};
use std::time::Duration;

fn compile(c: &mut Criterion) {
    let engine = wasmtime_engine(false);
    let mut group = c.benchmark_group("compile");
    // One compile takes about a second: flat sampling (the same iteration count in every
    // sample) keeps a run to 10-20 compiles per case instead of linear sampling's 55 or more.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(25));
    for name in COMPILE_INPUTS {
        let wasm = read_guest(name);
        group.throughput(Throughput::BytesDecimal(wasm.len() as u64));
        match fnvm_compile(&wasm) {
            Ok(_) => {
                group.bench_with_input(BenchmarkId::new("fnvm", name), &wasm, |b, wasm| {
                    b.iter(|| fnvm_compile(wasm).expect("fnvm compile"))
                });
            }
            Err(e) => eprintln!("SKIP compile/fnvm/{name}: {e}"),
        }
        match wasmtime_compile(&engine, &wasm) {
            Ok(_) => {
                group.bench_with_input(BenchmarkId::new("wasmtime", name), &wasm, |b, wasm| {
                    b.iter(|| wasmtime_compile(&engine, wasm).expect("wasmtime compile"))
                });
            }
            Err(e) => eprintln!("SKIP compile/wasmtime/{name}: {e}"),
        }
    }
    group.finish();
}

fn main() {
    on_big_stack(|| {
        let mut c = Criterion::default().configure_from_args();
        compile(&mut c);
        c.final_summary();
    });
}
