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

    fn reachable_operator(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
        use Operator as O;
        match *op {
            O::Nop => {}
            O::Unreachable => {
                self.trap(TrapCode::UnreachableCodeReached);
                self.reachable = false;
            }
            O::Block { blockty } => {
                let (params, results) = self.block_type(blockty)?;
                let dest = self.new_block_with(&results);
                self.control.push(Frame {
                    kind: FrameKind::Block,
                    dest,
                    num_params: params.len(),
                    num_results: results.len(),
                    height: self.stack.len().saturating_sub(params.len()),
                    exit_reached: false,
                });
            }
            O::Loop { blockty } => {
                let (params, results) = self.block_type(blockty)?;
                let header = self.new_block_with(&params);
                let dest = self.new_block_with(&results);
                let args = self.popn(params.len())?;
                self.b.ins().jump(header, &block_args(&args));
                self.b.switch_to_block(header);
                let hp = self.b.block_params(header).to_vec();
                let height = self.stack.len();
                self.stack.extend(hp);
                self.epoch_check();
                self.control.push(Frame {
                    kind: FrameKind::Loop { header },
                    dest,
                    num_params: params.len(),
                    num_results: results.len(),
                    height,
                    exit_reached: false,
                });
            }
            O::If { blockty } => {
                let (params, results) = self.block_type(blockty)?;
                let cond = self.pop()?;
                let then_block = self.b.create_block();
                let else_block = self.b.create_block();
                let dest = self.new_block_with(&results);
                self.b.ins().brif(cond, then_block, &[], else_block, &[]);
                self.b.seal_block(then_block);
                self.b.seal_block(else_block);
                self.b.switch_to_block(then_block);
                let ps = self.peekn(params.len())?.to_vec();
                self.control.push(Frame {
                    kind: FrameKind::If {
                        else_block,
                        params: ps,
                        else_seen: false,
                        head_reachable: true,
                    },
                    dest,
                    num_params: params.len(),
                    num_results: results.len(),
                    height: self.stack.len().saturating_sub(params.len()),
                    exit_reached: false,
                });
            }
            O::Else => self.op_else()?,
            O::End => self.op_end()?,
            O::Br { relative_depth } => {
                self.br(relative_depth)?;
                self.reachable = false;
            }
            O::BrIf { relative_depth } => {
                let cond = self.pop()?;
                let (target, n) = self.frame_target(relative_depth)?;
                let args = self.peekn(n)?.to_vec();
                let next = self.b.create_block();
                self.b
                    .ins()
                    .brif(cond, target, &block_args(&args), next, &[]);
                self.b.seal_block(next);
                self.b.switch_to_block(next);
            }
            O::BrTable { ref targets } => {
                let index = self.pop()?;
                let mut depths = Vec::with_capacity(targets.len() as usize);
                for t in targets.targets() {
                    depths.push(t.map_err(|e| CompileError::invalid(&e))?);
                }
                let default = targets.default();
                // Jump tables carry no arguments: targets that need values go through a block
                // that passes them, filled in after the table.
                let mut blocks: HashMap<u32, ir::Block> = HashMap::new();
                let mut pending = Vec::new();
                let mut calls = Vec::with_capacity(depths.len() + 1);
                for d in std::iter::once(default).chain(depths) {
                    let blk = match blocks.get(&d) {
                        Some(b) => *b,
                        None => {
                            let (target, n) = self.frame_target(d)?;
                            let blk = if n == 0 {
                                target
                            } else {
                                let tramp = self.b.create_block();
                                pending.push((tramp, target, self.peekn(n)?.to_vec()));
                                tramp
                            };
                            blocks.insert(d, blk);
                            blk
                        }
                    };
                    calls.push(self.b.func.dfg.block_call(blk, &[]));
                }
                let jt = self
                    .b
                    .create_jump_table(ir::JumpTableData::new(calls[0], &calls[1..]));
                self.b.ins().br_table(index, jt);
                for (tramp, target, args) in pending {
                    self.b.switch_to_block(tramp);
                    self.b.seal_block(tramp);
                    self.b.ins().jump(target, &block_args(&args));
                }
                self.reachable = false;
            }
            O::Return => {
                let n = self.control[0].num_results;
                let rets = self.peekn(n)?.to_vec();
                self.b.ins().return_(&rets);
                self.reachable = false;
            }
            O::Call { function_index } => self.call(function_index)?,
            O::CallIndirect {
                type_index,
                table_index,
            } => self.call_indirect(type_index, table_index)?,
            O::Drop => {
                self.pop()?;
            }
            O::Select | O::TypedSelect { .. } | O::TypedSelectMulti { .. } => {
                let (a, b, c) = self.pop3()?;
                let v = self.b.ins().select(c, a, b);
                self.stack.push(v);
            }
            O::LocalGet { local_index } => {
                let var = *self
                    .locals
                    .get(local_index as usize)
                    .ok_or_else(|| internal(self.func_index, "local"))?;
                let v = self.b.use_var(var);
                self.stack.push(v);
            }
            O::LocalSet { local_index } => {
                let v = self.pop()?;
                let var = *self
                    .locals
                    .get(local_index as usize)
                    .ok_or_else(|| internal(self.func_index, "local"))?;
                self.b.def_var(var, v);
            }
            O::LocalTee { local_index } => {
                let v = *self
                    .stack
                    .last()
                    .ok_or_else(|| internal(self.func_index, "tee"))?;
                let var = *self
                    .locals
                    .get(local_index as usize)
                    .ok_or_else(|| internal(self.func_index, "local"))?;
                self.b.def_var(var, v);
            }
            O::GlobalGet { global_index } => {
                let (ptr, off, ty) = self.global_addr(global_index)?;
                let v = self.vm_load(ty, ptr, off);
                self.stack.push(v);
            }
            O::GlobalSet { global_index } => {
                let v = self.pop()?;
                let (ptr, off, _) = self.global_addr(global_index)?;
                self.b.ins().store(trusted(), v, ptr, off as i32);
            }

            // ---- memory ----
            O::I32Load { memarg } => self.load(types::I32, memarg, 4, LoadKind::Plain)?,
            O::I64Load { memarg } => self.load(types::I64, memarg, 8, LoadKind::Plain)?,
            O::F32Load { memarg } => self.load(types::F32, memarg, 4, LoadKind::Plain)?,
            O::F64Load { memarg } => self.load(types::F64, memarg, 8, LoadKind::Plain)?,
            O::I32Load8S { memarg } => self.load(types::I32, memarg, 1, LoadKind::S8)?,
            O::I32Load8U { memarg } => self.load(types::I32, memarg, 1, LoadKind::U8)?,
            O::I32Load16S { memarg } => self.load(types::I32, memarg, 2, LoadKind::S16)?,
            O::I32Load16U { memarg } => self.load(types::I32, memarg, 2, LoadKind::U16)?,
            O::I64Load8S { memarg } => self.load(types::I64, memarg, 1, LoadKind::S8)?,
            O::I64Load8U { memarg } => self.load(types::I64, memarg, 1, LoadKind::U8)?,
            O::I64Load16S { memarg } => self.load(types::I64, memarg, 2, LoadKind::S16)?,
            O::I64Load16U { memarg } => self.load(types::I64, memarg, 2, LoadKind::U16)?,
            O::I64Load32S { memarg } => self.load(types::I64, memarg, 4, LoadKind::S32)?,
            O::I64Load32U { memarg } => self.load(types::I64, memarg, 4, LoadKind::U32)?,
            O::I32Store { memarg } | O::I64Store { memarg } | O::F32Store { memarg } => {
                let size = if matches!(op, O::I64Store { .. }) {
                    8
                } else {
                    4
                };
                self.store(memarg, size, StoreKind::Plain)?
            }
            O::F64Store { memarg } => self.store(memarg, 8, StoreKind::Plain)?,
            O::I32Store8 { memarg } | O::I64Store8 { memarg } => {
                self.store(memarg, 1, StoreKind::S8)?
            }
            O::I32Store16 { memarg } | O::I64Store16 { memarg } => {
                self.store(memarg, 2, StoreKind::S16)?
            }
            O::I64Store32 { memarg } => self.store(memarg, 4, StoreKind::S32)?,
            O::MemorySize { .. } => {
                let len = self.memory_length();
                let pages = self.b.ins().ushr_imm_u(len, 16);
                let v = self.b.ins().ireduce(types::I32, pages);
                self.stack.push(v);
            }
            O::MemoryGrow { .. } => {
                let delta = self.pop()?;
                let r = self.builtin(Builtin::MemoryGrow, &[delta]);
                self.stack.push(r[0]);
            }
            O::MemoryFill { .. } => {
                let (d, v, n) = self.pop3()?;
                self.builtin(Builtin::MemoryFill, &[d, v, n]);
            }
            O::MemoryCopy { .. } => {
                let (d, s, n) = self.pop3()?;
                self.builtin(Builtin::MemoryCopy, &[d, s, n]);
            }
            O::MemoryInit { data_index, .. } => {
                let (d, s, n) = self.pop3()?;
                let seg = self.b.ins().iconst(types::I32, data_index as i64);
                self.builtin(Builtin::MemoryInit, &[seg, d, s, n]);
            }
            O::DataDrop { data_index } => {
                let seg = self.b.ins().iconst(types::I32, data_index as i64);
                self.builtin(Builtin::DataDrop, &[seg]);
            }

            // ---- tables and references ----
            O::TableGet { table } => {
                let i = self.pop()?;
                let addr = self.table_elem_addr(table, i, TrapCode::TableOutOfBounds)?;
                let v = self.vm_load(types::I64, addr, 0);
                self.stack.push(v);
            }
            O::TableSet { table } => {
                let (i, v) = self.pop2()?;
                let addr = self.table_elem_addr(table, i, TrapCode::TableOutOfBounds)?;
                self.b.ins().store(trusted(), v, addr, 0);
                // Tell the runtime this table no longer matches its initial contents.
                let def = self.table_def(table)?;
                let one = self.b.ins().iconst(types::I8, 1);
                self.b
                    .ins()
                    .store(trusted(), one, def, def::TABLE_MODIFIED as i32);
            }
            O::TableSize { table } => {
                let def = self.table_def(table)?;
                let len = self.vm_load(types::I64, def, def::LENGTH);
                let v = self.b.ins().ireduce(types::I32, len);
                self.stack.push(v);
            }
            O::TableGrow { table } => {
                let (init, delta) = self.pop2()?;
                let t = self.b.ins().iconst(types::I32, table as i64);
                let r = self.builtin(Builtin::TableGrow, &[t, delta, init]);
                self.stack.push(r[0]);
            }
            O::TableFill { table } => {
                let (d, v, n) = self.pop3()?;
                let t = self.b.ins().iconst(types::I32, table as i64);
                self.builtin(Builtin::TableFill, &[t, d, v, n]);
            }
            O::TableCopy {
                dst_table,
                src_table,
            } => {
                let (d, s, n) = self.pop3()?;
                let dt = self.b.ins().iconst(types::I32, dst_table as i64);
                let st = self.b.ins().iconst(types::I32, src_table as i64);
                self.builtin(Builtin::TableCopy, &[dt, st, d, s, n]);
            }
            O::TableInit { elem_index, table } => {
                let (d, s, n) = self.pop3()?;
                let t = self.b.ins().iconst(types::I32, table as i64);
                let seg = self.b.ins().iconst(types::I32, elem_index as i64);
                self.builtin(Builtin::TableInit, &[t, seg, d, s, n]);
            }
            O::ElemDrop { elem_index } => {
                let seg = self.b.ins().iconst(types::I32, elem_index as i64);
                self.builtin(Builtin::ElemDrop, &[seg]);
            }
            O::RefNull { .. } => {
                let v = self.b.ins().iconst(types::I64, 0);
                self.stack.push(v);
            }
            O::RefIsNull => {
                let v = self.pop()?;
                let c = self.b.ins().icmp_imm_s(IntCC::Equal, v, 0);
                let v = self.b.ins().uextend(types::I32, c);
                self.stack.push(v);
            }
            O::RefFunc { function_index } => {
                if function_index as usize >= self.env.info.funcs.len() {
                    return Err(internal(self.func_index, "ref.func index"));
                }
                let off = self.env.offsets.funcref(function_index);
                let v = self.b.ins().iadd_imm_s(self.vmctx, off as i64);
                self.stack.push(v);
            }

            // ---- constants ----
            O::I32Const { value } => {
                let v = self.b.ins().iconst(types::I32, value as i64);
                self.stack.push(v);
            }
            O::I64Const { value } => {
                let v = self.b.ins().iconst(types::I64, value);
                self.stack.push(v);
            }
            O::F32Const { value } => {
                let v = self.b.ins().f32const(Ieee32::with_bits(value.bits()));
                self.stack.push(v);
            }
            O::F64Const { value } => {
                let v = self.b.ins().f64const(Ieee64::with_bits(value.bits()));
                self.stack.push(v);
            }

            // ---- integer ----
            O::I32Eqz | O::I64Eqz => {
                let v = self.pop()?;
                let c = self.b.ins().icmp_imm_s(IntCC::Equal, v, 0);
                let v = self.b.ins().uextend(types::I32, c);
                self.stack.push(v);
            }
            O::I32Eq | O::I64Eq => self.icmp(IntCC::Equal)?,
            O::I32Ne | O::I64Ne => self.icmp(IntCC::NotEqual)?,
            O::I32LtS | O::I64LtS => self.icmp(IntCC::SignedLessThan)?,
            O::I32LtU | O::I64LtU => self.icmp(IntCC::UnsignedLessThan)?,
            O::I32GtS | O::I64GtS => self.icmp(IntCC::SignedGreaterThan)?,
            O::I32GtU | O::I64GtU => self.icmp(IntCC::UnsignedGreaterThan)?,
            O::I32LeS | O::I64LeS => self.icmp(IntCC::SignedLessThanOrEqual)?,
            O::I32LeU | O::I64LeU => self.icmp(IntCC::UnsignedLessThanOrEqual)?,
            O::I32GeS | O::I64GeS => self.icmp(IntCC::SignedGreaterThanOrEqual)?,
            O::I32GeU | O::I64GeU => self.icmp(IntCC::UnsignedGreaterThanOrEqual)?,
            O::I32Clz | O::I64Clz => self.unop(|b, v| b.ins().clz(v))?,
            O::I32Ctz | O::I64Ctz => self.unop(|b, v| b.ins().ctz(v))?,
            O::I32Popcnt | O::I64Popcnt => self.unop(|b, v| b.ins().popcnt(v))?,
            O::I32Add | O::I64Add => self.binop(|b, x, y| b.ins().iadd(x, y))?,
            O::I32Sub | O::I64Sub => self.binop(|b, x, y| b.ins().isub(x, y))?,
            O::I32Mul | O::I64Mul => self.binop(|b, x, y| b.ins().imul(x, y))?,
            O::I32DivS | O::I64DivS => self.binop(|b, x, y| b.ins().sdiv(x, y))?,
            O::I32DivU | O::I64DivU => self.binop(|b, x, y| b.ins().udiv(x, y))?,
            O::I32RemS | O::I64RemS => self.binop(|b, x, y| b.ins().srem(x, y))?,
            O::I32RemU | O::I64RemU => self.binop(|b, x, y| b.ins().urem(x, y))?,
            O::I32And | O::I64And => self.binop(|b, x, y| b.ins().band(x, y))?,
            O::I32Or | O::I64Or => self.binop(|b, x, y| b.ins().bor(x, y))?,
            O::I32Xor | O::I64Xor => self.binop(|b, x, y| b.ins().bxor(x, y))?,
            O::I32Shl | O::I64Shl => self.binop(|b, x, y| b.ins().ishl(x, y))?,
            O::I32ShrS | O::I64ShrS => self.binop(|b, x, y| b.ins().sshr(x, y))?,
            O::I32ShrU | O::I64ShrU => self.binop(|b, x, y| b.ins().ushr(x, y))?,
            O::I32Rotl | O::I64Rotl => self.binop(|b, x, y| b.ins().rotl(x, y))?,
            O::I32Rotr | O::I64Rotr => self.binop(|b, x, y| b.ins().rotr(x, y))?,
            O::I32WrapI64 => self.unop(|b, v| b.ins().ireduce(types::I32, v))?,
            O::I64ExtendI32S => self.unop(|b, v| b.ins().sextend(types::I64, v))?,
            O::I64ExtendI32U => self.unop(|b, v| b.ins().uextend(types::I64, v))?,
            O::I32Extend8S => self.sext_in_place(types::I8)?,
            O::I32Extend16S => self.sext_in_place(types::I16)?,
            O::I64Extend8S => self.sext_in_place(types::I8)?,
            O::I64Extend16S => self.sext_in_place(types::I16)?,
            O::I64Extend32S => self.sext_in_place(types::I32)?,

            // ---- float ----
            O::F32Eq | O::F64Eq => self.fcmp(FloatCC::Equal)?,
            O::F32Ne | O::F64Ne => self.fcmp(FloatCC::NotEqual)?,
            O::F32Lt | O::F64Lt => self.fcmp(FloatCC::LessThan)?,
            O::F32Gt | O::F64Gt => self.fcmp(FloatCC::GreaterThan)?,
            O::F32Le | O::F64Le => self.fcmp(FloatCC::LessThanOrEqual)?,
            O::F32Ge | O::F64Ge => self.fcmp(FloatCC::GreaterThanOrEqual)?,
            O::F32Abs | O::F64Abs => self.unop(|b, v| b.ins().fabs(v))?,
            O::F32Neg | O::F64Neg => self.unop(|b, v| b.ins().fneg(v))?,
            O::F32Ceil | O::F64Ceil => self.unop(|b, v| b.ins().ceil(v))?,
            O::F32Floor | O::F64Floor => self.unop(|b, v| b.ins().floor(v))?,
            O::F32Trunc | O::F64Trunc => self.unop(|b, v| b.ins().trunc(v))?,
            O::F32Nearest | O::F64Nearest => self.unop(|b, v| b.ins().nearest(v))?,
            O::F32Sqrt | O::F64Sqrt => self.unop(|b, v| b.ins().sqrt(v))?,
            O::F32Add | O::F64Add => self.binop(|b, x, y| b.ins().fadd(x, y))?,
            O::F32Sub | O::F64Sub => self.binop(|b, x, y| b.ins().fsub(x, y))?,
            O::F32Mul | O::F64Mul => self.binop(|b, x, y| b.ins().fmul(x, y))?,
            O::F32Div | O::F64Div => self.binop(|b, x, y| b.ins().fdiv(x, y))?,
            O::F32Min | O::F64Min => self.binop(|b, x, y| b.ins().fmin(x, y))?,
            O::F32Max | O::F64Max => self.binop(|b, x, y| b.ins().fmax(x, y))?,
            O::F32Copysign | O::F64Copysign => self.binop(|b, x, y| b.ins().fcopysign(x, y))?,

            // ---- conversions ----
            O::I32TruncF32S | O::I32TruncF64S => {
                self.unop(|b, v| b.ins().fcvt_to_sint(types::I32, v))?
            }
            O::I32TruncF32U | O::I32TruncF64U => {
                self.unop(|b, v| b.ins().fcvt_to_uint(types::I32, v))?
            }
            O::I64TruncF32S | O::I64TruncF64S => {
                self.unop(|b, v| b.ins().fcvt_to_sint(types::I64, v))?
            }
            O::I64TruncF32U | O::I64TruncF64U => {
                self.unop(|b, v| b.ins().fcvt_to_uint(types::I64, v))?
            }
            O::I32TruncSatF32S | O::I32TruncSatF64S => {
                self.unop(|b, v| b.ins().fcvt_to_sint_sat(types::I32, v))?
            }
            O::I32TruncSatF32U | O::I32TruncSatF64U => {
                self.unop(|b, v| b.ins().fcvt_to_uint_sat(types::I32, v))?
            }
            O::I64TruncSatF32S | O::I64TruncSatF64S => {
                self.unop(|b, v| b.ins().fcvt_to_sint_sat(types::I64, v))?
            }
            O::I64TruncSatF32U | O::I64TruncSatF64U => {
                self.unop(|b, v| b.ins().fcvt_to_uint_sat(types::I64, v))?
            }
            O::F32ConvertI32S | O::F32ConvertI64S => {
                self.unop(|b, v| b.ins().fcvt_from_sint(types::F32, v))?
            }
            O::F32ConvertI32U | O::F32ConvertI64U => {
                self.unop(|b, v| b.ins().fcvt_from_uint(types::F32, v))?
            }
            O::F64ConvertI32S | O::F64ConvertI64S => {
                self.unop(|b, v| b.ins().fcvt_from_sint(types::F64, v))?
            }
            O::F64ConvertI32U | O::F64ConvertI64U => {
                self.unop(|b, v| b.ins().fcvt_from_uint(types::F64, v))?
            }
            O::F32DemoteF64 => self.unop(|b, v| b.ins().fdemote(types::F32, v))?,
            O::F64PromoteF32 => self.unop(|b, v| b.ins().fpromote(types::F64, v))?,
            O::I32ReinterpretF32 => self.bitcast(types::I32)?,
            O::I64ReinterpretF64 => self.bitcast(types::I64)?,
            O::F32ReinterpretI32 => self.bitcast(types::F32)?,
            O::F64ReinterpretI64 => self.bitcast(types::F64)?,

            ref other => {
                // Validation with our feature set rejects everything else before we get here.
                return Err(CompileError::Unsupported {
                    feature: format!("operator {other:?}"),
                    offset: self.offset,
                });
            }
        }
        Ok(())
    }

    fn unop(
        &mut self,
        f: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value,
    ) -> Result<(), CompileError> {
        let v = self.pop()?;
        let r = f(&mut self.b, v);
        self.stack.push(r);
        Ok(())
    }

    fn binop(
        &mut self,
        f: impl FnOnce(&mut FunctionBuilder<'_>, Value, Value) -> Value,
    ) -> Result<(), CompileError> {
        let (x, y) = self.pop2()?;
        let r = f(&mut self.b, x, y);
        self.stack.push(r);
        Ok(())
    }

    fn icmp(&mut self, cc: IntCC) -> Result<(), CompileError> {
        let (x, y) = self.pop2()?;
        let c = self.b.ins().icmp(cc, x, y);
        let v = self.b.ins().uextend(types::I32, c);
        self.stack.push(v);
        Ok(())
    }

    fn fcmp(&mut self, cc: FloatCC) -> Result<(), CompileError> {
        let (x, y) = self.pop2()?;
        let c = self.b.ins().fcmp(cc, x, y);
        let v = self.b.ins().uextend(types::I32, c);
        self.stack.push(v);
        Ok(())
    }

    fn sext_in_place(&mut self, narrow: Type) -> Result<(), CompileError> {
        let v = self.pop()?;
        let ty = self.b.func.dfg.value_type(v);
        let n = self.b.ins().ireduce(narrow, v);
        let r = self.b.ins().sextend(ty, n);
        self.stack.push(r);
        Ok(())
    }

    fn bitcast(&mut self, to: Type) -> Result<(), CompileError> {
        let v = self.pop()?;
        let r = self.b.ins().bitcast(to, MemFlagsData::new(), v);
        self.stack.push(r);
        Ok(())
    }

    // ---- globals, memory, tables ---------------------------------------------------------

    /// Pointer, offset and type of global `index`'s storage.
    fn global_addr(&mut self, index: u32) -> Result<(Value, u32, Type), CompileError> {
        let gt = *self
            .env
            .info
            .globals
            .get(index as usize)
            .ok_or_else(|| internal(self.func_index, "global index"))?;
        let ty = cl_type(gt.ty);
        let ni = self.env.num_imported_globals();
        if index < ni {
            let off = self.env.offsets.imported_global_ptr(index);
            let ptr = self.vm_load_readonly(types::I64, self.vmctx, off);
            Ok((ptr, 0, ty))
        } else {
            Ok((self.vmctx, self.env.offsets.defined_global(index - ni), ty))
        }
    }

    fn memory_length(&mut self) -> Value {
        let def = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::MEMORY_DEF);
        self.vm_load(types::I64, def, def::LENGTH)
    }

    /// Computes the native address of a wasm access; returns it and the static offset to fold.
    fn heap_addr(&mut self, memarg: MemArg, size: u32) -> Result<(Value, i32), CompileError> {
        let addr = self.pop()?;
        let base = self
            .mem_base
            .ok_or_else(|| internal(self.func_index, "memory access without memory"))?;
        let addr64 = self.b.ins().uextend(types::I64, addr);
        let end = memarg.offset.saturating_add(size as u64);
        if end <= MEMORY_GUARD_SIZE && memarg.offset <= i32::MAX as u64 {
            let p = self.b.ins().iadd(base, addr64);
            return Ok((p, memarg.offset as i32));
        }
        // The offset reaches past the guard region: check against the current length.
        let len = self.memory_length();
        let last = self.b.ins().iadd_imm_s(addr64, end as i64);
        let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThan, last, len);
        self.b.ins().trapnz(oob, ClTrap::HEAP_OUT_OF_BOUNDS);
        let p = self.b.ins().iadd(base, addr64);
        let p = self.b.ins().iadd_imm_s(p, memarg.offset as i64);
        Ok((p, 0))
    }

    fn load(
        &mut self,
        ty: Type,
        memarg: MemArg,
        size: u32,
        kind: LoadKind,
    ) -> Result<(), CompileError> {
        let (p, off) = self.heap_addr(memarg, size)?;
        let f = heap_flags();
        let ins = self.b.ins();
        let v = match kind {
            LoadKind::Plain => ins.load(ty, f, p, off),
            LoadKind::S8 => ins.sload8(ty, f, p, off),
            LoadKind::U8 => ins.uload8(ty, f, p, off),
            LoadKind::S16 => ins.sload16(ty, f, p, off),
            LoadKind::U16 => ins.uload16(ty, f, p, off),
            LoadKind::S32 => ins.sload32(f, p, off),
            LoadKind::U32 => ins.uload32(f, p, off),
        };
        self.stack.push(v);
        Ok(())
    }

    fn store(&mut self, memarg: MemArg, size: u32, kind: StoreKind) -> Result<(), CompileError> {
        let v = self.pop()?;
        let (p, off) = self.heap_addr(memarg, size)?;
        let f = heap_flags();
        let ins = self.b.ins();
        match kind {
            StoreKind::Plain => ins.store(f, v, p, off),
            StoreKind::S8 => ins.istore8(f, v, p, off),
            StoreKind::S16 => ins.istore16(f, v, p, off),
            StoreKind::S32 => ins.istore32(f, v, p, off),
        };
        Ok(())
    }

    /// Pointer to the definition `{ base, length }` of table `index`.
    fn table_def(&mut self, index: u32) -> Result<Value, CompileError> {
        if index as usize >= self.env.info.tables.len() {
            return Err(internal(self.func_index, "table index"));
        }
        let off = self.env.offsets.table_ptr(index);
        Ok(self.vm_load_readonly(types::I64, self.vmctx, off))
    }

    /// Bounds-checked address of element `i` of table `table`.
    fn table_elem_addr(
        &mut self,
        table: u32,
        i: Value,
        oob: TrapCode,
    ) -> Result<Value, CompileError> {
        let def = self.table_def(table)?;
        let len = self.vm_load(types::I64, def, def::LENGTH);
        let i64v = self.b.ins().uextend(types::I64, i);
        let bad = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, i64v, len);
        self.b.ins().trapnz(bad, cl_trap(oob));
        let base = self.vm_load(types::I64, def, def::BASE);
        let scaled = self.b.ins().ishl_imm_u(i64v, 3);
        Ok(self.b.ins().iadd(base, scaled))
    }

    fn builtin(&mut self, which: Builtin, args: &[Value]) -> Vec<Value> {
        let sig = match self.builtin_sigs.get(&(which as u32)) {
            Some(s) => *s,
            None => {
                let s = self.b.import_signature(builtin_signature(which));
                self.builtin_sigs.insert(which as u32, s);
                s
            }
        };
        let table = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::BUILTINS);
        let f = self.vm_load_readonly(types::I64, table, which.table_offset());
        let mut all = vec![self.vmctx];
        all.extend_from_slice(args);
        let call = self.b.ins().call_indirect(sig, f, &all);
        let results = self.b.inst_results(call).to_vec();
        if let Some(code) = which.trap_on_nonzero() {
            self.b.ins().trapnz(results[0], cl_trap(code));
            return Vec::new();
        }
        results
    }

    // ---- calls -------------------------------------------------------------------------------

    fn sig_for_type(&mut self, type_index: u32) -> Result<ir::SigRef, CompileError> {
        if let Some(s) = self.sigs.get(&type_index) {
            return Ok(*s);
        }
        let ft = self
            .env
            .info
            .types
            .get(type_index as usize)
            .ok_or_else(|| internal(self.func_index, "type index"))?;
        let s = self.b.import_signature(wasm_signature(ft));
        self.sigs.insert(type_index, s);
        Ok(s)
    }

    fn push_call_results(&mut self, call: ir::Inst) {
        let results = self.b.inst_results(call).to_vec();
        self.stack.extend(results);
    }

    fn call(&mut self, function_index: u32) -> Result<(), CompileError> {
        let type_index = *self
            .env
            .info
            .funcs
            .get(function_index as usize)
            .ok_or_else(|| internal(self.func_index, "function index"))?;
        let n = self.env.info.types[type_index as usize].params.len();
        let args = self.popn(n)?;
        let ni = self.env.num_imported_funcs();
        if function_index < ni {
            let off = self.env.offsets.imported_func(function_index);
            let code = self.vm_load_readonly(types::I64, self.vmctx, off + func_import::WASM_CALL);
            let callee_vmctx =
                self.vm_load_readonly(types::I64, self.vmctx, off + func_import::VMCTX);
            let sig = self.sig_for_type(type_index)?;
            let mut all = vec![callee_vmctx, self.vmctx];
            all.extend(args);
            let call = self.b.ins().call_indirect(sig, code, &all);
            self.push_call_results(call);
        } else {
            let fref = match self.direct_funcs.get(&function_index) {
                Some(f) => *f,
                None => {
                    let sig = self.sig_for_type(type_index)?;
                    let name = self
                        .b
                        .func
                        .declare_imported_user_function(UserExternalName::new(0, function_index));
                    let f = self.b.import_function(ir::ExtFuncData {
                        name: ir::ExternalName::user(name),
                        signature: sig,
                        colocated: true,
                        patchable: false,
                    });
                    self.direct_funcs.insert(function_index, f);
                    f
                }
            };
            let mut all = vec![self.vmctx, self.vmctx];
            all.extend(args);
            let call = self.b.ins().call(fref, &all);
            self.push_call_results(call);
        }
        Ok(())
    }

    fn call_indirect(&mut self, type_index: u32, table_index: u32) -> Result<(), CompileError> {
        let index = self.pop()?;
        let n = self
            .env
            .info
            .types
            .get(type_index as usize)
            .ok_or_else(|| internal(self.func_index, "type index"))?
            .params
            .len();
        let args = self.popn(n)?;
        let addr = self.table_elem_addr(table_index, index, TrapCode::IndirectCallOutOfBounds)?;
        let fref = self.vm_load(types::I64, addr, 0);
        self.b
            .ins()
            .trapz(fref, cl_trap(TrapCode::IndirectCallToNull));
        let actual = self.vm_load(types::I32, fref, funcref::TYPE_ID);
        let ids = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::TYPE_IDS);
        let expected = self.vm_load_readonly(types::I32, ids, type_index * 4);
        let bad = self.b.ins().icmp(IntCC::NotEqual, actual, expected);
        self.b.ins().trapnz(bad, cl_trap(TrapCode::BadSignature));
        let code = self.vm_load(types::I64, fref, funcref::WASM_CALL);
        let callee_vmctx = self.vm_load(types::I64, fref, funcref::VMCTX);
        let sig = self.sig_for_type(type_index)?;
        let mut all = vec![callee_vmctx, self.vmctx];
        all.extend(args);
        let call = self.b.ins().call_indirect(sig, code, &all);
        self.push_call_results(call);
        Ok(())
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
