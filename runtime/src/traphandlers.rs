//! Turning faults in guest code into traps, and unwinding back to the host.
//!
//! Entering the guest goes through `fnvm_call_guarded`, which saves the callee-saved registers
//! and stack pointer in a jump buffer, and an [`Activation`] recorded in a thread-local. When guest
//! code faults (SIGSEGV/SIGBUS on a guard page, SIGILL on a `ud2` trap, SIGFPE) the handler, which
//! runs on an alternate stack, checks that the pc lies in registered guest code, records the trap
//! code and a frame-pointer backtrace in the activation, and rewrites the signal context so that
//! returning from the handler resumes in `fnvm_longjmp`: the kernel restores the signal mask and
//! the call to `fnvm_call_guarded` returns 1. Host code that wants to trap (a host function error)
//! records the trap and calls the `Raise` builtin, which longjmps the same way. A fault outside
//! guest code goes to whatever handler was installed before ours.

use fnvm_abi::TrapCode;
use std::cell::Cell;
use std::sync::Once;

use crate::module::CodeInfo;
use crate::Module;

std::arch::global_asm!(
    ".globl fnvm_call_guarded",
    ".type fnvm_call_guarded,@function",
    "fnvm_call_guarded:",
    // rdi = jump buffer, rsi = function, rdx = its argument, rcx = top of the stack to run it
    // on (16-byte aligned), or 0 to stay on the current stack
    "mov [rdi + 0], rbx",
    "mov [rdi + 8], rbp",
    "mov [rdi + 16], r12",
    "mov [rdi + 24], r13",
    "mov [rdi + 32], r14",
    "mov [rdi + 40], r15",
    "lea rax, [rsp + 8]",
    "mov [rdi + 48], rax",
    "mov rax, [rsp]",
    "mov [rdi + 56], rax",
    "push rbp",
    "mov rbp, rsp",
    "test rcx, rcx",
    "jz 2f",
    "mov rsp, rcx",
    "2:",
    "mov rdi, rdx",
    "call rsi",
    // rbp is callee-saved: it still points at our frame on the original stack.
    "mov rsp, rbp",
    "pop rbp",
    "xor eax, eax",
    "ret",
    ".size fnvm_call_guarded, . - fnvm_call_guarded",
    ".globl fnvm_longjmp",
    ".type fnvm_longjmp,@function",
    "fnvm_longjmp:",
    "mov rbx, [rdi + 0]",
    "mov rbp, [rdi + 8]",
    "mov r12, [rdi + 16]",
    "mov r13, [rdi + 24]",
    "mov r14, [rdi + 32]",
    "mov r15, [rdi + 40]",
    "mov rsp, [rdi + 48]",
    "mov eax, 1",
    "jmp qword ptr [rdi + 56]",
    ".size fnvm_longjmp, . - fnvm_longjmp",
);

unsafe extern "C" {
    /// Saves registers in `buf`, calls `f(data)` (on the stack whose top is `stack_top`, unless
    /// it is 0), returns 0; returns 1 when `fnvm_longjmp(buf)` is called while `f` runs.
    fn fnvm_call_guarded(
        buf: *mut JmpBuf,
        f: extern "C" fn(*mut u8),
        data: *mut u8,
        stack_top: usize,
    ) -> i32;
    /// Resumes at the return of the `fnvm_call_guarded` that filled `buf`, returning 1.
    fn fnvm_longjmp(buf: *const JmpBuf) -> !;
}

/// Saved registers: rbx, rbp, r12-r15, rsp, return address.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct JmpBuf([u64; 8]);

/// Most frames a backtrace records.
pub(crate) const MAX_FRAMES: usize = 64;

/// One entry into guest code on this thread.
#[derive(Debug)]
pub(crate) struct Activation {
    buf: JmpBuf,
    /// Trap recorded by the signal handler or a host function.
    pub(crate) trap: Option<TrapCode>,
    /// Host error message recorded with `TrapCode::HostTrap`.
    pub(crate) host_message: Option<String>,
    /// Exit status a host function asked for (WASI `proc_exit`); not a trap.
    pub(crate) exit: Option<i32>,
    /// Backtrace pcs, innermost first.
    pub(crate) frames: [usize; MAX_FRAMES],
    pub(crate) nframes: usize,
    /// The code of the store that entered the guest.
    code: *const CodeRegistry,
    prev: *mut Activation,
}

thread_local! {
    static CURRENT: Cell<*mut Activation> = const { Cell::new(std::ptr::null_mut()) };
}

/// The guest code a store can run: sorted, non-overlapping `[start, end)` ranges. Each store
/// owns one and hands it to every activation, so the signal handler finds code without taking
/// a lock (another thread loading or dropping modules cannot get in its way).
/// Each entry holds its module, so the code stays mapped (and its addresses cannot be reused by
/// another module) for as long as the store may run it.
#[derive(Debug, Default)]
pub(crate) struct CodeRegistry {
    entries: Vec<(usize, usize, Module)>,
}

