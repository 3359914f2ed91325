//! fnvm's ahead-of-time compiler: wasm bytes in, one artifact out.
//!
//! The pipeline is: parse and validate the module (wasmparser, WebAssembly 2.0 without SIMD),
//! collect its metadata into an [`fnvm_abi::ModuleInfo`], translate every function body to
//! Cranelift IR with our own lowering (`func`), compile the functions in parallel, add the
//! per-type trampolines (`trampolines`), then lay everything out in one code section and resolve
//! the calls between functions (`link`). The result is position independent: the runtime maps it
//! anywhere and only fills a vmctx. This crate knows nothing of the runtime; the contract between
//! the two is `fnvm-abi`.

mod environ;
mod func;
mod isa;
mod link;
mod trampolines;

use fnvm_abi::{Artifact, CpuFeatures};
use thiserror::Error;

pub use environ::ModuleTranslation;

/// Why a module could not be compiled.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The bytes are not a valid WebAssembly module.
    #[error("invalid module at byte offset {offset}: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// Byte offset in the module.
        offset: u64,
    },
    /// The module is valid but uses a feature fnvm does not support.
    #[error("unsupported feature: {feature} (at byte offset {offset})")]
    Unsupported {
        /// The feature, as the WebAssembly proposal calls it.
        feature: String,
        /// Byte offset in the module.
        offset: u64,
    },
    /// The target CPU feature set cannot run fnvm's code.
    #[error("unsupported target: {0}")]
    Target(String),
    /// The module exceeds one of fnvm's implementation limits.
    #[error("implementation limit exceeded: {0}")]
    Limit(String),
    /// Code generation failed (a compiler bug: please report it with the module). Covers both
    /// Cranelift errors and inconsistencies our translator finds in its own state: neither says
    /// anything about the module's validity.
    #[error("code generation failed in function {func}: {message}")]
    Codegen {
        /// Function index (`u32::MAX` for a trampoline).
        func: u32,
        /// Cranelift's or the translator's message.
        message: String,
    },
}

impl CompileError {
    fn invalid(e: &wasmparser::BinaryReaderError) -> CompileError {
        CompileError::Invalid {
            message: e.message().to_string(),
            offset: e.offset(),
        }
    }
}

/// Compilation settings.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// CPU features the generated code may use. Defaults to those of this machine.
    pub features: CpuFeatures,
    /// Insert deadline checks at function entries and loop headers.
    pub epoch_interruption: bool,
    /// Compile functions on several threads.
    pub parallel: bool,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            features: CpuFeatures::host(),
            epoch_interruption: true,
            parallel: true,
        }
    }
}

/// The WebAssembly features fnvm accepts: WebAssembly 2.0 without SIMD.
pub fn supported_features() -> wasmparser::WasmFeatures {
    wasmparser::WasmFeatures::WASM2.difference(wasmparser::WasmFeatures::SIMD)
}

/// Compiles `wasm` into an artifact.
pub fn compile(wasm: &[u8], options: &CompileOptions) -> Result<Vec<u8>, CompileError> {
    let translation = environ::translate_module(wasm)?;
    let isa = isa::build(options.features)?;
    let (module, code) = link::compile_and_link(wasm, translation, &*isa, options)?;
    Ok(Artifact::serialize(options.features, &module, &code))
}

/// Our lowering of every function body, as Cranelift IR text before optimisation: what the
/// golden tests compare, and a debugging aid (`fnvm compile --emit-clif`).
pub fn translate_to_clif(wasm: &[u8], options: &CompileOptions) -> Result<String, CompileError> {
    let translation = environ::translate_module(wasm)?;
    let isa = isa::build(options.features)?;
    link::translate_only(wasm, translation, &*isa, options)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cranelift_version_matches_the_abi() {
        // COMPILER_VERSION names the Cranelift version; this test keeps it honest.
        let lock = include_str!("../../Cargo.lock");
        let at = lock
            .find("name = \"cranelift-codegen\"\nversion = \"")
            .expect("cranelift-codegen in Cargo.lock");
        let version = &lock[at + "name = \"cranelift-codegen\"\nversion = \"".len()..];
        let version = &version[..version.find('"').unwrap()];
        assert!(
            fnvm_abi::COMPILER_VERSION.ends_with(&format!("cranelift-{version}")),
            "{} vs {version}",
            fnvm_abi::COMPILER_VERSION
        );
    }
}
