//! Module metadata: what the runtime needs to know about a compiled module besides its code.
//!
//! The compiler fills a [`ModuleInfo`] from the wasm module and the code it emitted; the artifact
//! stores it encoded with [`crate::codec`]; the runtime decodes it and calls
//! [`ModuleInfo::check`] before trusting any index or offset in it.

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};
use crate::TrapCode;
use std::fmt;

/// A value type. `V128` is not supported yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Function reference.
    FuncRef,
    /// External reference.
    ExternRef,
}

impl ValType {
    /// Whether this is a reference type.
    pub fn is_ref(self) -> bool {
        matches!(self, ValType::FuncRef | ValType::ExternRef)
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
        })
    }
}

/// A function signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct FuncType {
    /// Parameter types.
    pub params: Vec<ValType>,
    /// Result types.
    pub results: Vec<ValType>,
}

impl fmt::Display for FuncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[ValType]| {
            v.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(
            f,
            "(func (param {}) (result {}))",
            join(&self.params),
            join(&self.results)
        )
    }
}

/// Limits of a table or memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Initial size (pages or elements).
    pub min: u32,
    /// Maximum size, if declared.
    pub max: Option<u32>,
}

impl Limits {
    /// Import subtyping: `self` (what is provided) may stand where `want` is declared.
    pub fn matches(&self, want: &Limits) -> bool {
        self.min >= want.min
            && match (self.max, want.max) {
                (_, None) => true,
                (Some(have), Some(want)) => have <= want,
                (None, Some(_)) => false,
            }
    }
}

/// A table type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableType {
    /// Element type (`FuncRef` or `ExternRef`).
    pub elem: ValType,
    /// Size limits in elements.
    pub limits: Limits,
}

/// A 32-bit, unshared linear memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryType {
    /// Size limits in 64 KiB pages.
    pub limits: Limits,
}

/// A global's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalType {
    /// Value type.
    pub ty: ValType,
    /// Whether `global.set` may change it.
    pub mutable: bool,
}

/// A constant expression (global initialisers, segment offsets and items).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstExpr {
    /// `i32.const`.
    I32(i32),
    /// `i64.const`.
    I64(i64),
    /// `f32.const`, as bits.
    F32(u32),
    /// `f64.const`, as bits.
    F64(u64),
    /// `ref.null`.
    RefNull,
    /// `ref.func`.
    RefFunc(u32),
    /// `global.get` of an (imported) global.
    GlobalGet(u32),
}

/// What an import or export refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternKind {
    /// A function.
    Func,
    /// A table.
    Table,
    /// A memory.
    Memory,
    /// A global.
    Global,
}

/// The type an import requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportType {
    /// A function of this module type index.
    Func(u32),
    /// A table.
    Table(TableType),
    /// A memory.
    Memory(MemoryType),
    /// A global.
    Global(GlobalType),
}

/// One import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// Module name.
    pub module: String,
    /// Field name.
    pub name: String,
    /// Required type.
    pub ty: ImportType,
}

/// One export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Export name.
    pub name: String,
    /// Kind of item.
    pub kind: ExternKind,
    /// Index in the module's index space of that kind.
    pub index: u32,
}

/// How an element segment is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemMode {
    /// Copied into `table` at instantiation.
    Active {
        /// Table index.
        table: u32,
        /// Offset expression.
        offset: ConstExpr,
    },
    /// Used by table.init.
    Passive,
    /// Only declares functions for ref.func; dropped at instantiation.
    Declared,
}

/// An element segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElemSegment {
    /// Mode.
    pub mode: ElemMode,
    /// Element type.
    pub elem: ValType,
    /// Items.
    pub items: Vec<ConstExpr>,
}

/// A data segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSegment {
    /// Offset expression when active (memory 0), `None` when passive.
    pub offset: Option<ConstExpr>,
    /// Bytes.
    pub data: Vec<u8>,
}

/// Where a defined function's code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRange {
    /// Offset in the code section.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

