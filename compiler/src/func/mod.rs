//! Our lowering of one WebAssembly function body to Cranelift IR.
//!
//! The translator walks the (already validated) operators once, keeping the wasm operand stack
//! as Cranelift SSA values and the control stack as a list of frames. Wasm structured control
//! flow maps onto Cranelift blocks: a `block` or `if` gets a merge block whose parameters are its
//! results; a `loop` gets a header block whose parameters are its parameters. Code after an
//! unconditional branch is skipped until the enclosing frame ends.
//!
//! Memory accesses rely on the guard region (no bounds checks) unless the static offset is too
//! large for it; tables, indirect calls, division and conversions check explicitly or let
//! Cranelift emit its trapping sequences. Every potential trap carries a trap code that ends up in
//! the artifact's trap table.
//!
//! Here: the translator's state, its operand and control stacks, and control flow. The
//! computing operators are in `operators`, addressing of globals, memory and tables in
//! `memory`, and calls in `calls`.

mod calls;
mod memory;
mod operators;

use crate::CompileError;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{
    self, types, AbiParam, ArgumentPurpose, BlockArg, Function, GlobalValueData, InstBuilder,
    MemFlagsData, Signature, TrapCode as ClTrap, Type, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use fnvm_abi::module::{FuncType, ModuleInfo, ValType};
use fnvm_abi::vmoffsets::{def, func_import, funcref, limits};
use fnvm_abi::{Builtin, TrapCode, VmOffsets};
use std::collections::HashMap;
use wasmparser::{BlockType, FunctionBody, MemArg, Operator};

/// Bytes of inaccessible address space above every 32-bit linear memory's 4 GiB. Accesses whose
/// static offset plus size fit in it need no bounds check. Shared with the runtime through the
/// generated code only, so it is part of the VM ABI (`fnvm_abi::VM_ABI_VERSION`).
pub(crate) const MEMORY_GUARD_SIZE: u64 = fnvm_abi::MEMORY_GUARD_SIZE;

/// Our trap code as a Cranelift trap code.
pub(crate) fn cl_trap(code: TrapCode) -> ClTrap {
    match code {
        TrapCode::StackOverflow => ClTrap::STACK_OVERFLOW,
        TrapCode::MemoryOutOfBounds => ClTrap::HEAP_OUT_OF_BOUNDS,
        TrapCode::IntegerOverflow => ClTrap::INTEGER_OVERFLOW,
        TrapCode::IntegerDivisionByZero => ClTrap::INTEGER_DIVISION_BY_ZERO,
        TrapCode::BadConversionToInteger => ClTrap::BAD_CONVERSION_TO_INTEGER,
        other => ClTrap::unwrap_user(other as u8),
    }
}

/// A Cranelift trap code as ours.
pub(crate) fn our_trap(code: ClTrap) -> Option<TrapCode> {
    Some(match code {
        ClTrap::STACK_OVERFLOW => TrapCode::StackOverflow,
        ClTrap::HEAP_OUT_OF_BOUNDS => TrapCode::MemoryOutOfBounds,
        ClTrap::INTEGER_OVERFLOW => TrapCode::IntegerOverflow,
        ClTrap::INTEGER_DIVISION_BY_ZERO => TrapCode::IntegerDivisionByZero,
        ClTrap::BAD_CONVERSION_TO_INTEGER => TrapCode::BadConversionToInteger,
        other => TrapCode::from_u8(other.as_raw().get())?,
    })
}

/// Cranelift type of a wasm value type. References are pointers (funcref) or handles (externref).
pub(crate) fn cl_type(t: ValType) -> Type {
    match t {
        ValType::I32 => types::I32,
        ValType::I64 => types::I64,
        ValType::F32 => types::F32,
        ValType::F64 => types::F64,
        ValType::FuncRef | ValType::ExternRef => types::I64,
    }
}

/// The signature of a wasm function: `(callee_vmctx, caller_vmctx, params...) -> results`.
pub(crate) fn wasm_signature(ty: &FuncType) -> Signature {
    let mut sig = Signature::new(CallConv::Tail);
    sig.params
        .push(AbiParam::special(types::I64, ArgumentPurpose::VMContext));
    sig.params.push(AbiParam::new(types::I64));
    sig.params
        .extend(ty.params.iter().map(|t| AbiParam::new(cl_type(*t))));
    sig.returns
        .extend(ty.results.iter().map(|t| AbiParam::new(cl_type(*t))));
    sig
}

/// The System V signature of a builtin: `(vmctx, params...) -> results`.
pub(crate) fn builtin_signature(b: Builtin) -> Signature {
    let ty = |t: &fnvm_abi::builtins::BuiltinType| match t {
        fnvm_abi::builtins::BuiltinType::I32 => types::I32,
        fnvm_abi::builtins::BuiltinType::I64 => types::I64,
    };
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params.push(AbiParam::new(types::I64));
    sig.params
        .extend(b.params().iter().map(|t| AbiParam::new(ty(t))));
    sig.returns
        .extend(b.results().iter().map(|t| AbiParam::new(ty(t))));
    sig
}

/// Flags for loads and stores of VM data structures: never fault, always aligned.
pub(crate) fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

fn heap_flags() -> MemFlagsData {
    MemFlagsData::new().with_trap_code(Some(ClTrap::HEAP_OUT_OF_BOUNDS))
}

pub(crate) fn block_args(vals: &[Value]) -> Vec<BlockArg> {
    vals.iter().map(|v| BlockArg::Value(*v)).collect()
}

/// What module-wide facts translation needs.
pub(crate) struct FuncEnv<'m> {
    pub info: &'m ModuleInfo,
    pub offsets: VmOffsets,
    pub epoch_interruption: bool,
}

