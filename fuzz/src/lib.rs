//! Helpers shared by fnvm's fuzz targets (see `fuzz/README.md`).
//!
//! - [`engine`]: one process-wide runtime engine whose epoch its ticker thread advances every
//!   millisecond, so a guest call with a deadline of a few ticks ends even if it loops forever.
//! - [`on_big_stack`]: runs a closure on a persistent worker thread with a 64 MiB stack. Since
//!   5b204ba the runtime runs guest code on a guarded stack of its own, so this is only a margin
//!   for host code (instantiation, traps, host functions) and for a regression to the old
//!   behaviour, where guest code ran on the calling thread's stack; one worker is reused because
//!   spawning a thread per input costs a large share of the execution rate.
//! - [`dummy_imports`], [`default_val`], [`zero_results`], [`run_exports`]: instantiate a module
//!   with host-made imports and call every exported function.

use arbitrary::Unstructured;
use fnvm_abi::{ExternKind, ImportType, ValType};
use fnvm_runtime::{
    Caller, Engine, EngineConfig, Extern, HostExit, HostFuncDef, Module, Store, Val,
};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Whether `FNVM_FUZZ_STATS=1` asks the targets to print what their inputs reach.
pub fn stats_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FNVM_FUZZ_STATS").is_some_and(|v| v == "1"))
}

/// Counts one `outcome` when [`stats_on`], and prints all counts every `every` inputs (an input
/// is counted by calling this with `outcome == "input"`).
pub fn count(outcome: &'static str, every: u64) {
    static COUNTS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());
    if !stats_on() {
        return;
    }
    let mut c = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    match c.iter_mut().find(|(k, _)| *k == outcome) {
        Some((_, n)) => *n += 1,
        None => c.push((outcome, 1)),
    }
    if outcome == "input" {
        let inputs = c.iter().find(|(k, _)| *k == "input").map_or(0, |(_, n)| *n);
        if inputs % every == 0 {
            let line: Vec<String> = c.iter().map(|(k, n)| format!("{k}={n}")).collect();
            eprintln!("stats: {}", line.join(" "));
        }
    }
}

/// Epoch ticks a guest call (or a start function) may run: 2 to 3 ms with the 1 ms ticker.
pub const DEADLINE_TICKS: u64 = 2;

/// The process-wide engine, its epoch advanced every millisecond by its own ticker thread.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(EngineConfig {
            // Keep memory.grow/table.grow (and the fills after them) cheap: an input that grows
            // a memory to 4 GiB and fills it would spend seconds in one builtin, which the epoch
            // does not interrupt, and blow libFuzzer's RSS limit.
            max_memory_pages: 1024,
            max_table_elements: 100_000,
            epoch_tick: Some(Duration::from_millis(1)),
            ..EngineConfig::default()
        })
        .expect("engine")
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the 64 MiB-stack worker thread and returns its result.
///
/// A panic in `f` aborts the process through libfuzzer-sys's panic hook, so libFuzzer reports
/// it as a crash with the input that caused it.
pub fn on_big_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    static WORKER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("guest".into())
            .stack_size(64 << 20)
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn the worker thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    worker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .expect("worker thread gone");
    rx.recv().expect("worker thread died while running a job")
}

/// A zero / null value of type `t`.
pub fn default_val(t: ValType) -> Val {
    match t {
        ValType::I32 => Val::I32(0),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::FuncRef => Val::FuncRef(None),
        ValType::ExternRef => Val::ExternRef(None),
    }
}

/// The host function of every imported function: returns zeros, the default (or null) value of
/// every type in the slot encoding.
pub fn zero_results(_: &mut Caller<'_, ()>, values: &mut [u64]) -> Result<(), HostExit> {
    values.fill(0);
    Ok(())
}

/// A value of type `t` taken from `u` (zero once `u` is exhausted).
pub fn arbitrary_val(u: &mut Unstructured<'_>, t: ValType) -> Val {
    match t {
        ValType::I32 => Val::I32(u.arbitrary().unwrap_or(0)),
        ValType::I64 => Val::I64(u.arbitrary().unwrap_or(0)),
        ValType::F32 => Val::F32(u.arbitrary().unwrap_or(0)),
        ValType::F64 => Val::F64(u.arbitrary().unwrap_or(0)),
        ValType::FuncRef => Val::FuncRef(None),
        ValType::ExternRef => Val::ExternRef(u.arbitrary().unwrap_or(None)),
    }
}

/// Host-made imports for `module`, in import order: functions that return zeros, fresh tables
/// and memories of exactly the imported type, globals holding zero. `None` if the store refuses
/// one (a memory or table beyond the engine's caps).
pub fn dummy_imports(store: &mut Store, module: &Module) -> Option<Vec<Extern>> {
    let info = module.info();
    let mut out = Vec::with_capacity(info.imports.len());
    for imp in &info.imports {
        out.push(match imp.ty {
            ImportType::Func(t) => {
                let ty = info.types.get(t as usize)?.clone();
                Extern::Func(store.new_host_func(HostFuncDef {
                    ty,
                    func: zero_results,
                    write_behind: None,
                }))
            }
            ImportType::Table(t) => Extern::Table(store.new_table(t).ok()?),
            ImportType::Memory(m) => Extern::Memory(store.new_memory(m).ok()?),
            ImportType::Global(g) => Extern::Global(store.new_global(g, default_val(g.ty)).ok()?),
        });
    }
    Some(out)
}

/// What [`run_exports`] saw, for statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    /// Whether instantiation succeeded.
    pub instantiated: bool,
    /// Calls that returned.
    pub returned: u32,
    /// Calls that trapped (including deadline interrupts).
    pub trapped: u32,
}

/// Instantiates `module` with [`dummy_imports`] in a fresh store and calls every exported
/// function, with arguments from `args` (zeros once it runs out), each under a deadline.
/// Traps and instantiation failures are expected outcomes; only crashes are bugs.
pub fn run_exports(module: &Module, args: &[u8]) -> RunStats {
    let mut stats = RunStats::default();
    let engine = engine();
    let mut store = Store::new(engine);
    let Some(imports) = dummy_imports(&mut store, module) else {
        return stats;
    };
    store.set_epoch_deadline(DEADLINE_TICKS);
    let Ok(instance) = store.instantiate(module, &imports) else {
        return stats;
    };
    stats.instantiated = true;
    let mut u = Unstructured::new(args);
    let names: Vec<String> = module
        .info()
        .exports
        .iter()
        .filter(|e| e.kind == ExternKind::Func)
        .map(|e| e.name.clone())
        .collect();
    for name in names {
        let Some(Extern::Func(f)) = store.get_export(instance, &name) else {
            panic!("export {name:?} is listed as a function but get_export does not return one");
        };
        let ty = store
            .func_type(f)
            .unwrap_or_else(|| panic!("no type for exported function {name:?}"));
        let args: Vec<Val> = ty
            .params
            .iter()
            .map(|t| arbitrary_val(&mut u, *t))
            .collect();
        store.set_epoch_deadline(DEADLINE_TICKS);
        match store.call(f, &args) {
            Ok(results) => {
                assert_eq!(
                    results.len(),
                    ty.results.len(),
                    "{name:?} returned the wrong number of results"
                );
                stats.returned += 1;
            }
            Err(_) => stats.trapped += 1,
        }
    }
    stats
}
