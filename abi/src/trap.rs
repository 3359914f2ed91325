//! Trap codes: why guest execution stopped abnormally.
//!
//! The compiler records, for every instruction that may trap, one of these codes in the artifact's
//! trap table; the runtime maps a faulting pc back to the code. The numeric values are part of the
//! artifact format.

use std::fmt;

/// Why a guest stopped abnormally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TrapCode {
    /// The guest stack (or the host stack given to the guest) is exhausted.
    StackOverflow = 1,
    /// A load or store outside linear memory, or a bulk memory operation out of bounds.
    MemoryOutOfBounds = 2,
    /// table.get/set/fill/copy/init outside a table.
    TableOutOfBounds = 3,
    /// call_indirect with an index beyond the table.
    IndirectCallOutOfBounds = 4,
    /// call_indirect through a null entry.
    IndirectCallToNull = 5,
    /// call_indirect to a function of another type.
    BadSignature = 6,
    /// Signed division overflow (`INT_MIN / -1`).
    IntegerOverflow = 7,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero = 8,
    /// A float-to-int conversion of NaN or of a value out of range.
    BadConversionToInteger = 9,
    /// The `unreachable` instruction.
    UnreachableCodeReached = 10,
    /// The invocation's deadline passed.
    Interrupt = 11,
    /// A host function reported an error or asked the guest to stop.
    HostTrap = 12,
}

impl TrapCode {
    /// Every code, for table-driven tests.
    pub const ALL: [TrapCode; 12] = [
        TrapCode::StackOverflow,
        TrapCode::MemoryOutOfBounds,
        TrapCode::TableOutOfBounds,
        TrapCode::IndirectCallOutOfBounds,
        TrapCode::IndirectCallToNull,
        TrapCode::BadSignature,
        TrapCode::IntegerOverflow,
        TrapCode::IntegerDivisionByZero,
        TrapCode::BadConversionToInteger,
        TrapCode::UnreachableCodeReached,
        TrapCode::Interrupt,
        TrapCode::HostTrap,
    ];

    /// Decodes a code stored in an artifact.
    pub fn from_u8(byte: u8) -> Option<TrapCode> {
        TrapCode::ALL.iter().copied().find(|c| *c as u8 == byte)
    }

    /// The message the WebAssembly specification uses for this trap.
    pub fn message(self) -> &'static str {
        match self {
            TrapCode::StackOverflow => "call stack exhausted",
            TrapCode::MemoryOutOfBounds => "out of bounds memory access",
            TrapCode::TableOutOfBounds => "out of bounds table access",
            TrapCode::IndirectCallOutOfBounds => "undefined element",
            TrapCode::IndirectCallToNull => "uninitialized element",
            TrapCode::BadSignature => "indirect call type mismatch",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::IntegerDivisionByZero => "integer divide by zero",
            TrapCode::BadConversionToInteger => "invalid conversion to integer",
            TrapCode::UnreachableCodeReached => "unreachable",
            TrapCode::Interrupt => "deadline exceeded",
            TrapCode::HostTrap => "host function trapped",
        }
    }
}

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for code in TrapCode::ALL {
            assert_eq!(TrapCode::from_u8(code as u8), Some(code));
        }
        assert_eq!(TrapCode::from_u8(0), None);
        assert_eq!(TrapCode::from_u8(200), None);
        let mut msgs: Vec<_> = TrapCode::ALL.iter().map(|c| c.message()).collect();
        msgs.sort();
        msgs.dedup();
        assert_eq!(msgs.len(), TrapCode::ALL.len());
    }
}
