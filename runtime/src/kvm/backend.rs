//! [`KvmBackend`]: the micro-VM execution backend behind the same [`ExecutionBackend`]
//! interface as the in-process pool: every instance runs in its own KVM VM ([`WasmVm`]), with
//! the same artifact, host functions, traps and limits.
//!
//! A VM is made for one module (its code slot, region layout and memory slot depend on it), so
//! VMs are pooled per prepared module: a prepared module keeps the VMs its instances ended in,
//! already reset (memory restored from the module's image, grown pages unmapped, vmctx, tables
//! and segment states rewritten, vCPU registers set at the next entry), and `instantiate` takes
//! one of those before it creates a VM. The backend caps the VMs alive at once
//! ([`KvmBackendConfig::vms`]): when it is full, an idle VM of another module is destroyed to
//! make room, and only when every VM is in use does `instantiate` wait, for at most
//! [`KvmBackendConfig::acquire_timeout`]. The instance's host state lives next to its VM, never
//! in it, and is handed to host functions for each call.
//!
//! Resets run when an instance is dropped: on the backend's reset thread
//! ([`KvmBackendConfig::background_reset`], the default), or inline in the dropping thread. An
//! `instantiate` that finds no idle VM while one of its module is being reset waits for that
//! reset (microseconds) rather than create a VM (milliseconds).
//!
//! Timeouts ([`InstanceLimits::timeout`]) are enforced by a watchdog thread that sets the VM's
//! epoch counter at the deadline (compiled code then traps with `Interrupt` at its next epoch
//! check, as in process) and by the deadline host functions see; the engine needs no epoch
//! ticker. A guest still running [`KICK_GRACE`] later (code compiled without epoch checks, or
//! anything else that never reaches one) is kicked out of `KVM_RUN` ([`Kicker`]) and traps with
//! `Interrupt` where it stood: in a VM, a deadline holds whatever the code.

use super::kick::Kicker;
use super::vm::Kvm;
use super::wasm::{memory_image, EpochHandle, WasmVm, WasmVmConfig, WasmVmError};
use crate::call::host_trap;
use crate::pool::MemoryImage;
use crate::{
    BackendInstance, BackendStats, Engine, ExecutionBackend, Halt, InstanceLimits,
    InstantiationError, LinkedModule, ResourceError, Trap, Val,
};
use fnvm_abi::{TrapCode, WASM_PAGE_SIZE};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Sizes and caps of a [`KvmBackend`].
#[derive(Clone, Debug)]
pub struct KvmBackendConfig {
    /// VMs alive at once (idle ones included).
    pub vms: u32,
    /// Caps on each VM's instance (an instance's own limits may be lower).
    pub vm: WasmVmConfig,
    /// How long `instantiate` waits for a VM when all are in use.
    pub acquire_timeout: Duration,
    /// Reset VMs on a background thread instead of in the thread dropping the instance.
    pub background_reset: bool,
}

impl Default for KvmBackendConfig {
    fn default() -> Self {
        KvmBackendConfig {
            vms: 32,
            vm: WasmVmConfig::default(),
            acquire_timeout: Duration::from_millis(100),
            background_reset: true,
        }
    }
}

/// Locks `m`, whose data stays consistent even if a holder panicked (counters and lists).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the backend can do to the idle VMs of a prepared module, whatever its host state type.
trait IdleVms: Send + Sync {
    /// Destroys one idle VM; false if there was none.
    fn evict_one(&self) -> bool;
}

struct Inner {
    engine: Engine,
    kvm: Kvm,
    config: KvmBackendConfig,
    /// VMs alive, and how a waiter learns that one went away or became idle.
    live: Mutex<u32>,
    freed: Condvar,
    /// Bumped whenever a VM becomes idle (so evictable): a waiter that saw no idle VM checks
    /// it under `live` before it sleeps, so the wake-up cannot fall between the two.
    idled: AtomicU64,
    in_use: AtomicUsize,
    created: AtomicU64,
    /// The idle lists of every prepared module, to evict from when full.
    idle_lists: Mutex<Vec<Weak<dyn IdleVms>>>,
    watchdog: Arc<Watchdog>,
    /// Where dropped instances send their VM's reset, when there is a reset thread.
    resets: Option<mpsc::Sender<ResetJob>>,
}

/// A VM's reset, run on the reset thread.
type ResetJob = Box<dyn FnOnce() + Send>;

