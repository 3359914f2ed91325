//! Builtins: runtime functions that compiled code calls through the table the vmctx points to.
//!
//! Every builtin uses the System V calling convention and takes the caller's vmctx first. Those
//! that can fail return a nonzero `u32` on failure and the compiled code turns that into the trap
//! named by [`Builtin::trap_on_nonzero`]; `Raise` never returns.

use crate::TrapCode;

/// A parameter or result type of a builtin, as the compiler must declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer or pointer.
    I64,
}

macro_rules! builtins {
    ($( $(#[$doc:meta])* $name:ident ( $($param:ident),* ) -> [ $($result:ident),* ] trap $trap:expr ;)*) => {
        /// One builtin function; the discriminant is its slot in the builtin table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Builtin { $( $(#[$doc])* $name, )* }

        impl Builtin {
            /// Every builtin in table order.
            pub const ALL: &'static [Builtin] = &[ $( Builtin::$name, )* ];

            /// Parameters after the leading vmctx.
            pub fn params(self) -> &'static [BuiltinType] {
                match self { $( Builtin::$name => &[ $( BuiltinType::$param ),* ], )* }
            }

            /// Results.
            pub fn results(self) -> &'static [BuiltinType] {
                match self { $( Builtin::$name => &[ $( BuiltinType::$result ),* ], )* }
            }

            /// The trap compiled code raises when this builtin returns nonzero, if any.
            pub fn trap_on_nonzero(self) -> Option<TrapCode> {
                match self { $( Builtin::$name => $trap, )* }
            }
        }
    };
}

builtins! {
    /// `memory.grow`: (delta pages) -> old size in pages or `u32::MAX`.
    MemoryGrow(I32) -> [I32] trap None;
    /// `memory.fill`: (dst, byte, len).
    MemoryFill(I32, I32, I32) -> [I32] trap Some(TrapCode::MemoryOutOfBounds);
    /// `memory.copy`: (dst, src, len).
    MemoryCopy(I32, I32, I32) -> [I32] trap Some(TrapCode::MemoryOutOfBounds);
    /// `memory.init`: (data segment, dst, src, len).
    MemoryInit(I32, I32, I32, I32) -> [I32] trap Some(TrapCode::MemoryOutOfBounds);
    /// `data.drop`: (data segment).
    DataDrop(I32) -> [] trap None;
    /// `table.grow`: (table, delta, init ref) -> old size or `u32::MAX`.
    TableGrow(I32, I32, I64) -> [I32] trap None;
    /// `table.fill`: (table, dst, ref, len).
    TableFill(I32, I32, I64, I32) -> [I32] trap Some(TrapCode::TableOutOfBounds);
    /// `table.copy`: (dst table, src table, dst, src, len).
    TableCopy(I32, I32, I32, I32, I32) -> [I32] trap Some(TrapCode::TableOutOfBounds);
    /// `table.init`: (table, elem segment, dst, src, len).
    TableInit(I32, I32, I32, I32, I32) -> [I32] trap Some(TrapCode::TableOutOfBounds);
    /// `elem.drop`: (elem segment).
    ElemDrop(I32) -> [] trap None;
    /// Ends guest execution with the trap the host recorded for this thread. Never returns.
    Raise() -> [] trap None;
}

impl Builtin {
    /// Byte offset of this builtin's pointer inside the builtin table.
    pub fn table_offset(self) -> u32 {
        self as u32 * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_discriminants() {
        for (i, b) in Builtin::ALL.iter().enumerate() {
            assert_eq!(*b as usize, i);
            assert_eq!(b.table_offset() as usize, i * 8);
        }
        assert_eq!(Builtin::MemoryInit.params().len(), 4);
        assert_eq!(Builtin::Raise.results().len(), 0);
    }
}
