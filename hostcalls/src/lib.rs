//! fnvm's hostcall table: WASI `wasi_snapshot_preview1`, fnvm's own `host_halt`, the
//! capability and fd tables behind them, and the dmesg tracer.
//!
//! The embedder builds a [`WasiCtx`] per invocation ([`WasiCtxBuilder`]: arguments,
//! environment, preopened directories, stdio), hands it to the runtime as the instance's host
//! state, and links imports with [`resolve`]. Each hostcall is a plain function pointer that
//! reaches guest memory only through the checked [`GuestMemory`] accessor and reaches the host
//! only through what the context grants; this crate has no `unsafe` code.
//!
//! Outbound sockets (`fnvm.host_tcp_connect`, `fnvm.host_tls_connect`) are granted with
//! [`WasiCtxBuilder::net`] under an [`EgressPolicy`]: see [`net`] and `hostcalls/NET.md`.

#![forbid(unsafe_code)]

mod cstrings;
mod ctx;
mod errno;
mod fdtable;
mod fs;
mod host;
mod memory;
pub mod net;
mod poll;
mod table;
mod trace;
pub mod types;
mod wasi;

pub use cstrings::{valid_var, CStringError, CStrings};
pub use ctx::{BuildError, Output, Stdin, WasiCtx, WasiCtxBuilder, DEFAULT_OUTPUT_LIMIT};
pub use errno::Errno;
pub use fdtable::DEFAULT_MAX_FDS;
pub use memory::{GuestMemory, Iovec, Iovecs, INLINE_IOVECS, MAX_IOVECS};
pub use net::policy::{EgressPolicy, PolicyError, Refusal};
pub use net::{NetConfig, NetLimits, TlsConfigError};
pub use poll::blocking_waits;
pub use table::{lookup, resolve, Hostcall, FNVM_MODULE, HOSTCALLS, WASI_MODULE};
pub use trace::{Dmesg, DEFAULT_LIMIT as DEFAULT_TRACE_LIMIT};

#[cfg(test)]
mod tests;
