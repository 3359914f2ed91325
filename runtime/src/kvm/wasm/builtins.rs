//! Builtins in the VM: compiled code calls them through the vmctx's builtin table as in process,
//! but the table's entries are guest stubs that exit (see [`super::layout`]); the host runs the
//! builtin here on the System V arguments in the exit's registers (`rdi` is the caller's vmctx,
//! then `rsi`, `rdx`, `rcx`, `r8`, `r9`) and answers in `rax`. They do what the in-process
//! builtins do, with the same results and trap conditions, against the VM's memory and tables:
//! the linear memory through its [`MemoryData`](crate::memory::MemoryData), table elements in
//! the region through bounds-checked copies. Arguments are guest values: every index and length
//! is checked before use.

use super::core::VmCore;
use super::WasmVmError;
use crate::builtins::init_from;
use fnvm_abi::vmoffsets::def;
use fnvm_abi::{Builtin, VmOffsets};
use kvm_bindings::kvm_regs;

/// What a builtin answers when it fails (`memory.grow`, `table.grow`).
const GROW_FAILED: u64 = u32::MAX as u64;

impl VmCore {
    /// Runs builtin `b`; `Some(rax)` to resume with, `None` for `Raise`.
    pub(super) fn builtin(
        &mut self,
        b: Builtin,
        regs: &kvm_regs,
    ) -> Result<Option<u64>, WasmVmError> {
        let a32 = |r: u64| r as u32;
        let (a1, a2, a3, a4, a5) = (regs.rsi, regs.rdx, regs.rcx, regs.r8, regs.r9);
        let r = match b {
            Builtin::MemoryGrow => self.memory_grow(a32(a1))?,
            Builtin::MemoryFill => self.memory_fill(a32(a1), a32(a2), a32(a3)),
            Builtin::MemoryCopy => self.memory_copy(a32(a1), a32(a2), a32(a3)),
            Builtin::MemoryInit => self.memory_init(a32(a1), a32(a2), a32(a3), a32(a4)),
            Builtin::DataDrop => {
                if let Some(d) = self.data_dropped.get_mut(a32(a1) as usize) {
                    *d = true;
                }
                0
            }
            Builtin::TableGrow => self.table_grow(a32(a1), a32(a2), a3)?,
            Builtin::TableFill => self.table_fill(a32(a1), a32(a2), a3, a32(a4))?,
            Builtin::TableCopy => self.table_copy(a32(a1), a32(a2), a32(a3), a32(a4), a32(a5))?,
            Builtin::TableInit => self.table_init(a32(a1), a32(a2), a32(a3), a32(a4), a32(a5))?,
            Builtin::ElemDrop => {
                if let Some(e) = self.elems.get_mut(a32(a1) as usize) {
                    *e = None;
                }
                0
            }
            Builtin::Raise => return Ok(None),
        };
        Ok(Some(r))
    }

    /// `memory.grow`: grows the host memory (`mprotect`), maps the new pages in the guest and
    /// updates the length compiled code reads.
    fn memory_grow(&mut self, delta: u32) -> Result<u64, WasmVmError> {
        let Some(mem) = self.memory.as_mut() else {
            return Ok(GROW_FAILED);
        };
        let old_len = mem.len();
        let Some(old_pages) = mem.data().grow(u64::from(delta)) else {
            return Ok(GROW_FAILED);
        };
        let new_len = mem.len();
        if new_len > old_len {
            self.map_memory(old_len..new_len)?;
        }
        let mem_def = self.layout.vmctx + u64::from(VmOffsets::DEFINED_MEMORY);
        self.put(mem_def + u64::from(def::LENGTH), new_len)?;
        Ok(old_pages)
    }

    /// The accessible bytes of the memory (empty without one).
    pub(super) fn memory_bytes(&mut self) -> &mut [u8] {
        match self.memory.as_mut() {
            Some(m) => m.data().data_mut(),
            None => &mut [],
        }
    }

    fn memory_fill(&mut self, dst: u32, val: u32, len: u32) -> u64 {
        let mem = self.memory_bytes();
        let (d, n) = (dst as usize, len as usize);
        match d.checked_add(n).and_then(|end| mem.get_mut(d..end)) {
            Some(range) => {
                range.fill(val as u8);
                0
            }
            None => 1,
        }
    }

    fn memory_copy(&mut self, dst: u32, src: u32, len: u32) -> u64 {
        let mem = self.memory_bytes();
        let size = mem.len() as u64;
        let fits = |off: u32| u64::from(off) + u64::from(len) <= size;
        if !fits(dst) || !fits(src) {
            return 1;
        }
        let (s, n) = (src as usize, len as usize);
        mem.copy_within(s..s + n, dst as usize);
        0
    }