impl CodeRange {
    /// Whether `off` lies inside.
    pub fn contains(&self, off: u32) -> bool {
        off >= self.offset && off - self.offset < self.len
    }
}

/// The trampolines compiled for one module type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeTrampolines {
    /// Host to wasm: `extern "C" fn(callee_vmctx, caller_vmctx, wasm_call, values)`.
    pub array_call: CodeRange,
    /// Wasm to host: a wasm-convention function that spills its arguments and calls the host
    /// dispatcher found at offset 0 of the callee "vmctx" (a host function context).
    pub host_call: CodeRange,
}

/// A pc where the code may trap, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapSite {
    /// Offset in the code section.
    pub offset: u32,
    /// Trap code.
    pub code: TrapCode,
}

/// A pc range and the wasm bytecode offset it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrMapEntry {
    /// Start offset in the code section (inclusive).
    pub code_offset: u32,
    /// Offset of the wasm instruction in the module's bytes.
    pub wasm_offset: u32,
}

/// Everything the runtime needs to know about a compiled module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Module name from the name section.
    pub name: Option<String>,
    /// Function types.
    pub types: Vec<FuncType>,
    /// Imports, in order.
    pub imports: Vec<Import>,
    /// Type index of every function, imported first.
    pub funcs: Vec<u32>,
    /// Every table, imported first.
    pub tables: Vec<TableType>,
    /// Every memory, imported first (at most one).
    pub memories: Vec<MemoryType>,
    /// Every global, imported first.
    pub globals: Vec<GlobalType>,
    /// Initialisers of the defined globals.
    pub global_inits: Vec<ConstExpr>,
    /// Exports.
    pub exports: Vec<Export>,
    /// Start function.
    pub start: Option<u32>,
    /// Element segments.
    pub elems: Vec<ElemSegment>,
    /// Data segments.
    pub datas: Vec<DataSegment>,
    /// Names of functions from the name section.
    pub func_names: Vec<(u32, String)>,
    /// Code of every defined function.
    pub code: Vec<CodeRange>,
    /// Trampolines of every type.
    pub trampolines: Vec<TypeTrampolines>,
    /// Trap sites, sorted by offset.
    pub traps: Vec<TrapSite>,
    /// pc to wasm offset map, sorted by code offset.
    pub addr_map: Vec<AddrMapEntry>,
}

/// Why decoded metadata is inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("inconsistent module metadata: {0}")]
pub struct MetadataError(pub String);

impl ModuleInfo {
    /// Number of imported functions.
    pub fn num_imported_funcs(&self) -> u32 {
        self.count_imports(|t| matches!(t, ImportType::Func(_)))
    }
    /// Number of imported tables.
    pub fn num_imported_tables(&self) -> u32 {
        self.count_imports(|t| matches!(t, ImportType::Table(_)))
    }
    /// Number of imported memories.
    pub fn num_imported_memories(&self) -> u32 {
        self.count_imports(|t| matches!(t, ImportType::Memory(_)))
    }
    /// Number of imported globals.
    pub fn num_imported_globals(&self) -> u32 {
        self.count_imports(|t| matches!(t, ImportType::Global(_)))
    }
    fn count_imports(&self, f: impl Fn(&ImportType) -> bool) -> u32 {
        self.imports.iter().filter(|i| f(&i.ty)).count() as u32
    }

    /// The vmctx shape of this module.
    pub fn vm_shape(&self) -> crate::vmoffsets::VmShape {
        let ig = self.num_imported_globals();
        crate::vmoffsets::VmShape {
            imported_funcs: self.num_imported_funcs(),
            funcs: self.funcs.len() as u32,
            imported_globals: ig,
            defined_globals: self.globals.len() as u32 - ig,
            tables: self.tables.len() as u32,
        }
    }

