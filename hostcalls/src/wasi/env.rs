//! Hostcalls about the process rather than files: arguments, environment, clocks, randomness,
//! scheduling, signals and exit.

use super::{Args, Cx};
use crate::cstrings::CStrings;
use crate::ctx::WasiCtx;
use crate::errno::Errno;
use crate::memory::GuestMemory;
use crate::trace::Ret;
use crate::types::{clockid, SIGNAL_MAX};
use fnvm_host_interface::{Caller, HostExit};
use rustix::time::ClockId;

/// Writes a C-string vector (`argv`/`environ`): the packed NUL-terminated strings at `buf`,
/// pointers to them at `ptrs`. Both areas are checked before anything is written.
fn write_cstrings(
    mem: &mut GuestMemory<'_>,
    ptrs: u32,
    buf: u32,
    list: &CStrings,
) -> Result<(), Errno> {
    let count = u32::try_from(list.len()).map_err(|_| Errno::Overflow)?;
    let total = u32::try_from(list.as_bytes().len()).map_err(|_| Errno::Overflow)?;
    mem.array_range(ptrs, count, 4)?;
    mem.slice_mut(buf, total)?.copy_from_slice(list.as_bytes());
    // Every string starts before `buf + total`, which is in bounds, so the sums fit.
    let mut off = 0u32;
    for (i, s) in (0u32..).zip(list.iter()) {
        let slot = i
            .checked_mul(4)
            .and_then(|o| ptrs.checked_add(o))
            .ok_or(Errno::Fault)?;
        mem.write_u32(slot, buf.checked_add(off).ok_or(Errno::Fault)?)?;
        let len = u32::try_from(s.len() + 1).map_err(|_| Errno::Overflow)?;
        off = off.checked_add(len).ok_or(Errno::Overflow)?;
    }
    Ok(())
}

pub(crate) fn args_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    write_cstrings(&mut cx.mem, a.u32(0), a.u32(1), &cx.ctx.args)?;
    Ok(Ret::None)
}

pub(crate) fn args_sizes_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let argc = u32::try_from(cx.ctx.args.len()).map_err(|_| Errno::Overflow)?;
    let size = u32::try_from(cx.ctx.args.as_bytes().len()).map_err(|_| Errno::Overflow)?;
    cx.mem.check(a.u32(0), 4)?;
    cx.mem.check(a.u32(1), 4)?;
    cx.mem.write_u32(a.u32(0), argc)?;
    cx.mem.write_u32(a.u32(1), size)?;
    Ok(Ret::Two("argc", argc.into(), "argv_buf_size", size.into()))
}

pub(crate) fn environ_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    write_cstrings(&mut cx.mem, a.u32(0), a.u32(1), &cx.ctx.env)?;
    Ok(Ret::None)
}

pub(crate) fn environ_sizes_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let count = u32::try_from(cx.ctx.env.len()).map_err(|_| Errno::Overflow)?;
    let size = u32::try_from(cx.ctx.env.as_bytes().len()).map_err(|_| Errno::Overflow)?;
    cx.mem.check(a.u32(0), 4)?;
    cx.mem.check(a.u32(1), 4)?;
    cx.mem.write_u32(a.u32(0), count)?;
    cx.mem.write_u32(a.u32(1), size)?;
    Ok(Ret::Two(
        "environc",
        count.into(),
        "environ_buf_size",
        size.into(),
    ))
}

/// The host clock for a preview1 `clockid` (`EINVAL` for an undefined id).
pub(crate) fn clock(id: u32) -> Result<ClockId, Errno> {
    match id {
        clockid::REALTIME => Ok(ClockId::Realtime),
        clockid::MONOTONIC => Ok(ClockId::Monotonic),
        clockid::PROCESS_CPUTIME_ID => Ok(ClockId::ProcessCPUTime),
        clockid::THREAD_CPUTIME_ID => Ok(ClockId::ThreadCPUTime),
        _ => Err(Errno::Inval),
    }
}

/// A host time as preview1 nanoseconds (pre-epoch clamps to 0; overflow is `EOVERFLOW`).
pub(crate) fn timespec_nanos(t: rustix::time::Timespec) -> Result<u64, Errno> {
    let sec = u64::try_from(t.tv_sec).unwrap_or(0);
    let nsec = u64::try_from(t.tv_nsec).unwrap_or(0);
    sec.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nsec))
        .ok_or(Errno::Overflow)
}

/// Now on the given preview1 clock, in nanoseconds.
pub(crate) fn now(id: u32) -> Result<u64, Errno> {
    timespec_nanos(rustix::time::clock_gettime(clock(id)?))
}

pub(crate) fn clock_res_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let c = clock(a.u32(0))?;
    cx.mem.check(a.u32(1), 8)?;
    // A resolution of 0 would make guests divide by it; report at least 1 ns.
    let res = timespec_nanos(rustix::time::clock_getres(c))?.max(1);
    cx.mem.write_u64(a.u32(1), res)?;
    Ok(Ret::One("resolution", res))
}

pub(crate) fn clock_time_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    // The precision argument (1) is a hint wasmtime ignores as well.
    cx.mem.check(a.u32(2), 8)?;
    let t = now(a.u32(0))?;
    cx.mem.write_u64(a.u32(2), t)?;
    Ok(Ret::One("time", t))
}

pub(crate) fn random_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let buf = cx.mem.slice_mut(a.u32(0), a.u32(1))?;
    getrandom::fill(buf).map_err(|_| Errno::Io)?;
    Ok(Ret::None)
}

pub(crate) fn sched_yield(_cx: &mut Cx<'_>, _a: &Args) -> Result<Ret, Errno> {
    std::thread::yield_now();
    Ok(Ret::None)
}

pub(crate) fn proc_raise(_cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    // Signals cannot be delivered to a guest; wasmtime answers ENOTSUP too.
    if a.u32(0) > SIGNAL_MAX {
        return Err(Errno::Inval);
    }
    Err(Errno::Notsup)
}

/// `proc_exit(rval)`: ends the invocation with status `rval`. Never returns to the guest, so it
/// has no errno; the tracer logs `exit: <status>`.
pub(crate) fn hc_proc_exit(
    caller: &mut Caller<'_, WasiCtx>,
    slots: &mut [u64],
) -> Result<(), HostExit> {
    // An i32: only the low half of the slot is meaningful.
    let raw = u64::from(slots.first().copied().unwrap_or(0) as u32);
    let code = raw as u32 as i32;
    caller.data().hostcalls += 1;
    if let Some(d) = caller.data().dmesg.as_deref_mut() {
        d.exit_entry("WASI_PROC_EXIT", &[raw], &format!("exit: {code}"));
    }
    Err(HostExit::Exit(code))
}
