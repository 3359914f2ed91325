//! The `wasi_snapshot_preview1` hostcalls and the glue every one of them shares.
//!
//! A hostcall is a plain [`HostFn`](fnvm_host_interface::HostFn) over a [`WasiCtx`], generated
//! by the table in [`crate::table`] from a body here and its signature. [`run`] does the common
//! part: decode the argument slots, call the body (which returns named results for the tracer,
//! or an [`Errno`]), log the call when dmesg is on and store the errno in slot 0; or, when the
//! body had to stop waiting at the invocation's deadline ([`Cx::wait_limit`]), end the
//! invocation. The bodies live in [`env`] (args, environ, clocks, random,
//! process), [`fd`] (descriptor calls), [`path`] (path calls), [`crate::poll`] and [`sock`].

pub(crate) mod env;
pub(crate) mod fd;
pub(crate) mod path;
pub(crate) mod sock;

use crate::ctx::WasiCtx;
use crate::errno::Errno;
use crate::memory::GuestMemory;
use crate::trace::Ret;
use fnvm_abi::ValType;
use fnvm_host_interface::{Caller, DeadlineSource, HostExit};
use std::time::Instant;

/// Most parameters any hostcall takes (`path_open` has 9).
const MAX_PARAMS: usize = 9;

/// What a hostcall body works on.
pub(crate) struct Cx<'a> {
    pub mem: GuestMemory<'a>,
    pub ctx: &'a mut WasiCtx,
    /// Where the invocation's deadline comes from (asked only by bodies that wait).
    deadline: &'a dyn DeadlineSource,
    /// Set when a wait stopped at the deadline: the invocation ends instead of returning.
    expired: bool,
    /// Why the call failed (or what it did), for dmesg: set only when tracing is on.
    note: Option<String>,
}

impl Cx<'_> {
    /// The latest instant a body may wait until: the invocation's deadline (`None`: none).
    pub fn wait_limit(&self) -> Option<Instant> {
        self.deadline.deadline().instant()
    }

    /// Records that a wait stopped at the deadline, not because what it waited for happened;
    /// the body then returns any error (the invocation ends with the deadline trap instead).
    pub fn expire(&mut self) -> Errno {
        self.expired = true;
        Errno::Timedout
    }

    /// Records a reason dmesg prints under the call (`reason: ...`); `why` runs only when
    /// tracing is on.
    pub fn note(&mut self, why: impl FnOnce() -> String) {
        if self.ctx.dmesg.is_some() {
            self.note = Some(why());
        }
    }
}

/// The decoded argument slots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Args {
    v: [u64; MAX_PARAMS],
    n: usize,
}

impl Args {
    /// Copies the parameters out of the slots. An `i32` keeps only its low 32 bits: the upper
    /// half of its slot is not trusted to be zero.
    fn load(slots: &[u64], params: &[ValType]) -> Args {
        let mut v = [0u64; MAX_PARAMS];
        let n = params.len().min(MAX_PARAMS).min(slots.len());
        for ((d, s), ty) in v.iter_mut().zip(slots.iter()).zip(params).take(n) {
            *d = match ty {
                ValType::I32 | ValType::F32 => u64::from(*s as u32),
                _ => *s,
            };
        }
        Args { v, n }
    }

    /// Parameter `i` as an `i32` viewed unsigned (pointers, lengths, fds, flags).
    pub fn u32(&self, i: usize) -> u32 {
        self.v.get(i).copied().unwrap_or(0) as u32
    }

    /// Parameter `i` as an `i64` viewed unsigned.
    pub fn u64(&self, i: usize) -> u64 {
        self.v.get(i).copied().unwrap_or(0)
    }

    /// Parameter `i` as a signed `i64`.
    pub fn i64(&self, i: usize) -> i64 {
        self.u64(i) as i64
    }

    /// The parameters as passed, for the tracer.
    pub fn used(&self) -> &[u64] {
        self.v.get(..self.n).unwrap_or(&[])
    }
}

/// Runs hostcall `name` whose parameters have types `params`: the shared prologue and epilogue
/// of every errno-returning hostcall. The table instantiates it once per hostcall with the
/// body as a constant, so each hostcall is one direct call.
#[inline]
pub(crate) fn run(
    caller: &mut Caller<'_, WasiCtx>,
    slots: &mut [u64],
    name: &'static str,
    params: &[ValType],
    body: fn(&mut Cx<'_>, &Args) -> Result<Ret, Errno>,
) -> Result<(), HostExit> {
    let deadline = caller.deadline_source();
    let (memory, ctx) = caller.parts();
    ctx.hostcalls += 1;
    let args = Args::load(slots, params);
    let mut cx = Cx {
        mem: GuestMemory::new(memory),
        ctx,
        deadline,
        expired: false,
        note: None,
    };
    let result = body(&mut cx, &args);
    if cx.expired {
        if let Some(d) = cx.ctx.dmesg.as_deref_mut() {
            d.exit_entry(name, args.used(), "DEADLINE EXCEEDED");
            if let Some(n) = cx.note.take() {
                d.reason(&n);
            }
        }
        return Err(HostExit::DeadlineExceeded);
    }
    if let Some(d) = cx.ctx.dmesg.as_deref_mut() {
        d.hostcall(name, args.used(), result);
        if let Some(n) = cx.note.take() {
            d.reason(&n);
        }
    }
    let errno = match result {
        Ok(_) => Errno::Success,
        Err(e) => e,
    };
    match slots.first_mut() {
        Some(s) => {
            *s = u64::from(errno.raw());
            Ok(())
        }
        None => Err(HostExit::Trap(format!(
            "hostcall {name} called without a result slot"
        ))),
    }
}