    /// The name of function `index`, if the name section gave one.
    pub fn func_name(&self, index: u32) -> Option<&str> {
        self.func_names
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|i| self.func_names[i].1.as_str())
    }

    /// Checks every index and offset against the others and against `code_len`, so the runtime
    /// can index without further checks.
    pub fn check(&self, code_len: usize) -> Result<(), MetadataError> {
        let err = |s: String| Err(MetadataError(s));
        let ntypes = self.types.len() as u64;
        let nfuncs = self.funcs.len() as u64;
        let nglobals = self.globals.len() as u64;
        if self.memories.len() > 1 {
            return err("more than one memory".into());
        }
        let imported_funcs = self.num_imported_funcs() as usize;
        if imported_funcs > self.funcs.len()
            || self.num_imported_tables() as usize > self.tables.len()
            || self.num_imported_memories() as usize > self.memories.len()
            || self.num_imported_globals() as usize > self.globals.len()
        {
            return err("more imports than items".into());
        }
        if let Some(f) = self.funcs.iter().find(|t| **t as u64 >= ntypes) {
            return err(format!("function type index {f} out of range"));
        }
        let (mut fi, mut ti, mut mi, mut gi) = (0usize, 0usize, 0usize, 0usize);
        for imp in &self.imports {
            let ok = match imp.ty {
                ImportType::Func(t) => {
                    fi += 1;
                    self.funcs.get(fi - 1) == Some(&t)
                }
                ImportType::Table(t) => {
                    ti += 1;
                    self.tables.get(ti - 1) == Some(&t)
                }
                ImportType::Memory(m) => {
                    mi += 1;
                    self.memories.get(mi - 1) == Some(&m)
                }
                ImportType::Global(g) => {
                    gi += 1;
                    self.globals.get(gi - 1) == Some(&g)
                }
            };
            if !ok {
                return err(format!(
                    "import {}::{} disagrees with its item",
                    imp.module, imp.name
                ));
            }
        }
        for t in &self.tables {
            if !t.elem.is_ref() {
                return err("table of a non-reference type".into());
            }
        }
        for m in &self.memories {
            if m.limits.min as u64 > crate::WASM_MAX_PAGES {
                return err("memory minimum beyond 4 GiB".into());
            }
        }
        if self.global_inits.len() != self.globals.len() - gi {
            return err("global initialiser count".into());
        }
        let check_expr = |e: &ConstExpr| -> bool {
            match e {
                ConstExpr::RefFunc(f) => (*f as u64) < nfuncs,
                ConstExpr::GlobalGet(g) => (*g as u64) < nglobals,
                _ => true,
            }
        };
        if !self.global_inits.iter().all(check_expr) {
            return err("global initialiser index".into());
        }
        for e in &self.exports {
            let limit = match e.kind {
                ExternKind::Func => nfuncs,
                ExternKind::Table => self.tables.len() as u64,
                ExternKind::Memory => self.memories.len() as u64,
                ExternKind::Global => nglobals,
            };
            if e.index as u64 >= limit {
                return err(format!("export {} index out of range", e.name));
            }
        }
        if let Some(s) = self.start {
            if s as u64 >= nfuncs {
                return err("start function out of range".into());
            }
        }
        for seg in &self.elems {
            if let ElemMode::Active { table, offset } = seg.mode {
                if table as usize >= self.tables.len() || !check_expr(&offset) {
                    return err("element segment table or offset".into());
                }
            }
            if !seg.items.iter().all(check_expr) {
                return err("element segment item".into());
            }
        }
        for seg in &self.datas {
            if let Some(off) = &seg.offset {
                if self.memories.is_empty() || !check_expr(off) {
                    return err("active data segment without memory".into());
                }
            }
        }
        if self.code.len() != self.funcs.len() - imported_funcs {
            return err("code range count".into());
        }
        let in_code = |r: &CodeRange| (r.offset as u64 + r.len as u64) <= code_len as u64;
        if !self.code.iter().all(in_code) {
            return err("function code outside the code section".into());
        }
        if self.trampolines.len() != self.types.len()
            || !self
                .trampolines
                .iter()
                .all(|t| in_code(&t.array_call) && in_code(&t.host_call))
        {
            return err("trampolines".into());
        }
        if !self.traps.windows(2).all(|w| w[0].offset <= w[1].offset)
            || self
                .traps
                .last()
                .is_some_and(|t| t.offset as usize >= code_len)
        {
            return err("trap table not sorted or outside code".into());
        }
        if !self
            .addr_map
            .windows(2)
            .all(|w| w[0].code_offset <= w[1].code_offset)
        {
            return err("address map not sorted".into());
        }
        if !self.func_names.windows(2).all(|w| w[0].0 < w[1].0) {
            return err("function names not sorted".into());
        }
        Ok(())
    }

    /// The trap code of the instruction at code offset `off`, if it is a trap site.
    pub fn trap_at(&self, off: u32) -> Option<TrapCode> {
        self.traps
            .binary_search_by_key(&off, |t| t.offset)
            .ok()
            .map(|i| self.traps[i].code)
    }

    /// The function index (in the module's function index space) whose code holds `off`.
    pub fn func_at(&self, off: u32) -> Option<u32> {
        let i = self.code.partition_point(|r| r.offset <= off);
        let r = self.code.get(i.checked_sub(1)?)?;
        r.contains(off)
            .then(|| (i - 1) as u32 + self.num_imported_funcs())
    }

    /// The wasm bytecode offset of the instruction at code offset `off`, if known.
    pub fn wasm_offset_at(&self, off: u32) -> Option<u32> {
        let i = self.addr_map.partition_point(|e| e.code_offset <= off);
        let e = self.addr_map.get(i.checked_sub(1)?)?;
        (e.wasm_offset != u32::MAX).then_some(e.wasm_offset)
    }
}

