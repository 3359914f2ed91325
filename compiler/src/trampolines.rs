//! Per-type trampolines, compiled into every artifact so that the runtime never generates code.
//!
//! - `array_call` lets the host call any wasm function of a type through one System V entry
//!   point: `extern "C" fn(callee_vmctx, caller_vmctx, wasm_call, values: *mut [u64; 2])`. It loads
//!   the arguments from `values`, calls `wasm_call`, and stores the results back into `values`.
//! - `host_call` lets wasm call a host function of a type as if it were a wasm function. Its
//!   "callee vmctx" is a host function context whose first word is the dispatcher
//!   `extern "C" fn(ctx, caller_vmctx, values) -> u32`; a nonzero result means the host recorded a
//!   trap, and the trampoline calls the `Raise` builtin to unwind.

use crate::func::{builtin_signature, cl_trap, cl_type, trusted, wasm_signature};
use cranelift_codegen::ir::{
    types, AbiParam, Function, InstBuilder, Signature, StackSlotData, StackSlotKind, UserFuncName,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use fnvm_abi::module::FuncType;
use fnvm_abi::vmoffsets::VALUE_SLOT_SIZE;
use fnvm_abi::{Builtin, TrapCode, VmOffsets};

/// Builds the host-to-wasm trampoline for `ty`.
pub(crate) fn array_call(
    ty: &FuncType,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
) -> Function {
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params.extend([AbiParam::new(types::I64); 4]);
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), sig);
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (callee, caller, code, values) = (p[0], p[1], p[2], p[3]);
    let mut args = vec![callee, caller];
    for (i, t) in ty.params.iter().enumerate() {
        let v = b.ins().load(
            cl_type(*t),
            trusted(),
            values,
            (i as u32 * VALUE_SLOT_SIZE) as i32,
        );
        args.push(v);
    }
    let wsig = b.import_signature(wasm_signature(ty));
    let call = b.ins().call_indirect(wsig, code, &args);
    let results = b.inst_results(call).to_vec();
    for (i, r) in results.iter().enumerate() {
        b.ins()
            .store(trusted(), *r, values, (i as u32 * VALUE_SLOT_SIZE) as i32);
    }
    b.ins().return_(&[]);
    b.finalize(frontend);
    func
}

/// Builds the wasm-to-host trampoline for `ty`.
pub(crate) fn host_call(
    ty: &FuncType,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
) -> Function {
    let mut func = Function::with_name_signature(UserFuncName::user(1, 1), wasm_signature(ty));
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (ctx, caller) = (p[0], p[1]);
    let slots = ty.params.len().max(ty.results.len()).max(1) as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        slots * VALUE_SLOT_SIZE,
        4,
    ));
    let values = b.ins().stack_addr(types::I64, slot, 0);
    for (i, v) in p[2..].iter().enumerate() {
        b.ins()
            .store(trusted(), *v, values, (i as u32 * VALUE_SLOT_SIZE) as i32);
    }
    let mut dsig = Signature::new(CallConv::SystemV);
    dsig.params.extend([AbiParam::new(types::I64); 3]);
    dsig.returns.push(AbiParam::new(types::I32));
    let dsig = b.import_signature(dsig);
    let dispatch = b.ins().load(types::I64, trusted().with_readonly(), ctx, 0);
    let call = b
        .ins()
        .call_indirect(dsig, dispatch, &[ctx, caller, values]);
    let rc = b.inst_results(call)[0];
    let ok = b.create_block();
    let raise = b.create_block();
    b.set_cold_block(raise);
    b.ins().brif(rc, raise, &[], ok, &[]);
    b.seal_block(ok);
    b.seal_block(raise);

    b.switch_to_block(raise);
    let rsig = b.import_signature(builtin_signature(Builtin::Raise));
    let table = b
        .ins()
        .load(types::I64, trusted(), caller, VmOffsets::BUILTINS as i32);
    let f = b.ins().load(
        types::I64,
        trusted(),
        table,
        Builtin::Raise.table_offset() as i32,
    );
    b.ins().call_indirect(rsig, f, &[caller]);
    b.ins().trap(cl_trap(TrapCode::HostTrap));

    b.switch_to_block(ok);
    let mut rets = Vec::new();
    for (i, t) in ty.results.iter().enumerate() {
        rets.push(b.ins().load(
            cl_type(*t),
            trusted(),
            values,
            (i as u32 * VALUE_SLOT_SIZE) as i32,
        ));
    }
    b.ins().return_(&rets);
    b.finalize(frontend);
    func
}
