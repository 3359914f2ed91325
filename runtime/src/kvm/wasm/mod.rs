//! Running compiled WebAssembly in a KVM micro-VM: the same artifact, the same code bytes, the
//! same host functions, as the in-process backend.
//!
//! Compiled code is position independent (calls inside it are pc-relative), but its vmctx holds
//! absolute addresses (funcrefs, the limits, epoch and type-id pointers, the memory's base) and
//! the in-process runtime builds those from host addresses. Instead of relocating anything, a
//! [`WasmVm`] makes guest-virtual addresses equal to the host-virtual addresses of everything
//! the code touches: the module's code mapping itself (shared read-only by every VM of the
//! module, never copied), one dedicated instance region (a fresh mmap holding the guest stack,
//! the vmctx, the argument/result slots, the tables and a part the guest may only read), and
//! the linear memory's reservation (see [`linear`]). Each is a KVM memory slot whose
//! `userspace_addr` is that host mapping; their guest-physical addresses are allocated
//! compactly from [`GPA_BASE`] up, and the page tables map gva = host VA to them. Nothing else
//! of the host is mapped: no heap page is ever shared with the guest, and everything the guest
//! can write is read back by the host only through bounds-checked copies, as untrusted data.
//!
//! ```text
//!  guest-virtual                       guest-physical     flags            backing
//!  0x0000_0000  null guard             -                  not mapped       slot 0 (anonymous)
//!  0x0000_1000  GDT                    = gva              supervisor, RO
//!  0x0000_2000  stubs (entry, host     = gva              user, RO, exec
//!               call, builtins)
//!  0x0000_3000  page tables            = gva              not mapped
//!  0x3fe0_0000  MMIO exit page         = gva, no slot     user, RW         (every access exits)
//!
//!  code base    module code            GPA_BASE + ...     user, RO, exec   slot 1: the Module's
//!  (host VA)    (trampolines and                                           own mapping, read-
//!               functions)                                                 only slot
//!
//!  region       guard page             next GPA ...       not mapped       slot 2: instance
//!  (host VA)    stack, vmctx, values,                     user, RW, NX     region, a dedicated
//!               tables                                                     anonymous mmap
//!               limits, epoch, type ids,                  user, RO, NX     (host writes them)
//!               builtin table, host-call
//!               contexts
//!
//!  memory base  accessible pages       next GPA ...       user, RW, NX     slot 3: the memory's
//!  (host VA)    rest of the 4 GiB                         not mapped       reservation, up to
//!               reservation and guard                                      its maximum
//! ```
//!
//! A call enters the entry stub with the System V arguments of the export's array-call
//! trampoline in registers (callee and caller vmctx, `wasm_call`, the values pointer) plus the
//! trampoline in `r8`; the stub calls the trampoline and then writes to the MMIO page, which
//! ends the run. Results are read from the values slots.
//!
//! Builtins and host functions leave the VM through stubs as well ([`layout`]): the vmctx's
//! builtin table points at one stub per builtin, and each import's "callee vmctx" is a
//! host-call context in the read-only part whose first word (what the host-call trampoline
//! calls as its dispatcher) is the host-call stub. The host runs the builtin ([`builtins`]) or
//! the import's host function (the same [`HostCallCtx`] path as in process, over a [`Caller`]
//! of the guest's linear memory and the VM's host state), then resumes the guest with the answer
//! in `rax` and the results in the value slots the trampoline laid out on the guest stack. A
//! host function that ends the invocation (WASI `proc_exit`, a host trap) ends the run there:
//! the guest is not resumed. Writes to stdout and stderr need no exit at all: `fd_write`'s
//! context names the write-behind stub, which answers them in the VM and logs them for the
//! host to replay at the next stop ([`write_behind`]).
//!
//! Traps: the guest has no IDT, so a `ud2` trap site, a division by zero, an access outside the
//! mapped memory or any other exception is a triple fault ([`Exit::Shutdown`]) with `rip` still
//! at the faulting instruction. That `rip`, as an offset into the code, is looked up in the
//! module's trap table, the same table the in-process signal handler uses, so traps get the
//! same [`TrapCode`](fnvm_abi::TrapCode)s. The stack limit in the limits page is the stack's low
//! end plus a margin, so deep recursion fails the prologue check (a `StackOverflow` trap site)
//! before it reaches the unmapped guard page. Backtraces walk the frame-pointer chain through
//! the host's view of the stack, bounds-checked.
//!
//! Deadlines: code keeps its epoch checks. The vmctx's epoch pointer points at a counter in the
//! read-only part, which only the host writes ([`WasmVm::set_epoch`], or an [`EpochHandle`]
//! from another thread while a call runs: guest code sees the new value at its next check and
//! traps with `Interrupt`); the deadline is in the limits next to it
//! ([`WasmVm::set_epoch_deadline`], never by default). The engine's own counter is not shared
//! with the guest (it lives in host heap memory).
//!
//! Modules are linked ([`LinkedModule`]): they may import host functions only, and everything
//! else (one memory, tables, element and data segments, a start function, globals) is defined.
//! The instance persists across calls, also after a trap (its globals keep their values), and
//! the same VM and vCPU run every call; a call after a fault first restores the vCPU's segment
//! and control registers.

