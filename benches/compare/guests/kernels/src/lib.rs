//! CPU kernels compiled to a WebAssembly module with no imports.
//!
//! Everything is in `kernels.rs`, which the benchmark crate also compiles natively, so the wasm
//! and the native columns run the same source. std on wasm32-unknown-unknown imports nothing:
//! its allocator (dlmalloc) grows memory with `memory.grow`, and with `panic = "abort"` a panic
//! is an `unreachable` trap.

#[path = "kernels.rs"]
mod kernels;

pub use kernels::*;
