//! The engine: process-wide runtime state shared by every module, store and backend: the
//! signature registry (engine-wide ids that `call_indirect` compares) and the epoch counter that
//! compiled code checks for deadlines, with the one thread that advances it.

use fnvm_abi::FuncType;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// Why an engine could not be created.
#[derive(Debug, Error)]
pub enum EngineError {
    /// `max_wasm_stack` is too small for any guest.
    #[error("max_wasm_stack is {0} bytes; at least 16 KiB are needed")]
    StackTooSmall(usize),
    /// `epoch_tick` is zero.
    #[error("the epoch tick must be longer than zero")]
    ZeroTick,
    /// The epoch ticker thread could not be started.
    #[error("starting the epoch ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bytes of stack guest code may use in one call from the host (stores).
    pub max_wasm_stack: usize,
    /// Host cap on pages of any one linear memory of a store (memory.grow fails beyond it).
    pub max_memory_pages: u32,
    /// Host cap on elements of any one table of a store.
    pub max_table_elements: u32,
    /// Advance the epoch on a thread of the engine's every `epoch_tick`: the unit in which
    /// invocation timeouts are enforced in compiled code. `None`: only
    /// [`Engine::increment_epoch`] advances it, and instances cannot be given a timeout.
    pub epoch_tick: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_wasm_stack: 1 << 20,
            max_memory_pages: 65536,
            max_table_elements: 10_000_000,
            epoch_tick: None,
        }
    }
}

#[derive(Debug, Default)]
struct TypeRegistry {
    ids: HashMap<FuncType, u32>,
    types: Vec<FuncType>,
}

/// The thread advancing the epoch; stopped when the engine goes.
#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
struct EngineInner {
    config: EngineConfig,
    /// Shared with the ticker thread; compiled code reads it through the vmctx.
    epoch: Arc<AtomicU64>,
    types: Mutex<TypeRegistry>,
    _ticker: Option<Ticker>,
}

/// Process-wide runtime state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    /// Creates an engine (and its epoch ticker thread, if configured).
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        if config.max_wasm_stack < 16 * 1024 {
            return Err(EngineError::StackTooSmall(config.max_wasm_stack));
        }
        let epoch = Arc::new(AtomicU64::new(0));
        let ticker = match config.epoch_tick {
            None => None,
            Some(tick) if tick.is_zero() => return Err(EngineError::ZeroTick),
            Some(tick) => {
                let stop = Arc::new(AtomicBool::new(false));
                let (epoch, stop2) = (epoch.clone(), stop.clone());
                let thread = std::thread::Builder::new()
                    .name("fnvm-epoch".into())
                    .spawn(move || {
                        // park_timeout rather than sleep: dropping the engine unparks us.
                        while !stop2.load(Ordering::Relaxed) {
                            std::thread::park_timeout(tick);
                            epoch.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .map_err(EngineError::Ticker)?;
                Some(Ticker {
                    stop,
                    thread: Some(thread),
                })
            }
        };
        Ok(Engine {
            inner: Arc::new(EngineInner {
                config,
                epoch,
                types: Mutex::new(TypeRegistry::default()),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Advances the epoch; invocations whose deadline is reached trap with `Interrupt` at their
    /// next function entry or loop header.
    pub fn increment_epoch(&self) {
        self.inner.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Relaxed)
    }

    /// The epoch counter itself (what host functions' deadlines are computed from).
    pub(crate) fn epoch_counter(&self) -> &AtomicU64 {
        &self.inner.epoch
    }

    /// How often the engine's own thread advances the epoch, if it has one.
    pub fn epoch_tick(&self) -> Option<Duration> {
        self.inner.config.epoch_tick
    }

    /// Epoch ticks a timeout of `timeout` lasts (at least one), if the engine has a ticker.
    pub(crate) fn ticks_for(&self, timeout: Duration) -> Option<u64> {
        let tick = self.epoch_tick()?.as_nanos();
        let ticks = timeout.as_nanos().div_ceil(tick).max(1);
        Some(u64::try_from(ticks).unwrap_or(u64::MAX))
    }

    pub(crate) fn epoch_ptr(&self) -> *const u64 {
        self.inner.epoch.as_ptr()
    }

    pub(crate) fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The engine-wide id of a signature (structurally equal signatures share one).
    pub(crate) fn register_type(&self, ty: &FuncType) -> u32 {
        let mut reg = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = reg.ids.get(ty) {
            return *id;
        }
        let id = reg.types.len() as u32;
        reg.types.push(ty.clone());
        reg.ids.insert(ty.clone(), id);
        id
    }

    pub(crate) fn type_of(&self, id: u32) -> Option<FuncType> {
        let reg = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        reg.types.get(id as usize).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_advances_the_epoch_and_stops_with_the_engine() {
        let engine = Engine::new(EngineConfig {
            epoch_tick: Some(Duration::from_millis(1)),
            ..EngineConfig::default()
        })
        .unwrap();
        let start = engine.epoch();
        let t0 = std::time::Instant::now();
        while engine.epoch() < start + 3 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the epoch never advanced"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(engine.ticks_for(Duration::from_micros(2500)), Some(3));
        assert_eq!(engine.ticks_for(Duration::ZERO), Some(1));
        drop(engine);
        let manual = Engine::new(EngineConfig::default()).unwrap();
        assert_eq!(manual.ticks_for(Duration::from_secs(1)), None);
        assert!(matches!(
            Engine::new(EngineConfig {
                epoch_tick: Some(Duration::ZERO),
                ..EngineConfig::default()
            }),
            Err(EngineError::ZeroTick)
        ));
    }
}