mod builtins;
mod core;
mod layout;
mod linear;
mod write_behind;

use self::core::{Stop, VmCore};
use super::memory::{GuestMemory, MemoryError};
use super::vcpu::{Exit, VcpuError};
use super::vm::{Kvm, VmError};
use crate::hostcall::HostCallCtx;
use crate::pool::MemoryImage;
use crate::{Halt, InstantiationError, LinkedModule, Module, Trap, Val};
use fnvm_abi::TrapCode;
use fnvm_host_interface::{Caller, Deadline, DeadlineSource, HostExit, HostFuncDef, WriteBehind};
use std::sync::Arc;
use std::time::Instant;

/// Where the guest-physical addresses of the code, instance and memory slots start (just
/// above the MMIO exit page, so no slot covers it).
pub const GPA_BASE: u64 = 0x4000_0000;

/// Failures of the host side: creating the VM, bad arguments, the vCPU misbehaving. What the
/// guest's code does (return, trap or exit) is the `Ok` side of [`WasmVm::call`]. Messages
/// name no host address.
#[derive(Debug, thiserror::Error)]
pub enum WasmVmError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("linking the module: {0}")]
    Link(#[source] InstantiationError),
    #[error("the start function did not finish: {0}")]
    Start(Halt),
    #[error("the KVM backend does not run modules with {0} yet")]
    Unsupported(&'static str),
    #[error("the module's instance region ({0:#x} bytes) is too large")]
    TooLarge(u64),
    #[error("the module's memory needs {pages} pages; the limit is {limit}")]
    MemoryTooLarge { pages: u64, limit: u64 },
    #[error("a table needs {elements} elements; the limit is {limit}")]
    TableTooLarge { elements: u64, limit: u64 },
    #[error("setting up the linear memory failed: {0}")]
    MemorySetup(std::io::Error),
    #[error("building the memory image failed: {0}")]
    MemoryImage(std::io::Error),
    #[error("no exported function named {0:?}")]
    NoSuchExport(String),
    #[error("{name} takes {expected} arguments, {got} given")]
    ArgumentCount {
        name: String,
        expected: usize,
        got: usize,
    },
    #[error("argument {index} of {name} has the wrong type")]
    ArgumentType { name: String, index: usize },
    #[error("a result of type {0:?} cannot leave the VM (a non-null reference)")]
    UnrepresentableResult(fnvm_abi::ValType),
    #[error("the guest faulted outside any trap site (code offset {offset:?})")]
    Fault { offset: Option<u32> },
    #[error("a host function was called with no host state (a pooled VM between instances)")]
    NoHostState,
    #[error("the guest exited inconsistently: {0}")]
    BadExit(&'static str),
    #[error("unexpected exit from the guest: {0:?}")]
    UnexpectedExit(Exit),
}

/// Caps on what one VM's instance may use.
#[derive(Clone, Debug)]
pub struct WasmVmConfig {
    /// Most pages the linear memory may grow to (its declared maximum may be lower). The
    /// memory's slot covers this much, so KVM's per-slot bookkeeping grows with it.
    pub max_memory_pages: u32,
    /// Most elements a table may grow to (room for them is reserved in the instance region).
    pub max_table_elements: u32,
    /// Answer the writes a host function allows to be deferred in the VM (see
    /// the `write_behind` module); off, each is a host call (for comparison).
    pub write_behind: bool,
}

impl Default for WasmVmConfig {
    /// The in-process pool's defaults: 1 GiB of memory, a million table elements.
    fn default() -> Self {
        WasmVmConfig {
            max_memory_pages: 16384,
            max_table_elements: 1_000_000,
            write_behind: true,
        }
    }
}

/// One instance of a linked module in its own micro-VM, with one vCPU, and its host state `T`
/// (what its host functions receive).
#[derive(Debug)]
pub struct WasmVm<T: 'static = ()> {
    core: VmCore,
    linked: LinkedModule<T>,
    /// One per imported function, in import order.
    host_calls: Box<[HostCallCtx<T>]>,
    /// The initial memory's image, which resets restore from.
    image: Option<Arc<MemoryImage>>,
    /// The host state; `None` only while a pooled VM waits for its next instance.
    data: Option<T>,
    deadline: Option<Instant>,
    /// How the import the write-behind stub serves is replayed (see [`write_behind`]).
    write_behind: Option<WriteBehind<T>>,
    /// The write log's records on their way out.
    log_buf: Vec<u8>,
}

impl WasmVm<()> {
    /// Creates a VM running an instance of `module`, which may import nothing, with the
    /// default caps and a guest stack of the engine's `max_wasm_stack` bytes.
    pub fn new(kvm: &Kvm, module: &Module) -> Result<WasmVm, WasmVmError> {
        let linked = LinkedModule::new(module, |_| None).map_err(WasmVmError::Link)?;
        WasmVm::with_host(kvm, &linked, (), &WasmVmConfig::default())
    }
}

impl<T: 'static> WasmVm<T> {
    /// Creates a VM running an instance of `linked` with host state `data`: its memory from a
    /// copy-on-write image of the data segments, its tables and globals from the template,
    /// then its start function run.
    pub fn with_host(
        kvm: &Kvm,
        linked: &LinkedModule<T>,
        data: T,
        config: &WasmVmConfig,
    ) -> Result<WasmVm<T>, WasmVmError> {
        let image = memory_image(linked)?.map(Arc::new);
        let mut vm = WasmVm::create(kvm, linked, image, Some(data), config)?;
        vm.start_with(None)?;
        Ok(vm)
    }

    /// Creates the VM with an instance of `linked` whose initial memory is `image` (built by
    /// [`memory_image`], shared by the VMs of a module), its start function not run.
    pub(crate) fn create(
        kvm: &Kvm,
        linked: &LinkedModule<T>,
        image: Option<Arc<MemoryImage>>,
        data: Option<T>,
        config: &WasmVmConfig,
    ) -> Result<WasmVm<T>, WasmVmError> {
        let deferred = linked
            .host_funcs()
            .iter()
            .enumerate()
            .filter(|_| config.write_behind)
            .find_map(|(i, def)| {
                let w = def.write_behind.clone()?;
                fd_write_shaped(def).then_some((i, w))
            });
        let core = VmCore::new(
            kvm,
            linked.module(),
            linked.template(),
            image.as_deref(),
            config,
            deferred.as_ref().map(|(i, w)| (*i, w.max_iovecs)),
        )?;
        Ok(WasmVm {
            core,
            linked: linked.clone(),
            host_calls: linked.host_funcs().iter().map(HostCallCtx::new).collect(),
            image,
            data,
            deadline: None,
            write_behind: deferred.map(|(_, w)| w),
            log_buf: Vec::new(),
        })
    }

    /// Runs the start function, if the module has one, with host state `data` (or the VM's).
    pub(crate) fn start_with(&mut self, data: Option<&mut T>) -> Result<(), WasmVmError> {
        if let Some(start) = self.linked.module().info().start {
            self.core.enter(start)?;
            if let Err(halt) = self.run(data)? {
                return Err(WasmVmError::Start(halt));
            }
        }
        Ok(())
    }

    /// Makes this VM a fresh instance again, with host state `data` (the old one is returned):
    /// nothing the last invocation did (memory written or grown, globals, tables, dropped
    /// segments, epoch and deadline) is visible afterwards. Then runs the start function.
    pub fn reset(&mut self, data: T) -> Result<Option<T>, WasmVmError> {
        let old = self.reset_state()?;
        self.data = Some(data);
        self.start_with(None)?;
        Ok(old)
    }

    /// The first half of [`reset`](Self::reset): the instance state is back to the module's
    /// (its start function not yet run) and the host state taken out.
    pub(crate) fn reset_state(&mut self) -> Result<Option<T>, WasmVmError> {
        self.deadline = None;
        let old = self.data.take();
        self.core
            .reset(self.linked.template(), self.image.as_deref())?;
        Ok(old)
    }

    /// Caps this instance's linear memory at `pages` (at most what its slot covers).
    pub fn set_memory_cap(&mut self, pages: u64) {
        self.core.set_memory_cap(pages);
    }

    /// Lets wasm frames use at most `bytes` of the guest stack (at most all of it).
    pub fn set_max_wasm_stack(&self, bytes: usize) -> Result<(), WasmVmError> {
        let l = &self.core.layout;
        let limit = l
            .stack_top
            .saturating_sub(bytes as u64)
            .max(l.stack_low + layout::STACK_SLACK);
        self.core.put(
            l.limits() + u64::from(fnvm_abi::vmoffsets::limits::STACK_LIMIT),
            limit,
        )
    }

    /// Calls the exported function `name` with `args`. The outer `Result` is the host side (bad
    /// arguments, KVM failures, a fault that is no trap site); the inner one is what the guest
    /// did: its results, or the trap or exit that ended it. The VM stays usable after either.
    pub fn call(
        &mut self,
        name: &str,
        args: &[Val],
    ) -> Result<Result<Vec<Val>, Halt>, WasmVmError> {
        self.call_with(None, name, args)
    }

    /// [`call`](Self::call) with host state `data` instead of the VM's own (the backend keeps
    /// an instance's host state outside its pooled VM).
    pub(crate) fn call_with(
        &mut self,
        data: Option<&mut T>,
        name: &str,
        args: &[Val],
    ) -> Result<Result<Vec<Val>, Halt>, WasmVmError> {
        let (func, results) = self.core.prepare_call(name, args)?;
        self.core.enter(func)?;
        match self.run(data)? {
            Ok(()) => Ok(Ok(self.core.results(&results)?)),
            Err(halt) => Ok(Err(halt)),
        }
    }

    /// Runs the entered function to its end, serving host calls with host state `data` (or
    /// the VM's own).
    fn run(&mut self, data: Option<&mut T>) -> Result<Result<(), Halt>, WasmVmError> {
        let mut data = match data {
            Some(d) => Some(d),
            None => self.data.as_mut(),
        };
        set_write_rooms(&self.core, self.write_behind.as_ref(), data.as_deref_mut())?;
        loop {
            let stop = self.core.resume()?;
            // Logged writes happened before whatever stopped the guest.
            if let Some(w) = &self.write_behind {
                let replay = w.replay;
                let mut buf = std::mem::take(&mut self.log_buf);
                let drained = match data.as_deref_mut() {
                    Some(d) => self
                        .core
                        .drain_write_log(&mut buf, |r| replay(d, r.args, r.bytes)),
                    // No host state, so no room was given: nothing was logged.
                    None => self.core.drain_write_log(&mut buf, |_| {}),
                };
                self.log_buf = buf;
                drained?;
            }
            match stop {
                Stop::Returned => return Ok(Ok(())),
                Stop::Trap(trap) => return Ok(Err(Halt::Trap(trap))),
                Stop::HostCall(call) => {
                    let Some(ctx) = self.host_calls.get(call.import) else {
                        return Err(WasmVmError::BadExit("a host call of no import"));
                    };
                    let mut slots = self.core.read_values(call.values, ctx.nslots())?;
                    let deadline = FixedDeadline(self.deadline);
                    let Some(data) = data.as_deref_mut() else {
                        return Err(WasmVmError::NoHostState);
                    };
                    let memory = self.core.memory_bytes();
                    let mut caller = Caller::new(memory, data, &deadline);
                    match ctx.invoke(&mut caller, &mut slots) {
                        Ok(()) => {
                            self.core.write_values(call.values, &slots)?;
                            // The call may have changed the streams (their room, their fds).
                            set_write_rooms(&self.core, self.write_behind.as_ref(), Some(data))?;
                            self.core.answer(0)?;
                        }
                        Err(exit) => {
                            let backtrace = self.core.host_call_backtrace(&call);
                            let trap = |code, host_message| {
                                Halt::Trap(Trap {
                                    code,
                                    host_message,
                                    backtrace: backtrace.clone(),
                                })
                            };
                            let halt = match exit {
                                HostExit::Exit(code) => Halt::Exit {
                                    code,
                                    backtrace: backtrace.clone(),
                                },
                                HostExit::Trap(m) => trap(TrapCode::HostTrap, Some(m)),
                                HostExit::DeadlineExceeded => trap(TrapCode::Interrupt, None),
                            };
                            return Ok(Err(halt));
                        }
                    }
                }
            }
        }
    }

    /// Times the guest left the VM (KVM_RUN returned) since the VM was made: calls' ends, host
    /// calls and builtins, traps, interrupts.
    pub fn exits(&self) -> u64 {
        self.core.exits
    }

    /// The host state (`None` only inside the crate's VM pool).
    pub fn data(&mut self) -> Option<&mut T> {
        self.data.as_mut()
    }

    /// Ends the VM and returns its host state.
    pub fn into_data(self) -> Option<T> {
        self.data
    }

    /// The linked module this VM runs.
    pub fn linked(&self) -> &LinkedModule<T> {
        &self.linked
    }

    /// When host functions that wait must give up (`None`: never).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The accessible bytes of the linear memory, if there is one.
    pub fn memory(&mut self) -> Option<&mut [u8]> {
        self.core.memory.is_some().then(|| self.core.memory_bytes())
    }

    /// Current size of the linear memory in wasm pages (64 KiB).
    pub fn memory_pages(&self) -> u64 {
        self.core
            .memory
            .as_ref()
            .map_or(0, |m| m.len() / fnvm_abi::WASM_PAGE_SIZE)
    }

    /// 4 KiB pages of linear memory present in host memory: the pages the guest touched (the
    /// debug report's `currentPages`).
    pub fn resident_memory_pages(&self) -> std::io::Result<u64> {
        self.core
            .memory
            .as_ref()
            .map_or(Ok(0), |m| m.resident_pages())
    }

    /// Host memory this instance occupies: resident pages of its linear memory and of its
    /// instance region (stack, vmctx, tables).
    pub fn resident_bytes(&self) -> std::io::Result<u64> {
        let l = &self.core.layout;
        let region = crate::pagemap::resident_pages(l.base as usize, l.len() as usize)?;
        Ok((region + self.resident_memory_pages()?) * super::PAGE_SIZE)
    }

    /// Drops the memory pages earlier instances left resident (see
    /// [`InstanceLimits::exact_page_accounting`](crate::InstanceLimits::exact_page_accounting)).
    pub fn discard_resident_memory(&mut self) -> Result<(), WasmVmError> {
        match self.core.memory.as_mut() {
            Some(m) => m.discard_resident().map_err(WasmVmError::MemorySetup),
            None => Ok(()),
        }
    }

    /// The host (= guest-virtual) address range the linear memory's slot covers (what it can
    /// grow to), for inspection.
    pub fn memory_region(&self) -> Option<std::ops::Range<u64>> {
        self.core.memory.as_ref()?;
        let gpa = self.core.memory_gpa;
        let slots = self.core.vm().slots();
        let slot = slots.iter().find(|s| s.guest_phys_addr == gpa)?;
        let base = slot.memory.host_address();
        Some(base..base + slot.memory.len() as u64)
    }

    /// Sets the guest's epoch counter (what its epoch checks compare with the deadline).
    pub fn set_epoch(&self, epoch: u64) -> Result<(), WasmVmError> {
        self.epoch_handle().set(epoch)
    }

    /// A handle that ends a running call from any thread: the call traps with
    /// [`TrapCode::Interrupt`] where the guest stood, whether or not its code checks the epoch.
    /// A kick between calls ends the next call at once, unless [`WasmVm::clear_kick`] comes
    /// first.
    pub fn kicker(&self) -> super::Kicker {
        self.core.kicker()
    }

    /// Forgets a kick that arrived after the last call ended.
    pub fn clear_kick(&mut self) {
        self.core.clear_kick();
    }

    /// A handle that sets the guest's epoch counter from any thread, also during a call.
    pub fn epoch_handle(&self) -> EpochHandle {
        let l = &self.core.layout;
        EpochHandle {
            region: Arc::clone(&self.core.region),
            offset: l.epoch() - l.base,
        }
    }

    /// Sets the epoch at which running code traps with [`TrapCode::Interrupt`].
    pub fn set_epoch_deadline(&self, deadline: u64) -> Result<(), WasmVmError> {
        let l = &self.core.layout;
        let at = l.limits() + u64::from(fnvm_abi::vmoffsets::limits::EPOCH_DEADLINE);
        self.core.put(at, deadline)
    }

    /// The lowest stack address wasm frames may use (the limit in the guest's `VmLimits`).
    pub fn stack_limit(&self) -> u64 {
        self.core.layout.stack_low + layout::STACK_SLACK
    }

    /// The guest-physical address of the page tables' root (in slot 0, `vm().memory()`), to
    /// inspect the mappings with [`translate`](super::translate).
    pub fn page_table_root(&self) -> u64 {
        self.core.pt.root()
    }

    /// The host (= guest-virtual) address range of the instance region: guard page, stack,
    /// vmctx, value slots, tables and the guest-read-only part, in that order.
    pub fn instance_region(&self) -> std::ops::Range<u64> {
        self.core.layout.base..self.core.layout.end
    }

    /// The VM, for tests' inspection.
    #[cfg(test)]
    pub(crate) fn vm(&self) -> &super::Vm {
        self.core.vm()
    }
}

