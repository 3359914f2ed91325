//! The one way into the guest, used by the pool and the store alike: enter a wasm function
//! through its array-call trampoline, on the guarded guest stack with its stack limit set,
//! with traps caught, and turn a trap or an exit into a [`Halt`] with a symbolized backtrace.

use crate::traphandlers::{self, catch_traps, CodeRegistry, GuestStack};
use crate::vm::{VmFuncRef, VmLimits};
use crate::{FrameInfo, Halt, Trap};
use fnvm_abi::TrapCode;

/// `extern "C" fn(callee_vmctx, caller_vmctx, wasm_call, values)`: the array-call trampoline.
type ArrayCall = unsafe extern "C" fn(*mut u8, *mut u8, *const u8, *mut [u64; 2]);

/// Where a call from the host runs.
pub(crate) struct GuestContext<'a> {
    /// The code the instance may run (what the signal handler recognises).
    pub(crate) code: &'a CodeRegistry,
    /// The limits the callee's vmctx points to.
    pub(crate) limits: *mut VmLimits,
    /// The stack an outermost call switches to.
    pub(crate) stack: &'a GuestStack,
    /// Bytes of wasm frames allowed (at most the stack's own).
    pub(crate) max_stack: usize,
}

/// Calls the wasm function `fr` with its parameters in `values`; its results are written back
/// there. The outermost call (the thread is not already running guest code) switches to the
/// guest stack and sets the stack limit for its duration; a nested one stays where it is.
///
/// # Safety
/// `fr` must be the funcref of a wasm-defined function (non-null `array_call`) of a live
/// instance whose code is in `cx.code` and whose vmctx points at `cx.limits`; `values` must have
/// `max(params, results, 1)` slots holding arguments of the function's type; the instance's
/// host state must be set as its host functions expect.
pub(crate) unsafe fn call_wasm(
    cx: &GuestContext<'_>,
    fr: &VmFuncRef,
    values: &mut [[u64; 2]],
) -> Result<(), Halt> {
    let outermost = !traphandlers::in_guest();
    let mut stack_top = 0;
    // SAFETY: the limits are live (contract) and only this thread uses them now.
    let saved_limit = unsafe { (*cx.limits).stack_limit };
    if outermost {
        stack_top = cx.stack.top();
        let limit = cx
            .stack
            .wasm_limit()
            .max(stack_top.saturating_sub(cx.max_stack));
        // SAFETY: as above.
        unsafe { (*cx.limits).stack_limit = limit as u64 };
    }
    // SAFETY: array_call points at the array-call trampoline of this function's type in loaded,
    // executable code (contract).
    let entry: ArrayCall = unsafe { std::mem::transmute(fr.array_call) };
    let (callee, wasm_call, values_ptr) = (fr.vmctx, fr.wasm_call, values.as_mut_ptr());
    let result = catch_traps(cx.code, stack_top, &mut || {
        // SAFETY: the trampoline reads params and writes results in `values`, which has room
        // for both; the callee's vmctx is live (contract).
        unsafe { entry(callee, callee, wasm_call, values_ptr) }
    });
    // SAFETY: as above.
    unsafe { (*cx.limits).stack_limit = saved_limit };
    result.map_err(|act| {
        let backtrace = symbolize(cx.code, &act.frames[..act.nframes]);
        match act.exit {
            Some(code) => Halt::Exit { code, backtrace },
            None => Halt::Trap(Trap {
                code: act.trap.unwrap_or(TrapCode::HostTrap),
                host_message: act.host_message,
                backtrace,
            }),
        }
    })
}

/// Guest frames for backtrace pcs: function index, names and wasm offset of each.
pub(crate) fn symbolize(registry: &CodeRegistry, pcs: &[usize]) -> Vec<FrameInfo> {
    pcs.iter()
        .filter_map(|&pc| {
            let code = registry.lookup(pc)?;
            let off = (pc - code.base) as u32;
            let m = &code.module;
            let func_index = m.func_at(off)?;
            Some(FrameInfo {
                func_index,
                func_name: m.func_name(func_index).map(str::to_owned),
                module_name: m.name.clone(),
                wasm_offset: m.wasm_offset_at(off),
                code_offset: off,
                pc,
            })
        })
        .collect()
}

/// A trap raised by the host side of a call (bad arguments, a missing export), not by guest
/// code.
pub(crate) fn host_trap(message: impl Into<String>) -> Trap {
    Trap {
        code: TrapCode::HostTrap,
        host_message: Some(message.into()),
        backtrace: Vec::new(),
    }
}
