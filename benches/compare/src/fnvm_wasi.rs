//! fnvm's side of WASI for the benchmarks: the host state of one invocation (an
//! `fnvm_hostcalls::WasiCtx`) and the resolver that links a module's imports.

use fnvm_abi::module::{FuncType, Import, ValType};
use fnvm_hostcalls::{Stdin, WasiCtx};
use fnvm_runtime::HostFuncDef;
use std::any::Any;

/// Which WASI implementation fnvm's numbers use (printed in the report).
pub const IMPLEMENTATION: &str =
    "fnvm-hostcalls (`WasiCtx`, stdout and stderr captured in memory, tracing off)";

/// A fresh WASI context: arguments `args`, stdin `stdin`, stdout and stderr captured in
/// memory, no environment, no preopens.
pub fn new_ctx(args: &[&str], stdin: &[u8]) -> Result<Box<dyn Any + Send>, String> {
    let mut b = WasiCtx::builder().args(args.iter().copied());
    if !stdin.is_empty() {
        b = b.stdin(Stdin::Bytes(stdin.to_vec()));
    }
    let ctx = b.build().map_err(|e| format!("fnvm WASI context: {e}"))?;
    Ok(Box::new(ctx))
}

/// Takes the captured stdout out of a context returned by [`new_ctx`].
pub fn take_stdout(data: Option<Box<dyn Any + Send>>) -> Result<Vec<u8>, String> {
    let data = data.ok_or("the instance has no host state")?;
    let mut ctx = data
        .downcast::<WasiCtx>()
        .map_err(|_| "host state is not a WASI context")?;
    Ok(ctx.take_stdout())
}

/// Resolves an import: fnvm's hostcalls, plus `bench::nop` (i32) -> i32, the identity, which
/// the hostcall benchmark uses as an empty host function.
pub fn resolve(imp: &Import) -> Option<HostFuncDef> {
    if imp.module == "bench" && imp.name == "nop" {
        return Some(HostFuncDef {
            ty: FuncType {
                params: vec![ValType::I32],
                results: vec![ValType::I32],
            },
            func: |_, _| Ok(()),
        });
    }
    fnvm_hostcalls::resolve(&imp.module, &imp.name)
}