/// Runs reset jobs until every sender is gone (the backend was dropped).
fn reset_thread() -> std::io::Result<mpsc::Sender<ResetJob>> {
    let (tx, rx) = mpsc::channel::<ResetJob>();
    std::thread::Builder::new()
        .name("fnvm-kvm-reset".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        })?;
    Ok(tx)
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watchdog.stop();
    }
}

/// One VM counted against the cap; dropping it frees the place.
struct LiveToken(Arc<Inner>);

impl Drop for LiveToken {
    fn drop(&mut self) {
        *lock(&self.0.live) -= 1;
        self.0.freed.notify_one();
    }
}

/// A VM with its place in the cap (the VM is dropped first).
struct PooledVm<T: 'static> {
    vm: WasmVm<T>,
    _token: LiveToken,
}

/// The micro-VM execution backend. Cheap to clone.
#[derive(Clone)]
pub struct KvmBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KvmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmBackend")
            .field("vms", &self.inner.config.vms)
            .field("in_use", &self.inner.in_use.load(Ordering::Relaxed))
            .finish()
    }
}

impl KvmBackend {
    /// A backend running modules of `engine` in VMs of `kvm` (and its reset thread, if
    /// configured; failing to start it fails).
    pub fn new(
        engine: &Engine,
        kvm: &Kvm,
        config: KvmBackendConfig,
    ) -> std::io::Result<KvmBackend> {
        let resets = match config.background_reset {
            true => Some(reset_thread()?),
            false => None,
        };
        Ok(KvmBackend {
            inner: Arc::new(Inner {
                engine: engine.clone(),
                kvm: kvm.clone(),
                config,
                live: Mutex::new(0),
                freed: Condvar::new(),
                idled: AtomicU64::new(0),
                in_use: AtomicUsize::new(0),
                created: AtomicU64::new(0),
                idle_lists: Mutex::new(Vec::new()),
                watchdog: Arc::new(Watchdog::default()),
                resets,
            }),
        })
    }

    /// A place for one more VM: free, made by evicting an idle VM, or waited for.
    fn acquire(&self) -> Result<LiveToken, InstantiationError> {
        let inner = &self.inner;
        let start = Instant::now();
        loop {
            {
                let mut live = lock(&inner.live);
                if *live < inner.config.vms {
                    *live += 1;
                    return Ok(LiveToken(Arc::clone(inner)));
                }
            }
            let idled = inner.idled.load(Ordering::Acquire);
            if self.evict_one() {
                continue;
            }
            let live = lock(&inner.live);
            if *live < inner.config.vms || inner.idled.load(Ordering::Acquire) != idled {
                continue;
            }
            let waited = start.elapsed();
            if waited >= inner.config.acquire_timeout {
                return Err(InstantiationError::PoolExhausted {
                    slots: inner.config.vms,
                    waited,
                });
            }
            let left = inner.config.acquire_timeout - waited;
            drop(inner.freed.wait_timeout(live, left));
        }
    }

    /// Destroys one idle VM of any prepared module (forgetting modules that are gone).
    fn evict_one(&self) -> bool {
        let lists: Vec<_> = {
            let mut all = lock(&self.inner.idle_lists);
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        lists.iter().any(|l| l.evict_one())
    }
}

/// A module prepared for a [`KvmBackend`]: the linked module, its memory image (shared by its
/// VMs' memories, copy-on-write) and its idle VMs. Cheap to clone.
pub struct KvmPrepared<T: 'static> {
    inner: Arc<PreparedInner<T>>,
}

struct PreparedInner<T: 'static> {
    linked: LinkedModule<T>,
    image: Option<Arc<MemoryImage>>,
    idle: Mutex<Vec<PooledVm<T>>>,
    /// VMs of this module being reset.
    resetting: AtomicUsize,
}

impl<T: 'static> PreparedInner<T> {
    /// Resets `pooled` and keeps it for the next instance (or destroys it, freeing its
    /// place, if it cannot be reset).
    fn take_back(&self, mut pooled: PooledVm<T>) {
        if pooled.vm.reset_state().is_ok() {
            lock(&self.idle).push(pooled);
        }
    }

    /// An idle VM, waiting for one being reset if there is no other (at most `patience`).
    fn idle_vm(&self, patience: Duration) -> Option<PooledVm<T>> {
        let start = Instant::now();
        loop {
            if let Some(p) = lock(&self.idle).pop() {
                return Some(p);
            }
            if self.resetting.load(Ordering::Acquire) == 0 || start.elapsed() >= patience {
                return None;
            }
            std::thread::yield_now();
        }
    }
}

