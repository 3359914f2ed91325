//! Addressing in the translator: globals in the vmctx, linear-memory accesses (the guard region
//! stands in for bounds checks unless a static offset is too large for it), and table elements
//! (checked explicitly).

use super::*;

impl Translator<'_, '_> {
    // ---- globals, memory, tables ---------------------------------------------------------

    /// Pointer, offset and type of global `index`'s storage.
    pub(super) fn global_addr(&mut self, index: u32) -> Result<(Value, u32, Type), CompileError> {
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

    pub(super) fn memory_length(&mut self) -> Value {
        let def = self.vm_load_readonly(types::I64, self.vmctx, VmOffsets::MEMORY_DEF);
        self.vm_load(types::I64, def, def::LENGTH)
    }

    /// Computes the native address of a wasm access; returns it and the static offset to fold.
    pub(super) fn heap_addr(
        &mut self,
        memarg: MemArg,
        size: u32,
    ) -> Result<(Value, i32), CompileError> {
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

    pub(super) fn load(
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

    pub(super) fn store(
        &mut self,
        memarg: MemArg,
        size: u32,
        kind: StoreKind,
    ) -> Result<(), CompileError> {
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
    pub(super) fn table_def(&mut self, index: u32) -> Result<Value, CompileError> {
        if index as usize >= self.env.info.tables.len() {
            return Err(internal(self.func_index, "table index"));
        }
        let off = self.env.offsets.table_ptr(index);
        Ok(self.vm_load_readonly(types::I64, self.vmctx, off))
    }

    /// Bounds-checked address of element `i` of table `table`.
    pub(super) fn table_elem_addr(
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
}
