//! Builtins: runtime functions that compiled code calls through the table the vmctx points to.
//!
//! Every builtin uses the System V calling convention and takes the caller's vmctx first. Those
//! that can fail return a nonzero `u32` on failure and the compiled code turns that into the trap
//! named by [`Builtin::trap_on_nonzero`]; `Raise` never returns.
//!
//! The list exists once, in [`foreach_builtin!`](crate::foreach_builtin): this crate generates the [`Builtin`] enum
//! (what the compiler calls) from it, and the runtime generates its table of function pointers
//! (what compiled code finds) from it, with each entry's Rust signature derived from the types
//! listed here. A swapped entry or a changed signature on one side does not compile.

use crate::TrapCode;

/// A parameter or result type of a builtin, as the compiler must declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinType {
    /// 32-bit integer (`u32` in the runtime).
    I32,
    /// 64-bit integer or pointer (`u64` in the runtime).
    I64,
}

/// Calls `$mac!` with the list of builtins, in table order. Each entry reads
///
/// ```text
/// /// doc
/// snake_name = CamelName(PARAM, ...) -> [RESULT] trap Option<TrapCode>;
/// ```
///
/// where the parameters follow the leading vmctx and the types are [`BuiltinType`] names.
#[macro_export]
macro_rules! foreach_builtin {
    ($mac:ident) => {
        $mac! {
            /// `memory.grow`: (delta pages) -> old size in pages or `u32::MAX`.
            memory_grow = MemoryGrow(I32) -> [I32] trap None;
            /// `memory.fill`: (dst, byte, len).
            memory_fill = MemoryFill(I32, I32, I32) -> [I32] trap Some($crate::TrapCode::MemoryOutOfBounds);
            /// `memory.copy`: (dst, src, len).
            memory_copy = MemoryCopy(I32, I32, I32) -> [I32] trap Some($crate::TrapCode::MemoryOutOfBounds);
            /// `memory.init`: (data segment, dst, src, len).
            memory_init = MemoryInit(I32, I32, I32, I32) -> [I32] trap Some($crate::TrapCode::MemoryOutOfBounds);
            /// `data.drop`: (data segment).
            data_drop = DataDrop(I32) -> [] trap None;
            /// `table.grow`: (table, delta, init ref) -> old size or `u32::MAX`.
            table_grow = TableGrow(I32, I32, I64) -> [I32] trap None;
            /// `table.fill`: (table, dst, ref, len).
            table_fill = TableFill(I32, I32, I64, I32) -> [I32] trap Some($crate::TrapCode::TableOutOfBounds);
            /// `table.copy`: (dst table, src table, dst, src, len).
            table_copy = TableCopy(I32, I32, I32, I32, I32) -> [I32] trap Some($crate::TrapCode::TableOutOfBounds);
            /// `table.init`: (table, elem segment, dst, src, len).
            table_init = TableInit(I32, I32, I32, I32, I32) -> [I32] trap Some($crate::TrapCode::TableOutOfBounds);
            /// `elem.drop`: (elem segment).
            elem_drop = ElemDrop(I32) -> [] trap None;
            /// Ends guest execution with the trap the host recorded for this thread. Never returns.
            raise = Raise() -> [] trap None;
        }
    };
}

macro_rules! define_builtin_enum {
    ($( $(#[$doc:meta])* $snake:ident = $name:ident ( $($param:ident),* ) -> [ $($result:ident),* ] trap $trap:expr ;)*) => {
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

            /// The builtin's name in the runtime's table (the snake-case field name).
            pub fn name(self) -> &'static str {
                match self { $( Builtin::$name => stringify!($snake), )* }
            }
        }
    };
}

foreach_builtin!(define_builtin_enum);

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
        assert_eq!(Builtin::TableGrow.name(), "table_grow");
        assert_eq!(
            Builtin::MemoryFill.trap_on_nonzero(),
            Some(TrapCode::MemoryOutOfBounds)
        );
    }
}
