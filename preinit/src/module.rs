//! The module side of pre-initialisation: checking what can be snapshotted, instrumenting the
//! module (a getter function exported per mutable defined global, since a pooled instance calls
//! functions but does not read globals), and writing the snapshot back into the original module.
//!
//! Sections are split by hand (id, size, payload) after wasmparser validated the module, so that
//! every section the rewrite does not touch is copied byte for byte (custom sections included:
//! the name section keeps backtraces readable, and no index of the original changes).

use crate::snapshot::Snapshot;
use crate::PreinitError;
use wasm_encoder::{ConstExpr, DataCountSection, DataSection, Encode, ExportKind, MemorySection};
use wasmparser::{
    BinaryReader, DataKind, ExternalKind, Operator, Parser, Payload, TypeRef, ValType, Validator,
};

/// Prefix of the getter exports the instrumentation adds (reserved: a module exporting such a
/// name is refused).
pub const GETTER_PREFIX: &str = "__fnvm_preinit_global_";

const SEC_TYPE: u8 = 1;
const SEC_FUNCTION: u8 = 3;
const SEC_MEMORY: u8 = 5;
const SEC_GLOBAL: u8 = 6;
const SEC_EXPORT: u8 = 7;
const SEC_START: u8 = 8;
const SEC_DATACOUNT: u8 = 12;
const SEC_CODE: u8 = 10;
const SEC_DATA: u8 = 11;

/// Where a known section goes in a module (custom sections, id 0, go anywhere).
fn rank(id: u8) -> u8 {
    match id {
        1..=5 => id,
        13 => 6, // tag
        6..=9 => id + 1,
        12 => 11, // data count
        10 => 12,
        11 => 13,
        _ => 0,
    }
}

/// A defined global.
#[derive(Clone, Debug)]
pub struct GlobalInfo {
    /// Index in the global index space.
    pub index: u32,
    pub ty: ValType,
    pub mutable: bool,
    /// The global's bytes in the global section (type and init expression).
    raw: Vec<u8>,
}

/// What the rewrite needs to know about a module.
#[derive(Debug)]
pub struct ModuleInfo<'a> {
    /// Sections in order: (id, payload).
    sections: Vec<(u8, &'a [u8])>,
    pub defined_globals: Vec<GlobalInfo>,
    /// The defined memory: (type, index).
    pub memory: Option<wasmparser::MemoryType>,
    exports: Vec<(String, ExternalKind, u32)>,
    /// Types in the type index space.
    num_types: u32,
    /// Functions in the function index space (imported and defined).
    num_funcs: u32,
    /// Data segments: `None` for active ones (their bytes are in the snapshot), the bytes of
    /// passive ones.
    data: Vec<Option<&'a [u8]>>,
}