    fn memory_init(&mut self, seg: u32, dst: u32, src: u32, len: u32) -> u64 {
        let module = self.module.clone();
        let dropped = self.data_dropped.get(seg as usize).copied().unwrap_or(true);
        let data: &[u8] = match module.info().datas.get(seg as usize) {
            Some(d) if !dropped => &d.data,
            _ => &[],
        };
        if self.memory.is_none() {
            return 1;
        }
        u64::from(init_from(self.memory_bytes(), dst, data, src, len))
    }

    /// Table `t`'s state and layout, if it exists.
    fn table(&self, t: u32) -> Option<(u64, u64, u64)> {
        let state = self.tables.get(t as usize)?;
        let tl = self.layout.tables.get(t as usize)?;
        Some((state.len, tl.elems, tl.def))
    }

    /// Writes `items` to elements `[at, at + items.len())` of table `t` (checked by the
    /// caller against its length or maximum) and marks it modified.
    fn table_write(&mut self, t: u32, at: u64, items: &[u64]) -> Result<(), WasmVmError> {
        let Some((_, elems, def_addr)) = self.table(t) else {
            return Err(WasmVmError::BadExit("a table builtin on no table"));
        };
        let bytes: Vec<u8> = items.iter().flat_map(|v| v.to_le_bytes()).collect();
        let base = self.layout.base;
        self.region.write(elems + 8 * at - base, &bytes)?;
        self.region
            .write_u64(def_addr + u64::from(def::TABLE_MODIFIED) - base, 1)?;
        Ok(())
    }

    fn table_read(&self, t: u32, at: u64, n: u64) -> Result<Vec<u64>, WasmVmError> {
        let Some((_, elems, _)) = self.table(t) else {
            return Err(WasmVmError::BadExit("a table builtin on no table"));
        };
        let mut bytes = vec![0u8; (n * 8) as usize];
        self.region
            .read(elems + 8 * at - self.layout.base, &mut bytes)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect())
    }

    /// Sets table `t`'s length (host side and the definition compiled code reads).
    fn set_table_len(&mut self, t: u32, len: u64) -> Result<(), WasmVmError> {
        let Some((_, _, def_addr)) = self.table(t) else {
            return Err(WasmVmError::BadExit("a table builtin on no table"));
        };
        let state = &mut self.tables[t as usize];
        state.len = len;
        state.high_water = state.high_water.max(len);
        self.put(def_addr + u64::from(def::LENGTH), len)
    }

    fn table_grow(&mut self, t: u32, delta: u32, init: u64) -> Result<u64, WasmVmError> {
        let Some(state) = self.tables.get(t as usize) else {
            return Ok(GROW_FAILED);
        };
        let old = state.len;
        let new = old + u64::from(delta);
        if new > state.max {
            return Ok(GROW_FAILED);
        }
        // The new elements hold `init` (a funcref address or null, stored, never followed).
        self.table_write(t, old, &vec![init; delta as usize])?;
        self.set_table_len(t, new)?;
        Ok(old)
    }

    fn table_fill(&mut self, t: u32, dst: u32, val: u64, len: u32) -> Result<u64, WasmVmError> {
        let Some((size, _, _)) = self.table(t) else {
            return Ok(1);
        };
        if u64::from(dst) + u64::from(len) > size {
            return Ok(1);
        }
        self.table_write(t, u64::from(dst), &vec![val; len as usize])?;
        Ok(0)
    }

    fn table_copy(
        &mut self,
        dt: u32,
        st: u32,
        dst: u32,
        src: u32,
        len: u32,
    ) -> Result<u64, WasmVmError> {
        let (Some((dsize, _, _)), Some((ssize, _, _))) = (self.table(dt), self.table(st)) else {
            return Ok(1);
        };
        let n = u64::from(len);
        if u64::from(dst) + n > dsize || u64::from(src) + n > ssize {
            return Ok(1);
        }
        let items = self.table_read(st, u64::from(src), n)?;
        self.table_write(dt, u64::from(dst), &items)?;
        Ok(0)
    }

    fn table_init(
        &mut self,
        t: u32,
        seg: u32,
        dst: u32,
        src: u32,
        len: u32,
    ) -> Result<u64, WasmVmError> {
        let Some((size, _, _)) = self.table(t) else {
            return Ok(1);
        };
        let items: &[u64] = match self.elems.get(seg as usize) {
            Some(Some(items)) => items,
            _ => &[],
        };
        let n = u64::from(len);
        if u64::from(dst) + n > size || u64::from(src) + n > items.len() as u64 {
            return Ok(1);
        }
        let part = items[src as usize..(src as usize + len as usize)].to_vec();
        self.table_write(t, u64::from(dst), &part)?;
        Ok(0)
    }
}
