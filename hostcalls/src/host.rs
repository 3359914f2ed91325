//! The `fnvm` import module: hostcalls specific to fnvm rather than WASI.
//!
//! `host_halt(status)` ends the invocation gracefully with `status`, like `proc_exit` but for
//! guests built against fnvm's own ABI. With tracing on, it writes the `HOST_HALT ...
//! GRACEFULLY EXIT` entry itself.

use crate::ctx::WasiCtx;
use fnvm_host_interface::{Caller, HostExit};

/// `host_halt(i32)`.
pub(crate) fn hc_host_halt(
    caller: &mut Caller<'_, WasiCtx>,
    slots: &mut [u64],
) -> Result<(), HostExit> {
    let code = slots.first().copied().unwrap_or(0) as u32 as i32;
    caller.data().hostcalls += 1;
    if let Some(d) = caller.data().dmesg.as_deref_mut() {
        d.halt(code);
    }
    Err(HostExit::Exit(code))
}
