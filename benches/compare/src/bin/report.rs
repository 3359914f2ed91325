//! Runs every measurement several times, interleaved (fnvm, wasmtime, native, fnvm, ...), and
//! prints markdown tables of medians and fnvm/wasmtime ratios.
//!
//! Interleaving spreads the machine's noise (other builds, frequency changes) over all columns
//! instead of letting it land on whichever engine happened to run at the time; the medians of
//! one such run are what `benches/README.md` reports. Usage:
//!
//! ```text
//! report [--rounds N] [--compile-rounds N] [--no-compile] [--no-execute]
//! ```

use fnvm_bench_compare::{
    fnvm_compile, on_big_stack, read_guest, runner_for, wasmtime_compile, wasmtime_engine, Runner,
    Side, COMPILE_INPUTS, KERNELS,
};
use std::time::{Duration, Instant};

struct Args {
    rounds: usize,
    compile_rounds: usize,
    compile: bool,
    execute: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        rounds: 31,
        compile_rounds: 9,
        compile: true,
        execute: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("{what} needs a positive number"))
        };
        match a.as_str() {
            "--rounds" => args.rounds = number("--rounds"),
            "--compile-rounds" => args.compile_rounds = number("--compile-rounds"),
            "--no-compile" => args.compile = false,
            "--no-execute" => args.execute = false,
            "--bench" => {} // passed by `cargo bench`; harmless here
            other => panic!("unknown argument {other:?}"),
        }
    }
    args
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
        _ => "n/a".into(),
    }
}

fn cell(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "failed".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores available")
}

fn report_compile(rounds: usize, notes: &mut Vec<String>) {
    let engine = wasmtime_engine(false);
    println!("## Compile throughput (wasm → serialized artifact), median of {rounds} interleaved rounds\n");
    println!("| module | wasm size | fnvm | fnvm MB/s | wasmtime | wasmtime MB/s | fnvm/wasmtime time | fnvm artifact | wasmtime artifact |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for name in COMPILE_INPUTS {
        let wasm = read_guest(name);
        // One untimed run each: checks that it compiles and warms caches and thread pools.
        let fnvm_size = match fnvm_compile(&wasm) {
            Ok(a) => Some(a.len()),
            Err(e) => {
                notes.push(format!("compile/{name}/fnvm skipped: {e}"));
                None
            }
        };
        let wt_size = match wasmtime_compile(&engine, &wasm) {
            Ok(a) => Some(a.len()),
            Err(e) => {
                notes.push(format!("compile/{name}/wasmtime skipped: {e}"));
                None
            }
        };
        let (mut f, mut w) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            if fnvm_size.is_some() {
                let t = Instant::now();
                let a = fnvm_compile(&wasm).expect("fnvm compile");
                f.push(t.elapsed());
                drop(a);
            }
            if wt_size.is_some() {
                let t = Instant::now();
                let a = wasmtime_compile(&engine, &wasm).expect("wasmtime compile");
                w.push(t.elapsed());
                drop(a);
            }
        }
        let fm = (!f.is_empty()).then(|| median(&mut f));
        let wm = (!w.is_empty()).then(|| median(&mut w));
        let mbs = |d: Option<Duration>| {
            d.map_or("n/a".into(), |d| {
                format!("{:.2}", wasm.len() as f64 / 1e6 / d.as_secs_f64())
            })
        };
        let size =
            |s: Option<usize>| s.map_or("n/a".into(), |s| format!("{:.2} MB", s as f64 / 1e6));
        println!(
            "| {name} | {:.2} MB | {} | {} | {} | {} | {} | {} | {} |",
            wasm.len() as f64 / 1e6,
            cell(fm),
            mbs(fm),
            cell(wm),
            mbs(wm),
            ratio(fm, wm),
            size(fnvm_size),
            size(wt_size),
        );
    }
    println!();
}

fn report_execute(rounds: usize, notes: &mut Vec<String>) {
    let wasm = read_guest("kernels.wasm");
    println!("## Kernel execution (one call each), median of {rounds} interleaved rounds\n");
    println!("| kernel | fnvm epoch on | wasmtime epoch on | ratio | fnvm epoch off | wasmtime epoch off | ratio | native | fnvm (on)/native |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kernel in KERNELS {
        let expected = (kernel.native)(kernel.arg);
        let mut runners: Vec<(Side, Box<dyn Runner>, Vec<Duration>)> = Vec::new();
        for side in Side::ALL {
            match runner_for(side, &wasm, kernel, expected) {
                Ok(r) => runners.push((side, r, Vec::new())),
                Err(e) => notes.push(format!(
                    "execute/{}/{} skipped: {e}",
                    kernel.name,
                    side.label()
                )),
            }
        }
        for _ in 0..rounds {
            for (side, r, samples) in &mut runners {
                let t = Instant::now();
                let got = r.run(kernel.arg);
                samples.push(t.elapsed());
                assert_eq!(got, Ok(expected), "{} {}", kernel.name, side.label());
            }
        }
        let mut med = |s: Side| {
            runners
                .iter_mut()
                .find(|(side, _, _)| *side == s)
                .map(|(_, _, samples)| median(samples))
        };
        let (f, we, fo, w, n) = (
            med(Side::Fnvm),
            med(Side::WasmtimeEpoch),
            med(Side::FnvmNoEpoch),
            med(Side::Wasmtime),
            med(Side::Native),
        );
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kernel.name,
            cell(f),
            cell(we),
            ratio(f, we),
            cell(fo),
            cell(w),
            ratio(fo, w),
            cell(n),
            ratio(f, n),
        );
    }
    println!();
}

fn main() {
    let args = parse_args();
    on_big_stack(move || {
        println!("# fnvm vs wasmtime 48.0.8 vs native\n");
        println!("Machine: {}.\n", machine());
        let mut notes = Vec::new();
        if args.compile {
            report_compile(args.compile_rounds, &mut notes);
        }
        if args.execute {
            report_execute(args.rounds, &mut notes);
        }
        if !notes.is_empty() {
            println!("## Skipped\n");
            for n in &notes {
                println!("- {n}");
            }
        }
    });
}
