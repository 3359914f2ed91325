//! Drives per-function compilation (in parallel) and lays the results out in one code section,
//! resolving calls between functions to pc-relative displacements so the section runs anywhere.

use crate::environ::ModuleTranslation;
use crate::func::{self, FuncEnv};
use crate::{CompileError, CompileOptions};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::entity::EntityRef;
use cranelift_codegen::ir::{ExternalName, Function};
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::{CompiledCode, FinalizedRelocTarget};
use cranelift_frontend::FunctionBuilderContext;
use fnvm_abi::module::*;
use fnvm_abi::VmOffsets;
use rayon::prelude::*;
use wasmparser::FuncValidatorAllocations;

/// Alignment of every function in the code section.
const FUNC_ALIGN: usize = 16;

/// One compiled function with the names its call relocations refer to.
struct Compiled {
    code: CompiledCode,
    /// Function index of each user external name, by `UserExternalNameRef` index.
    callees: Vec<u32>,
}

fn finish(func: &Function, code: CompiledCode) -> Compiled {
    let callees = func
        .params
        .user_named_funcs()
        .values()
        .map(|n| n.index)
        .collect();
    Compiled { code, callees }
}

/// A function body with its validator, as the module parser hands it over.
type Body<'a> = (
    wasmparser::FuncToValidate<wasmparser::ValidatorResources>,
    wasmparser::FunctionBody<'a>,
);

/// The environment function translation needs.
fn func_env<'m>(
    info: &'m ModuleInfo,
    options: &CompileOptions,
) -> Result<FuncEnv<'m>, CompileError> {
    let offsets = VmOffsets::new(info.vm_shape())
        .ok_or_else(|| CompileError::Limit("too many functions, tables or globals".into()))?;
    Ok(FuncEnv {
        info,
        offsets,
        epoch_interruption: options.epoch_interruption,
    })
}

/// Validates body `i` (of the defined functions) and translates it to IR.
fn validate_and_translate(
    wasm: &[u8],
    env: &FuncEnv<'_>,
    isa: &dyn TargetIsa,
    i: usize,
    (validator, body): Body<'_>,
) -> Result<(u32, Function), CompileError> {
    let mut v = validator.into_validator(FuncValidatorAllocations::default());
    v.validate(&body)
        .map_err(|e| crate::environ::classify_error(wasm, &e))?;
    let index = env.info.num_imported_funcs() + i as u32;
    let mut f = Function::new();
    let mut fctx = FunctionBuilderContext::new();
    func::translate(env, index, &body, &mut f, &mut fctx, isa.frontend_config())?;
    Ok((index, f))
}

/// Translates (and validates) every body without compiling it; returns the IR text.
pub(crate) fn translate_only(
    wasm: &[u8],
    translation: ModuleTranslation<'_>,
    isa: &dyn TargetIsa,
    options: &CompileOptions,
) -> Result<String, CompileError> {
    let ModuleTranslation { info, bodies } = translation;
    let env = func_env(&info, options)?;
    let mut out = String::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let (_, f) = validate_and_translate(wasm, &env, isa, i, body)?;
        out.push_str(&f.display().to_string());
        out.push('\n');
    }
    Ok(out)
}

