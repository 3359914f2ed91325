//! fnvm's hostcall table: WASI preview1, `HOST_HALT` and the `host_*` functions, the fd and
//! capability tables, and the dmesg tracer. Empty until the WASI work starts; this crate forbids
//! unsafe code and reaches guest memory only through the runtime's checked accessor.

#![forbid(unsafe_code)]