impl<T: Send + 'static> IdleVms for PreparedInner<T> {
    fn evict_one(&self) -> bool {
        // Dropped outside the lock: destroying a VM takes a while.
        let vm = lock(&self.idle).pop();
        vm.is_some()
    }
}

impl<T> Clone for KvmPrepared<T> {
    fn clone(&self) -> Self {
        KvmPrepared {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> std::fmt::Debug for KvmPrepared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmPrepared")
            .field("linked", &self.inner.linked)
            .field("idle", &lock(&self.inner.idle).len())
            .finish()
    }
}

/// An instance of a [`KvmBackend`]: a pooled VM and the instance's host state.
pub struct KvmInstance<T: Send + 'static> {
    lease: VmLease<T>,
    data: T,
}

impl<T: Send> std::fmt::Debug for KvmInstance<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmInstance").finish_non_exhaustive()
    }
}

/// The VM an instance runs in, reset and given back to its module's idle list on drop.
struct VmLease<T: Send + 'static> {
    vm: Option<PooledVm<T>>,
    prepared: Arc<PreparedInner<T>>,
    backend: Arc<Inner>,
    timer: Option<TimerKey>,
}

impl<T: Send + 'static> Drop for VmLease<T> {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            self.backend.watchdog.disarm(key);
        }
        let Some(pooled) = self.vm.take() else {
            self.backend.in_use.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let prepared = Arc::clone(&self.prepared);
        let backend = Arc::clone(&self.backend);
        prepared.resetting.fetch_add(1, Ordering::AcqRel);
        let job = move || {
            prepared.take_back(pooled);
            prepared.resetting.fetch_sub(1, Ordering::AcqRel);
            backend.in_use.fetch_sub(1, Ordering::Relaxed);
            // A caller waiting for a place can now evict this VM.
            backend.idled.fetch_add(1, Ordering::AcqRel);
            let _live = lock(&backend.live);
            backend.freed.notify_all();
        };
        match &self.backend.resets {
            Some(tx) => {
                // The thread is gone only if it panicked: then reset here.
                if let Err(mpsc::SendError(job)) = tx.send(Box::new(job)) {
                    job();
                }
            }
            None => job(),
        }
    }
}

/// A host-side failure as the tenant sees it: what was wrong with the call, or a generic
/// message (the details can name host addresses or KVM internals).
fn tenant_error(e: &WasmVmError) -> Trap {
    match e {
        WasmVmError::NoSuchExport(name) => host_trap(format!("no exported function `{name}`")),
        WasmVmError::ArgumentCount { .. }
        | WasmVmError::ArgumentType { .. }
        | WasmVmError::UnrepresentableResult(_)
        | WasmVmError::Unsupported(_) => host_trap(e.to_string()),
        _ => host_trap("internal error in the VM backend"),
    }
}

/// A failure to set up an instance, as an instantiation error.
fn setup_error(e: WasmVmError) -> InstantiationError {
    match e {
        WasmVmError::Start(Halt::Trap(t)) => InstantiationError::Trap(t),
        WasmVmError::Start(Halt::Exit { code, .. }) => InstantiationError::Trap(Trap {
            code: TrapCode::HostTrap,
            host_message: Some(format!("exit with status {code} in the start function")),
            backtrace: Vec::new(),
        }),
        WasmVmError::MemoryTooLarge { pages, limit } => ResourceError::MemoryTooLarge {
            needed: pages,
            limit,
        }
        .into(),
        WasmVmError::TableTooLarge { elements, limit } => ResourceError::TableTooLarge {
            needed: elements,
            limit,
        }
        .into(),
        WasmVmError::Link(e) => e,
        // Guest-memory errors can name host addresses: not in a message that may be shown.
        WasmVmError::Memory(_) => {
            ResourceError::Slot(std::io::Error::other("KVM VM: guest memory set-up failed")).into()
        }
        other => ResourceError::Slot(std::io::Error::other(format!("KVM VM: {other}"))).into(),
    }
}

