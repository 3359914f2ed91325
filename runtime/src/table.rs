//! Tables: growable arrays of references (funcref pointers or externref handles, 0 is null).

use crate::vm::VmTableDefinition;
use crate::ResourceError;
use fnvm_abi::TableType;

/// One table.
#[derive(Debug)]
pub(crate) struct TableData {
    elems: Vec<u64>,
    /// What compiled code reads: base and current length in elements, and the modified flag
    /// (set by compiled code's `table.set` and by every mutation here).
    pub(crate) def: VmTableDefinition,
    pub(crate) ty: TableType,
    max: u64,
}

impl TableData {
    /// Creates a table of `ty` filled with `init`, with at most `host_cap` elements.
    pub(crate) fn new(
        ty: TableType,
        init: u64,
        host_cap: u32,
    ) -> Result<Box<TableData>, ResourceError> {
        let max = ty.limits.max.unwrap_or(u32::MAX).min(host_cap) as u64;
        if ty.limits.min as u64 > max {
            return Err(ResourceError::TableTooLarge {
                needed: ty.limits.min.into(),
                limit: max,
            });
        }
        let mut elems = Vec::new();
        elems
            .try_reserve_exact(ty.limits.min as usize)
            .map_err(|_| ResourceError::TableAlloc(ty.limits.min.into()))?;
        elems.resize(ty.limits.min as usize, init);
        let mut t = Box::new(TableData {
            def: VmTableDefinition {
                base: std::ptr::null_mut(),
                length: 0,
                modified: 1,
            },
            elems,
            ty,
            max,
        });
        t.sync();
        Ok(t)
    }

    fn sync(&mut self) {
        self.def.base = self.elems.as_mut_ptr().cast();
        self.def.length = self.elems.len() as u64;
    }

    /// Refills the table for a new instance: `len` elements produced by `init`, at most `cap`
    /// elements later, and clears the modified flag. Keeps the allocation, so an instance slot
    /// reusing its table for the same module does not allocate.
    pub(crate) fn refill(&mut self, cap: u32, len: usize, init: impl Iterator<Item = u64>) {
        self.max = self.ty.limits.max.unwrap_or(u32::MAX).min(cap) as u64;
        self.elems.clear();
        self.elems.extend(init.take(len));
        self.elems.resize(len, 0);
        self.sync();
        self.def.modified = 0;
    }

    /// Whether the table was written since it was created or last refilled.
    pub(crate) fn modified(&self) -> bool {
        self.def.modified != 0
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> u64 {
        self.elems.len() as u64
    }

    /// Grows by `delta` elements set to `init`; returns the old size or `None`.
    pub(crate) fn grow(&mut self, delta: u64, init: u64) -> Option<u64> {
        let old = self.len();
        let new = old.checked_add(delta)?;
        if new > self.max {
            return None;
        }
        self.elems.try_reserve(delta as usize).ok()?;
        self.elems.resize(new as usize, init);
        self.sync();
        self.def.modified = 1;
        Some(old)
    }

    /// The elements.
    pub(crate) fn elems(&self) -> &[u64] {
        &self.elems
    }

    /// The elements, mutably (which marks the table modified).
    pub(crate) fn elems_mut(&mut self) -> &mut [u64] {
        self.def.modified = 1;
        &mut self.elems
    }

    /// Checks that `[offset, offset + len)` lies in the table.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len())
    }
}
