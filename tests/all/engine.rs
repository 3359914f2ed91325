//! Shared helpers for the engine tests: compile wat through the full artifact path and
//! instantiate it.

use fnvm_compiler::{compile, CompileOptions};
use fnvm_runtime::{Engine, EngineConfig, Extern, Func, Instance, Module, Store};

pub fn engine() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

pub fn module(engine: &Engine, wat: &str) -> Module {
    let wasm = wat::parse_str(wat).unwrap();
    let artifact = compile(&wasm, &CompileOptions::default()).unwrap();
    Module::from_artifact(engine, &artifact).unwrap()
}

pub fn instantiate(engine: &Engine, wat: &str) -> (Store, Instance) {
    let m = module(engine, wat);
    let mut store = Store::new(engine);
    let inst = store.instantiate(&m, &[]).unwrap();
    (store, inst)
}

pub fn func(store: &mut Store, inst: Instance, name: &str) -> Func {
    match store.get_export(inst, name) {
        Some(Extern::Func(f)) => f,
        other => panic!("export {name}: {other:?}"),
    }
}

/// Runs `f` on a thread with a large stack, as the CLI does: guest code uses the host stack.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Advances the engine's epoch every 5 ms until dropped, so deadlines expire.
pub struct EpochTicker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop2, engine) = (stop.clone(), engine.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                engine.increment_epoch();
            }
        });
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}