// ---- encoding -------------------------------------------------------------------------------

impl Encode for ValType {
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
}

impl Decode for ValType {
    const MIN_SIZE: usize = 1;
    const WHAT: &'static str = "value type";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8(Self::WHAT)? {
            0 => ValType::I32,
            1 => ValType::I64,
            2 => ValType::F32,
            3 => ValType::F64,
            4 => ValType::FuncRef,
            5 => ValType::ExternRef,
            _ => return Err(r.invalid(Self::WHAT)),
        })
    }
}

impl Encode for FuncType {
    fn encode(&self, w: &mut Writer) {
        w.seq(&self.params);
        w.seq(&self.results);
    }
}

impl Decode for FuncType {
    const MIN_SIZE: usize = 8;
    const WHAT: &'static str = "function type";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(FuncType {
            params: r.seq()?,
            results: r.seq()?,
        })
    }
}

impl Encode for Limits {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.min);
        w.opt(&self.max);
    }
}

impl Decode for Limits {
    const MIN_SIZE: usize = 5;
    const WHAT: &'static str = "limits";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Limits {
            min: r.u32(Self::WHAT)?,
            max: r.opt()?,
        })
    }
}

impl Encode for TableType {
    fn encode(&self, w: &mut Writer) {
        self.elem.encode(w);
        self.limits.encode(w);
    }
}

impl Decode for TableType {
    const MIN_SIZE: usize = 6;
    const WHAT: &'static str = "table type";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(TableType {
            elem: ValType::decode(r)?,
            limits: Limits::decode(r)?,
        })
    }
}

impl Encode for MemoryType {
    fn encode(&self, w: &mut Writer) {
        self.limits.encode(w);
    }
}

impl Decode for MemoryType {
    const MIN_SIZE: usize = 5;
    const WHAT: &'static str = "memory type";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(MemoryType {
            limits: Limits::decode(r)?,
        })
    }
}

impl Encode for GlobalType {
    fn encode(&self, w: &mut Writer) {
        self.ty.encode(w);
        w.u8(self.mutable as u8);
    }
}

impl Decode for GlobalType {
    const MIN_SIZE: usize = 2;
    const WHAT: &'static str = "global type";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let ty = ValType::decode(r)?;
        let mutable = match r.u8(Self::WHAT)? {
            0 => false,
            1 => true,
            _ => return Err(r.invalid(Self::WHAT)),
        };
        Ok(GlobalType { ty, mutable })
    }
}

