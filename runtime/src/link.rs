//! Linking, done once per deployment and the same for every backend: a [`LinkedModule`] is a
//! loaded module whose imports are resolved against host functions and type-checked, with
//! everything an instance starts from evaluated ahead: the initial values of globals and
//! tables, the segment states and where the data segments land in the initial memory. A
//! backend then prepares it in its own form (the pool: a memory image in a sealed memfd and
//! function-pointer contexts for the host calls) and instantiates it without evaluating a
//! segment or a name again.
//!
//! Linked modules are what functions are: modules that import only host functions. Modules
//! importing memories, tables or globals (which only other instances could provide) are refused.

use crate::{instance, InstantiationError, LinkError, Module};
use fnvm_abi::module::*;
use fnvm_abi::{TrapCode, WASM_PAGE_SIZE};
use fnvm_host_interface::HostFuncDef;
use std::sync::Arc;

/// The initial value of a defined global, or of a table element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitValue {
    /// A number or null reference.
    Raw(u64),
    /// A funcref: the offset of its record in the instance's vmctx (relocated per instance).
    FuncRef(u32),
}

/// Initial contents of a table: 0 for null, otherwise the vmctx offset of a funcref record
/// (never 0: the vmctx header comes first). Relocated against each instance's vmctx.
pub(crate) type TableTemplate = Box<[u32]>;

/// Everything an instance of a linked module starts from.
#[derive(Debug)]
pub(crate) struct InstanceTemplate {
    /// The linear memory, if the module defines one.
    pub(crate) memory: Option<MemoryType>,
    /// Non-empty active data segments in order: (offset in memory, index in the module's
    /// data segments). All lie inside the initial memory.
    pub(crate) data_init: Box<[(usize, u32)]>,
    /// Bytes of the initial memory up to the end of the last data byte, in whole host pages:
    /// the part of the memory an image must cover.
    pub(crate) image_len: usize,
    pub(crate) globals: Box<[InitValue]>,
    pub(crate) tables: Box<[(TableType, TableTemplate)]>,
    /// Passive element segments (None: active or declared, dropped at instantiation).
    pub(crate) passive_elems: Box<[Option<TableTemplate>]>,
    /// Initial dropped state of each data segment (active ones are dropped once applied).
    pub(crate) data_dropped: Box<[bool]>,
}

struct LinkedInner<T> {
    /// Process-unique id (backends use it to recognise a module they are set up for).
    id: u64,
    module: Module,
    /// One per imported function, in import order.
    host_funcs: Box<[HostFuncDef<T>]>,
    template: InstanceTemplate,
}

/// A module linked against host functions over host state `T`, with its instance template
/// built. Cheap to clone; backends prepare it ([`ExecutionBackend::prepare`](crate::ExecutionBackend::prepare)).
pub struct LinkedModule<T> {
    inner: Arc<LinkedInner<T>>,
}

impl<T> Clone for LinkedModule<T> {
    fn clone(&self) -> Self {
        LinkedModule {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for LinkedModule<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedModule")
            .field("id", &self.inner.id)
            .field("imports", &self.inner.host_funcs.len())
            .field("template", &self.inner.template)
            .finish()
    }
}

fn import_err(imp: &Import) -> (String, String) {
    (imp.module.clone(), imp.name.clone())
}

fn init_trap(code: TrapCode) -> InstantiationError {
    InstantiationError::Trap(instance::trap(code))
}

/// Evaluates a constant expression of a module without imported globals.
fn const_value(module: &Module, e: &ConstExpr) -> Result<InitValue, LinkError> {
    Ok(match *e {
        ConstExpr::I32(v) => InitValue::Raw(v as u32 as u64),
        ConstExpr::I64(v) => InitValue::Raw(v as u64),
        ConstExpr::F32(v) => InitValue::Raw(v as u64),
        ConstExpr::F64(v) => InitValue::Raw(v),
        ConstExpr::RefNull => InitValue::Raw(0),
        ConstExpr::RefFunc(f) => InitValue::FuncRef(module.inner.offsets.funcref(f)),
        // Only imported globals may be read by constant expressions, and linked modules
        // import none.
        ConstExpr::GlobalGet(_) => return Err(LinkError::GlobalInConstExpr),
    })
}

fn template_item(module: &Module, e: &ConstExpr) -> Result<u32, LinkError> {
    match const_value(module, e)? {
        InitValue::FuncRef(off) => Ok(off),
        InitValue::Raw(_) => Ok(0),
    }
}

/// A segment offset: an i32 constant (validation guarantees the type).
fn offset_value(module: &Module, e: &ConstExpr) -> Result<u64, LinkError> {
    match const_value(module, e)? {
        InitValue::Raw(v) => Ok(v as u32 as u64),
        InitValue::FuncRef(_) => Ok(u64::MAX),
    }
}

impl<T> LinkedModule<T> {
    /// Links `module` against host functions: `resolve` is asked once per import and must
    /// return a function of exactly the import's type. Evaluates the segments; one that does
    /// not fit traps, as instantiation would.
    pub fn new(
        module: &Module,
        mut resolve: impl FnMut(&Import) -> Option<HostFuncDef<T>>,
    ) -> Result<LinkedModule<T>, InstantiationError> {
        let info = module.info();
        let mut host_funcs = Vec::with_capacity(info.imports.len());
        for imp in &info.imports {
            let ImportType::Func(t) = imp.ty else {
                let (module, name) = import_err(imp);
                let kind = match imp.ty {
                    ImportType::Table(_) => ExternKind::Table,
                    ImportType::Memory(_) => ExternKind::Memory,
                    ImportType::Global(_) | ImportType::Func(_) => ExternKind::Global,
                };
                return Err(LinkError::UnsupportedImportKind { module, name, kind }.into());
            };
            let def = resolve(imp).ok_or_else(|| {
                let (module, name) = import_err(imp);
                LinkError::UnknownImport { module, name }
            })?;
            let want = &info.types[t as usize];
            if def.ty != *want {
                let (module, name) = import_err(imp);
                return Err(LinkError::IncompatibleImport {
                    module,
                    name,
                    expected: format!("a function {want}"),
                    found: format!("a function {}", def.ty),
                }
                .into());
            }
            host_funcs.push(def);
        }
        let template = InstanceTemplate::new(module)?;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(LinkedModule {
            inner: Arc::new(LinkedInner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                module: module.clone(),
                host_funcs: host_funcs.into_boxed_slice(),
                template,
            }),
        })
    }