impl ExecutionBackend for KvmBackend {
    type Prepared<T: Send + 'static> = KvmPrepared<T>;
    type Instance<T: Send + 'static> = KvmInstance<T>;

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn prepare<T: Send + 'static>(
        &self,
        linked: &LinkedModule<T>,
    ) -> Result<KvmPrepared<T>, InstantiationError> {
        if !linked.module().inner.engine.same(&self.inner.engine) {
            return Err(InstantiationError::WrongEngine);
        }
        let config = &self.inner.config.vm;
        let template = linked.template();
        if let Some(m) = template.memory {
            if m.limits.min > config.max_memory_pages {
                return Err(ResourceError::MemoryTooLarge {
                    needed: m.limits.min.into(),
                    limit: config.max_memory_pages.into(),
                }
                .into());
            }
        }
        for (t, _) in template.tables.iter() {
            if t.limits.min > config.max_table_elements {
                return Err(ResourceError::TableTooLarge {
                    needed: t.limits.min.into(),
                    limit: config.max_table_elements.into(),
                }
                .into());
            }
        }
        let image = memory_image(linked)
            .map_err(|e| match e {
                WasmVmError::MemoryImage(io) => ResourceError::MemoryImage(io),
                other => ResourceError::MemoryImage(std::io::Error::other(other.to_string())),
            })?
            .map(Arc::new);
        let inner = Arc::new(PreparedInner {
            linked: linked.clone(),
            image,
            idle: Mutex::new(Vec::new()),
            resetting: AtomicUsize::new(0),
        });
        let weak: Weak<dyn IdleVms> = Arc::downgrade(&inner) as Weak<dyn IdleVms>;
        lock(&self.inner.idle_lists).push(weak);
        Ok(KvmPrepared { inner })
    }

    fn linked<T: Send + 'static>(prepared: &KvmPrepared<T>) -> &LinkedModule<T> {
        &prepared.inner.linked
    }

    fn prepared_resident_bytes<T: Send + 'static>(prepared: &KvmPrepared<T>) -> usize {
        let image = prepared.inner.image.as_ref().map_or(0, |i| i.len());
        prepared.inner.linked.module().code_bytes() + image
    }

    fn instantiate<T: Send + 'static>(
        &self,
        prepared: &KvmPrepared<T>,
        limits: &InstanceLimits,
        mut data: T,
    ) -> Result<KvmInstance<T>, InstantiationError> {
        let inner = &self.inner;
        let pre = &prepared.inner;
        if !pre.linked.module().inner.engine.same(&inner.engine) {
            return Err(InstantiationError::WrongEngine);
        }
        let idle = pre.idle_vm(inner.config.acquire_timeout);
        let reused = idle.is_some();
        let pooled = match idle {
            Some(p) => p,
            None => {
                let token = self.acquire()?;
                let vm = WasmVm::create(
                    &inner.kvm,
                    &pre.linked,
                    pre.image.clone(),
                    None,
                    &inner.config.vm,
                )
                .map_err(setup_error)?;
                inner.created.fetch_add(1, Ordering::Relaxed);
                PooledVm { vm, _token: token }
            }
        };
        inner.in_use.fetch_add(1, Ordering::Relaxed);
        let mut lease = VmLease {
            vm: Some(pooled),
            prepared: Arc::clone(pre),
            backend: Arc::clone(inner),
            timer: None,
        };
        // Every early return below drops the lease, which resets the VM and keeps it.
        let Some(p) = lease.vm.as_mut() else {
            return Err(setup_error(WasmVmError::NoHostState));
        };
        let vm = &mut p.vm;
        let cap = limits
            .max_memory_bytes
            .map_or(u64::MAX, |b| b / WASM_PAGE_SIZE)
            .min(u64::from(inner.config.vm.max_memory_pages));
        vm.set_memory_cap(cap);
        vm.set_max_wasm_stack(limits.max_wasm_stack.unwrap_or(usize::MAX))
            .map_err(setup_error)?;
        if reused && limits.exact_page_accounting {
            vm.discard_resident_memory().map_err(setup_error)?;
        }
        // A kick that came after the VM's last instance ended must not end this one.
        vm.clear_kick();
        if let Some(timeout) = limits.timeout {
            let at = Instant::now() + timeout;
            vm.set_deadline(Some(at));
            vm.set_epoch_deadline(1).map_err(setup_error)?;
            let due = Due::Deadline(vm.epoch_handle(), vm.kicker());
            lease.timer = Some(inner.watchdog.arm(at, due));
        }
        let Some(p) = lease.vm.as_mut() else {
            return Err(setup_error(WasmVmError::NoHostState));
        };
        p.vm.start_with(Some(&mut data)).map_err(setup_error)?;
        Ok(KvmInstance { lease, data })
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            capacity: self.inner.config.vms,
            in_use: self.inner.in_use.load(Ordering::Relaxed),
            // A VM is set up for one module for its whole life: each creation is the switch.
            module_switches: self.inner.created.load(Ordering::Relaxed),
        }
    }
}