impl Encode for ConstExpr {
    fn encode(&self, w: &mut Writer) {
        match *self {
            ConstExpr::I32(v) => {
                w.u8(0);
                w.u32(v as u32)
            }
            ConstExpr::I64(v) => {
                w.u8(1);
                w.u64(v as u64)
            }
            ConstExpr::F32(v) => {
                w.u8(2);
                w.u32(v)
            }
            ConstExpr::F64(v) => {
                w.u8(3);
                w.u64(v)
            }
            ConstExpr::RefNull => w.u8(4),
            ConstExpr::RefFunc(f) => {
                w.u8(5);
                w.u32(f)
            }
            ConstExpr::GlobalGet(g) => {
                w.u8(6);
                w.u32(g)
            }
        }
    }
}

impl Decode for ConstExpr {
    const MIN_SIZE: usize = 1;
    const WHAT: &'static str = "constant expression";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let w = Self::WHAT;
        Ok(match r.u8(w)? {
            0 => ConstExpr::I32(r.u32(w)? as i32),
            1 => ConstExpr::I64(r.u64(w)? as i64),
            2 => ConstExpr::F32(r.u32(w)?),
            3 => ConstExpr::F64(r.u64(w)?),
            4 => ConstExpr::RefNull,
            5 => ConstExpr::RefFunc(r.u32(w)?),
            6 => ConstExpr::GlobalGet(r.u32(w)?),
            _ => return Err(r.invalid(w)),
        })
    }
}

impl Encode for ExternKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
}

impl Decode for ExternKind {
    const MIN_SIZE: usize = 1;
    const WHAT: &'static str = "extern kind";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8(Self::WHAT)? {
            0 => ExternKind::Func,
            1 => ExternKind::Table,
            2 => ExternKind::Memory,
            3 => ExternKind::Global,
            _ => return Err(r.invalid(Self::WHAT)),
        })
    }
}

impl Encode for Import {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.module);
        w.str(&self.name);
        match &self.ty {
            ImportType::Func(t) => {
                w.u8(0);
                w.u32(*t)
            }
            ImportType::Table(t) => {
                w.u8(1);
                t.encode(w)
            }
            ImportType::Memory(m) => {
                w.u8(2);
                m.encode(w)
            }
            ImportType::Global(g) => {
                w.u8(3);
                g.encode(w)
            }
        }
    }
}

impl Decode for Import {
    const MIN_SIZE: usize = 10;
    const WHAT: &'static str = "import";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let module = r.str(Self::WHAT)?;
        let name = r.str(Self::WHAT)?;
        let ty = match r.u8(Self::WHAT)? {
            0 => ImportType::Func(r.u32(Self::WHAT)?),
            1 => ImportType::Table(TableType::decode(r)?),
            2 => ImportType::Memory(MemoryType::decode(r)?),
            3 => ImportType::Global(GlobalType::decode(r)?),
            _ => return Err(r.invalid(Self::WHAT)),
        };
        Ok(Import { module, name, ty })
    }
}

impl Encode for Export {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.name);
        self.kind.encode(w);
        w.u32(self.index);
    }
}

impl Decode for Export {
    const MIN_SIZE: usize = 9;
    const WHAT: &'static str = "export";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Export {
            name: r.str(Self::WHAT)?,
            kind: ExternKind::decode(r)?,
            index: r.u32(Self::WHAT)?,
        })
    }
}

impl Encode for ElemSegment {
    fn encode(&self, w: &mut Writer) {
        match self.mode {
            ElemMode::Active { table, offset } => {
                w.u8(0);
                w.u32(table);
                offset.encode(w);
            }
            ElemMode::Passive => w.u8(1),
            ElemMode::Declared => w.u8(2),
        }
        self.elem.encode(w);
        w.seq(&self.items);
    }
}

impl Decode for ElemSegment {
    const MIN_SIZE: usize = 6;
    const WHAT: &'static str = "element segment";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let mode = match r.u8(Self::WHAT)? {
            0 => ElemMode::Active {
                table: r.u32(Self::WHAT)?,
                offset: ConstExpr::decode(r)?,
            },
            1 => ElemMode::Passive,
            2 => ElemMode::Declared,
            _ => return Err(r.invalid(Self::WHAT)),
        };
        Ok(ElemSegment {
            mode,
            elem: ValType::decode(r)?,
            items: r.seq()?,
        })
    }
}

