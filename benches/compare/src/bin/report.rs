//! Runs every measurement several times, interleaved (fnvm, wasmtime, native, fnvm, ...), and
//! prints markdown tables of medians and fnvm/wasmtime ratios.
//!
//! Interleaving spreads the machine's noise (other builds, frequency changes) over all columns
//! instead of letting it land on whichever engine happened to run at the time; the medians of
//! one such run are what `benches/README.md` reports. Usage:
//!
//! ```text
//! report [--rounds N] [--compile-rounds N] [--inst-rounds N] [--throughput-rounds N]
//!        [--throughput-secs S] [--memory-slots N] [--hostcall-rounds N]
//!        [--only SECTION,...] [--no-SECTION]... [--guests NAME-PREFIX,...]
//! report --emit-guests DIR     # writes hello.wasm, hello-data.wasm, empty.wasm (for process.sh)
//! ```
//!
//! Sections, in order: `compile`, `execute` (CPU kernels), `instantiate` (a one-page module
//! without imports), `invoke` (whole WASI invocations), `throughput` (invocations per second
//! on 1 and 2 threads), `memory` (host memory per live instance and per idle slot, measured in
//! child processes) and `hostcall` (ns per WASI call). All run by default.

use fnvm_bench_compare::invoke::{self, Bare, Engine, Prepared, WasiGuest, HELLO};
use fnvm_bench_compare::{
    fnvm_compile, fnvm_wasi, on_big_stack, read_guest, runner_for, wasmtime_compile,
    wasmtime_engine, Runner, Side, COMPILE_INPUTS, KERNELS,
};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SECTIONS: [&str; 7] = [
    "compile",
    "execute",
    "instantiate",
    "invoke",
    "throughput",
    "memory",
    "hostcall",
];

struct Args {
    rounds: usize,
    compile_rounds: usize,
    inst_rounds: usize,
    throughput_rounds: usize,
    throughput_secs: f64,
    memory_slots: u32,
    hostcall_rounds: usize,
    sections: Vec<&'static str>,
    guests: Option<Vec<String>>,
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.sections.contains(&section)
    }
}

fn section_name(s: &str) -> &'static str {
    SECTIONS
        .iter()
        .find(|n| **n == s)
        .unwrap_or_else(|| panic!("unknown section {s:?}; sections: {SECTIONS:?}"))
}

