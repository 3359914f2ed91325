//! fnvm's side of WASI for the benchmarks: the host state of one invocation (an
//! `fnvm_hostcalls::WasiCtx`) and the resolver that links a module's imports.

use fnvm_abi::module::{FuncType, Import, ValType};
use fnvm_hostcalls::{Stdin, WasiCtx};
use fnvm_runtime::{Caller, HostExit, HostFuncDef};

/// Which WASI implementation fnvm's numbers use (printed in the report).
pub const IMPLEMENTATION: &str =
    "fnvm-hostcalls (`WasiCtx`, stdout and stderr captured in memory, tracing off)";

/// A fresh WASI context: arguments `args`, stdin `stdin`, stdout and stderr captured in
/// memory, no environment, no preopens.
pub fn new_ctx(args: &[&str], stdin: &[u8]) -> Result<WasiCtx, String> {
    let mut b = WasiCtx::builder().args(args.iter().copied());
    if !stdin.is_empty() {
        b = b.stdin(Stdin::Bytes(stdin.to_vec()));
    }
    b.build().map_err(|e| format!("fnvm WASI context: {e}"))
}

/// `bench::nop`, (i32) -> i32, the identity: the result is the argument, already in its slot.
/// The hostcall benchmark's empty host function; its host state is the invocation's WASI
/// context, as for the WASI calls next to it.
fn nop(_: &mut Caller<'_, WasiCtx>, _: &mut [u64]) -> Result<(), HostExit> {
    Ok(())
}

/// Resolves an import: fnvm's hostcalls, plus `bench::nop` (i32) -> i32, the identity, which
/// the hostcall benchmark uses as an empty host function.
pub fn resolve(imp: &Import) -> Option<HostFuncDef<WasiCtx>> {
    if imp.module == "bench" && imp.name == "nop" {
        return Some(HostFuncDef {
            ty: FuncType {
                params: vec![ValType::I32],
                results: vec![ValType::I32],
            },
            func: nop,
            write_behind: None,
        });
    }
    fnvm_hostcalls::resolve(&imp.module, &imp.name)
}