impl CodeRegistry {
    /// Adds a module's code if it is not there yet.
    pub(crate) fn insert(&mut self, module: &Module) {
        let start = module.inner.code.base;
        let end = start + module.inner.code_len;
        let i = self.entries.partition_point(|e| e.0 < start);
        if self.entries.get(i).is_some_and(|e| e.0 == start) {
            return;
        }
        self.entries.insert(i, (start, end, module.clone()));
    }

    /// The code containing `pc`. Allocation-free and lock-free: safe in a signal handler.
    pub(crate) fn lookup(&self, pc: usize) -> Option<&CodeInfo> {
        let i = self.entries.partition_point(|e| e.0 <= pc);
        let (start, end, module) = self.entries.get(i.checked_sub(1)?)?;
        (pc >= *start && pc < *end).then_some(&*module.inner.code)
    }
}

/// Runs `f` with guest traps caught: returns `Err(activation)` with the trap recorded if guest
/// code trapped. `f` must not hold values with destructors across guest calls: a trap skips
/// its frames.
/// With `stack_top` nonzero, `f` runs on that stack (a [`GuestStack`]) instead of the thread's.
pub(crate) fn catch_traps(
    code: &CodeRegistry,
    stack_top: usize,
    f: &mut dyn FnMut(),
) -> Result<(), Box<Activation>> {
    init_handlers();
    ensure_alt_stack();
    // On this frame's stack, not the heap: an allocation per guest call was measurable on the
    // HTTP hot path. It stays put until the call returns; only a trap moves it out.
    let mut act = Activation {
        buf: JmpBuf::default(),
        trap: None,
        host_message: None,
        exit: None,
        frames: [0; MAX_FRAMES],
        nframes: 0,
        code,
        prev: CURRENT.with(|c| c.get()),
    };
    let act_ptr: *mut Activation = &mut act;
    CURRENT.with(|c| c.set(act_ptr));
    extern "C" fn trampoline(data: *mut u8) {
        // SAFETY: `data` is the `&mut &mut dyn FnMut()` passed below, alive for this call.
        let f = unsafe { &mut *(data as *mut &mut dyn FnMut()) };
        f();
    }
    let mut fref: &mut dyn FnMut() = f;
    // SAFETY: the jump buffer lives in `act`, which outlives the call; `trampoline` receives a
    // pointer to `fref`, alive for the call. A longjmp back here skips only guest frames, the
    // trampoline and `f`'s frames, which by contract own nothing that needs dropping.
    let rc = unsafe {
        fnvm_call_guarded(
            &mut (*act_ptr).buf,
            trampoline,
            &mut fref as *mut &mut dyn FnMut() as *mut u8,
            stack_top,
        )
    };
    CURRENT.with(|c| c.set(act.prev));
    if rc == 0 {
        Ok(())
    } else {
        Err(Box::new(act))
    }
}

/// Whether this thread is running guest code (inside [`catch_traps`]).
pub(crate) fn in_guest() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// Records how a host function ended the invocation, for the current activation; the caller
/// then returns nonzero to the host-call trampoline, which raises it.
pub(crate) fn record_host_exit(exit: fnvm_host_interface::HostExit) {
    use fnvm_host_interface::HostExit;
    CURRENT.with(|c| {
        let act = c.get();
        if act.is_null() {
            return;
        }
        // SAFETY: CURRENT points at the live activation of this thread.
        let act = unsafe { &mut *act };
        match exit {
            HostExit::Exit(code) => act.exit = Some(code),
            HostExit::Trap(message) => {
                act.trap = Some(TrapCode::HostTrap);
                act.host_message = Some(message);
            }
            HostExit::DeadlineExceeded => act.trap = Some(TrapCode::Interrupt),
        }
    });
}

std::arch::global_asm!(
    // The `Raise` builtin's entry: passes the guest's return address and frame pointer (the
    // host-call trampoline's, which keeps frame pointers) on to `raise_impl` for the backtrace.
    ".globl fnvm_raise",
    ".type fnvm_raise,@function",
    "fnvm_raise:",
    "mov rsi, [rsp]",
    "mov rdx, rbp",
    "jmp {raise_impl}",
    ".size fnvm_raise, . - fnvm_raise",
    raise_impl = sym raise_impl,
);

unsafe extern "C" {
    /// The `Raise` builtin: unwinds to the innermost activation with the trap (or exit) already
    /// recorded, after recording the guest backtrace.
    pub(crate) fn fnvm_raise(vmctx: *mut u8);
}