impl FuncEnv<'_> {
    fn num_imported_funcs(&self) -> u32 {
        self.info.num_imported_funcs()
    }
    fn num_imported_globals(&self) -> u32 {
        self.info.num_imported_globals()
    }
    fn func_type(&self, func: u32) -> &FuncType {
        &self.info.types[self.info.funcs[func as usize] as usize]
    }
}

#[derive(Debug)]
enum FrameKind {
    Block,
    Loop {
        header: ir::Block,
    },
    If {
        else_block: ir::Block,
        params: Vec<Value>,
        else_seen: bool,
        head_reachable: bool,
    },
}

#[derive(Debug)]
struct Frame {
    kind: FrameKind,
    /// Where control continues after the frame; its parameters are the frame's results.
    dest: ir::Block,
    num_params: usize,
    num_results: usize,
    /// Operand stack height below the frame's parameters.
    height: usize,
    /// Whether any branch reaches `dest`.
    exit_reached: bool,
}

impl Frame {
    /// The block a branch to this frame targets and how many values it carries.
    fn branch_target(&self) -> (ir::Block, usize) {
        match self.kind {
            FrameKind::Loop { header } => (header, self.num_params),
            _ => (self.dest, self.num_results),
        }
    }
}

/// Translates function `func_index` into `func`.
pub(crate) fn translate(
    env: &FuncEnv<'_>,
    func_index: u32,
    body: &FunctionBody<'_>,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    frontend: cranelift_codegen::isa::TargetFrontendConfig,
) -> Result<(), CompileError> {
    let ty = env.func_type(func_index).clone();
    func.signature = wasm_signature(&ty);
    func.name = UserFuncName::user(0, func_index);
    let builder = FunctionBuilder::new(func, fctx);
    let mut t = Translator {
        env,
        func_index,
        offset: body.range().start,
        b: builder,
        stack: Vec::new(),
        control: Vec::new(),
        reachable: true,
        unreachable_depth: 0,
        locals: Vec::new(),
        vmctx: Value::from_u32(0),
        mem_base: None,
        epoch_ptr: None,
        sigs: HashMap::new(),
        builtin_sigs: HashMap::new(),
        direct_funcs: HashMap::new(),
    };
    t.translate_body(&ty, body)?;
    t.b.finalize(frontend);
    Ok(())
}

