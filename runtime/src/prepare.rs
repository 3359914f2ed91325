//! Module preparation, done once per deployment: an [`InstancePre`] is a loaded module linked
//! against its host functions (every import resolved and type-checked), with everything an
//! instance starts from computed ahead: the memory image (data segments applied, in a sealed
//! memfd), the initial values of globals and tables, and the segment states. Instantiating it in
//! a pool slot then only copies these templates; it never evaluates a segment or a name.
//!
//! Pooled instances are what functions are: modules that import only host functions. Modules
//! importing memories, tables or globals (which only other instances could provide) are refused.

use crate::host::{Caller, HostExit, HostFn, HostFuncDef};
use crate::image::MemoryImage;
use crate::instance::{instance_of, memory_of};
use crate::traphandlers;
use crate::{HostError, InstantiationError, Module};
use fnvm_abi::module::*;
use fnvm_abi::{TrapCode, WASM_PAGE_SIZE};
use std::sync::Arc;

/// What the host-call trampoline of an import finds at its "callee vmctx": the dispatcher
/// first (the trampoline loads it from offset 0), then the host function.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HostCallCtx {
    dispatch: extern "C" fn(*mut HostCallCtx, *mut u8, *mut [u64; 2]) -> u32,
    func: HostFn,
    /// Value slots the trampoline passes: max(params, results, 1).
    nslots: usize,
    /// Bit i set: parameter i is 32 bits wide. The trampoline stores only the value's own bytes,
    /// so the dispatcher zero-extends these before the host function sees them.
    narrow_params: u64,
}

/// The initial value of a defined global.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GlobalInit {
    /// A number or null reference.
    Raw(u64),
    /// A funcref: the offset of its record in the instance's vmctx.
    FuncRef(u32),
}

/// Initial contents of a table: 0 for null, otherwise the vmctx offset of a funcref record
/// (never 0: the vmctx header comes first). Relocated against the slot's vmctx.
pub(crate) type TableTemplate = Box<[u32]>;

#[derive(Debug)]
pub(crate) struct PreInner {
    /// Process-unique id, which pool slots remember to find one set up for this module.
    pub(crate) id: u64,
    pub(crate) module: Module,
    /// One per imported function, in import order; boxed slice so addresses are stable.
    pub(crate) host_calls: Box<[HostCallCtx]>,
    pub(crate) memory: Option<MemoryType>,
    pub(crate) image: Option<MemoryImage>,
    pub(crate) globals: Box<[GlobalInit]>,
    pub(crate) tables: Box<[(TableType, TableTemplate)]>,
    /// Passive element segments (None: active or declared, dropped at instantiation).
    pub(crate) passive_elems: Box<[Option<TableTemplate>]>,
    /// Initial dropped state of each data segment (active ones are dropped once applied).
    pub(crate) data_dropped: Box<[bool]>,
}

/// A module linked against its host functions with its instance templates built; instantiate it
/// with [`InstancePool::instantiate`](crate::InstancePool::instantiate). Cheap to clone.
#[derive(Debug, Clone)]
pub struct InstancePre {
    pub(crate) inner: Arc<PreInner>,
}

fn link_err(imp: &Import, why: &str) -> InstantiationError {
    InstantiationError::Link(format!("import {}::{}: {why}", imp.module, imp.name))
}

fn init_trap(code: TrapCode) -> InstantiationError {
    InstantiationError::Trap(crate::instance::trap(code))
}

/// Evaluates a constant expression of a module without imported globals.
fn const_value(module: &Module, e: &ConstExpr) -> Result<GlobalInit, InstantiationError> {
    Ok(match *e {
        ConstExpr::I32(v) => GlobalInit::Raw(v as u32 as u64),
        ConstExpr::I64(v) => GlobalInit::Raw(v as u64),
        ConstExpr::F32(v) => GlobalInit::Raw(v as u64),
        ConstExpr::F64(v) => GlobalInit::Raw(v),
        ConstExpr::RefNull => GlobalInit::Raw(0),
        ConstExpr::RefFunc(f) => GlobalInit::FuncRef(module.inner.offsets.funcref(f)),
        ConstExpr::GlobalGet(_) => {
            // Only imported globals may be read by constant expressions, and pooled modules
            // import none; the compiler refuses the rest.
            return Err(InstantiationError::Link(
                "constant expression reads a global, which pooled instances cannot import".into(),
            ));
        }
    })
}