extern "C" fn raise_impl(_vmctx: *mut u8, ret: usize, fp: usize) {
    let act = CURRENT.with(|c| c.get());
    if act.is_null() {
        // Called outside any activation: only corrupted code could do this.
        std::process::abort();
    }
    // SAFETY: `act` is this thread's live activation; its jump buffer was filled by
    // `fnvm_call_guarded`, whose frame is still on the stack below us. `ret` and `fp` are the
    // return address into guest code and its frame pointer, as `record_backtrace` requires.
    unsafe {
        if (*act).trap.is_none() && (*act).exit.is_none() {
            (*act).trap = Some(TrapCode::HostTrap);
        }
        let registry = &*(*act).code;
        record_backtrace(&mut *act, registry, ret.wrapping_sub(1), fp);
        fnvm_longjmp(&(*act).buf)
    }
}

/// A stack for guest code, separate from the host thread's, so a guest can never use up the
/// host's stack whatever thread calls it.
///
/// ```text
///   low                                                                   high
///   +------------+-----------------------------+-------------------------------+
///   | guard page | host headroom (256 KiB)     | wasm frames (max_wasm_stack)  |
///   | PROT_NONE  | builtins and host functions | checked by every prologue     |
///   +------------+-----------------------------+-------------------------------+
///                                               ^ stack_limit                  ^ top
/// ```
#[derive(Debug)]
pub(crate) struct GuestStack {
    map: crate::mmap::Mmap,
    wasm_size: usize,
}

/// Room below the wasm frames for host code the guest calls.
const HOST_HEADROOM: usize = 256 * 1024;

impl GuestStack {
    /// Maps a stack for `max_wasm_stack` bytes of wasm frames.
    pub(crate) fn new(max_wasm_stack: usize) -> std::io::Result<GuestStack> {
        let page = crate::mmap::page_size();
        let wasm_size = max_wasm_stack.div_ceil(page) * page;
        let len = page + HOST_HEADROOM + wasm_size;
        let map = crate::mmap::Mmap::reserve(len)?;
        // SAFETY: granting access to a fresh reservation.
        unsafe { map.protect(page, len - page, libc::PROT_READ | libc::PROT_WRITE)? };
        Ok(GuestStack { map, wasm_size })
    }

    /// Bytes a stack for `max_wasm_stack` bytes of wasm frames takes, guard page included.
    pub(crate) fn size_for(max_wasm_stack: usize) -> usize {
        let page = crate::mmap::page_size();
        page + HOST_HEADROOM + max_wasm_stack.div_ceil(page) * page
    }

    /// A stack in `map` (a view of [`GuestStack::size_for`] bytes), whose guard page is made
    /// inaccessible and the rest read-write.
    ///
    /// # Safety
    /// Nothing may use the view yet (its guard page loses access).
    pub(crate) unsafe fn in_view(
        map: crate::mmap::Mmap,
        max_wasm_stack: usize,
    ) -> std::io::Result<Self> {
        let page = crate::mmap::page_size();
        let wasm_size = max_wasm_stack.div_ceil(page) * page;
        // SAFETY: the caller's contract: nothing references the view.
        unsafe {
            map.protect(0, page, libc::PROT_NONE)?;
            map.protect(page, map.len() - page, libc::PROT_READ | libc::PROT_WRITE)?;
        }
        Ok(GuestStack { map, wasm_size })
    }

    /// The mapping's start and length (guard page included), for accounting.
    pub(crate) fn range(&self) -> (usize, usize) {
        (self.map.as_ptr() as usize, self.map.len())
    }

    /// The highest address (exclusive), 16-byte aligned: where the stack starts.
    pub(crate) fn top(&self) -> usize {
        self.map.as_ptr() as usize + self.map.len()
    }

    /// The lowest stack pointer wasm frames may reach.
    pub(crate) fn wasm_limit(&self) -> usize {
        self.top() - self.wasm_size
    }
}

// ---- signal handling ---------------------------------------------------------------------------

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];
/// The handlers that were installed before ours, for faults that are not in guest code.
static PREVIOUS: std::sync::OnceLock<[libc::sigaction; 4]> = std::sync::OnceLock::new();
static INIT: Once = Once::new();

fn init_handlers() {
    INIT.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid (default) value.
        let mut previous: [libc::sigaction; 4] = unsafe { std::mem::zeroed() };
        for (i, sig) in SIGNALS.iter().enumerate() {
            // SAFETY: installing a handler with SA_SIGINFO|SA_ONSTACK; the previous action is
            // written to `previous[i]`, a valid out pointer.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = handler as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut act.sa_mask);
                if libc::sigaction(*sig, &act, &mut previous[i]) != 0 {
                    // Without our handler a guest fault would kill the process; refuse to run.
                    eprintln!("fnvm: cannot install handler for signal {sig}");
                    std::process::abort();
                }
            }
        }
        let _ = PREVIOUS.set(previous);
    });
}