fn parse_args() -> Args {
    let mut args = Args {
        rounds: 31,
        compile_rounds: 9,
        inst_rounds: 21,
        throughput_rounds: 5,
        throughput_secs: 1.0,
        memory_slots: 256,
        hostcall_rounds: 15,
        sections: SECTIONS.to_vec(),
        guests: None,
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
            "--inst-rounds" => args.inst_rounds = number("--inst-rounds"),
            "--throughput-rounds" => args.throughput_rounds = number("--throughput-rounds"),
            "--throughput-secs" => args.throughput_secs = number("--throughput-secs") as f64,
            "--memory-slots" => args.memory_slots = number("--memory-slots") as u32,
            "--hostcall-rounds" => args.hostcall_rounds = number("--hostcall-rounds"),
            "--only" => {
                let list = it.next().expect("--only needs a list of sections");
                args.sections = list.split(',').map(section_name).collect();
            }
            "--memory-child" => {
                // Internal: one memory measurement in a fresh process (see report_memory).
                let engine = it.next().expect("engine");
                let guest = it.next().expect("guest");
                let slots = it.next().and_then(|v| v.parse().ok()).expect("slots");
                memory_child(&engine, &guest, slots);
                std::process::exit(0);
            }
            "--guests" => {
                let list = it.next().expect("--guests needs a list of guest names");
                args.guests = Some(list.split(',').map(String::from).collect());
            }
            "--emit-guests" => {
                // For benches/process.sh: write the generated guests as .wasm files.
                let dir =
                    std::path::PathBuf::from(it.next().expect("--emit-guests needs a directory"));
                std::fs::create_dir_all(&dir).expect("creating the directory");
                for (name, wat) in [
                    ("hello.wasm", invoke::HELLO_WAT.to_string()),
                    ("hello-data.wasm", invoke::data_wat()),
                    ("empty.wasm", invoke::EMPTY_WAT.to_string()),
                ] {
                    std::fs::write(dir.join(name), invoke::wat(&wat)).expect("writing a guest");
                }
                std::process::exit(0);
            }
            "--bench" => {} // passed by `cargo bench`; harmless here
            other => match other.strip_prefix("--no-") {
                Some(s) => {
                    let s = section_name(s);
                    args.sections.retain(|x| *x != s);
                }
                None => panic!("unknown argument {other:?}"),
            },
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

/// The fnvm commit measured, and whether the engine's sources differ from it (the bench crate
/// builds the working tree's crates by path).
fn fnvm_revision() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "fnvm at an unknown commit".into();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "abi",
        "compiler",
        "runtime",
        "hostcalls",
    ])
    .is_some_and(|s| !s.is_empty());
    format!(
        "fnvm at commit `{head}`{}",
        if dirty {
            " with uncommitted changes in abi/compiler/runtime/hostcalls"
        } else {
            ""
        }
    )
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
        println!("Machine: {}. {}.\n", machine(), fnvm_revision());
        let mut notes = Vec::new();
        if args.runs("compile") {
            report_compile(args.compile_rounds, &mut notes);
        }
        if args.runs("execute") {
            report_execute(args.rounds, &mut notes);
        }
        let clock = clock_overhead();
        let fnvm_wasi_note = format!("fnvm's WASI: {}.", fnvm_wasi::IMPLEMENTATION);
        if ["invoke", "throughput", "memory", "hostcall"]
            .iter()
            .any(|s| args.runs(s))
        {
            println!("{fnvm_wasi_note}\n");
        }
        if args.runs("instantiate") {
            report_instantiate(args.inst_rounds, clock, &mut notes);
        }
        let guests = if ["invoke", "throughput", "memory"]
            .iter()
            .any(|s| args.runs(s))
        {
            let mut g = invoke::wasi_guests(&mut notes);
            if let Some(only) = &args.guests {
                g.retain(|g| only.iter().any(|o| g.name.starts_with(o.as_str())));
            }
            g
        } else {
            Vec::new()
        };
        if args.runs("invoke") {
            report_invoke(&guests, args.inst_rounds, &mut notes);
        }
        if args.runs("throughput") {
            report_throughput(
                &guests,
                args.throughput_rounds,
                Duration::from_secs_f64(args.throughput_secs),
                &mut notes,
            );
        }
        if args.runs("memory") {
            report_memory(&guests, args.memory_slots, &mut notes);
        }
        if args.runs("hostcall") {
            report_hostcall(args.hostcall_rounds, &mut notes);
        }
        if !notes.is_empty() {
            println!("## Skipped\n");
            for n in &notes {
                println!("- {n}");
            }
        }
    });
}

