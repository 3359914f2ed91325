//! The builtins compiled code calls back into (memory and table operations that need the
//! runtime), and their table, generated from the one list in [`fnvm_abi::foreach_builtin!`]:
//! the table is a `#[repr(C)]` struct with a field per builtin, in the list's order, whose type
//! is derived from the listed signature. The compiler finds entry `i` at byte `8 * i`
//! ([`fnvm_abi::Builtin::table_offset`]); a missing, swapped or mistyped entry does not
//! compile.

use crate::instance::{instance_of, memory_of, table_of};
use crate::traphandlers;

/// The Rust type of a builtin parameter or result type.
macro_rules! builtin_rust_type {
    (I32) => {
        u32
    };
    (I64) => {
        u64
    };
}

macro_rules! define_builtin_table {
    ($( $(#[$doc:meta])* $snake:ident = $name:ident ( $($param:ident),* ) -> [ $($result:ident),* ] trap $trap:expr ;)*) => {
        /// Every builtin, in table order.
        #[repr(C)]
        pub(crate) struct BuiltinTable {
            $( $(#[$doc])* $snake: unsafe extern "C" fn(*mut u8 $(, builtin_rust_type!($param))*) $(-> builtin_rust_type!($result))*, )*
        }

        static BUILTINS: BuiltinTable = BuiltinTable {
            $( $snake: $snake, )*
        };

        #[cfg(test)]
        fn field_offsets() -> Vec<(&'static str, usize)> {
            vec![ $( (stringify!($snake), std::mem::offset_of!(BuiltinTable, $snake)), )* ]
        }
    };
}

fnvm_abi::foreach_builtin!(define_builtin_table);

/// What a vmctx's `BUILTINS` field points to.
pub(crate) fn table() -> *const BuiltinTable {
    &BUILTINS
}

/// `Raise`: implemented next to the trap machinery.
use traphandlers::fnvm_raise as raise;

/// # Safety (every builtin below)
/// Called by compiled code with its own, live vmctx, while guest code is suspended in the call.
unsafe extern "C" fn memory_grow(vmctx: *mut u8, delta: u32) -> u32 {
    // SAFETY: see the section comment.
    let inst = unsafe { instance_of(vmctx) };
    // SAFETY: the guest is suspended; nothing else uses its memory.
    let Some(mem) = (unsafe { memory_of(inst) }) else {
        return u32::MAX;
    };
    mem.grow(delta as u64).map_or(u32::MAX, |old| old as u32)
}

unsafe extern "C" fn memory_fill(vmctx: *mut u8, dst: u32, val: u32, len: u32) -> u32 {
    // SAFETY: see `memory_grow`.
    let Some(mem) = (unsafe { memory_of(instance_of(vmctx)) }) else {
        return 1;
    };
    if !mem.check_range(dst as u64, len as u64) {
        return 1;
    }
    mem.data_mut()[dst as usize..(dst as usize + len as usize)].fill(val as u8);
    0
}

unsafe extern "C" fn memory_copy(vmctx: *mut u8, dst: u32, src: u32, len: u32) -> u32 {
    // SAFETY: see `memory_grow`.
    let Some(mem) = (unsafe { memory_of(instance_of(vmctx)) }) else {
        return 1;
    };
    if !mem.check_range(dst as u64, len as u64) || !mem.check_range(src as u64, len as u64) {
        return 1;
    }
    mem.data_mut()
        .copy_within(src as usize..src as usize + len as usize, dst as usize);
    0
}

unsafe extern "C" fn memory_init(vmctx: *mut u8, seg: u32, dst: u32, src: u32, len: u32) -> u32 {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    let module = inst.module.clone();
    let data: &[u8] = match module.info().datas.get(seg as usize) {
        Some(d) if !inst.data_dropped.get(seg as usize).copied().unwrap_or(true) => &d.data,
        _ => &[],
    };
    // SAFETY: see `memory_grow`.
    let Some(mem) = (unsafe { memory_of(inst) }) else {
        return 1;
    };
    init_from(mem.data_mut(), dst, data, src, len)
}

/// The bounds check and copy shared by `memory.init` and `table.init`: copies
/// `src[src_off..src_off + len]` to `dst[dst_off..]`, or returns 1 (trap) if either range is
/// out of bounds, writing nothing.
pub(crate) fn init_from<T: Copy>(
    dst: &mut [T],
    dst_off: u32,
    src: &[T],
    src_off: u32,
    len: u32,
) -> u32 {
    let in_bounds = |off: u32, total: usize| (off as u64 + len as u64) <= total as u64;
    if !in_bounds(dst_off, dst.len()) || !in_bounds(src_off, src.len()) {
        return 1;
    }
    let (d, s, n) = (dst_off as usize, src_off as usize, len as usize);
    dst[d..d + n].copy_from_slice(&src[s..s + n]);
    0
}

unsafe extern "C" fn data_drop(vmctx: *mut u8, seg: u32) {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    if let Some(d) = inst.data_dropped.get_mut(seg as usize) {
        *d = true;
    }
}

unsafe extern "C" fn table_grow(vmctx: *mut u8, t: u32, delta: u32, init: u64) -> u32 {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    let Some(table) = table_of(inst, t) else {
        return u32::MAX;
    };
    // SAFETY: see `table_of`; no other reference to the table is live during the builtin.
    let table = unsafe { &mut *table };
    table
        .grow(delta as u64, init)
        .map_or(u32::MAX, |old| old as u32)
}

unsafe extern "C" fn table_fill(vmctx: *mut u8, t: u32, dst: u32, val: u64, len: u32) -> u32 {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    let Some(table) = table_of(inst, t) else {
        return 1;
    };
    // SAFETY: see `table_of`; no other reference to the table is live during the builtin.
    let table = unsafe { &mut *table };
    if !table.check_range(dst as u64, len as u64) {
        return 1;
    }
    table.elems_mut()[dst as usize..dst as usize + len as usize].fill(val);
    0
}

unsafe extern "C" fn table_copy(
    vmctx: *mut u8,
    dt: u32,
    st: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    let (Some(src_p), Some(dst_p)) = (table_of(inst, st), table_of(inst, dt)) else {
        return 1;
    };
    let (s, d, n) = (src as usize, dst as usize, len as usize);
    if std::ptr::eq(src_p, dst_p) {
        // SAFETY: see `table_of`; one table, one reference.
        let t = unsafe { &mut *dst_p };
        if !t.check_range(src as u64, len as u64) || !t.check_range(dst as u64, len as u64) {
            return 1;
        }
        t.elems_mut().copy_within(s..s + n, d);
    } else {
        // SAFETY: see `table_of`; two distinct tables, the source only read.
        let (src_t, dst_t) = unsafe { (&*src_p, &mut *dst_p) };
        if !src_t.check_range(src as u64, len as u64) || !dst_t.check_range(dst as u64, len as u64)
        {
            return 1;
        }
        dst_t.elems_mut()[d..d + n].copy_from_slice(&src_t.elems()[s..s + n]);
    }
    0
}

unsafe extern "C" fn table_init(
    vmctx: *mut u8,
    t: u32,
    seg: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    let Some(table) = table_of(inst, t) else {
        return 1;
    };
    let items: &[u64] = match inst.elems.get(seg as usize) {
        Some(Some(items)) => items,
        _ => &[],
    };
    // SAFETY: see `table_of`; the table is owned by the store or slot, not by the instance
    // whose segment we read, so the two borrows do not overlap.
    let table = unsafe { &mut *table };
    init_from(table.elems_mut(), dst, items, src, len)
}

unsafe extern "C" fn elem_drop(vmctx: *mut u8, seg: u32) {
    // SAFETY: see `memory_grow`.
    let inst = unsafe { instance_of(vmctx) };
    if let Some(e) = inst.elems.get_mut(seg as usize) {
        *e = None;
    }
}

#[cfg(test)]
mod tests {
    use fnvm_abi::Builtin;

    #[test]
    fn table_fields_sit_where_the_compiler_looks() {
        let fields = super::field_offsets();
        assert_eq!(fields.len(), Builtin::ALL.len());
        for (b, (name, offset)) in Builtin::ALL.iter().zip(&fields) {
            assert_eq!(b.name(), *name);
            assert_eq!(b.table_offset() as usize, *offset, "{name}");
        }
        assert_eq!(
            std::mem::size_of::<super::BuiltinTable>(),
            Builtin::ALL.len() * 8
        );
    }
}
