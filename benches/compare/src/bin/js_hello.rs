//! JavaScript hello, per invocation, side by side in one run (`benches/js.md`):
//!
//! - `fnvm snapshot`: the QuickJS engine pre-initialised with the script
//!   (`fnvm_preinit::javascript::build_function`), invoked through the data plane's `Runner`
//!   (`FNVM_TRIGGER=http`, the request JSON on stdin) as the worker does;
//! - `fnvm eval`: the same engine without a snapshot, evaluating the script (passed in
//!   `FNVM_JS_SCRIPT`) in every invocation, through the same `Runner`;
//! - `wasmtime eval`: wasmtime 48 (pooling allocator, copy-on-write images, epoch interruption,
//!   an `InstancePre`, WASI preview1 with in-memory pipes) running the same engine the same way;
//! - `wasmtime snapshot`: wasmtime running fnvm's snapshot module (for reference: the snapshot
//!   is a plain module any engine runs).
//!
//! Rounds are interleaved (one batch of each column per round) so that machine noise spreads
//! over all columns; every invocation's response is checked. Usage:
//!
//! ```text
//! js_hello [--engine PATH] [--rounds N] [--batch N]
//! ```
//!
//! The engine defaults to `target/js-engine/fnvm-js-engine.wasm` (`scripts/js-engine.sh`).

use fnvm_bench_compare::invoke;
use fnvm_dataplane::{Invocation, PreparedModule, Runner, RunnerConfig, Status};
use fnvm_hostcalls::{CStrings, Stdin};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::InstancePre;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

const SCRIPT: &str = r#"function trigger_http(request) {
  return {status: 200, headers: {"Content-Type": "text/plain"}, body: `Hello, ${request.headers["User-Agent"]}!`};
}"#;
const REQUEST: &str = r#"{"method":"GET","uri":"/hello","path":"/hello","query":"","headers":{"host":"localhost","user-agent":"bench/1","accept":"*/*"},"body":"","bodyEncoding":"utf8"}"#;
const EXPECTED: &str = "Hello, bench/1!";

struct Args {
    engine: PathBuf,
    rounds: usize,
    batch: usize,
}