/// A duration with a unit that fits it.
fn time(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn time_cell(d: Option<Duration>) -> String {
    d.map(time).unwrap_or_else(|| "failed".into())
}

/// Median cost of reading the clock twice (what every per-operation sample includes).
fn clock_overhead() -> Duration {
    let mut s: Vec<Duration> = (0..10_001)
        .map(|_| {
            let t = Instant::now();
            Instant::now() - t
        })
        .collect();
    median(&mut s)
}

/// Medians per engine configuration (None: the configuration failed on this case).
type PerEngine = [Option<Duration>; 4];

fn engine_index(e: Engine) -> usize {
    Engine::ALL
        .iter()
        .position(|x| *x == e)
        .expect("engine in ALL")
}

/// The best fnvm median over the best wasmtime median.
fn best_ratio(m: &PerEngine) -> String {
    let best = |fnvm: bool| {
        Engine::ALL
            .iter()
            .filter(|e| e.is_fnvm() == fnvm)
            .filter_map(|e| m[engine_index(*e)])
            .min()
    };
    ratio(best(true), best(false))
}

fn engine_header(first: &str, extra_left: &str, last: &str) -> String {
    let labels: Vec<&str> = Engine::ALL.iter().map(|e| e.label()).collect();
    let aligns = "---:|".repeat(Engine::ALL.len() + 1);
    let left_align = if extra_left.is_empty() { "" } else { "---:|" };
    format!(
        "| {first} |{} {} | {last} |\n|---|{left_align}{aligns}",
        if extra_left.is_empty() {
            String::new()
        } else {
            format!(" {extra_left} |")
        },
        labels.join(" | ")
    )
}

/// Instantiations per sample of the instantiation benchmark.
const INST_BATCH: u32 = 2000;

fn report_instantiate(rounds: usize, clock: Duration, notes: &mut Vec<String>) {
    let wasm = invoke::wat(invoke::EMPTY_WAT);
    let mut sides: Vec<(Engine, Bare, [Vec<Duration>; 4])> = Vec::new();
    for engine in Engine::ALL {
        match Bare::new(engine, &wasm, invoke::POOL_SLOTS) {
            Ok(b) => sides.push((engine, b, Default::default())),
            Err(e) => notes.push(format!("instantiate/{} skipped: {e}", engine.label())),
        }
    }
    let inst = |b: &Bare| b.instantiate().expect("instantiate");
    for (_, b, _) in &sides {
        for _ in 0..INST_BATCH {
            drop(inst(b));
        }
    }
    for _ in 0..rounds {
        for (_, b, samples) in &mut sides {
            let mut make = Vec::with_capacity(INST_BATCH as usize);
            let mut teardown = Vec::with_capacity(INST_BATCH as usize);
            let mut pair = Vec::with_capacity(INST_BATCH as usize);
            for _ in 0..INST_BATCH {
                let t0 = Instant::now();
                let live = inst(b);
                let t1 = Instant::now();
                drop(live);
                let t2 = Instant::now();
                make.push(t1 - t0);
                teardown.push(t2 - t1);
                pair.push(t2 - t0);
            }
            if std::env::var_os("REPORT_QUANTILES").is_some() {
                for (what, v) in [("inst", &mut make), ("drop", &mut teardown)] {
                    v.sort();
                    let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
                    let mean = v.iter().sum::<Duration>() / v.len() as u32;
                    eprintln!(
                        "{what}: p50 {:?} p90 {:?} p99 {:?} max {:?} mean {mean:?}",
                        q(0.5),
                        q(0.9),
                        q(0.99),
                        q(1.0)
                    );
                }
            }
            samples[0].push(median(&mut make));
            samples[1].push(median(&mut teardown));
            samples[2].push(median(&mut pair));
            samples[3].push(invoke::per_call(INST_BATCH, || drop(inst(b))));
        }
    }
    println!("## Instantiation of a one-page module without imports, median of {rounds} interleaved rounds\n");
    println!(
        "Each round: {INST_BATCH} instantiate/drop pairs timed one by one (the round's sample \
         is their median; each includes one clock read, {} here), then {INST_BATCH} \
         instantiate+drop pairs timed together (the round's sample is their mean, which \
         includes the slow outliers the medians leave out). Pools of {} slots.\n",
        time(clock),
        invoke::POOL_SLOTS
    );
    println!(
        "{}",
        engine_header("operation", "", "best fnvm / best wasmtime")
    );
    let rows = [
        "instantiate, median",
        "drop, median",
        "instantiate + drop, median",
        "instantiate + drop, mean (batch)",
    ];
    for (i, row) in rows.iter().enumerate() {
        let mut m: PerEngine = [None; 4];
        for (engine, _, samples) in &mut sides {
            m[engine_index(*engine)] = Some(median(&mut samples[i]));
        }
        let cells: Vec<String> = m.iter().map(|d| time_cell(*d)).collect();
        println!("| {row} | {} | {} |", cells.join(" | "), best_ratio(&m));
    }
    println!();
}

/// Target wall time of one invocation sample (invocations are batched up to it).
const INVOKE_SAMPLE: Duration = Duration::from_millis(20);

fn prepare_all(guest: &WasiGuest, what: &str, notes: &mut Vec<String>) -> Vec<(Engine, Prepared)> {
    let mut sides = Vec::new();
    for engine in Engine::ALL {
        let p = Prepared::new(engine, &guest.wasm, invoke::POOL_SLOTS).and_then(|p| {
            p.invoke(&guest.stdin)?;
            Ok(p)
        });
        match p {
            Ok(p) => sides.push((engine, p)),
            Err(e) => notes.push(format!(
                "{what}/{}/{} skipped: {e}",
                guest.name,
                engine.label()
            )),
        }
    }
    sides
}

fn invoke_or_panic(p: &Prepared, guest: &WasiGuest) {
    if let Err(e) = p.invoke(&guest.stdin) {
        panic!("{}: {e}", guest.name);
    }
}

fn report_invoke(guests: &[WasiGuest], rounds: usize, notes: &mut Vec<String>) {
    println!("## Whole invocation: fresh WASI context, instantiate, run `_start`, check stdout, drop; {rounds} interleaved rounds\n");
    println!(
        "Every invocation checks that stdout is exactly {:?} ({} bytes). One round runs \
         invocations for about {} ms per engine, each timed on its own; a round's sample is \
         their median (first table) and their mean (second table: what a loop sustains, \
         including slow outliers such as waiting for a slot), and the tables give the median \
         over rounds.\n",
        String::from_utf8_lossy(HELLO),
        HELLO.len(),
        INVOKE_SAMPLE.as_millis()
    );
    let mut rows: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for guest in guests {
        let sides = prepare_all(guest, "invoke", notes);
        if sides.is_empty() {
            continue;
        }
        let slowest = sides
            .iter()
            .map(|(_, p)| invoke::per_call(3, || invoke_or_panic(p, guest)))
            .max()
            .unwrap_or(Duration::from_millis(1));
        let k = (INVOKE_SAMPLE.as_secs_f64() / slowest.as_secs_f64().max(1e-9)).clamp(5.0, 5000.0)
            as usize;
        for (_, p) in &sides {
            invoke::per_call(k as u32, || invoke_or_panic(p, guest));
        }
        let mut samples: Vec<[Vec<Duration>; 2]> = vec![Default::default(); sides.len()];
        let mut times = Vec::with_capacity(k);
        for _ in 0..rounds {
            for ((_, p), s) in sides.iter().zip(&mut samples) {
                times.clear();
                for _ in 0..k {
                    let t = Instant::now();
                    invoke_or_panic(p, guest);
                    times.push(t.elapsed());
                }
                s[1].push(times.iter().sum::<Duration>() / k as u32);
                s[0].push(median(&mut times));
            }
        }
        for (i, row) in rows.iter_mut().enumerate() {
            let mut m: PerEngine = [None; 4];
            for ((engine, _), s) in sides.iter().zip(&mut samples) {
                m[engine_index(*engine)] = Some(median(&mut s[i]));
            }
            let cells: Vec<String> = m.iter().map(|d| time_cell(*d)).collect();
            row.push(format!(
                "| {} | {:.2} MB | {} | {} |",
                guest.name,
                guest.wasm.len() as f64 / 1e6,
                cells.join(" | "),
                best_ratio(&m)
            ));
        }
    }
    for (title, rows) in ["Median invocation", "Mean invocation"].iter().zip(&rows) {
        println!("### {title}\n");
        println!(
            "{}",
            engine_header("guest", "wasm size", "best fnvm / best wasmtime")
        );
        for r in rows {
            println!("{r}");
        }
        println!();
    }
}

/// Invocations per second of `threads` threads each invoking in a loop for `duration`.
fn throughput_sample(
    p: &Arc<Prepared>,
    guest: &Arc<WasiGuest>,
    threads: usize,
    duration: Duration,
) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (p, guest, barrier) = (p.clone(), guest.clone(), barrier.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(fnvm_bench_compare::BENCH_STACK)
                .spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        invoke_or_panic(&p, &guest);
                        n += 1;
                    }
                    n as f64 / start.elapsed().as_secs_f64()
                })
                .expect("spawning a worker")
        })
        .collect();
    barrier.wait();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        .sum()
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else {
        format!("{:.0} k/s", x / 1e3)
    }
}