fn template_item(module: &Module, e: &ConstExpr) -> Result<u32, InstantiationError> {
    match const_value(module, e)? {
        GlobalInit::FuncRef(off) => Ok(off),
        GlobalInit::Raw(_) => Ok(0),
    }
}

fn offset_value(module: &Module, e: &ConstExpr) -> Result<u64, InstantiationError> {
    match const_value(module, e)? {
        GlobalInit::Raw(v) => Ok(v as u32 as u64),
        GlobalInit::FuncRef(_) => Err(InstantiationError::Link(
            "segment offset is a reference".into(),
        )),
    }
}

impl InstancePre {
    /// Links `module` against host functions: `resolve` is asked once per import and must return
    /// a function of exactly the import's type. Builds the memory image and the templates.
    pub fn new(
        module: &Module,
        resolve: &mut dyn FnMut(&Import) -> Option<HostFuncDef>,
    ) -> Result<InstancePre, InstantiationError> {
        let info = module.info();
        let mut host_calls = Vec::new();
        for imp in &info.imports {
            let ImportType::Func(t) = imp.ty else {
                return Err(link_err(
                    imp,
                    "pooled instances import only host functions, not memories, tables or globals",
                ));
            };
            let def = resolve(imp).ok_or_else(|| link_err(imp, "unknown import"))?;
            let want = &info.types[t as usize];
            if def.ty != *want {
                return Err(link_err(
                    imp,
                    &format!(
                        "the host function has type {}, the module wants {want}",
                        def.ty
                    ),
                ));
            }
            let narrow_params = want
                .params
                .iter()
                .take(64)
                .enumerate()
                .filter(|(_, t)| matches!(t, ValType::I32 | ValType::F32))
                .fold(0u64, |m, (i, _)| m | 1 << i);
            host_calls.push(HostCallCtx {
                dispatch: host_call_dispatch,
                func: def.func,
                nslots: want.params.len().max(want.results.len()).max(1),
                narrow_params,
            });
        }

        let memory = info.memories.first().copied();
        let initial_bytes = memory.map_or(0, |m| m.limits.min as u64 * WASM_PAGE_SIZE);
        let mut data_dropped = vec![false; info.datas.len()];
        let mut segments = Vec::new();
        let mut image_len = 0u64;
        for (i, seg) in info.datas.iter().enumerate() {
            let Some(offset) = &seg.offset else { continue };
            let off = offset_value(module, offset)?;
            let end = off + seg.data.len() as u64;
            if memory.is_none() || end > initial_bytes {
                return Err(init_trap(TrapCode::MemoryOutOfBounds));
            }
            data_dropped[i] = true;
            if !seg.data.is_empty() {
                image_len = image_len.max(end);
                segments.push((off as usize, &seg.data[..]));
            }
        }
        let page = crate::mmap::page_size() as u64;
        let image = if image_len > 0 {
            let len = image_len.div_ceil(page) * page;
            let img = MemoryImage::new(len as usize, segments.into_iter())
                .map_err(|e| InstantiationError::Resource(format!("building memory image: {e}")))?;
            Some(img)
        } else {
            None
        };

        let globals = info
            .global_inits
            .iter()
            .map(|g| const_value(module, g))
            .collect::<Result<Box<[_]>, _>>()?;

        let mut tables: Vec<(TableType, Vec<u32>)> = info
            .tables
            .iter()
            .map(|ty| (*ty, vec![0u32; ty.limits.min as usize]))
            .collect();
        let mut passive_elems = Vec::with_capacity(info.elems.len());
        for seg in &info.elems {
            let items = seg
                .items
                .iter()
                .map(|e| template_item(module, e))
                .collect::<Result<Vec<_>, _>>()?;
            match &seg.mode {
                ElemMode::Active { table, offset } => {
                    let off = offset_value(module, offset)? as usize;
                    let Some((_, t)) = tables.get_mut(*table as usize) else {
                        return Err(init_trap(TrapCode::TableOutOfBounds));
                    };
                    let Some(dst) = t.get_mut(off..off + items.len()) else {
                        return Err(init_trap(TrapCode::TableOutOfBounds));
                    };
                    dst.copy_from_slice(&items);
                    passive_elems.push(None);
                }
                ElemMode::Passive => passive_elems.push(Some(items.into_boxed_slice())),
                ElemMode::Declared => passive_elems.push(None),
            }
        }

        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(InstancePre {
            inner: Arc::new(PreInner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                module: module.clone(),
                host_calls: host_calls.into_boxed_slice(),
                memory,
                image,
                globals,
                tables: tables
                    .into_iter()
                    .map(|(ty, t)| (ty, t.into_boxed_slice()))
                    .collect(),
                passive_elems: passive_elems.into_boxed_slice(),
                data_dropped: data_dropped.into_boxed_slice(),
            }),
        })
    }

    /// The module.
    pub fn module(&self) -> &Module {
        &self.inner.module
    }

    /// Bytes of the memory image (the initial memory up to its last data byte).
    pub fn image_bytes(&self) -> usize {
        self.inner.image.as_ref().map_or(0, |i| i.len())
    }

    /// Host memory the prepared module itself holds, shared by all its instances: its code and
    /// its memory image.
    pub fn resident_bytes(&self) -> usize {
        self.inner.module.code_bytes() + self.image_bytes()
    }
}

