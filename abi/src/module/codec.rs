//! The wire encoding of module metadata: one `Encode`/`Decode` pair per type of the parent
//! module. Tags and field order are part of the artifact format (see the parent's
//! `metadata_bytes_are_pinned` test).

use super::*;
use crate::codec::{codec_enum, CodecError, Decode, Encode, Reader, Writer, LEN_SIZE, OPT_SIZE};

codec_enum!(ValType, "value type" {
    0 => I32,
    1 => I64,
    2 => F32,
    3 => F64,
    4 => FuncRef,
    5 => ExternRef,
});

impl Encode for FuncType {
    fn encode(&self, w: &mut Writer) {
        w.seq(&self.params);
        w.seq(&self.results);
    }
}

impl Decode for FuncType {
    const MIN_SIZE: usize = 2 * LEN_SIZE;
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
    const MIN_SIZE: usize = u32::MIN_SIZE + OPT_SIZE;
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
    const MIN_SIZE: usize = ValType::MIN_SIZE + Limits::MIN_SIZE;
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
    const MIN_SIZE: usize = Limits::MIN_SIZE;
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
        self.mutable.encode(w);
    }
}

impl Decode for GlobalType {
    const MIN_SIZE: usize = ValType::MIN_SIZE + bool::MIN_SIZE;
    const WHAT: &'static str = "global type";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(GlobalType {
            ty: ValType::decode(r)?,
            mutable: bool::decode(r)?,
        })
    }
}

codec_enum!(ConstExpr, "constant expression" {
    0 => I32(i32),
    1 => I64(i64),
    2 => F32(u32),
    3 => F64(u64),
    4 => RefNull,
    5 => RefFunc(u32),
    6 => GlobalGet(u32),
});

codec_enum!(ExternKind, "extern kind" {
    0 => Func,
    1 => Table,
    2 => Memory,
    3 => Global,
});

codec_enum!(ImportType, "import type" {
    0 => Func(u32),
    1 => Table(TableType),
    2 => Memory(MemoryType),
    3 => Global(GlobalType),
});

impl Encode for Import {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.module);
        w.str(&self.name);
        self.ty.encode(w);
    }
}

impl Decode for Import {
    const MIN_SIZE: usize = 2 * String::MIN_SIZE + ImportType::MIN_SIZE;
    const WHAT: &'static str = "import";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Import {
            module: r.str(Self::WHAT)?,
            name: r.str(Self::WHAT)?,
            ty: ImportType::decode(r)?,
        })
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
    const MIN_SIZE: usize = String::MIN_SIZE + ExternKind::MIN_SIZE + u32::MIN_SIZE;
    const WHAT: &'static str = "export";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Export {
            name: r.str(Self::WHAT)?,
            kind: ExternKind::decode(r)?,
            index: r.u32(Self::WHAT)?,
        })
    }
}

codec_enum!(ElemMode, "element segment mode" {
    0 => Active { table: u32, offset: ConstExpr },
    1 => Passive,
    2 => Declared,
});

impl Encode for ElemSegment {
    fn encode(&self, w: &mut Writer) {
        self.mode.encode(w);
        self.elem.encode(w);
        w.seq(&self.items);
    }
}

impl Decode for ElemSegment {
    const MIN_SIZE: usize = ElemMode::MIN_SIZE + ValType::MIN_SIZE + LEN_SIZE;
    const WHAT: &'static str = "element segment";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(ElemSegment {
            mode: ElemMode::decode(r)?,
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
    const MIN_SIZE: usize = OPT_SIZE + LEN_SIZE;
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
    const MIN_SIZE: usize = 2 * u32::MIN_SIZE;
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
    const MIN_SIZE: usize = 2 * CodeRange::MIN_SIZE;
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
    const MIN_SIZE: usize = u32::MIN_SIZE + 1; // offset, then the code as one byte
    const WHAT: &'static str = "trap site";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let offset = r.u32(Self::WHAT)?;
        let at = r.offset();
        let code = TrapCode::from_u8(r.u8(Self::WHAT)?).ok_or(r.invalid_at(at, Self::WHAT))?;
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
    const MIN_SIZE: usize = 2 * u32::MIN_SIZE;
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
    const MIN_SIZE: usize = u32::MIN_SIZE + String::MIN_SIZE;
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
    const MIN_SIZE: usize = 2 * OPT_SIZE + 15 * LEN_SIZE;
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