fn report_throughput(
    guests: &[WasiGuest],
    rounds: usize,
    duration: Duration,
    notes: &mut Vec<String>,
) {
    println!("## Throughput: invocations per second on 1 and 2 threads, median of {rounds} interleaved rounds of {:.1} s\n", duration.as_secs_f64());
    println!("Each thread loops over whole invocations (as in the table above) for the round's duration; all threads share one pool and one prepared module. {} cores.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("| guest | engine | 1 thread | 2 threads | 2 threads / 1 thread | vs best wasmtime, 1 / 2 threads |");
    println!("|---|---|---:|---:|---:|---:|");
    for guest in guests
        .iter()
        .filter(|g| g.name == "hello.wat" || g.name == "hello-rust.wasm")
    {
        let sides: Vec<(Engine, Arc<Prepared>)> = prepare_all(guest, "throughput", notes)
            .into_iter()
            .map(|(e, p)| (e, Arc::new(p)))
            .collect();
        let g = Arc::new(guest.clone());
        let mut samples = vec![[Vec::new(), Vec::new()]; sides.len()];
        for _ in 0..rounds {
            for (t, threads) in [1usize, 2].into_iter().enumerate() {
                for ((_, p), s) in sides.iter().zip(&mut samples) {
                    s[t].push(throughput_sample(p, &g, threads, duration));
                }
            }
        }
        let med: Vec<(Engine, [f64; 2])> = sides
            .iter()
            .zip(&mut samples)
            .map(|((e, _), s)| (*e, [median_f64(&mut s[0]), median_f64(&mut s[1])]))
            .collect();
        let best_wt = |t: usize| {
            med.iter()
                .filter(|(e, _)| !e.is_fnvm())
                .map(|(_, m)| m[t])
                .fold(f64::NAN, f64::max)
        };
        for (engine, m) in &med {
            let vs = if engine.is_fnvm() {
                format!("{:.2}x / {:.2}x", m[0] / best_wt(0), m[1] / best_wt(1))
            } else {
                String::new()
            };
            println!(
                "| {} | {} | {} | {} | {:.2}x | {vs} |",
                guest.name,
                engine.label(),
                rate(m[0]),
                rate(m[1]),
                m[1] / m[0]
            );
        }
    }
    println!();
}

/// Memory counters of this process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss: i64,
    pss: i64,
    anon: i64,
    pte: i64,
}