impl<'a> ModuleInfo<'a> {
    /// Validates `wasm` and gathers what pre-initialisation needs, refusing what it cannot
    /// snapshot.
    pub fn parse(wasm: &'a [u8], init_export: &str) -> Result<ModuleInfo<'a>, PreinitError> {
        let invalid = |e: wasmparser::BinaryReaderError| PreinitError::Invalid(e.to_string());
        Validator::new().validate_all(wasm).map_err(invalid)?;
        let unsupported = |m: String| Err(PreinitError::Unsupported(m));
        let mut info = ModuleInfo {
            sections: split_sections(wasm)?,
            defined_globals: Vec::new(),
            memory: None,
            exports: Vec::new(),
            num_types: 0,
            num_funcs: 0,
            data: Vec::new(),
        };
        let mut imported_globals = 0u32;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.map_err(invalid)? {
                Payload::TypeSection(r) => {
                    for group in r {
                        info.num_types += group.map_err(invalid)?.types().len() as u32;
                    }
                }
                Payload::ImportSection(r) => {
                    for imp in r.into_imports() {
                        let imp = imp.map_err(invalid)?;
                        match imp.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => info.num_funcs += 1,
                            TypeRef::Global(_) => imported_globals += 1,
                            TypeRef::Memory(_) => {
                                return unsupported(format!(
                                    "the module imports its memory ({}.{}): the snapshot could not hold it",
                                    imp.module, imp.name
                                ))
                            }
                            TypeRef::Table(_) | TypeRef::Tag(_) => {}
                        }
                    }
                }
                Payload::FunctionSection(r) => info.num_funcs += r.count(),
                Payload::MemorySection(r) => {
                    for m in r {
                        let m = m.map_err(invalid)?;
                        if info.memory.is_some() {
                            return unsupported("the module defines more than one memory".into());
                        }
                        if m.memory64 || m.shared || m.page_size_log2.is_some() {
                            return unsupported(
                                "64-bit, shared and custom-page-size memories are not supported"
                                    .into(),
                            );
                        }
                        info.memory = Some(m);
                    }
                }
                Payload::GlobalSection(r) => {
                    let end = r.range().end as usize;
                    let items: Vec<_> = r
                        .into_iter_with_offsets()
                        .collect::<Result<_, _>>()
                        .map_err(invalid)?;
                    for (i, (offset, g)) in items.iter().enumerate() {
                        let next = items.get(i + 1).map_or(end, |(o, _)| *o as usize);
                        let index = imported_globals + i as u32;
                        let ty = g.ty.content_type;
                        if g.ty.mutable
                            && !matches!(
                                ty,
                                ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64
                            )
                        {
                            return unsupported(format!(
                                "global {index} is a mutable {ty}: only numeric globals can be snapshotted"
                            ));
                        }
                        if g.ty.shared {
                            return unsupported(format!("global {index} is shared"));
                        }
                        info.defined_globals.push(GlobalInfo {
                            index,
                            ty,
                            mutable: g.ty.mutable,
                            raw: wasm[*offset as usize..next].to_vec(),
                        });
                    }
                }
                Payload::ExportSection(r) => {
                    for e in r {
                        let e = e.map_err(invalid)?;
                        if e.name.starts_with(GETTER_PREFIX) {
                            return unsupported(format!(
                                "the export name `{}` is reserved",
                                e.name
                            ));
                        }
                        info.exports.push((e.name.to_string(), e.kind, e.index));
                    }
                }
                Payload::DataSection(r) => {
                    for d in r {
                        let d = d.map_err(invalid)?;
                        info.data.push(match d.kind {
                            DataKind::Passive => Some(d.data),
                            DataKind::Active { .. } => None,
                        });
                    }
                }
                Payload::CodeSectionEntry(body) => check_body(&body)?,
                _ => {}
            }
        }
        let init = info.exports.iter().find(|(n, _, _)| n == init_export);
        if !matches!(init, Some((_, ExternalKind::Func, _))) {
            return Err(PreinitError::NoInitExport(init_export.to_string()));
        }
        Ok(info)
    }

    /// The mutable defined globals: the ones with a getter and a snapshot value.
    pub fn mutable_globals(&self) -> impl Iterator<Item = &GlobalInfo> {
        self.defined_globals.iter().filter(|g| g.mutable)
    }

    /// The module with a getter function exported for every mutable defined global.
    pub fn instrument(&self) -> Vec<u8> {
        let globals: Vec<&GlobalInfo> = self.mutable_globals().collect();
        if globals.is_empty() {
            return self.encode(|_, payload| Some(payload.to_vec()), &[]);
        }
        let kinds = [ValType::I32, ValType::I64, ValType::F32, ValType::F64];
        let type_of =
            |t: ValType| self.num_types + kinds.iter().position(|k| *k == t).unwrap_or(0) as u32;
        let mut types = Vec::new();
        for k in kinds {
            types.push(0x60);
            0u32.encode(&mut types);
            1u32.encode(&mut types);
            encode_valtype(k, &mut types);
        }
        let mut funcs = Vec::new();
        let mut bodies = Vec::new();
        let mut exports = Vec::new();
        for (i, g) in globals.iter().enumerate() {
            type_of(g.ty).encode(&mut funcs);
            let mut body = vec![0u8, 0x23]; // no locals; global.get
            g.index.encode(&mut body);
            body.push(0x0b);
            body.encode(&mut bodies);
            format!("{GETTER_PREFIX}{}", g.index).encode(&mut exports);
            exports.push(0x00); // func
            (self.num_funcs + i as u32).encode(&mut exports);
        }
        let n = globals.len() as u32;
        let appended = [
            (SEC_TYPE, kinds.len() as u32, types),
            (SEC_FUNCTION, n, funcs),
            (SEC_EXPORT, n, exports),
            (SEC_CODE, n, bodies),
        ];
        self.encode(
            |id, payload| {
                let Some((_, count, items)) = appended.iter().find(|(s, _, _)| *s == id) else {
                    return Some(payload.to_vec());
                };
                Some(append_items(payload, *count, items))
            },
            &appended
                .iter()
                .map(|(id, count, items)| (*id, append_items(&[0], *count, items)))
                .collect::<Vec<_>>(),
        )
    }

    /// The original module with the snapshot written in: data segments, memory minimum,
    /// mutable globals' initial values; without `init_export` and the start function.
    pub fn rewrite(&self, snapshot: &Snapshot, init_export: &str) -> Vec<u8> {
        let keep_passive = self.data.iter().any(Option::is_some);
        let mut data = DataSection::new();
        if keep_passive {
            // Indices of the original segments stay (memory.init names them): active ones,
            // already applied and dropped at instantiation, become empty passive ones, which
            // behave the same.
            for d in &self.data {
                data.passive(d.unwrap_or(&[]).iter().copied());
            }
        }
        for (offset, bytes) in &snapshot.segments {
            data.active(
                0,
                &ConstExpr::i32_const(*offset as i32),
                bytes.iter().copied(),
            );
        }
        let data_count = data.len();
        let mut data_payload = Vec::new();
        data.encode(&mut data_payload);
        let data_payload = strip_section_header(&data_payload);
        let mut values = snapshot.globals.iter();
        let globals_payload = {
            let mut items = Vec::new();
            for g in &self.defined_globals {
                if g.mutable {
                    let v = values
                        .next()
                        .copied()
                        .unwrap_or(crate::snapshot::Value::I32(0));
                    encode_valtype(g.ty, &mut items);
                    items.push(1);
                    v.const_expr().encode(&mut items);
                } else {
                    items.extend_from_slice(&g.raw);
                }
            }
            let mut p = Vec::new();
            (self.defined_globals.len() as u32).encode(&mut p);
            p.extend_from_slice(&items);
            p
        };
        let memory_payload = self.memory.map(|m| {
            let mut s = MemorySection::new();
            s.memory(wasm_encoder::MemoryType {
                minimum: snapshot.pages.max(m.initial),
                maximum: m.maximum,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
            let mut p = Vec::new();
            s.encode(&mut p);
            strip_section_header(&p).to_vec()
        });
        let exports_payload = {
            let mut s = wasm_encoder::ExportSection::new();
            for (name, kind, index) in self.exports.iter().filter(|(n, _, _)| n != init_export) {
                let kind = match kind {
                    ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                    ExternalKind::Table => ExportKind::Table,
                    ExternalKind::Memory => ExportKind::Memory,
                    ExternalKind::Global => ExportKind::Global,
                    ExternalKind::Tag => ExportKind::Tag,
                };
                s.export(name, kind, *index);
            }
            let mut p = Vec::new();
            s.encode(&mut p);
            strip_section_header(&p).to_vec()
        };
        let mut extra = Vec::new();
        if data_count > 0 && !self.sections.iter().any(|(id, _)| *id == SEC_DATA) {
            extra.push((SEC_DATA, data_payload.to_vec()));
        }
        self.encode(
            |id, payload| match id {
                SEC_START => None,
                SEC_MEMORY => memory_payload.clone(),
                SEC_GLOBAL => Some(globals_payload.clone()),
                SEC_EXPORT => Some(exports_payload.clone()),
                SEC_DATACOUNT => {
                    let mut p = Vec::new();
                    DataCountSection { count: data_count }.encode(&mut p);
                    Some(strip_section_header(&p).to_vec())
                }
                SEC_DATA => Some(data_payload.to_vec()),
                _ => Some(payload.to_vec()),
            },
            &extra,
        )
    }

    /// Writes the module: every section through `map` (`None` drops it), and the `missing`
    /// sections (id, payload) the module lacked, each inserted where its id belongs.
    fn encode(
        &self,
        map: impl Fn(u8, &[u8]) -> Option<Vec<u8>>,
        missing: &[(u8, Vec<u8>)],
    ) -> Vec<u8> {
        let mut out = wasm_encoder::Module::new();
        let mut pending: Vec<&(u8, Vec<u8>)> = missing
            .iter()
            .filter(|(id, _)| !self.sections.iter().any(|(s, _)| s == id))
            .collect();
        pending.sort_by_key(|(id, _)| rank(*id));
        let mut pending = pending.into_iter().peekable();
        for (id, payload) in &self.sections {
            if *id != 0 {
                while let Some((m, p)) = pending.next_if(|(m, _)| rank(*m) < rank(*id)) {
                    out.section(&wasm_encoder::RawSection { id: *m, data: p });
                }
            }
            if let Some(p) = map(*id, payload) {
                out.section(&wasm_encoder::RawSection { id: *id, data: &p });
            }
        }
        for (m, p) in pending {
            out.section(&wasm_encoder::RawSection { id: *m, data: p });
        }
        out.finish()
    }
}

/// Refuses function bodies that change state the snapshot does not capture: tables (their
/// contents come from the element segments again) and dropped data segments (Wizer's rules).
/// Conservative: the instruction's presence is enough, whether or not initialisation runs it.
fn check_body(body: &wasmparser::FunctionBody<'_>) -> Result<(), PreinitError> {
    let mut ops = body
        .get_operators_reader()
        .map_err(|e| PreinitError::Invalid(e.to_string()))?;
    while !ops.eof() {
        let op = ops
            .read()
            .map_err(|e| PreinitError::Invalid(e.to_string()))?;
        let what = match op {
            Operator::TableSet { .. } => "table.set",
            Operator::TableGrow { .. } => "table.grow",
            Operator::TableFill { .. } => "table.fill",
            Operator::TableCopy { .. } => "table.copy",
            Operator::TableInit { .. } => "table.init",
            Operator::ElemDrop { .. } => "elem.drop",
            Operator::DataDrop { .. } => "data.drop",
            _ => continue,
        };
        return Err(PreinitError::Unsupported(format!(
            "the module uses `{what}`: tables and dropped data segments are not snapshotted"
        )));
    }
    Ok(())
}

/// Splits a (validated) module into its sections.
fn split_sections(wasm: &[u8]) -> Result<Vec<(u8, &[u8])>, PreinitError> {
    let bad = || PreinitError::Invalid("malformed section header".into());
    let mut rest = wasm.get(8..).ok_or_else(bad)?;
    let mut sections = Vec::new();
    while let Some((&id, tail)) = rest.split_first() {
        let mut reader = BinaryReader::new(tail, 0);
        let size = reader.read_var_u32().map_err(|_| bad())? as usize;
        let start = reader.original_position() as usize;
        let payload = tail.get(start..start + size).ok_or_else(bad)?;
        sections.push((id, payload));
        rest = &tail[start + size..];
    }
    Ok(sections)
}

/// A vector section's payload with `count` more items (`items`, encoded) at its end.
fn append_items(payload: &[u8], count: u32, items: &[u8]) -> Vec<u8> {
    let mut reader = BinaryReader::new(payload, 0);
    let old = reader.read_var_u32().unwrap_or(0);
    let rest = &payload[reader.original_position() as usize..];
    let mut p = Vec::with_capacity(payload.len() + items.len() + 5);
    (old + count).encode(&mut p);
    p.extend_from_slice(rest);
    p.extend_from_slice(items);
    p
}

/// A section as wasm-encoder writes it, without its id and size.
fn strip_section_header(encoded: &[u8]) -> &[u8] {
    // `Encode` for a section writes its payload as a byte vector: length, then the bytes.
    let mut reader = BinaryReader::new(encoded, 0);
    let _ = reader.read_var_u32();
    &encoded[reader.original_position() as usize..]
}

fn encode_valtype(t: ValType, out: &mut Vec<u8>) {
    out.push(match t {
        ValType::I32 => 0x7f,
        ValType::I64 => 0x7e,
        ValType::F32 => 0x7d,
        ValType::F64 => 0x7c,
        ValType::V128 => 0x7b,
        ValType::Ref(_) => 0x70,
    });
}