fn args() -> Args {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        engine: root.join("target/js-engine/fnvm-js-engine.wasm"),
        rounds: 10,
        batch: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--engine" => a.engine = v.into(),
            "--rounds" => a.rounds = v.parse().expect("--rounds N"),
            "--batch" => a.batch = v.parse().expect("--batch N"),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn check(stdout: &[u8]) -> Result<(), String> {
    let s = String::from_utf8_lossy(stdout);
    if s.contains(EXPECTED) && s.contains("\"status\":200") {
        Ok(())
    } else {
        Err(format!("unexpected response {s:?}"))
    }
}

/// One column: runs one invocation and returns its wall time.
type Column = Box<dyn FnMut() -> Result<Duration, String>>;

fn fnvm_column(runner: &'static Runner, prepared: PreparedModule, env: CStrings) -> Column {
    Box::new(move || {
        let t = Instant::now();
        let out = runner
            .invoke(
                &prepared,
                Invocation {
                    env: env.clone(),
                    stdin: Stdin::Bytes(REQUEST.as_bytes().to_vec()),
                    measure_cpu: false,
                    ..Invocation::default()
                },
            )
            .map_err(|e| e.to_string())?;
        let dt = t.elapsed();
        if out.status != Status::Exited(0) {
            return Err(format!(
                "{:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        check(&out.stdout)?;
        Ok(dt)
    })
}

fn wasmtime_column(
    engine: wasmtime::Engine,
    pre: InstancePre<WasiP1Ctx>,
    env: Vec<(&'static str, &'static str)>,
) -> Column {
    Box::new(move || {
        let t = Instant::now();
        let stdout = MemoryOutputPipe::new(1 << 20);
        let mut b = wasmtime_wasi::WasiCtxBuilder::new();
        b.arg("engine.wasm")
            .stdout(stdout.clone())
            .stdin(MemoryInputPipe::new(REQUEST.as_bytes().to_vec()));
        for (k, v) in &env {
            b.env(k, v);
        }
        let mut store = wasmtime::Store::new(&engine, b.build_p1());
        store.set_epoch_deadline(1 << 40);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| format!("instantiate: {e:?}"))?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| format!("{e:?}"))?;
        match start.call(&mut store, ()) {
            Ok(()) => {}
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(wasmtime_wasi::I32Exit(0)) => {}
                _ => return Err(format!("_start: {e:?}")),
            },
        }
        drop(store);
        let dt = t.elapsed();
        check(&stdout.contents())?;
        Ok(dt)
    })
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let engine_wasm = std::fs::read(&a.engine).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}\nbuild it first: scripts/js-engine.sh",
            a.engine.display()
        )
    });
    let cache = std::env::temp_dir().join(format!("fnvm-js-bench-{}", std::process::id()));
    let t = Instant::now();
    let (snapshot, _log) = fnvm_preinit::javascript::build_function(
        &engine_wasm,
        SCRIPT.as_bytes(),
        &fnvm_preinit::Limits {
            cache_dir: Some(cache.join("preinit")),
            ..Default::default()
        },
    )
    .expect("building the JavaScript function");
    let build_time = t.elapsed();
    let runner: &'static Runner = Box::leak(Box::new(
        Runner::new(RunnerConfig {
            cache_dir: cache.join("runner"),
            pool: fnvm_runtime::PoolConfig {
                slots: 8,
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("runner"),
    ));
    let snap_prepared = runner.load(&snapshot).expect("loading the snapshot");
    let eval_prepared = runner.load(&engine_wasm).expect("loading the engine");
    let http = CStrings::from_vars([("FNVM_TRIGGER", "http")]).unwrap();
    let eval_env =
        CStrings::from_vars([("FNVM_TRIGGER", "http"), ("FNVM_JS_SCRIPT", SCRIPT)]).unwrap();
    let wt = invoke::wasmtime_pooling_engine(8, false).expect("wasmtime engine");
    let wt_eval = invoke::wasmtime_prepare(&wt, &engine_wasm).expect("wasmtime engine module");
    let wt_snap = invoke::wasmtime_prepare(&wt, &snapshot).expect("wasmtime snapshot module");
    let mut columns: Vec<(&str, Column)> = vec![
        (
            "fnvm snapshot",
            fnvm_column(runner, snap_prepared, http.clone()),
        ),
        ("fnvm eval", fnvm_column(runner, eval_prepared, eval_env)),
        (
            "wasmtime eval",
            wasmtime_column(
                wt.clone(),
                wt_eval,
                vec![("FNVM_TRIGGER", "http"), ("FNVM_JS_SCRIPT", SCRIPT)],
            ),
        ),
        (
            "wasmtime snapshot",
            wasmtime_column(wt.clone(), wt_snap, vec![("FNVM_TRIGGER", "http")]),
        ),
    ];
    // Warm-up (page faults of first instances, lazy initialisations), then interleaved rounds.
    for (name, col) in columns.iter_mut() {
        for _ in 0..3 {
            col().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); columns.len()];
    for _ in 0..a.rounds {
        for (i, (name, col)) in columns.iter_mut().enumerate() {
            for _ in 0..a.batch {
                times[i].push(col().unwrap_or_else(|e| panic!("{name}: {e}")));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    println!(
        "JS hello (`trigger_http` returning a small body), one invocation, wall time, median of {} per column",
        a.rounds * a.batch
    );
    println!(
        "engine {} bytes, snapshot {} bytes, build (preinit) {:.1} ms\n",
        engine_wasm.len(),
        snapshot.len(),
        build_time.as_secs_f64() * 1e3
    );
    println!("| Column | Median per invocation | vs fnvm snapshot |");
    println!("|---|---:|---:|");
    for ((name, _), m) in columns.iter().zip(&medians) {
        println!(
            "| {name} | {:.1} µs | {:.1}× |",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}