impl<T: Send + 'static> KvmInstance<T> {
    fn vm(&self) -> Option<&WasmVm<T>> {
        self.lease.vm.as_ref().map(|p| &p.vm)
    }
}

impl<T: Send + 'static> BackendInstance<T> for KvmInstance<T> {
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Halt> {
        let Some(p) = self.lease.vm.as_mut() else {
            return Err(Halt::Trap(host_trap("instance was reset")));
        };
        match p.vm.call_with(Some(&mut self.data), name, args) {
            Ok(outcome) => outcome,
            Err(e) => Err(Halt::Trap(tenant_error(&e))),
        }
    }

    fn data(&mut self) -> &mut T {
        &mut self.data
    }

    fn into_data(self) -> T {
        let KvmInstance { lease, data } = self;
        drop(lease);
        data
    }

    fn memory_pages(&self) -> u64 {
        self.vm().map_or(0, |vm| vm.memory_pages())
    }

    fn resident_memory_pages(&self) -> std::io::Result<u64> {
        self.vm().map_or(Ok(0), |vm| vm.resident_memory_pages())
    }

    fn resident_bytes(&self) -> std::io::Result<u64> {
        self.vm().map_or(Ok(0), |vm| vm.resident_bytes())
    }
}

/// Identifies an armed timer: its deadline and a serial number (the kick that may follow is
/// due at the deadline plus [`KICK_GRACE`], under the same number).
type TimerKey = (Instant, u64);

/// How long past its deadline a guest may go on before it is kicked out of the VM: long enough
/// for code with epoch checks to reach one and trap cleanly (microseconds), short against
/// timeouts in milliseconds.
pub const KICK_GRACE: Duration = Duration::from_millis(10);

/// What the watchdog does when a timer is due.
enum Due {
    /// The deadline: set the epoch counter, then kick [`KICK_GRACE`] later unless disarmed.
    Deadline(EpochHandle, Kicker),
    /// Past the grace: end the vCPU's run.
    Kick(Kicker),
}

/// Sets VMs' epoch counters at their deadlines and kicks those still running a little later,
/// from one thread started on first use.
#[derive(Default)]
struct Watchdog {
    state: Mutex<Timers>,
    wake: Condvar,
}

#[derive(Default)]
struct Timers {
    next: u64,
    due: BTreeMap<TimerKey, Due>,
    started: bool,
    stop: bool,
}

impl Watchdog {
    /// Does `due` at `at` (unless disarmed first).
    fn arm(self: &Arc<Self>, at: Instant, due: Due) -> TimerKey {
        let mut t = lock(&self.state);
        t.next += 1;
        let key = (at, t.next);
        t.due.insert(key, due);
        if !t.started {
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("fnvm-kvm-watchdog".into())
                .spawn(move || me.run());
            // Without the thread, compiled code is not interrupted; host functions still see
            // the deadline. Trying again at the next timer.
            t.started = spawned.is_ok();
        }
        drop(t);
        self.wake.notify_one();
        key
    }

    /// Cancels the timer and the kick that may follow it. Once this returns, neither runs:
    /// both run under the lock taken here.
    fn disarm(&self, key: TimerKey) {
        let mut t = lock(&self.state);
        t.due.remove(&key);
        t.due.remove(&(key.0 + KICK_GRACE, key.1));
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_one();
    }

    fn run(self: Arc<Self>) {
        let mut t = lock(&self.state);
        loop {
            if t.stop {
                return;
            }
            let now = Instant::now();
            match t.due.first_key_value().map(|(k, _)| k.0) {
                Some(at) if at <= now => match t.due.pop_first() {
                    Some(((at, n), Due::Deadline(epoch, kicker))) => {
                        // The VM's counter is guest-read-only memory the handle keeps alive.
                        let _ = epoch.set(1);
                        t.due.insert((at + KICK_GRACE, n), Due::Kick(kicker));
                    }
                    Some((_, Due::Kick(kicker))) => kicker.kick(),
                    None => {}
                },
                Some(at) => {
                    t = self
                        .wake
                        .wait_timeout(t, at - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => t = self.wake.wait(t).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}
