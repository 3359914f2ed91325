//! Calling host functions: the one dispatch path, used by the pool and the store alike.
//!
//! An imported host function is entered through the importing module's host-call trampoline
//! (compiled into the artifact), which stores the arguments in value slots and calls the
//! `dispatch` pointer found at offset 0 of the import's "callee vmctx": a [`HostCallCtx`].
//! The dispatcher, monomorphised for the host state type `T`, finds the calling instance from
//! the caller's vmctx, builds a [`Caller`] (its memory, its `T`, its deadline) and runs
//! [`HostCallCtx::invoke`], which is also what a direct call from the host runs.

use crate::instance::{instance_of, memory_of};
use crate::traphandlers;
use fnvm_abi::ValType;
use fnvm_host_interface::{Caller, HostExit, HostFn, HostFuncDef};

/// What the host-call trampoline of an import finds at its "callee vmctx": the dispatcher
/// first (the trampoline loads it from offset 0), then the host function.
#[repr(C)]
pub(crate) struct HostCallCtx<T> {
    dispatch: unsafe extern "C" fn(*mut HostCallCtx<T>, *mut u8, *mut [u64; 2]) -> u32,
    func: HostFn<T>,
    /// Value slots the trampoline passes: max(params, results, 1).
    nslots: usize,
    /// Bit i set: parameter i is 32 bits wide. The trampoline stores only the value's own bytes,
    /// so these are zero-extended before the host function sees them.
    narrow_params: u64,
}

impl<T> std::fmt::Debug for HostCallCtx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCallCtx")
            .field("nslots", &self.nslots)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> HostCallCtx<T> {
    pub(crate) fn new(def: &HostFuncDef<T>) -> HostCallCtx<T> {
        let ty = &def.ty;
        let narrow_params = ty
            .params
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, t)| matches!(t, ValType::I32 | ValType::F32))
            .fold(0u64, |m, (i, _)| m | 1 << i);
        HostCallCtx {
            dispatch: dispatch::<T>,
            func: def.func,
            nslots: ty.params.len().max(ty.results.len()).max(1),
            narrow_params,
        }
    }

    /// Value slots a call passes.
    pub(crate) fn nslots(&self) -> usize {
        self.nslots
    }

    /// Runs the host function over `slots` (arguments in, results out) for `caller`. A panic
    /// in the host function becomes a trap; it never unwinds into guest frames.
    pub(crate) fn invoke(
        &self,
        caller: &mut Caller<'_, T>,
        slots: &mut [[u64; 2]],
    ) -> Result<(), HostExit> {
        let mut small = [0u64; 16];
        let mut heap;
        let raw: &mut [u64] = if slots.len() <= small.len() {
            &mut small[..slots.len()]
        } else {
            heap = vec![0u64; slots.len()];
            &mut heap
        };
        for (i, (r, s)) in raw.iter_mut().zip(slots.iter()).enumerate() {
            let narrow = i < 64 && self.narrow_params & (1 << i) != 0;
            *r = if narrow { s[0] as u32 as u64 } else { s[0] };
        }
        let func = self.func;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| func(caller, raw))) {
            Ok(Ok(())) => {
                for (s, r) in slots.iter_mut().zip(raw.iter()) {
                    s[0] = *r;
                }
                Ok(())
            }
            Ok(Err(exit)) => Err(exit),
            Err(_) => Err(HostExit::Trap("host function panicked".into())),
        }
    }
}

/// The dispatcher the host-call trampoline calls. Returns 0 to go back to the guest, nonzero
/// (with the exit recorded in the activation) to raise.
///
/// # Safety
/// Called only by a host-call trampoline: `ctx` is the [`HostCallCtx`] an import record of the
/// caller points to (kept alive by the prepared module or store the instance runs from),
/// `caller_vmctx` the calling instance's live vmctx, whose host state is a `T` for the duration
/// of the call, and `values` holds `ctx.nslots` slots.
unsafe extern "C" fn dispatch<T: 'static>(
    ctx: *mut HostCallCtx<T>,
    caller_vmctx: *mut u8,
    values: *mut [u64; 2],
) -> u32 {
    // SAFETY: per the contract.
    let (ctx, inst) = unsafe { (&*ctx, &*instance_of(caller_vmctx)) };
    if inst.host_data.is_null() {
        traphandlers::record_host_exit(HostExit::Trap(
            "host function called outside an invocation".into(),
        ));
        return 1;
    }
    // SAFETY: whoever entered the guest set `host_data` to its `T` (the prepared module's host
    // functions and the instance share `T` by construction) and does not touch it while the
    // guest runs.
    let data = unsafe { &mut *(inst.host_data as *mut T) };
    // SAFETY: the guest is suspended in this call; nothing else uses its memory.
    let memory: &mut [u8] = match unsafe { memory_of(inst) } {
        Some(m) => m.data_mut(),
        None => &mut [],
    };
    // SAFETY: the trampoline passes `nslots` value slots.
    let slots = unsafe { std::slice::from_raw_parts_mut(values, ctx.nslots) };
    let mut caller = Caller::new(memory, data, inst);
    match ctx.invoke(&mut caller, slots) {
        Ok(()) => 0,
        Err(exit) => {
            traphandlers::record_host_exit(exit);
            1
        }
    }
}