fn kib_field(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<i64>()
                .ok()
        })
        .map_or(0, |k| k * 1024)
}

fn mem_now() -> Mem {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Mem {
        rss: kib_field(&rollup, "Rss:"),
        pss: kib_field(&rollup, "Pss:"),
        anon: kib_field(&rollup, "Anonymous:"),
        pte: kib_field(&status, "VmPTE:"),
    }
}

fn engine_key(e: Engine) -> &'static str {
    match e {
        Engine::Fnvm => "fnvm",
        Engine::FnvmInline => "fnvm-inline",
        Engine::Wasmtime => "wasmtime",
        Engine::WasmtimeTuned => "wasmtime-tuned",
    }
}

/// Runs in a child process: prepares `guest` on `engine` with `slots` slots, then twice
/// instantiates and runs `slots` instances at once and drops them all, printing memory counters
/// at each step as one line of `key=value`.
fn memory_child(engine: &str, guest: &str, slots: u32) {
    let engine = *Engine::ALL
        .iter()
        .find(|e| engine_key(**e) == engine)
        .expect("engine key");
    let mut notes = Vec::new();
    let guest = invoke::wasi_guests(&mut notes)
        .into_iter()
        .find(|g| g.name == guest)
        .expect("guest");
    let p = Prepared::new(engine, &guest.wasm, slots).expect("prepare");
    invoke_or_panic(&p, &guest);
    let mut live = Vec::with_capacity(slots as usize);
    let mut out = String::new();
    let mut record = |step: &str, m: Mem| {
        out.push_str(&format!(
            "{step}.rss={} {step}.pss={} {step}.anon={} {step}.pte={} ",
            m.rss, m.pss, m.anon, m.pte
        ))
    };
    let wait_idle = |p: &Prepared| {
        let start = Instant::now();
        while p.in_use() > 0 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    record("ready", mem_now());
    let mut resident = 0;
    for cycle in ["live1", "live2"] {
        for _ in 0..slots {
            let (mut l, pipe) = p
                .instantiate_wasi("main", &guest.stdin, 1 << 20)
                .expect("instantiate");
            l.call_start().expect("_start");
            live.push((l, pipe));
        }
        record(cycle, mem_now());
        resident = live[0].0.resident_bytes().unwrap_or(0);
        for (l, pipe) in live.drain(..) {
            let stdout = l.finish(pipe).expect("finish");
            assert_eq!(stdout, HELLO);
        }
        wait_idle(&p);
        record(&cycle.replace("live", "idle"), mem_now());
    }
    println!("{out}resident={resident}");
}

fn report_memory(guests: &[WasiGuest], slots: u32, notes: &mut Vec<String>) {
    println!("## Host memory per instance slot ({slots} slots)\n");
    println!(
        "Measured in a fresh child process per row: after preparing the module and one \
         invocation (\"ready\"), {slots} instances are created and run at once (\"live\"), \
         then all dropped and their slots reset (\"idle\"); twice, and the second cycle is \
         reported (the first differs by a few percent at most). Values are the growth over \
         \"ready\" divided by {slots}, from `/proc/self/smaps_rollup`, plus page tables \
         (`VmPTE`) in both Rss and Pss: Rss counts every mapping of a page, so image pages \
         shared by all slots (one physical copy) count once per slot; Pss splits them between \
         their mappings, so its growth is the physical memory added; Anonymous is private \
         memory (vmctx, stacks, written pages, heap the allocator keeps). \
         \"fnvm resident_bytes\" is `PooledInstance::resident_bytes()` of one live instance \
         (vmctx, stack and present memory pages, shared or not).\n"
    );
    println!("| guest | engine | live Rss | live Pss | idle Rss | idle Pss | idle Anonymous | fnvm resident_bytes (live) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let exe = std::env::current_exe().expect("current exe");
    for guest in guests
        .iter()
        .filter(|g| g.name != "quickjs.wasm 'Hello World'")
    {
        for engine in Engine::ALL {
            let output = std::process::Command::new(&exe)
                .args([
                    "--memory-child",
                    engine_key(engine),
                    guest.name,
                    &slots.to_string(),
                ])
                .output();
            let text = match output {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                Ok(o) => {
                    notes.push(format!(
                        "memory/{}/{} failed: {}",
                        guest.name,
                        engine.label(),
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    ));
                    continue;
                }
                Err(e) => {
                    notes.push(format!("memory: running {}: {e}", exe.display()));
                    return;
                }
            };
            let get = |k: &str| -> i64 {
                text.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let per = |step: &str, what: &str| {
                let d = get(&format!("{step}.{what}")) - get(&format!("ready.{what}"));
                d as f64 / slots as f64 / 1024.0
            };
            let resident = get("resident");
            let kib = |x: f64| format!("{x:.1} KiB");
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                guest.name,
                engine.label(),
                kib(per("live2", "rss") + per("live2", "pte")),
                kib(per("live2", "pss") + per("live2", "pte")),
                kib(per("idle2", "rss") + per("idle2", "pte")),
                kib(per("idle2", "pss") + per("idle2", "pte")),
                kib(per("idle2", "anon")),
                if engine.is_fnvm() {
                    format!("{:.1} KiB", resident as f64 / 1024.0)
                } else {
                    "n/a".into()
                }
            );
        }
    }
    println!();
}

/// Hostcalls per timed export call.
const HOSTCALL_N: u32 = 100_000;

fn report_hostcall(rounds: usize, notes: &mut Vec<String>) {
    let wasm = invoke::wat(invoke::HOSTCALL_WAT);
    let mut sides = Vec::new();
    for engine in [Engine::Fnvm, Engine::Wasmtime] {
        let p = Prepared::new(engine, &wasm, 4).and_then(|p| {
            for (export, _) in invoke::HOSTCALLS {
                invoke::hostcall_sample(&p, export, 1000)?;
            }
            Ok(p)
        });
        match p {
            Ok(p) => sides.push((engine, p)),
            Err(e) => notes.push(format!("hostcall/{} skipped: {e}", engine.label())),
        }
    }
    println!("## Hostcall cost, median of {rounds} interleaved rounds\n");
    println!("One call of a wasm export that calls the import {HOSTCALL_N} times in a loop, divided by {HOSTCALL_N} (fresh instance per sample, instantiation not timed; loop overhead included, the same on both). `fd_write` writes a 12-byte iovec to an in-memory stdout (wasmtime: `MemoryOutputPipe` sized for the whole loop) and is checked afterwards; `clock_time_get` reads the monotonic clock; the empty host function is `(i32) -> i32` identity, registered by the benchmark on each engine.\n");
    println!("| hostcall | fnvm | wasmtime | fnvm / wasmtime |");
    println!("|---|---:|---:|---:|");
    for (export, label) in invoke::HOSTCALLS {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); sides.len()];
        for _ in 0..rounds {
            for ((_, p), s) in sides.iter().zip(&mut samples) {
                match invoke::hostcall_sample(p, export, HOSTCALL_N) {
                    Ok(d) => s.push(d),
                    Err(e) => panic!("hostcall {export}: {e}"),
                }
            }
        }
        let mut m = [None, None];
        for ((engine, _), s) in sides.iter().zip(&mut samples) {
            m[usize::from(!engine.is_fnvm())] = Some(median(s));
        }
        // Medians of whole loops, divided here so that sub-nanosecond digits survive.
        let ns = |d: Option<Duration>| {
            d.map_or("failed".into(), |d| {
                format!("{:.1} ns", d.as_secs_f64() * 1e9 / HOSTCALL_N as f64)
            })
        };
        println!(
            "| {label} | {} | {} | {} |",
            ns(m[0]),
            ns(m[1]),
            ratio(m[0], m[1])
        );
    }
    println!();
}
