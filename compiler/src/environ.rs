//! Module-level parsing and validation: fills the metadata half of `ModuleInfo` and collects the
//! function bodies for translation.

use crate::CompileError;
use fnvm_abi::module::*;
use wasmparser::{
    ElementItems, ElementKind, ExternalKind, FuncToValidate, FunctionBody, KnownCustom, Name,
    Operator, Parser, Payload, TypeRef, ValidPayload, Validator, ValidatorResources,
};

/// A parsed and (module-level) validated module, its bodies still to translate.
pub struct ModuleTranslation<'a> {
    /// Metadata; the code-layout fields are filled in by the linker.
    pub info: ModuleInfo,
    /// Defined function bodies with their validators, in index order.
    pub(crate) bodies: Vec<(FuncToValidate<ValidatorResources>, FunctionBody<'a>)>,
}

impl std::fmt::Debug for ModuleTranslation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleTranslation")
            .field("info", &self.info)
            .field("bodies", &self.bodies.len())
            .finish()
    }
}

/// Features we name in "unsupported feature" errors, tried one at a time when validation fails.
const NAMED_FEATURES: &[(wasmparser::WasmFeatures, &str)] = &[
    (wasmparser::WasmFeatures::SIMD, "simd"),
    (wasmparser::WasmFeatures::RELAXED_SIMD, "relaxed-simd"),
    (wasmparser::WasmFeatures::THREADS, "threads"),
    (wasmparser::WasmFeatures::TAIL_CALL, "tail-call"),
    (wasmparser::WasmFeatures::MULTI_MEMORY, "multi-memory"),
    (wasmparser::WasmFeatures::MEMORY64, "memory64"),
    (wasmparser::WasmFeatures::EXCEPTIONS, "exception-handling"),
    (wasmparser::WasmFeatures::EXTENDED_CONST, "extended-const"),
    (
        wasmparser::WasmFeatures::FUNCTION_REFERENCES,
        "function-references",
    ),
    (wasmparser::WasmFeatures::GC, "gc"),
    (wasmparser::WasmFeatures::WIDE_ARITHMETIC, "wide-arithmetic"),
    (
        wasmparser::WasmFeatures::CUSTOM_PAGE_SIZES,
        "custom-page-sizes",
    ),
];

/// Turns a validation error into either `Invalid` or, when the module would be valid with one
/// more proposal enabled, `Unsupported` naming that proposal.
pub(crate) fn classify_error(wasm: &[u8], err: &wasmparser::BinaryReaderError) -> CompileError {
    for (feature, name) in NAMED_FEATURES {
        let mut features = crate::supported_features() | *feature;
        if *feature == wasmparser::WasmFeatures::GC {
            features |= wasmparser::WasmFeatures::FUNCTION_REFERENCES;
        }
        if *feature == wasmparser::WasmFeatures::RELAXED_SIMD {
            features |= wasmparser::WasmFeatures::SIMD;
        }
        if Validator::new_with_features(features)
            .validate_all(wasm)
            .is_ok()
        {
            return CompileError::Unsupported {
                feature: (*name).to_string(),
                offset: err.offset(),
            };
        }
    }
    CompileError::invalid(err)
}

pub(crate) fn val_type(t: wasmparser::ValType, offset: u64) -> Result<ValType, CompileError> {
    use wasmparser::ValType as W;
    Ok(match t {
        W::I32 => ValType::I32,
        W::I64 => ValType::I64,
        W::F32 => ValType::F32,
        W::F64 => ValType::F64,
        W::Ref(r) if r.is_func_ref() => ValType::FuncRef,
        W::Ref(r) if r.is_extern_ref() => ValType::ExternRef,
        W::V128 => {
            return Err(CompileError::Unsupported {
                feature: "simd".into(),
                offset,
            })
        }
        W::Ref(_) => {
            return Err(CompileError::Unsupported {
                feature: "gc".into(),
                offset,
            })
        }
    })
}