pub(crate) fn compile_and_link(
    wasm: &[u8],
    translation: ModuleTranslation<'_>,
    isa: &dyn TargetIsa,
    options: &CompileOptions,
) -> Result<(ModuleInfo, Vec<u8>), CompileError> {
    let ModuleTranslation { mut info, bodies } = translation;
    let env = func_env(&info, options)?;
    let first = info.num_imported_funcs();
    let compile_one = |(i, body): (usize, Body<'_>)| -> Result<Compiled, CompileError> {
        let (index, f) = validate_and_translate(wasm, &env, isa, i, body)?;
        let code = func::compile_function(isa, f.clone(), index)?;
        Ok(finish(&f, code))
    };
    let compiled: Vec<Compiled> = if options.parallel {
        bodies
            .into_par_iter()
            .enumerate()
            .map(compile_one)
            .collect::<Result<_, _>>()?
    } else {
        bodies
            .into_iter()
            .enumerate()
            .map(compile_one)
            .collect::<Result<_, _>>()?
    };
    let tramps: Vec<(Compiled, Compiled)> = info
        .types
        .par_iter()
        .map(|ty| {
            let mut fctx = FunctionBuilderContext::new();
            let a = crate::trampolines::array_call(ty, &mut fctx, isa.frontend_config());
            let h = crate::trampolines::host_call(ty, &mut fctx, isa.frontend_config());
            let ac = func::compile_function(isa, a.clone(), u32::MAX)?;
            let hc = func::compile_function(isa, h.clone(), u32::MAX)?;
            Ok((finish(&a, ac), finish(&h, hc)))
        })
        .collect::<Result<_, CompileError>>()?;

    // Layout: functions in index order, then trampolines.
    let mut text: Vec<u8> = Vec::new();
    let mut place = |c: &Compiled| -> CodeRange {
        let start = text.len().div_ceil(FUNC_ALIGN) * FUNC_ALIGN;
        text.resize(start, 0xcc); // int3 padding
        text.extend_from_slice(c.code.code_buffer());
        CodeRange {
            offset: start as u32,
            len: c.code.code_buffer().len() as u32,
        }
    };
    let func_ranges: Vec<CodeRange> = compiled.iter().map(&mut place).collect();
    let tramp_ranges: Vec<TypeTrampolines> = tramps
        .iter()
        .map(|(a, h)| TypeTrampolines {
            array_call: place(a),
            host_call: place(h),
        })
        .collect();
    if text.len() > u32::MAX as usize / 2 {
        return Err(CompileError::Limit("code section larger than 2 GiB".into()));
    }

    let mut traps = Vec::new();
    let mut addr_map = Vec::new();
    let all = compiled.iter().zip(&func_ranges).chain(
        tramps
            .iter()
            .zip(&tramp_ranges)
            .flat_map(|((a, h), r)| [(a, &r.array_call), (h, &r.host_call)]),
    );
    for (c, range) in all {
        let base = range.offset;
        for t in c.code.buffer.traps() {
            let code = func::our_trap(t.code).ok_or_else(|| CompileError::Codegen {
                func: u32::MAX,
                message: format!("unknown trap code {:?}", t.code),
            })?;
            traps.push(TrapSite {
                offset: base + t.offset,
                code,
            });
        }
        let mut last_end = None;
        for s in c.code.buffer.get_srclocs_sorted() {
            if s.loc.is_default() {
                continue;
            }
            if let Some(end) = last_end {
                if end != s.start {
                    addr_map.push(AddrMapEntry {
                        code_offset: base + end,
                        wasm_offset: u32::MAX,
                    });
                }
            }
            addr_map.push(AddrMapEntry {
                code_offset: base + s.start,
                wasm_offset: s.loc.bits(),
            });
            last_end = Some(s.end);
        }
        if let Some(end) = last_end {
            addr_map.push(AddrMapEntry {
                code_offset: base + end,
                wasm_offset: u32::MAX,
            });
        }
        for r in c.code.buffer.relocs() {
            let target = match (&r.kind, &r.target) {
                (
                    Reloc::X86CallPCRel4,
                    FinalizedRelocTarget::ExternalName(ExternalName::User(n)),
                ) => {
                    let callee =
                        *c.callees
                            .get(n.index())
                            .ok_or_else(|| CompileError::Codegen {
                                func: u32::MAX,
                                message: "relocation to an undeclared function".into(),
                            })?;
                    let idx = callee
                        .checked_sub(first)
                        .ok_or_else(|| CompileError::Codegen {
                            func: callee,
                            message: "direct call to an imported function".into(),
                        })?;
                    func_ranges
                        .get(idx as usize)
                        .ok_or_else(|| CompileError::Codegen {
                            func: callee,
                            message: "call to a function out of range".into(),
                        })?
                        .offset as i64
                }
                (kind, target) => {
                    return Err(CompileError::Codegen {
                        func: u32::MAX,
                        message: format!("unexpected relocation {kind:?} to {target:?}"),
                    })
                }
            };
            let at = base as i64 + r.offset as i64;
            let disp = target + r.addend - at;
            let disp =
                i32::try_from(disp).map_err(|_| CompileError::Limit("call displacement".into()))?;
            let at = at as usize;
            text[at..at + 4].copy_from_slice(&disp.to_le_bytes());
        }
    }
    traps.sort_by_key(|t| t.offset);
    addr_map.sort_by_key(|e| e.code_offset);
    info.code = func_ranges;
    info.trampolines = tramp_ranges;
    info.traps = traps;
    info.addr_map = addr_map;
    Ok((info, text))
}
