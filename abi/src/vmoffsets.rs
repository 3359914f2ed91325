//! `VmOffsets`: the one place that computes where everything lives in an instance's vmctx.
//!
//! The vmctx is the per-instance context every compiled function receives as its first argument.
//! Its layout, for a module with the given counts:
//!
//! ```text
//!   offset  field                       notes
//!   ------  --------------------------  ------------------------------------------------------
//!        0  limits: *const VmLimits     the store's { stack_limit: u64, epoch_deadline: u64 }, shared
//!                                       by every instance of a store so calls across instances see
//!                                       one stack limit and one deadline
//!        8  epoch_ptr: *const u64       engine's epoch counter; Interrupt once it reaches the deadline
//!       16  (reserved)
//!       24  builtins: *const [fn; N]    table of `Builtin` function pointers
//!       32  type_ids: *const u32        module type index -> engine-wide signature id
//!       40  memory_base: *mut u8        base of the (only) linear memory; it never moves
//!       48  memory_def: *mut MemDef     definition holding the current length (defined or imported)
//!       56  instance: *mut ()           the runtime's back pointer
//!       64  defined_memory: MemDef      { base: u64, length: u64 } when the module defines its memory
//!       80  imported_funcs[n]           { wasm_call, vmctx }                     16 bytes each
//!           imported_globals[n]         *mut Global                               8 bytes each
//!           tables[n]                   *mut TableDef { base: *mut u64, length: u64 } 8 bytes each
//!           defined_globals[n]          16 bytes of value storage                16 bytes each
//!           funcrefs[n]                 { wasm_call, array_call, type_id, vmctx } 32 bytes each
//! ```
//!
//! Function pointers in `imported_funcs` and `funcrefs` use the wasm calling convention
//! `(callee_vmctx, caller_vmctx, params...) -> results`; `array_call` is
//! `extern "C" fn(callee_vmctx, caller_vmctx, wasm_call, values: *mut [u64; 2])`.

/// Size of one function import record.
pub const FUNC_IMPORT_SIZE: u32 = 16;
/// Size of one global's storage.
pub const GLOBAL_SIZE: u32 = 16;
/// Size of one funcref record.
pub const FUNCREF_SIZE: u32 = 32;
/// Size of one table element (a funcref pointer or an externref handle).
pub const TABLE_ELEM_SIZE: u32 = 8;
/// Size of one value slot in the array calling convention.
pub const VALUE_SLOT_SIZE: u32 = 16;

/// Field offsets inside a function import record.
pub mod func_import {
    /// Pointer to the callee's code (wasm calling convention).
    pub const WASM_CALL: u32 = 0;
    /// The callee's vmctx.
    pub const VMCTX: u32 = 8;
}

/// Field offsets inside a funcref record.
pub mod funcref {
    /// Pointer to the code (wasm calling convention).
    pub const WASM_CALL: u32 = 0;
    /// Pointer to the array-call trampoline for this function's type (null for host functions).
    pub const ARRAY_CALL: u32 = 8;
    /// Engine-wide signature id, compared by call_indirect.
    pub const TYPE_ID: u32 = 16;
    /// The callee's vmctx.
    pub const VMCTX: u32 = 24;
}

/// Field offsets inside the store limits a vmctx points to.
pub mod limits {
    /// Lowest stack pointer the guest may use; checked in every function prologue.
    pub const STACK_LIMIT: u32 = 0;
    /// Epoch value at which the running invocation traps with `Interrupt`.
    pub const EPOCH_DEADLINE: u32 = 8;
}

/// Field offsets inside a memory or table definition.
pub mod def {
    /// Base pointer.
    pub const BASE: u32 = 0;
    /// Current length: bytes for a memory, elements for a table.
    pub const LENGTH: u32 = 8;
    /// Tables only: set (to any nonzero byte) by every write to the table, so a pooled instance
    /// slot re-initialises only tables the previous instance changed.
    pub const TABLE_MODIFIED: u32 = 16;
}

/// The counts that determine a vmctx layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmShape {
    /// Imported functions.
    pub imported_funcs: u32,
    /// All functions, imported and defined.
    pub funcs: u32,
    /// Imported globals.
    pub imported_globals: u32,
    /// Defined globals.
    pub defined_globals: u32,
    /// All tables, imported and defined.
    pub tables: u32,
}

