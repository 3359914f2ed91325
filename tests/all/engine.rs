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

/// An engine whose own thread advances the epoch every 5 ms, so timeouts expire.
pub fn engine_with_ticker() -> Engine {
    Engine::new(EngineConfig {
        epoch_tick: Some(std::time::Duration::from_millis(5)),
        ..EngineConfig::default()
    })
    .unwrap()
}

/// Runs `f` on a thread with a large stack, for the host side of tests that parse, validate or
/// compile deeply nested modules (guest code runs on its own guarded stack).
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}
