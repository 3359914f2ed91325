//! Execution speed of the CPU kernels: fnvm and wasmtime each with and without epoch deadline
//! checks, and the same Rust source compiled natively. Compilation and instantiation happen
//! once, outside the measurement; each iteration is one call of the export.

use criterion::{BenchmarkId, Criterion};
use fnvm_bench_compare::{on_big_stack, read_guest, runner_for, Side, KERNELS};
use std::time::Duration;

fn execute(c: &mut Criterion) {
    let wasm = read_guest("kernels.wasm");
    for kernel in KERNELS {
        let expected = (kernel.native)(kernel.arg);
        let mut group = c.benchmark_group(format!("execute/{}", kernel.name));
        group.sample_size(20);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));
        for side in Side::ALL {
            match runner_for(side, &wasm, kernel, expected) {
                Ok(mut runner) => {
                    group.bench_function(BenchmarkId::from_parameter(side.label()), |b| {
                        b.iter(|| runner.run(kernel.arg).expect("kernel call"))
                    });
                }
                Err(e) => eprintln!("SKIP execute/{}/{}: {e}", kernel.name, side.label()),
            }
        }
        group.finish();
    }
}

fn main() {
    on_big_stack(|| {
        let mut c = Criterion::default().configure_from_args();
        execute(&mut c);
        c.final_summary();
    });
}