/// The image of `linked`'s initial memory (its data segments), if it has any data.
pub(crate) fn memory_image<T>(
    linked: &LinkedModule<T>,
) -> Result<Option<MemoryImage>, WasmVmError> {
    let len = linked.image_bytes();
    if len == 0 {
        return Ok(None);
    }
    MemoryImage::new(len, |m| linked.write_image(m))
        .map(Some)
        .map_err(WasmVmError::MemoryImage)
}

/// The deadline host functions see: a fixed instant, or never.
struct FixedDeadline(Option<Instant>);

impl DeadlineSource for FixedDeadline {
    fn deadline(&self) -> Deadline<'_> {
        match self.0 {
            Some(at) => Deadline::at(at),
            None => Deadline::NEVER,
        }
    }
}

/// Sets a [`WasmVm`]'s epoch counter from another thread (a deadline timer). It keeps the
/// counter's memory alive, not the VM.
#[derive(Clone, Debug)]
pub struct EpochHandle {
    region: Arc<GuestMemory>,
    offset: u64,
}

impl EpochHandle {
    /// Sets the counter (one atomic store; running guest code reads it at its epoch checks).
    pub fn set(&self, epoch: u64) -> Result<(), WasmVmError> {
        Ok(self.region.store_u64_atomic(self.offset, epoch)?)
    }
}

/// Whether `def` has `fd_write`'s signature, `(i32, i32, i32, i32) -> i32`: the only one the
/// write-behind stub knows.
fn fd_write_shaped<T>(def: &HostFuncDef<T>) -> bool {
    use fnvm_abi::ValType::I32;
    def.ty.params == [I32; 4] && def.ty.results == [I32]
}

/// Gives the write-behind stub the room of fds 1 and 2 (with no host state: none).
fn set_write_rooms<T>(
    core: &VmCore,
    write_behind: Option<&WriteBehind<T>>,
    data: Option<&mut T>,
) -> Result<(), WasmVmError> {
    match (write_behind, data) {
        (Some(w), Some(d)) => core.set_write_rooms((w.room)(d, 1), (w.room)(d, 2)),
        _ => Ok(()),
    }
}