/// Every vmctx offset for one module shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmOffsets {
    shape: VmShape,
    imported_funcs: u32,
    imported_globals: u32,
    tables: u32,
    defined_globals: u32,
    funcrefs: u32,
    size: u32,
}

impl VmOffsets {
    /// Offset of `limits`.
    pub const LIMITS: u32 = 0;
    /// Offset of `epoch_ptr`.
    pub const EPOCH_PTR: u32 = 8;
    /// Offset of `builtins`.
    pub const BUILTINS: u32 = 24;
    /// Offset of `type_ids`.
    pub const TYPE_IDS: u32 = 32;
    /// Offset of `memory_base`.
    pub const MEMORY_BASE: u32 = 40;
    /// Offset of `memory_def`.
    pub const MEMORY_DEF: u32 = 48;
    /// Offset of `instance`.
    pub const INSTANCE: u32 = 56;
    /// Offset of `defined_memory`.
    pub const DEFINED_MEMORY: u32 = 64;
    /// Size of the fixed header.
    pub const HEADER_SIZE: u32 = 80;

    /// Computes the layout. Counts come from validated modules (at most a few hundred thousand
    /// items), so the arithmetic is done in u64 and checked once against u32.
    pub fn new(shape: VmShape) -> Option<VmOffsets> {
        let mut at = Self::HEADER_SIZE as u64;
        let mut take = |n: u32, size: u32, align: u64| {
            at = at.div_ceil(align) * align;
            let here = at;
            at += n as u64 * size as u64;
            here
        };
        let imported_funcs = take(shape.imported_funcs, FUNC_IMPORT_SIZE, 8);
        let imported_globals = take(shape.imported_globals, 8, 8);
        let tables = take(shape.tables, 8, 8);
        let defined_globals = take(shape.defined_globals, GLOBAL_SIZE, 16);
        let funcrefs = take(shape.funcs, FUNCREF_SIZE, 16);
        let size = take(0, 0, 16);
        let fits = |v: u64| u32::try_from(v).ok();
        Some(VmOffsets {
            shape,
            imported_funcs: fits(imported_funcs)?,
            imported_globals: fits(imported_globals)?,
            tables: fits(tables)?,
            defined_globals: fits(defined_globals)?,
            funcrefs: fits(funcrefs)?,
            size: fits(size)?,
        })
    }

    /// The shape this layout was computed for.
    pub fn shape(&self) -> VmShape {
        self.shape
    }

    /// Offset of the import record of imported function `i`.
    pub fn imported_func(&self, i: u32) -> u32 {
        self.imported_funcs + i * FUNC_IMPORT_SIZE
    }

    /// Offset of the pointer to imported global `i`.
    pub fn imported_global_ptr(&self, i: u32) -> u32 {
        self.imported_globals + i * 8
    }

    /// Offset of the pointer to the definition of table `i` (imported or defined).
    pub fn table_ptr(&self, i: u32) -> u32 {
        self.tables + i * 8
    }

    /// Offset of the storage of defined global `i`.
    pub fn defined_global(&self, i: u32) -> u32 {
        self.defined_globals + i * GLOBAL_SIZE
    }

    /// Offset of the funcref record of function `i` (imported or defined).
    pub fn funcref(&self, i: u32) -> u32 {
        self.funcrefs + i * FUNCREF_SIZE
    }

    /// Total size of the vmctx in bytes (a multiple of 16).
    pub fn size(&self) -> u32 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_packed_and_aligned() {
        let shape = VmShape {
            imported_funcs: 3,
            funcs: 5,
            imported_globals: 1,
            defined_globals: 2,
            tables: 2,
        };
        let o = VmOffsets::new(shape).unwrap();
        assert_eq!(o.imported_func(0), VmOffsets::HEADER_SIZE);
        assert_eq!(o.imported_global_ptr(0), 80 + 48);
        assert_eq!(o.table_ptr(0), 80 + 48 + 8);
        assert_eq!(o.defined_global(0), 80 + 48 + 8 + 16 + 8);
        assert_eq!(o.defined_global(0) % 16, 0);
        assert_eq!(o.funcref(0) % 16, 0);
        assert_eq!(o.size(), o.funcref(5));
        assert_eq!(o.size() % 16, 0);
    }

    #[test]
    fn huge_counts_are_refused() {
        let shape = VmShape {
            funcs: u32::MAX,
            ..VmShape::default()
        };
        assert!(VmOffsets::new(shape).is_none());
    }
}
