//! The `#[repr(C)]` structures compiled code reads and writes, checked against `VmOffsets`.

/// The store-wide limits every vmctx points to.
#[repr(C)]
#[derive(Debug, Default)]
pub struct VmLimits {
    /// Lowest stack pointer guest code may use.
    pub stack_limit: u64,
    /// Epoch at which guest code traps with `Interrupt`.
    pub epoch_deadline: u64,
}

/// A linear memory or table definition: base pointer and current length.
#[repr(C)]
#[derive(Debug)]
pub struct VmDefinition {
    /// Base address.
    pub base: *mut u8,
    /// Bytes (memory) or elements (table).
    pub length: u64,
}

/// A table definition: base pointer, current length in elements, and whether the table was
/// written since the runtime last (re)initialised it.
#[repr(C)]
#[derive(Debug)]
pub struct VmTableDefinition {
    /// Base address.
    pub base: *mut u8,
    /// Elements.
    pub length: u64,
    /// Nonzero once compiled code or a builtin wrote to the table.
    pub modified: u64,
}

/// A function import record in a vmctx.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VmFunctionImport {
    /// Code with the wasm calling convention.
    pub wasm_call: *const u8,
    /// The callee's vmctx (or host function context).
    pub vmctx: *mut u8,
}

/// A funcref record: what a funcref value points to.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VmFuncRef {
    /// Code with the wasm calling convention.
    pub wasm_call: *const u8,
    /// Array-call trampoline for the function's type; null for host functions.
    pub array_call: *const u8,
    /// Engine-wide signature id.
    pub type_id: u64,
    /// The callee's vmctx (or host function context).
    pub vmctx: *mut u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnvm_abi::vmoffsets::{def, func_import, funcref, limits};
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_abi() {
        assert_eq!(
            offset_of!(VmLimits, stack_limit) as u32,
            limits::STACK_LIMIT
        );
        assert_eq!(
            offset_of!(VmLimits, epoch_deadline) as u32,
            limits::EPOCH_DEADLINE
        );
        assert_eq!(offset_of!(VmDefinition, base) as u32, def::BASE);
        assert_eq!(offset_of!(VmDefinition, length) as u32, def::LENGTH);
        assert_eq!(offset_of!(VmTableDefinition, base) as u32, def::BASE);
        assert_eq!(offset_of!(VmTableDefinition, length) as u32, def::LENGTH);
        assert_eq!(
            offset_of!(VmTableDefinition, modified) as u32,
            def::TABLE_MODIFIED
        );
        assert_eq!(
            offset_of!(VmFunctionImport, wasm_call) as u32,
            func_import::WASM_CALL
        );
        assert_eq!(
            offset_of!(VmFunctionImport, vmctx) as u32,
            func_import::VMCTX
        );
        assert_eq!(
            size_of::<VmFunctionImport>() as u32,
            fnvm_abi::vmoffsets::FUNC_IMPORT_SIZE
        );
        assert_eq!(offset_of!(VmFuncRef, wasm_call) as u32, funcref::WASM_CALL);
        assert_eq!(
            offset_of!(VmFuncRef, array_call) as u32,
            funcref::ARRAY_CALL
        );
        assert_eq!(offset_of!(VmFuncRef, type_id) as u32, funcref::TYPE_ID);
        assert_eq!(offset_of!(VmFuncRef, vmctx) as u32, funcref::VMCTX);
        assert_eq!(
            size_of::<VmFuncRef>() as u32,
            fnvm_abi::vmoffsets::FUNCREF_SIZE
        );
    }
}