/// Per-thread alternate signal stack, so faults are handled even when the thread's own stack
/// is exhausted.
struct AltStack {
    map: crate::mmap::Mmap,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: disabling the alternate stack of this thread before unmapping it.
        unsafe {
            let ss = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&ss, std::ptr::null_mut());
        }
        let _ = &self.map;
    }
}

thread_local! {
    static ALT_STACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

const ALT_STACK_SIZE: usize = 64 * 1024;

fn ensure_alt_stack() {
    ALT_STACK.with(|slot| {
        if slot.borrow().is_some() {
            return;
        }
        // SAFETY: querying the current alternate stack.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `old` is a valid out pointer.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= ALT_STACK_SIZE {
            return; // the thread already has one that is big enough
        }
        let page = crate::mmap::page_size();
        let Ok(map) = crate::mmap::Mmap::reserve(ALT_STACK_SIZE + page) else {
            return;
        };
        // SAFETY: granting access to a fresh reservation.
        if unsafe { map.protect(page, ALT_STACK_SIZE, libc::PROT_READ | libc::PROT_WRITE) }.is_err()
        {
            return;
        }
        let ss = libc::stack_t {
            // SAFETY: inside the mapping; the page below stays a guard page.
            ss_sp: unsafe { map.as_ptr().add(page).cast() },
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: the stack memory lives as long as the thread-local that owns it.
        if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } == 0 {
            *slot.borrow_mut() = Some(AltStack { map });
        }
    });
}

unsafe extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let pc = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let fp = uc.uc_mcontext.gregs[libc::REG_RBP as usize] as usize;
    let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize;
    let act = CURRENT.with(|c| c.get());
    // SAFETY: a non-null CURRENT is this thread's live activation, and its registry belongs to
    // the store running guest code on this thread, which cannot change during the call.
    let registry = unsafe { act.as_ref().map(|a| &*a.code) };
    if let Some(registry) = registry {
        if let Some(code_info) = registry.lookup(pc) {
            let off = (pc - code_info.base) as u32;
            let code = match code_info.module.trap_at(off) {
                Some(c) => c,
                None if sig == libc::SIGSEGV || sig == libc::SIGBUS => {
                    // SAFETY: valid siginfo for a fault signal.
                    let addr = unsafe { (*info).si_addr() } as usize;
                    if addr.abs_diff(sp) < 1 << 20 {
                        TrapCode::StackOverflow
                    } else {
                        TrapCode::MemoryOutOfBounds
                    }
                }
                None => TrapCode::UnreachableCodeReached,
            };
            // SAFETY: `act` is this thread's live activation.
            unsafe {
                (*act).trap = Some(code);
                record_backtrace(&mut *act, registry, pc, fp);
                uc.uc_mcontext.gregs[libc::REG_RIP as usize] = fnvm_longjmp as *const () as i64;
                uc.uc_mcontext.gregs[libc::REG_RDI as usize] = &(*act).buf as *const JmpBuf as i64;
            }
            return;
        }
    }
    // Not ours: hand it to the previous handler (the default action if none was recorded yet).
    let i = SIGNALS.iter().position(|s| *s == sig).unwrap_or(0);
    // SAFETY: an all-zero sigaction is SIG_DFL with no flags.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    let prev = PREVIOUS.get().map_or(&default, |p| &p[i]);
    // SAFETY: re-installing or calling the handler that was installed before ours, with the
    // arguments the kernel gave us.
    unsafe {
        if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
            // Restore that action and return: the faulting instruction runs again and the
            // process dies as it would have without us.
            libc::sigaction(sig, prev, std::ptr::null_mut());
        } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(prev.sa_sigaction);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
            f(sig);
        }
    }
}

/// Walks the frame-pointer chain while it stays in guest code. Reads only frames that guest
/// code set up (every guest function keeps frame pointers).
///
/// # Safety
/// `fp` must be the frame pointer of the interrupted guest code.
unsafe fn record_backtrace(
    act: &mut Activation,
    registry: &CodeRegistry,
    mut pc: usize,
    mut fp: usize,
) {
    act.nframes = 0;
    while act.nframes < MAX_FRAMES {
        if registry.lookup(pc).is_none() {
            break;
        }
        act.frames[act.nframes] = pc;
        act.nframes += 1;
        if fp == 0 || !fp.is_multiple_of(8) {
            break;
        }
        // SAFETY: `fp` points at a saved frame (caller fp, return address) of guest code.
        let (next_fp, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
        if next_fp <= fp {
            break;
        }
        // The return address points after the call; step back into the call instruction.
        pc = ret.wrapping_sub(1);
        fp = next_fp;
    }
}