fn ref_type(r: wasmparser::RefType) -> ValType {
    if r.is_func_ref() {
        ValType::FuncRef
    } else {
        ValType::ExternRef
    }
}

fn limits(min: u64, max: Option<u64>, what: &str) -> Result<Limits, CompileError> {
    let fit =
        |v: u64| u32::try_from(v).map_err(|_| CompileError::Limit(format!("{what} size {v}")));
    Ok(Limits {
        min: fit(min)?,
        max: max.map(fit).transpose()?,
    })
}

fn table_type(t: &wasmparser::TableType) -> Result<TableType, CompileError> {
    Ok(TableType {
        elem: ref_type(t.element_type),
        limits: limits(t.initial, t.maximum, "table")?,
    })
}

fn memory_type(m: &wasmparser::MemoryType) -> Result<MemoryType, CompileError> {
    Ok(MemoryType {
        limits: limits(m.initial, m.maximum, "memory")?,
    })
}

fn global_type(g: &wasmparser::GlobalType, offset: u64) -> Result<GlobalType, CompileError> {
    Ok(GlobalType {
        ty: val_type(g.content_type, offset)?,
        mutable: g.mutable,
    })
}

/// Decodes a (validated) constant expression.
pub(crate) fn const_expr(e: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, CompileError> {
    let mut r = e.get_operators_reader();
    let (op, offset) = r
        .read_with_offset()
        .map_err(|e| CompileError::invalid(&e))?;
    let value = match op {
        Operator::I32Const { value } => ConstExpr::I32(value),
        Operator::I64Const { value } => ConstExpr::I64(value),
        Operator::F32Const { value } => ConstExpr::F32(value.bits()),
        Operator::F64Const { value } => ConstExpr::F64(value.bits()),
        Operator::RefNull { .. } => ConstExpr::RefNull,
        Operator::RefFunc { function_index } => ConstExpr::RefFunc(function_index),
        Operator::GlobalGet { global_index } => ConstExpr::GlobalGet(global_index),
        _ => {
            return Err(CompileError::Unsupported {
                feature: "extended-const".into(),
                offset,
            })
        }
    };
    // A second instruction before `end` is an extended constant expression: name it.
    match r
        .read_with_offset()
        .map_err(|e| CompileError::invalid(&e))?
    {
        (Operator::End, _) => Ok(value),
        (_, offset) => Err(CompileError::Unsupported {
            feature: "extended-const".into(),
            offset,
        }),
    }
}

/// Adds a memory (imported or defined at `offset`), refusing a second one there.
fn push_memory(info: &mut ModuleInfo, m: MemoryType, offset: u64) -> Result<(), CompileError> {
    if !info.memories.is_empty() {
        return Err(CompileError::Unsupported {
            feature: "multi-memory".into(),
            offset,
        });
    }
    info.memories.push(m);
    Ok(())
}

/// Parses and validates everything but the function bodies.
pub(crate) fn translate_module(wasm: &[u8]) -> Result<ModuleTranslation<'_>, CompileError> {
    let mut validator = Validator::new_with_features(crate::supported_features());
    let mut info = ModuleInfo::default();
    let mut bodies = Vec::new();
    let mut names: Option<wasmparser::NameSectionReader<'_>> = None;
    let v = |e: wasmparser::BinaryReaderError| classify_error(wasm, &e);
    // The parser must know the features too: some encodings (such as 64-bit memory limits)
    // are only read as such when the feature is on.
    let mut parser = Parser::new(0);
    parser.set_features(crate::supported_features());
    for payload in parser.parse_all(wasm) {
        let payload = payload.map_err(v)?;
        match validator.payload(&payload).map_err(v)? {
            ValidPayload::Func(func, body) => {
                bodies.push((func, body));
                continue;
            }
            ValidPayload::Parser(_) => {
                // Only a nested module or component section starts a parser, and only with the
                // component model enabled (it is not); the section's start is where it begins.
                return Err(CompileError::Unsupported {
                    feature: "component-model".into(),
                    offset: payload.as_section().map_or(0, |(_, range)| range.start),
                });
            }
            ValidPayload::Ok | ValidPayload::End(_) => {}
        }
        match payload {
            Payload::TypeSection(r) => {
                for group in r.into_iter_with_offsets() {
                    let (offset, group) = group.map_err(v)?;
                    // Without the gc proposal validation admits only rec groups of one final
                    // function type; anything else would be gc.
                    let gc = || CompileError::Unsupported {
                        feature: "gc".into(),
                        offset,
                    };
                    let mut types = group.into_types();
                    let (Some(ty), None) = (types.next(), types.next()) else {
                        return Err(gc());
                    };
                    let wasmparser::CompositeInnerType::Func(ty) = ty.composite_type.inner else {
                        return Err(gc());
                    };
                    let conv = |ts: &[wasmparser::ValType]| {
                        ts.iter()
                            .map(|t| val_type(*t, offset))
                            .collect::<Result<Vec<_>, _>>()
                    };
                    info.types.push(FuncType {
                        params: conv(ty.params())?,
                        results: conv(ty.results())?,
                    });
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.into_imports_with_offsets() {
                    let (offset, imp) = imp.map_err(v)?;

                    let ty = match imp.ty {
                        TypeRef::Func(t) => {
                            info.funcs.push(t);
                            ImportType::Func(t)
                        }
                        TypeRef::Table(t) => {
                            let t = table_type(&t)?;
                            info.tables.push(t);
                            ImportType::Table(t)
                        }
                        TypeRef::Memory(m) => {
                            let m = memory_type(&m)?;
                            push_memory(&mut info, m, offset)?;
                            ImportType::Memory(m)
                        }
                        TypeRef::Global(g) => {
                            let g = global_type(&g, offset)?;
                            info.globals.push(g);
                            ImportType::Global(g)
                        }
                        _ => {
                            return Err(CompileError::Unsupported {
                                feature: "exception-handling".into(),
                                offset,
                            })
                        }
                    };
                    info.imports.push(Import {
                        module: imp.module.to_string(),
                        name: imp.name.to_string(),
                        ty,
                    });
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    info.funcs.push(t.map_err(v)?);
                }
            }
            Payload::TableSection(r) => {
                for t in r.into_iter_with_offsets() {
                    let (offset, t) = t.map_err(v)?;
                    if !matches!(t.init, wasmparser::TableInit::RefNull) {
                        return Err(CompileError::Unsupported {
                            feature: "function-references".into(),
                            offset,
                        });
                    }
                    info.tables.push(table_type(&t.ty)?);
                }
            }
            Payload::MemorySection(r) => {
                for m in r.into_iter_with_offsets() {
                    let (offset, m) = m.map_err(v)?;
                    push_memory(&mut info, memory_type(&m)?, offset)?;
                }
            }
            Payload::GlobalSection(r) => {
                for g in r.into_iter_with_offsets() {
                    let (offset, g) = g.map_err(v)?;
                    info.globals.push(global_type(&g.ty, offset)?);
                    info.global_inits.push(const_expr(&g.init_expr)?);
                }
            }
            Payload::ExportSection(r) => {
                for e in r.into_iter_with_offsets() {
                    let (offset, e) = e.map_err(v)?;
                    let kind = match e.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => ExternKind::Func,
                        ExternalKind::Table => ExternKind::Table,
                        ExternalKind::Memory => ExternKind::Memory,
                        ExternalKind::Global => ExternKind::Global,
                        ExternalKind::Tag => {
                            return Err(CompileError::Unsupported {
                                feature: "exception-handling".into(),
                                offset,
                            })
                        }
                    };
                    info.exports.push(Export {
                        name: e.name.to_string(),
                        kind,
                        index: e.index,
                    });
                }
            }
            Payload::StartSection { func, .. } => info.start = Some(func),
            Payload::ElementSection(r) => {
                for e in r {
                    let e = e.map_err(v)?;
                    let mode = match e.kind {
                        ElementKind::Passive => ElemMode::Passive,
                        ElementKind::Declared => ElemMode::Declared,
                        ElementKind::Active {
                            table_index,
                            offset_expr,
                        } => ElemMode::Active {
                            table: table_index.unwrap_or(0),
                            offset: const_expr(&offset_expr)?,
                        },
                    };
                    let (elem, items) = match e.items {
                        ElementItems::Functions(fs) => {
                            let mut items = Vec::new();
                            for f in fs {
                                items.push(ConstExpr::RefFunc(f.map_err(v)?));
                            }
                            (ValType::FuncRef, items)
                        }
                        ElementItems::Expressions(ty, es) => {
                            let mut items = Vec::new();
                            for x in es {
                                items.push(const_expr(&x.map_err(v)?)?);
                            }
                            (ref_type(ty), items)
                        }
                    };
                    info.elems.push(ElemSegment { mode, elem, items });
                }
            }
            Payload::DataSection(r) => {
                for d in r {
                    let d = d.map_err(v)?;
                    let offset = match d.kind {
                        wasmparser::DataKind::Passive => None,
                        wasmparser::DataKind::Active { offset_expr, .. } => {
                            Some(const_expr(&offset_expr)?)
                        }
                    };
                    info.datas.push(DataSegment {
                        offset,
                        data: d.data.to_vec(),
                    });
                }
            }
            Payload::CustomSection(c) => {
                if let KnownCustom::Name(r) = c.as_known() {
                    names = Some(r);
                }
            }
            _ => {}
        }
    }
    if let Some(names) = names {
        read_names(names, &mut info);
    }
    Ok(ModuleTranslation { info, bodies })
}

