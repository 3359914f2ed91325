//! Calls in the translator: builtins (through the vmctx's builtin table), direct calls to
//! imported and defined functions, and `call_indirect` with its null, bounds and signature
//! checks.

use super::*;

impl Translator<'_, '_> {
    pub(super) fn builtin(&mut self, which: Builtin, args: &[Value]) -> Vec<Value> {
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

    pub(super) fn sig_for_type(&mut self, type_index: u32) -> Result<ir::SigRef, CompileError> {
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

    pub(super) fn push_call_results(&mut self, call: ir::Inst) {
        let results = self.b.inst_results(call).to_vec();
        self.stack.extend(results);
    }

    pub(super) fn call(&mut self, function_index: u32) -> Result<(), CompileError> {
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

    pub(super) fn call_indirect(
        &mut self,
        type_index: u32,
        table_index: u32,
    ) -> Result<(), CompileError> {
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