    /// The module.
    pub fn module(&self) -> &Module {
        &self.inner.module
    }

    /// The host function bound to each imported function, in import order.
    pub fn host_funcs(&self) -> &[HostFuncDef<T>] {
        &self.inner.host_funcs
    }

    /// Bytes of the initial memory that data segments cover (up to the last data byte, in
    /// whole host pages): what a backend's memory image holds.
    pub fn image_bytes(&self) -> usize {
        self.inner.template.image_len
    }

    /// Writes the initial memory's first [`image_bytes`](Self::image_bytes) into `dst`
    /// (which must be that long and zeroed), data segments applied in order.
    pub fn write_image(&self, dst: &mut [u8]) {
        let datas = &self.inner.module.info().datas;
        for &(off, seg) in self.inner.template.data_init.iter() {
            let bytes = &datas[seg as usize].data;
            if let Some(d) = dst.get_mut(off..off + bytes.len()) {
                d.copy_from_slice(bytes);
            }
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn template(&self) -> &InstanceTemplate {
        &self.inner.template
    }
}

impl InstanceTemplate {
    fn new(module: &Module) -> Result<InstanceTemplate, InstantiationError> {
        let info = module.info();
        let memory = info.memories.first().copied();
        let initial_bytes = memory.map_or(0, |m| m.limits.min as u64 * WASM_PAGE_SIZE);
        let mut data_dropped = vec![false; info.datas.len()];
        let mut data_init = Vec::new();
        let mut data_end = 0u64;
        for (i, seg) in info.datas.iter().enumerate() {
            let Some(offset) = &seg.offset else { continue };
            let off = offset_value(module, offset)?;
            let end = off.saturating_add(seg.data.len() as u64);
            if memory.is_none() || end > initial_bytes {
                return Err(init_trap(TrapCode::MemoryOutOfBounds));
            }
            data_dropped[i] = true;
            if !seg.data.is_empty() {
                data_end = data_end.max(end);
                data_init.push((off as usize, i as u32));
            }
        }
        let page = crate::mmap::page_size() as u64;
        let image_len = (data_end.div_ceil(page) * page) as usize;

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
                    let off = offset_value(module, offset)?;
                    let dst = tables.get_mut(*table as usize).and_then(|(_, t)| {
                        let off = usize::try_from(off).ok()?;
                        t.get_mut(off..off.checked_add(items.len())?)
                    });
                    let Some(dst) = dst else {
                        return Err(init_trap(TrapCode::TableOutOfBounds));
                    };
                    dst.copy_from_slice(&items);
                    passive_elems.push(None);
                }
                ElemMode::Passive => passive_elems.push(Some(items.into_boxed_slice())),
                ElemMode::Declared => passive_elems.push(None),
            }
        }
        Ok(InstanceTemplate {
            memory,
            data_init: data_init.into_boxed_slice(),
            image_len,
            globals,
            tables: tables
                .into_iter()
                .map(|(ty, t)| (ty, t.into_boxed_slice()))
                .collect(),
            passive_elems: passive_elems.into_boxed_slice(),
            data_dropped: data_dropped.into_boxed_slice(),
        })
    }
}