/// The dispatcher the host-call trampoline calls: hands the host function its caller (memory
/// and host state of the calling instance) and the argument slots.
extern "C" fn host_call_dispatch(
    ctx: *mut HostCallCtx,
    caller_vmctx: *mut u8,
    values: *mut [u64; 2],
) -> u32 {
    // SAFETY: `ctx` is the HostCallCtx an import record of the caller points to; it belongs to
    // the InstancePre the calling instance's slot holds for as long as the instance lives.
    let ctx = unsafe { &*ctx };
    // SAFETY: the trampoline passes the calling instance's own vmctx, whose INSTANCE field
    // points to its live InstanceData.
    let inst = unsafe { instance_of(caller_vmctx) };
    // SAFETY: the trampoline passes `nslots` value slots.
    let slots = unsafe { std::slice::from_raw_parts_mut(values, ctx.nslots) };
    let mut args = [0u64; 16];
    let mut heap;
    let raw: &mut [u64] = if ctx.nslots <= args.len() {
        &mut args[..ctx.nslots]
    } else {
        heap = vec![0u64; ctx.nslots];
        &mut heap
    };
    for (i, (r, s)) in raw.iter_mut().zip(slots.iter()).enumerate() {
        let narrow = i < 64 && ctx.narrow_params & (1 << i) != 0;
        *r = if narrow { s[0] as u32 as u64 } else { s[0] };
    }
    let host_data = inst.host_data;
    let memory: &mut [u8] = match memory_of(inst) {
        Some(m) => m.data_mut(),
        None => &mut [],
    };
    let mut none = ();
    let data: &mut (dyn std::any::Any + Send) = match host_data {
        // SAFETY: the slot owns the host state and keeps it alive, unaliased, while the
        // instance runs; guest code is suspended during this call.
        Some(p) => unsafe { &mut *p },
        None => &mut none,
    };
    let mut caller = Caller::new(memory, data, caller_vmctx as usize);
    let func = ctx.func;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| func(&mut caller, raw)));
    match result {
        Ok(Ok(())) => {
            for (s, r) in slots.iter_mut().zip(raw.iter()) {
                s[0] = *r;
            }
            0
        }
        Ok(Err(HostExit::Exit(code))) => {
            traphandlers::record_host_exit(code);
            1
        }
        Ok(Err(HostExit::Trap(msg))) => {
            traphandlers::record_host_trap(HostError(msg));
            1
        }
        Err(_) => {
            traphandlers::record_host_trap(HostError("host function panicked".into()));
            1
        }
    }
}