struct Translator<'a, 'f> {
    env: &'a FuncEnv<'a>,
    /// Index of the function being translated, for errors.
    func_index: u32,
    /// Byte offset in the module of what is being translated (the current operator, or a
    /// locals entry before the first one), for errors.
    offset: u64,
    b: FunctionBuilder<'f>,
    stack: Vec<Value>,
    control: Vec<Frame>,
    reachable: bool,
    unreachable_depth: u32,
    locals: Vec<Variable>,
    vmctx: Value,
    mem_base: Option<Value>,
    /// Epoch counter and store limits pointers, loaded once at entry.
    epoch_ptr: Option<(Value, Value)>,
    sigs: HashMap<u32, ir::SigRef>,
    builtin_sigs: HashMap<u32, ir::SigRef>,
    direct_funcs: HashMap<u32, ir::FuncRef>,
}

/// An inconsistency in the translator's own state. Bodies are validated before translation, so
/// this is a compiler bug, never a property of the module: it must not read as `Invalid`.
fn internal(func: u32, msg: &str) -> CompileError {
    CompileError::Codegen {
        func,
        message: format!("internal translator inconsistency: {msg}"),
    }
}

impl Translator<'_, '_> {
    fn pop(&mut self) -> Result<Value, CompileError> {
        self.stack
            .pop()
            .ok_or_else(|| internal(self.func_index, "operand stack underflow"))
    }

    fn pop2(&mut self) -> Result<(Value, Value), CompileError> {
        let b = self.pop()?;
        let a = self.pop()?;
        Ok((a, b))
    }

    fn pop3(&mut self) -> Result<(Value, Value, Value), CompileError> {
        let c = self.pop()?;
        let b = self.pop()?;
        let a = self.pop()?;
        Ok((a, b, c))
    }

    fn peekn(&self, n: usize) -> Result<&[Value], CompileError> {
        if n > self.stack.len() {
            return Err(internal(self.func_index, "operand stack underflow"));
        }
        Ok(&self.stack[self.stack.len() - n..])
    }

    fn popn(&mut self, n: usize) -> Result<Vec<Value>, CompileError> {
        if n > self.stack.len() {
            return Err(internal(self.func_index, "operand stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn block_type(&self, bt: BlockType) -> Result<(Vec<ValType>, Vec<ValType>), CompileError> {
        Ok(match bt {
            BlockType::Empty => (vec![], vec![]),
            BlockType::Type(t) => (vec![], vec![crate::environ::val_type(t, self.offset)?]),
            BlockType::FuncType(i) => {
                let ft = self
                    .env
                    .info
                    .types
                    .get(i as usize)
                    .ok_or_else(|| internal(self.func_index, "block type index"))?;
                (ft.params.clone(), ft.results.clone())
            }
        })
    }

    fn new_block_with(&mut self, tys: &[ValType]) -> ir::Block {
        let block = self.b.create_block();
        for t in tys {
            self.b.append_block_param(block, cl_type(*t));
        }
        block
    }

    fn vm_load(&mut self, ty: Type, base: Value, offset: u32) -> Value {
        self.b.ins().load(ty, trusted(), base, offset as i32)
    }

    fn vm_load_readonly(&mut self, ty: Type, base: Value, offset: u32) -> Value {
        self.b.ins().load(
            ty,
            trusted().with_readonly().with_can_move(),
            base,
            offset as i32,
        )
    }

    fn translate_body(
        &mut self,
        ty: &FuncType,
        body: &FunctionBody<'_>,
    ) -> Result<(), CompileError> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        self.b.seal_block(entry);
        let params = self.b.block_params(entry).to_vec();
        self.vmctx = params[0];

        // Stack limit: Cranelift checks it in the prologue against the whole frame.
        let vmctx_gv = self.b.create_global_value(GlobalValueData::VMContext);
        let flags = self
            .b
            .func
            .dfg
            .mem_flags
            .insert(trusted().with_readonly())
            .map_err(|_| internal(self.func_index, "memflags"))?;
        let limits = self.b.create_global_value(GlobalValueData::Load {
            base: vmctx_gv,
            offset: (VmOffsets::LIMITS as i32).into(),
            global_type: types::I64,
            flags,
        });
        let flags = self
            .b
            .func
            .dfg
            .mem_flags
            .insert(trusted())
            .map_err(|_| internal(self.func_index, "memflags"))?;
        let limit = self.b.create_global_value(GlobalValueData::Load {
            base: limits,
            offset: (limits::STACK_LIMIT as i32).into(),
            global_type: types::I64,
            flags,
        });
        self.b.func.stack_limit = Some(limit);

        // Locals: parameters, then declared locals zeroed.
        for (i, t) in ty.params.iter().enumerate() {
            let var = self.b.declare_var(cl_type(*t));
            self.b.def_var(var, params[i + 2]);
            self.locals.push(var);
        }
        let mut locals = body
            .get_locals_reader()
            .map_err(|e| CompileError::invalid(&e))?;
        for _ in 0..locals.get_count() {
            self.offset = locals.original_position();
            let (count, t) = locals.read().map_err(|e| CompileError::invalid(&e))?;
            let t = crate::environ::val_type(t, self.offset)?;
            if self.locals.len() as u64 + count as u64 > 50_000 {
                return Err(CompileError::Limit(
                    "more than 50000 locals in a function".into(),
                ));
            }
            for _ in 0..count {
                let var = self.b.declare_var(cl_type(t));
                let zero = self.zero(t);
                self.b.def_var(var, zero);
                self.locals.push(var);
            }
        }

        if !self.env.info.memories.is_empty() {
            let base = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::MEMORY_BASE);
            self.mem_base = Some(base);
        }
        if self.env.epoch_interruption {
            let p = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::EPOCH_PTR);
            let l = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::LIMITS);
            self.epoch_ptr = Some((p, l));
            self.epoch_check();
        }