/// Reads module and function names. A malformed name section is ignored, as the specification
/// asks of custom sections.
fn read_names(names: wasmparser::NameSectionReader<'_>, info: &mut ModuleInfo) {
    let mut module_name = None;
    let mut func_names = Vec::new();
    for name in names {
        match name {
            Ok(Name::Module { name, .. }) => module_name = Some(name.to_string()),
            Ok(Name::Function(map)) => {
                for n in map {
                    match n {
                        Ok(n) if (n.index as usize) < info.funcs.len() => {
                            func_names.push((n.index, n.name.to_string()))
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
    func_names.sort_by_key(|(i, _)| *i);
    func_names.dedup_by_key(|(i, _)| *i);
    info.name = module_name;
    info.func_names = func_names;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(bytes: &[u8], at: u64) -> Result<ConstExpr, CompileError> {
        const_expr(&wasmparser::ConstExpr::new(wasmparser::BinaryReader::new(
            bytes, at,
        )))
    }

    #[test]
    fn constant_expressions_decode_and_extended_ones_name_their_offset() {
        // i32.const -1; end
        assert_eq!(expr(&[0x41, 0x7f, 0x0b], 100), Ok(ConstExpr::I32(-1)));
        // i32.const 1; i32.const 2; i32.add; end: the second instruction makes it extended.
        assert_eq!(
            expr(&[0x41, 0x01, 0x41, 0x02, 0x6a, 0x0b], 100),
            Err(CompileError::Unsupported {
                feature: "extended-const".into(),
                offset: 102,
            })
        );
        // i32.add first (not a plain constant): the offset is the expression's first byte.
        assert_eq!(
            expr(&[0x6a, 0x0b], 100),
            Err(CompileError::Unsupported {
                feature: "extended-const".into(),
                offset: 100,
            })
        );
    }

    #[test]
    fn a_second_memory_is_unsupported_where_it_is_declared() {
        let mut info = ModuleInfo::default();
        let m = MemoryType {
            limits: Limits { min: 1, max: None },
        };
        push_memory(&mut info, m, 20).unwrap();
        assert_eq!(
            push_memory(&mut info, m, 30),
            Err(CompileError::Unsupported {
                feature: "multi-memory".into(),
                offset: 30,
            })
        );
        assert_eq!(info.memories.len(), 1);
    }
}
