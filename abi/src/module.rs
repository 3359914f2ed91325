//! Module metadata: what the runtime needs to know about a compiled module besides its code.
//!
//! The compiler fills a [`ModuleInfo`] from the wasm module and the code it emitted; the artifact
//! stores it encoded with [`crate::codec`]; the runtime decodes it and calls
//! [`ModuleInfo::check`] before trusting any index or offset in it.

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

// The wire encoding of all of the above.
mod codec;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecError, Decode, Encode, Reader, Writer};

    fn sample() -> ModuleInfo {
        let table = TableType {
            elem: ValType::FuncRef,
            limits: Limits {
                min: 1,
                max: Some(2),
            },
        };
        let memory = MemoryType {
            limits: Limits { min: 1, max: None },
        };
        let global = GlobalType {
            ty: ValType::I64,
            mutable: true,
        };
        ModuleInfo {
            name: Some("m".into()),
            types: vec![FuncType {
                params: vec![ValType::I32, ValType::I64, ValType::F32],
                results: vec![ValType::F64, ValType::FuncRef, ValType::ExternRef],
            }],
            imports: vec![
                Import {
                    module: "a".into(),
                    name: "f".into(),
                    ty: ImportType::Func(0),
                },
                Import {
                    module: "a".into(),
                    name: "t".into(),
                    ty: ImportType::Table(table),
                },
                Import {
                    module: "a".into(),
                    name: "m".into(),
                    ty: ImportType::Memory(memory),
                },
                Import {
                    module: "a".into(),
                    name: "g".into(),
                    ty: ImportType::Global(global),
                },
            ],
            funcs: vec![0, 0],
            tables: vec![table],
            memories: vec![memory],
            globals: vec![
                global,
                GlobalType {
                    ty: ValType::F32,
                    mutable: false,
                },
            ],
            global_inits: vec![ConstExpr::F32(0x3f80_0000)],
            exports: vec![
                Export {
                    name: "f".into(),
                    kind: ExternKind::Func,
                    index: 1,
                },
                Export {
                    name: "t".into(),
                    kind: ExternKind::Table,
                    index: 0,
                },
                Export {
                    name: "m".into(),
                    kind: ExternKind::Memory,
                    index: 0,
                },
                Export {
                    name: "g".into(),
                    kind: ExternKind::Global,
                    index: 1,
                },
            ],
            start: Some(1),
            elems: vec![
                ElemSegment {
                    mode: ElemMode::Active {
                        table: 0,
                        offset: ConstExpr::I32(-2),
                    },
                    elem: ValType::FuncRef,
                    items: vec![ConstExpr::RefFunc(1), ConstExpr::RefNull],
                },
                ElemSegment {
                    mode: ElemMode::Passive,
                    elem: ValType::ExternRef,
                    items: vec![],
                },
                ElemSegment {
                    mode: ElemMode::Declared,
                    elem: ValType::FuncRef,
                    items: vec![ConstExpr::RefFunc(0)],
                },
            ],
            datas: vec![
                DataSegment {
                    offset: Some(ConstExpr::GlobalGet(0)),
                    data: vec![1, 2, 3],
                },
                DataSegment {
                    offset: None,
                    data: vec![],
                },
            ],
            func_names: vec![(1, "main".into())],
            code: vec![CodeRange { offset: 0, len: 16 }],
            trampolines: vec![TypeTrampolines {
                array_call: CodeRange { offset: 16, len: 8 },
                host_call: CodeRange { offset: 32, len: 8 },
            }],
            traps: vec![
                TrapSite {
                    offset: 3,
                    code: TrapCode::MemoryOutOfBounds,
                },
                TrapSite {
                    offset: 9,
                    code: TrapCode::HostTrap,
                },
            ],
            addr_map: vec![
                AddrMapEntry {
                    code_offset: 0,
                    wasm_offset: 40,
                },
                AddrMapEntry {
                    code_offset: 4,
                    wasm_offset: u32::MAX,
                },
            ],
        }
    }

    fn const_exprs() -> Vec<ConstExpr> {
        vec![
            ConstExpr::I32(-1),
            ConstExpr::I64(-2),
            ConstExpr::F32(0x3f80_0000),
            ConstExpr::F64(0x3ff0_0000_0000_0000),
            ConstExpr::RefNull,
            ConstExpr::RefFunc(7),
            ConstExpr::GlobalGet(0x0102_0304),
        ]
    }

    fn encode<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
        let mut w = Writer::new();
        v.encode(&mut w);
        w.finish()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn metadata_round_trips() {
        let info = sample();
        let bytes = encode(&info);
        let mut r = Reader::new(&bytes);
        assert_eq!(ModuleInfo::decode(&mut r).unwrap(), info);
        assert_eq!(r.remaining(), 0);
        for cut in 0..bytes.len() {
            assert!(
                ModuleInfo::decode(&mut Reader::new(&bytes[..cut])).is_err(),
                "cut at {cut} decoded"
            );
        }
    }

    /// The bytes as the hand-written encoder produced them before `codec_enum!` replaced it:
    /// artifacts already on disk hold exactly these, so any change here is a format change.
    #[test]
    fn metadata_bytes_are_pinned() {
        let want = concat!(
            "01010000006d01000000030000000001020300000003040504000000010000006101000000660000",
            "0000000100000061010000007401040100000001020000000100000061010000006d020100000000",
            "01000000610100000067030101020000000000000000000000010000000401000000010200000001",
            "0000000100000000020000000101020001000000020000803f040000000100000066000100000001",
            "000000740100000000010000006d0200000000010000006703010000000101000000030000000000",
            "00000000feffffff0402000000050100000004010500000000020401000000050000000002000000",
            "0106000000000300000001020300000000000100000001000000040000006d61696e010000000000",
            "0000100000000100000010000000080000002000000008000000020000000300000002090000000c",
            "02000000000000002800000004000000ffffffff",
        );
        assert_eq!(hex(&encode(&sample())), want);
    }

    #[test]
    fn const_expr_bytes_are_pinned() {
        let mut w = Writer::new();
        w.seq(&const_exprs());
        #[rustfmt::skip]
        let want: &[u8] = &[
            7, 0, 0, 0,                                 // count
            0, 0xff, 0xff, 0xff, 0xff,                  // I32(-1)
            1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // I64(-2)
            2, 0x00, 0x00, 0x80, 0x3f,                  // F32(1.0)
            3, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,            // F64(1.0)
            4,                                          // RefNull
            5, 7, 0, 0, 0,                              // RefFunc(7)
            6, 4, 3, 2, 1,                              // GlobalGet(0x01020304)
        ];
        assert_eq!(w.finish(), want);
    }

    #[test]
    fn every_enum_tag_round_trips_and_the_next_is_invalid() {
        fn check<T: Encode + Decode + PartialEq + std::fmt::Debug>(all: &[T]) {
            for (i, v) in all.iter().enumerate() {
                let bytes = encode(v);
                // Tags are dense from 0 in declaration order.
                assert_eq!(bytes[0] as usize, i, "{v:?}");
                assert!(bytes.len() >= T::MIN_SIZE, "{v:?} shorter than MIN_SIZE");
                assert_eq!(&T::decode(&mut Reader::new(&bytes)).unwrap(), v);
            }
            // Two bytes of padding before the tag: the error must name the tag's offset.
            let bad = [
                0xaa,
                0xbb,
                all.len() as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            let mut r = Reader::new(&bad);
            r.u8("pad").unwrap();
            r.u8("pad").unwrap();
            assert_eq!(
                T::decode(&mut r).unwrap_err(),
                CodecError::Invalid {
                    offset: 2,
                    what: T::WHAT
                }
            );
        }
        use ValType::*;
        check(&[I32, I64, F32, F64, FuncRef, ExternRef]);
        check(&const_exprs());
        check(&[
            ExternKind::Func,
            ExternKind::Table,
            ExternKind::Memory,
            ExternKind::Global,
        ]);
        let limits = Limits {
            min: 1,
            max: Some(3),
        };
        check(&[
            ImportType::Func(3),
            ImportType::Table(TableType {
                elem: ExternRef,
                limits,
            }),
            ImportType::Memory(MemoryType { limits }),
            ImportType::Global(GlobalType {
                ty: F64,
                mutable: false,
            }),
        ]);
        check(&[
            ElemMode::Active {
                table: 2,
                offset: ConstExpr::GlobalGet(1),
            },
            ElemMode::Passive,
            ElemMode::Declared,
        ]);
        check(&[false, true]);
    }

    #[test]
    fn invalid_tags_inside_records_name_their_offset() {
        // An import whose type tag (after two one-byte strings, at offset 10) is unknown.
        let mut bytes = encode(&Import {
            module: "a".into(),
            name: "b".into(),
            ty: ImportType::Func(0),
        });
        bytes[10] = 9;
        assert_eq!(
            Import::decode(&mut Reader::new(&bytes)).unwrap_err(),
            CodecError::Invalid {
                offset: 10,
                what: "import type"
            }
        );
        // A global whose mutability byte (offset 1) is neither 0 nor 1.
        let err = GlobalType::decode(&mut Reader::new(&[0, 2])).unwrap_err();
        assert_eq!(
            err,
            CodecError::Invalid {
                offset: 1,
                what: "boolean"
            }
        );
    }

    #[test]
    fn min_size_is_the_smallest_encoding() {
        fn smallest<T: Encode + Decode>(v: T) {
            assert_eq!(encode(&v).len(), T::MIN_SIZE, "{}", T::WHAT);
        }
        let limits = Limits { min: 0, max: None };
        let global = GlobalType {
            ty: ValType::I32,
            mutable: false,
        };
        smallest(ValType::I32);
        smallest(FuncType::default());
        smallest(limits);
        smallest(TableType {
            elem: ValType::FuncRef,
            limits,
        });
        smallest(MemoryType { limits });
        smallest(global);
        smallest(ConstExpr::RefNull);
        smallest(ExternKind::Func);
        smallest(ImportType::Global(global));
        smallest(Import {
            module: String::new(),
            name: String::new(),
            ty: ImportType::Global(global),
        });
        smallest(Export {
            name: String::new(),
            kind: ExternKind::Func,
            index: 0,
        });
        smallest(ElemMode::Passive);
        smallest(ElemSegment {
            mode: ElemMode::Passive,
            elem: ValType::FuncRef,
            items: vec![],
        });
        smallest(DataSegment {
            offset: None,
            data: vec![],
        });
        smallest(CodeRange { offset: 0, len: 0 });
        smallest(TypeTrampolines {
            array_call: CodeRange { offset: 0, len: 0 },
            host_call: CodeRange { offset: 0, len: 0 },
        });
        smallest(TrapSite {
            offset: 0,
            code: TrapCode::HostTrap,
        });
        smallest(AddrMapEntry {
            code_offset: 0,
            wasm_offset: 0,
        });
        smallest((0u32, String::new()));
        smallest(ModuleInfo::default());
    }
}
