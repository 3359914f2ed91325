//! The lowering of the operators that compute: locals, globals, memory and table accesses,
//! constants, integer and float arithmetic, comparisons and conversions (control flow, calls
//! and addressing live beside it).

use super::*;

impl Translator<'_, '_> {
    pub(super) fn reachable_operator(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
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

    pub(super) fn unop(
        &mut self,
        f: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value,
    ) -> Result<(), CompileError> {
        let v = self.pop()?;
        let r = f(&mut self.b, v);
        self.stack.push(r);
        Ok(())
    }

    pub(super) fn binop(
        &mut self,
        f: impl FnOnce(&mut FunctionBuilder<'_>, Value, Value) -> Value,
    ) -> Result<(), CompileError> {
        let (x, y) = self.pop2()?;
        let r = f(&mut self.b, x, y);
        self.stack.push(r);
        Ok(())
    }

    pub(super) fn icmp(&mut self, cc: IntCC) -> Result<(), CompileError> {
        let (x, y) = self.pop2()?;
        let c = self.b.ins().icmp(cc, x, y);
        let v = self.b.ins().uextend(types::I32, c);
        self.stack.push(v);
        Ok(())
    }

    pub(super) fn fcmp(&mut self, cc: FloatCC) -> Result<(), CompileError> {
        let (x, y) = self.pop2()?;
        let c = self.b.ins().fcmp(cc, x, y);
        let v = self.b.ins().uextend(types::I32, c);
        self.stack.push(v);
        Ok(())
    }

    pub(super) fn sext_in_place(&mut self, narrow: Type) -> Result<(), CompileError> {
        let v = self.pop()?;
        let ty = self.b.func.dfg.value_type(v);
        let n = self.b.ins().ireduce(narrow, v);
        let r = self.b.ins().sextend(ty, n);
        self.stack.push(r);
        Ok(())
    }

    pub(super) fn bitcast(&mut self, to: Type) -> Result<(), CompileError> {
        let v = self.pop()?;
        let r = self.b.ins().bitcast(to, MemFlagsData::new(), v);
        self.stack.push(r);
        Ok(())
    }
}