impl Encode for DataSegment {
    fn encode(&self, w: &mut Writer) {
        w.opt(&self.offset);
        w.bytes(&self.data);
    }
}

impl Decode for DataSegment {
    const MIN_SIZE: usize = 5;
    const WHAT: &'static str = "data segment";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(DataSegment {
            offset: r.opt()?,
            data: r.bytes(Self::WHAT)?.to_vec(),
        })
    }
}

impl Encode for CodeRange {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.offset);
        w.u32(self.len);
    }
}

impl Decode for CodeRange {
    const MIN_SIZE: usize = 8;
    const WHAT: &'static str = "code range";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(CodeRange {
            offset: r.u32(Self::WHAT)?,
            len: r.u32(Self::WHAT)?,
        })
    }
}

impl Encode for TypeTrampolines {
    fn encode(&self, w: &mut Writer) {
        self.array_call.encode(w);
        self.host_call.encode(w);
    }
}

impl Decode for TypeTrampolines {
    const MIN_SIZE: usize = 16;
    const WHAT: &'static str = "trampolines";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(TypeTrampolines {
            array_call: CodeRange::decode(r)?,
            host_call: CodeRange::decode(r)?,
        })
    }
}

impl Encode for TrapSite {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.offset);
        w.u8(self.code as u8);
    }
}

impl Decode for TrapSite {
    const MIN_SIZE: usize = 5;
    const WHAT: &'static str = "trap site";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let offset = r.u32(Self::WHAT)?;
        let code = TrapCode::from_u8(r.u8(Self::WHAT)?).ok_or(r.invalid(Self::WHAT))?;
        Ok(TrapSite { offset, code })
    }
}

impl Encode for AddrMapEntry {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.code_offset);
        w.u32(self.wasm_offset);
    }
}

impl Decode for AddrMapEntry {
    const MIN_SIZE: usize = 8;
    const WHAT: &'static str = "address map entry";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(AddrMapEntry {
            code_offset: r.u32(Self::WHAT)?,
            wasm_offset: r.u32(Self::WHAT)?,
        })
    }
}

impl Encode for (u32, String) {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.0);
        w.str(&self.1);
    }
}

impl Decode for (u32, String) {
    const MIN_SIZE: usize = 8;
    const WHAT: &'static str = "name";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok((r.u32(Self::WHAT)?, r.str(Self::WHAT)?))
    }
}

impl Encode for ModuleInfo {
    fn encode(&self, w: &mut Writer) {
        w.opt(&self.name);
        w.seq(&self.types);
        w.seq(&self.imports);
        w.seq(&self.funcs);
        w.seq(&self.tables);
        w.seq(&self.memories);
        w.seq(&self.globals);
        w.seq(&self.global_inits);
        w.seq(&self.exports);
        w.opt(&self.start);
        w.seq(&self.elems);
        w.seq(&self.datas);
        w.seq(&self.func_names);
        w.seq(&self.code);
        w.seq(&self.trampolines);
        w.seq(&self.traps);
        w.seq(&self.addr_map);
    }
}

impl Decode for ModuleInfo {
    const MIN_SIZE: usize = 1;
    const WHAT: &'static str = "module";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(ModuleInfo {
            name: r.opt()?,
            types: r.seq()?,
            imports: r.seq()?,
            funcs: r.seq()?,
            tables: r.seq()?,
            memories: r.seq()?,
            globals: r.seq()?,
            global_inits: r.seq()?,
            exports: r.seq()?,
            start: r.opt()?,
            elems: r.seq()?,
            datas: r.seq()?,
            func_names: r.seq()?,
            code: r.seq()?,
            trampolines: r.seq()?,
            traps: r.seq()?,
            addr_map: r.seq()?,
        })
    }
}