        let exit = self.new_block_with(&ty.results);
        self.control.push(Frame {
            kind: FrameKind::Block,
            dest: exit,
            num_params: 0,
            num_results: ty.results.len(),
            height: 0,
            exit_reached: false,
        });

        let mut reader = body
            .get_operators_reader()
            .map_err(|e| CompileError::invalid(&e))?;
        while !reader.eof() {
            let (op, offset) = reader
                .read_with_offset()
                .map_err(|e| CompileError::invalid(&e))?;
            self.offset = offset;
            self.b.set_srcloc(ir::SourceLoc::new(offset as u32));
            self.operator(&op)?;
        }
        // The final `end` switched to `exit` (if reachable); return its parameters.
        if self.reachable {
            let rets = self.stack.clone();
            self.b.ins().return_(&rets);
        }
        Ok(())
    }

    fn zero(&mut self, t: ValType) -> Value {
        match t {
            ValType::I32 => self.b.ins().iconst(types::I32, 0),
            ValType::I64 | ValType::FuncRef | ValType::ExternRef => {
                self.b.ins().iconst(types::I64, 0)
            }
            ValType::F32 => self.b.ins().f32const(Ieee32::with_bits(0)),
            ValType::F64 => self.b.ins().f64const(Ieee64::with_bits(0)),
        }
    }

    fn epoch_check(&mut self) {
        let Some((ptr, limits)) = self.epoch_ptr else {
            return;
        };
        // An atomic load: a plain load would be "redundant" in a loop without stores and
        // Cranelift would reuse the value from before the loop. On x86 it is still one mov.
        let now = self.b.ins().atomic_load(types::I64, trusted(), ptr);
        let deadline = self.vm_load(types::I64, limits, limits::EPOCH_DEADLINE);
        let late = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, now, deadline);
        self.b.ins().trapnz(late, cl_trap(TrapCode::Interrupt));
    }

    fn trap(&mut self, code: TrapCode) {
        self.b.ins().trap(cl_trap(code));
    }

    // ---- control flow -------------------------------------------------------------------

    fn operator(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
        if !self.reachable {
            return self.unreachable_operator(op);
        }
        self.reachable_operator(op)
    }

    /// Tracks nesting in dead code; only `else` and `end` of the current frame matter.
    fn unreachable_operator(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
        match op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                self.unreachable_depth += 1;
            }
            Operator::Else if self.unreachable_depth == 0 => self.op_else()?,
            Operator::End => {
                if self.unreachable_depth > 0 {
                    self.unreachable_depth -= 1;
                } else {
                    self.op_end()?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn op_else(&mut self) -> Result<(), CompileError> {
        let reachable = self.reachable;
        let frame = self
            .control
            .last_mut()
            .ok_or_else(|| internal(self.func_index, "else without if"))?;
        let (dest, num_results, height) = (frame.dest, frame.num_results, frame.height);
        let FrameKind::If {
            else_block,
            params,
            else_seen,
            head_reachable,
        } = &mut frame.kind
        else {
            return Err(internal(self.func_index, "else outside if"));
        };
        *else_seen = true;
        let else_block = *else_block;
        let params = params.clone();
        let head_reachable = *head_reachable;
        if reachable {
            frame.exit_reached = true;
            let rets = self.popn(num_results)?;
            self.b.ins().jump(dest, &block_args(&rets));
        }
        self.stack.truncate(height);
        self.stack.extend(params);
        self.b.switch_to_block(else_block);
        self.reachable = head_reachable;
        Ok(())
    }

    fn op_end(&mut self) -> Result<(), CompileError> {
        let frame = self
            .control
            .pop()
            .ok_or_else(|| internal(self.func_index, "end without frame"))?;
        let mut exit_reached = frame.exit_reached;
        if self.reachable {
            let rets = self.popn(frame.num_results)?;
            self.b.ins().jump(frame.dest, &block_args(&rets));
            exit_reached = true;
        }
        match frame.kind {
            FrameKind::Loop { header } => self.b.seal_block(header),
            FrameKind::If {
                else_block,
                params,
                else_seen: false,
                head_reachable,
            } => {
                // No else: the false edge carries the parameters straight to the merge block.
                self.b.switch_to_block(else_block);
                if head_reachable {
                    self.b.ins().jump(frame.dest, &block_args(&params));
                    exit_reached = true;
                }
            }
            FrameKind::If { .. } | FrameKind::Block => {}
        }
        self.b.switch_to_block(frame.dest);
        self.b.seal_block(frame.dest);
        self.stack.truncate(frame.height);
        let results = self.b.block_params(frame.dest).to_vec();
        self.stack.extend(results);
        self.reachable = exit_reached;
        Ok(())
    }

    fn br(&mut self, depth: u32) -> Result<(), CompileError> {
        let idx = self
            .control
            .len()
            .checked_sub(1 + depth as usize)
            .ok_or_else(|| internal(self.func_index, "branch depth"))?;
        let (target, n) = self.control[idx].branch_target();
        if !matches!(self.control[idx].kind, FrameKind::Loop { .. }) {
            self.control[idx].exit_reached = true;
        }
        let args = self.peekn(n)?.to_vec();
        self.b.ins().jump(target, &block_args(&args));
        Ok(())
    }

    fn frame_target(&mut self, depth: u32) -> Result<(ir::Block, usize), CompileError> {
        let idx = self
            .control
            .len()
            .checked_sub(1 + depth as usize)
            .ok_or_else(|| internal(self.func_index, "branch depth"))?;
        if !matches!(self.control[idx].kind, FrameKind::Loop { .. }) {
            self.control[idx].exit_reached = true;
        }
        Ok(self.control[idx].branch_target())
    }
}

#[derive(Clone, Copy)]
enum LoadKind {
    Plain,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
}

#[derive(Clone, Copy)]
enum StoreKind {
    Plain,
    S8,
    S16,
    S32,
}

/// Compiles a finished IR function; shared by bodies and trampolines.
pub(crate) fn compile_function(
    isa: &dyn TargetIsa,
    func: Function,
    index_for_errors: u32,
) -> Result<cranelift_codegen::CompiledCode, CompileError> {
    let mut ctx = cranelift_codegen::Context::for_function(func);
    let mut ctrl = cranelift_codegen::control::ControlPlane::default();
    ctx.compile(isa, &mut ctrl)
        .map_err(|e| CompileError::Codegen {
            func: index_for_errors,
            message: format!("{:?}", e.inner),
        })?;
    ctx.take_compiled_code()
        .ok_or_else(|| CompileError::Codegen {
            func: index_for_errors,
            message: "no code produced".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{Parser, Payload};

    /// The bodies of `wat`, parsed but not validated: the translator must cope on its own.
    fn bodies(wasm: &[u8]) -> Vec<FunctionBody<'_>> {
        Parser::new(0)
            .parse_all(wasm)
            .filter_map(|p| match p.unwrap() {
                Payload::CodeSectionEntry(body) => Some(body),
                _ => None,
            })
            .collect()
    }

    /// Translates body `i` of `wasm`, whose functions all have type `() -> ()`.
    fn translate_body(wasm: &[u8], i: usize) -> Result<(), CompileError> {
        let bodies = bodies(wasm);
        let info = ModuleInfo {
            types: vec![FuncType::default()],
            funcs: vec![0; bodies.len()],
            ..ModuleInfo::default()
        };
        let env = FuncEnv {
            offsets: VmOffsets::new(info.vm_shape()).unwrap(),
            info: &info,
            epoch_interruption: false,
        };
        let isa = crate::isa::build(crate::CompileOptions::default().features).unwrap();
        translate(
            &env,
            i as u32,
            &bodies[i],
            &mut Function::new(),
            &mut FunctionBuilderContext::new(),
            isa.frontend_config(),
        )
    }

    /// Where `needle` first occurs in the body of function `i`, as a module offset.
    fn offset_in_body(wasm: &[u8], i: usize, needle: &[u8]) -> u64 {
        let range = bodies(wasm)[i].range();
        let body = &wasm[range.start as usize..range.end as usize];
        let at = body.windows(needle.len()).position(|w| w == needle);
        range.start + at.expect("needle in body") as u64
    }

    #[test]
    fn an_operator_we_do_not_lower_is_unsupported_at_its_offset() {
        // Validation refuses SIMD before translation; without it, the operator reaches the
        // translator's catch-all, which must still say where the operator is.
        let wasm = wat::parse_str("(module (func (drop (i32x4.splat (i32.const 0)))))").unwrap();
        let splat = offset_in_body(&wasm, 0, &[0xfd, 0x11]);
        match translate_body(&wasm, 0).unwrap_err() {
            CompileError::Unsupported { feature, offset } => {
                assert!(feature.contains("I32x4Splat"), "{feature}");
                assert_eq!(offset, splat);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_v128_block_is_unsupported_at_the_block() {
        let wasm = wat::parse_str("(module (func nop (block (result v128) unreachable)))").unwrap();
        // `block` (0x02) with block type v128 (0x7b).
        let block = offset_in_body(&wasm, 0, &[0x02, 0x7b]);
        assert_eq!(
            translate_body(&wasm, 0).unwrap_err(),
            CompileError::Unsupported {
                feature: "simd".into(),
                offset: block,
            }
        );
    }

    #[test]
    fn a_v128_local_is_unsupported_at_its_declaration() {
        let wasm = wat::parse_str("(module (func (local i32) (local v128)))").unwrap();
        // Second locals entry: one local (0x01) of type v128 (0x7b).
        let local = offset_in_body(&wasm, 0, &[0x01, 0x7b]);
        assert_eq!(
            translate_body(&wasm, 0).unwrap_err(),
            CompileError::Unsupported {
                feature: "simd".into(),
                offset: local,
            }
        );
    }

    #[test]
    fn translator_inconsistencies_are_compiler_bugs_naming_the_function() {
        // Unvalidated `drop` on an empty stack: the translator's own stack underflows.
        let wasm = wat::parse_str("(module (func) (func drop))").unwrap();
        match translate_body(&wasm, 1).unwrap_err() {
            CompileError::Codegen { func, message } => {
                assert_eq!(func, 1);
                assert!(message.contains("operand stack underflow"), "{message}");
            }
            other => panic!("expected a compiler bug, got {other:?}"),
        }
    }
}
