//! The VM ABI shared by fnvm's compiler and runtime, and nothing else.
//!
//! This crate is the only thing the compiler (which knows nothing of the runtime) and the runtime
//! (which does not link Cranelift) have in common: the layout of the per-instance context (`vmctx`),
//! the trap codes, the builtin ("libcall") ids, the module metadata and the artifact format with its
//! version. Both sides compute every offset from [`VmOffsets`]; the runtime checks its `#[repr(C)]`
//! structs against it.

pub mod artifact;
pub mod builtins;
pub mod codec;
pub mod module;
pub mod trap;
pub mod vmoffsets;

pub use artifact::{Artifact, ArtifactError, CpuFeatures, FORMAT_VERSION};
pub use builtins::Builtin;
pub use module::*;
pub use trap::TrapCode;
pub use vmoffsets::VmOffsets;

/// The identity of the code generator: artifacts record a hash of it, and a runtime refuses
/// artifacts made by another one. The compiler checks in a test that the Cranelift version here is
/// the one it links.
pub const COMPILER_VERSION: &str =
    concat!("fnvm-", env!("CARGO_PKG_VERSION"), "/cranelift-0.135.8");

/// Version of the VM ABI: the contract between compiled code and the runtime (the vmctx layout
/// and `VmOffsets`, builtin ids and signatures, `MEMORY_GUARD_SIZE`, and whatever else compiled
/// code must do for the runtime). Bump it on any change to those. It does not cover the artifact
/// file layout or the metadata encoding: that is [`artifact::FORMAT_VERSION`]. Both numbers go
/// into every artifact's compatibility hash ([`artifact::compat_hash`]), so artifacts cached by
/// an older build are recompiled rather than run against a runtime expecting something else.
pub const VM_ABI_VERSION: u32 = 2;

/// Wasm page size in bytes.
pub const WASM_PAGE_SIZE: u64 = 65536;
/// Largest number of pages a 32-bit memory can have.
pub const WASM_MAX_PAGES: u64 = 65536;

/// Bytes of address space reserved for every 32-bit linear memory (all it can ever grow to).
pub const MEMORY_RESERVATION: u64 = 1 << 32;
/// Bytes of inaccessible address space above a memory's reservation. Compiled code omits bounds
/// checks for accesses whose static offset plus size fits in it, so it is part of the VM ABI.
pub const MEMORY_GUARD_SIZE: u64 = 2 << 30;
