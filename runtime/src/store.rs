//! The store: owner of instances, memories, tables, globals and host functions; instantiation,
//! calls from the host into the guest, and the builtins compiled code calls back into.

use crate::instance::{const_eval, memory_of, symbolize, table_of, trap, InstanceData, VmCtx};
use crate::memory::MemoryData;
use crate::table::TableData;
use crate::traphandlers::{self, catch_traps, CodeRegistry, GuestStack};
use crate::vm::{VmFuncRef, VmLimits};
use crate::{Engine, HostError, InstantiationError, Module, RuntimeError, Trap, Val};
use fnvm_abi::module::*;
use fnvm_abi::{TrapCode, VmOffsets};

/// A function (wasm or host) in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Func(u32);
/// A global in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Global(u32);
/// A table in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table(u32);
/// A linear memory in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory(u32);
/// An instance in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance(u32);

/// Something an instance can import or export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    /// A function.
    Func(Func),
    /// A table.
    Table(Table),
    /// A memory.
    Memory(Memory),
    /// A global.
    Global(Global),
}

type HostFn = dyn Fn(&[Val]) -> Result<Vec<Val>, HostError>;

/// A host function as guest code sees it. `dispatch` must stay first: the host-call trampoline
/// loads it from offset 0 of its "callee vmctx".
#[repr(C)]
struct HostFuncCtx {
    dispatch: extern "C" fn(*mut HostFuncCtx, *mut u8, *mut [u64; 2]) -> u32,
    funcref: VmFuncRef,
    ty: FuncType,
    store: *mut StoreInner,
    f: Box<HostFn>,
}

/// Everything is boxed so its address stays put: vmctxs, tables and host functions hold raw
/// pointers to one another.
#[expect(
    clippy::vec_box,
    reason = "elements must keep their addresses when the Vec grows"
)]
struct StoreInner {
    engine: Engine,
    code: CodeRegistry,
    /// Where guest code runs, mapped on the first call.
    stack: Option<GuestStack>,
    limits: Box<VmLimits>,
    instances: Vec<Box<InstanceData>>,
    memories: Vec<Box<MemoryData>>,
    tables: Vec<Box<TableData>>,
    host_globals: Vec<Box<[u64; 2]>>,
    host_funcs: Vec<Box<HostFuncCtx>>,
    funcs: Vec<*const VmFuncRef>,
    globals: Vec<(*mut u8, GlobalType)>,
}

/// Owns everything instances use. Not `Send`: guest code runs on the thread that owns the store.
pub struct Store {
    inner: Box<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("instances", &self.inner.instances.len())
            .finish()
    }
}

// ---- value slots ------------------------------------------------------------------------------

impl StoreInner {
    fn val_to_raw(&self, v: &Val) -> Result<u64, RuntimeError> {
        match *v {
            Val::FuncRef(Some(f)) => self
                .funcs
                .get(f.0 as usize)
                .map(|p| *p as u64)
                .ok_or_else(|| RuntimeError::Type("function from another store".into())),
            // Every other value encodes without the store.
            other => Ok(other.to_raw().unwrap_or(0)),
        }
    }

    fn val_from_raw(&mut self, ty: ValType, raw: u64) -> Val {
        Val::from_raw(ty, raw)
            .unwrap_or_else(|| Val::FuncRef(Some(self.func_handle(raw as *const VmFuncRef))))
    }

    fn func_handle(&mut self, p: *const VmFuncRef) -> Func {
        self.funcs.push(p);
        Func(self.funcs.len() as u32 - 1)
    }
}

// ---- host functions ---------------------------------------------------------------------------

extern "C" fn host_dispatch(ctx: *mut HostFuncCtx, _caller: *mut u8, values: *mut [u64; 2]) -> u32 {
    // SAFETY: `ctx` is the host function context the import record points to; it is owned by
    // the store, which outlives every call into its instances.
    let ctx = unsafe { &*ctx };
    // SAFETY: the store outlives its host functions; guest code runs only inside Store::call,
    // which does not hold a borrow of the inner store across the call.
    let store = unsafe { &mut *ctx.store };
    let n = ctx.ty.params.len().max(ctx.ty.results.len()).max(1);
    // SAFETY: the trampoline passes a buffer of max(params, results, 1) slots.
    let slots = unsafe { std::slice::from_raw_parts_mut(values, n) };
    let args: Vec<Val> = ctx
        .ty
        .params
        .iter()
        .zip(slots.iter())
        .map(|(t, s)| store.val_from_raw(*t, s[0]))
        .collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.f)(&args)));
    let results = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            traphandlers::record_host_trap(e);
            return 1;
        }
        Err(_) => {
            traphandlers::record_host_trap(HostError("host function panicked".into()));
            return 1;
        }
    };
    if results.len() != ctx.ty.results.len()
        || results
            .iter()
            .zip(&ctx.ty.results)
            .any(|(v, t)| v.ty() != *t)
    {
        traphandlers::record_host_trap(HostError("host function returned wrong types".into()));
        return 1;
    }
    for (slot, v) in slots.iter_mut().zip(&results) {
        match store.val_to_raw(v) {
            Ok(raw) => slot[0] = raw,
            Err(e) => {
                traphandlers::record_host_trap(HostError(e.to_string()));
                return 1;
            }
        }
    }
    0
}

// ---- the store ---------------------------------------------------------------------------------

impl Store {
    /// An empty store.
    pub fn new(engine: &Engine) -> Store {
        Store {
            inner: Box::new(StoreInner {
                engine: engine.clone(),
                code: CodeRegistry::default(),
                stack: None,
                limits: Box::new(VmLimits {
                    stack_limit: 0,
                    epoch_deadline: u64::MAX,
                }),
                instances: Vec::new(),
                memories: Vec::new(),
                tables: Vec::new(),
                host_globals: Vec::new(),
                host_funcs: Vec::new(),
                funcs: Vec::new(),
                globals: Vec::new(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Lets guest code run until the engine's epoch advances `ticks` more times.
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        self.inner.limits.epoch_deadline = self.inner.engine.epoch().saturating_add(ticks);
    }

    /// Creates a host function.
    pub fn new_host_func(&mut self, ty: FuncType, f: Box<HostFn>) -> Func {
        let type_id = self.inner.engine.register_type(&ty);
        let store: *mut StoreInner = &mut *self.inner;
        let mut ctx = Box::new(HostFuncCtx {
            dispatch: host_dispatch,
            funcref: VmFuncRef {
                // A host function has no wasm-convention entry of its own: it gets the importing
                // module's host-call trampoline when imported.
                wasm_call: std::ptr::null(),
                array_call: std::ptr::null(),
                type_id: type_id as u64,
                vmctx: std::ptr::null_mut(),
            },
            ty,
            store,
            f,
        });
        let ctx_ptr: *mut HostFuncCtx = &mut *ctx;
        ctx.funcref.vmctx = ctx_ptr.cast();
        let fr: *const VmFuncRef = &ctx.funcref;
        self.inner.host_funcs.push(ctx);
        self.inner.func_handle(fr)
    }

    /// Creates a global.
    pub fn new_global(&mut self, ty: GlobalType, val: Val) -> Result<Global, RuntimeError> {
        if val.ty() != ty.ty {
            return Err(RuntimeError::Type(format!(
                "{} value for a {} global",
                val.ty(),
                ty.ty
            )));
        }
        let raw = self.inner.val_to_raw(&val)?;
        let mut b = Box::new([raw, 0u64]);
        let p = b.as_mut_ptr() as *mut u8;
        self.inner.host_globals.push(b);
        self.inner.globals.push((p, ty));
        Ok(Global(self.inner.globals.len() as u32 - 1))
    }

    /// Creates a table filled with nulls.
    pub fn new_table(&mut self, ty: TableType) -> Result<Table, RuntimeError> {
        let cap = self.inner.engine.config().max_table_elements;
        let t = TableData::new(ty, 0, cap).map_err(RuntimeError::Resource)?;
        self.inner.tables.push(t);
        Ok(Table(self.inner.tables.len() as u32 - 1))
    }

    /// Creates a memory.
    pub fn new_memory(&mut self, ty: MemoryType) -> Result<Memory, RuntimeError> {
        let cap = self.inner.engine.config().max_memory_pages;
        let m = MemoryData::new(ty, cap).map_err(RuntimeError::Resource)?;
        self.inner.memories.push(m);
        Ok(Memory(self.inner.memories.len() as u32 - 1))
    }

    /// The type of a function.
    pub fn func_type(&self, f: Func) -> Option<FuncType> {
        let p = *self.inner.funcs.get(f.0 as usize)?;
        // SAFETY: funcref records live as long as the store.
        let id = unsafe { (*p).type_id };
        self.inner.engine.type_of(id as u32)
    }

    /// The type of a global.
    pub fn global_type(&self, g: Global) -> Option<GlobalType> {
        self.inner.globals.get(g.0 as usize).map(|(_, t)| *t)
    }

    /// The value of a global.
    pub fn global_get(&mut self, g: Global) -> Option<Val> {
        let (p, ty) = *self.inner.globals.get(g.0 as usize)?;
        // SAFETY: global storage lives as long as the store and holds 16 bytes.
        let raw = unsafe { (p as *const u64).read() };
        Some(self.inner.val_from_raw(ty.ty, raw))
    }

    /// Current size of a memory in pages.
    pub fn memory_pages(&self, m: Memory) -> Option<u64> {
        self.inner.memories.get(m.0 as usize).map(|m| m.pages())
    }

    /// The bytes of a memory.
    pub fn memory_data(&mut self, m: Memory) -> Option<&mut [u8]> {
        self.inner
            .memories
            .get_mut(m.0 as usize)
            .map(|m| m.data_mut())
    }

    /// The size of a table.
    pub fn table_size(&self, t: Table) -> Option<u64> {
        self.inner.tables.get(t.0 as usize).map(|t| t.len())
    }

    /// Finds an export of an instance.
    pub fn get_export(&mut self, instance: Instance, name: &str) -> Option<Extern> {
        let inner = &mut *self.inner;
        let inst = inner.instances.get(instance.0 as usize)?;
        let info = inst.module.info();
        let e = info.exports.iter().find(|e| e.name == name)?;
        let offsets = &inst.module.inner.offsets;
        Some(match e.kind {
            ExternKind::Func => {
                // SAFETY: the funcref array is inside the vmctx.
                let p = unsafe { inst.vmctx.ptr().add(offsets.funcref(e.index) as usize) };
                Extern::Func(inner.func_handle(p as *const VmFuncRef))
            }
            ExternKind::Table => Extern::Table(Table(inst.tables.get(e.index as usize)?.0)),
            ExternKind::Memory => Extern::Memory(Memory(inst.memory?.0)),
            ExternKind::Global => {
                let ni = info.num_imported_globals();
                let ty = info.globals[e.index as usize];
                let p = if e.index < ni {
                    inst.vmctx.get(offsets.imported_global_ptr(e.index)) as *mut u8
                } else {
                    // SAFETY: defined globals live inside the vmctx.
                    unsafe {
                        inst.vmctx
                            .ptr()
                            .add(offsets.defined_global(e.index - ni) as usize)
                    }
                };
                inner.globals.push((p, ty));
                Extern::Global(Global(inner.globals.len() as u32 - 1))
            }
        })
    }

    /// Instantiates `module` with `imports` given in the order of its import section.
    pub fn instantiate(
        &mut self,
        module: &Module,
        imports: &[Extern],
    ) -> Result<Instance, InstantiationError> {
        let link = |s: String| InstantiationError::Link(s);
        if !std::sync::Arc::ptr_eq(&module.inner.engine.inner, &self.inner.engine.inner) {
            return Err(link("module belongs to another engine".into()));
        }
        let info = module.info();
        if imports.len() != info.imports.len() {
            return Err(link(format!(
                "module needs {} imports, {} given",
                info.imports.len(),
                imports.len()
            )));
        }
        let offsets = module.inner.offsets;
        let vmctx = VmCtx::new(offsets.size());
        self.inner.code.insert(module);
        let code_base = module.code_base();
        let config = self.inner.engine.config().clone();
        let inner = &mut *self.inner;

        vmctx.set_header(&*inner.limits, &inner.engine, module);

        let mut data = Box::new(InstanceData {
            module: module.clone(),
            vmctx,
            memory: None,
            tables: Vec::new(),
            elems: Vec::new(),
            data_dropped: vec![false; info.datas.len()],
            host_data: None,
        });

        // Imports.
        let (mut fi, mut gi) = (0u32, 0u32);
        for (imp, ext) in info.imports.iter().zip(imports) {
            let what = format!("import {}::{}", imp.module, imp.name);
            match (imp.ty, ext) {
                (ImportType::Func(t), Extern::Func(f)) => {
                    let p = *inner
                        .funcs
                        .get(f.0 as usize)
                        .ok_or_else(|| link(format!("{what}: unknown function")))?;
                    // SAFETY: funcref records live as long as the store.
                    let mut fr = unsafe { *p };
                    if fr.type_id != module.inner.type_ids[t as usize] as u64 {
                        return Err(link(format!("{what}: incompatible import type")));
                    }
                    if fr.array_call.is_null() {
                        // A host function: enter it through this module's trampoline.
                        let tr = info.trampolines[t as usize].host_call;
                        // SAFETY: the trampoline lies inside this module's code.
                        fr.wasm_call = unsafe { code_base.add(tr.offset as usize) };
                    }
                    data.vmctx.set_func_import(&offsets, fi, &fr);
                    fi += 1;
                }
                (ImportType::Table(want), Extern::Table(t)) => {
                    let tab = inner
                        .tables
                        .get_mut(t.0 as usize)
                        .ok_or_else(|| link(format!("{what}: unknown table")))?;
                    let have = Limits {
                        min: tab.len() as u32,
                        max: tab.ty.limits.max,
                    };
                    if tab.ty.elem != want.elem || !have.matches(&want.limits) {
                        return Err(link(format!("{what}: incompatible import type")));
                    }
                    let p: *mut TableData = &mut **tab;
                    data.tables.push((t.0, p));
                }
                (ImportType::Memory(want), Extern::Memory(m)) => {
                    let mem = inner
                        .memories
                        .get_mut(m.0 as usize)
                        .ok_or_else(|| link(format!("{what}: unknown memory")))?;
                    let have = Limits {
                        min: mem.pages() as u32,
                        max: mem.ty.limits.max,
                    };
                    if !have.matches(&want.limits) {
                        return Err(link(format!("{what}: incompatible import type")));
                    }
                    let p: *mut MemoryData = &mut **mem;
                    data.memory = Some((m.0, p));
                }
                (ImportType::Global(want), Extern::Global(g)) => {
                    let (p, ty) = *inner
                        .globals
                        .get(g.0 as usize)
                        .ok_or_else(|| link(format!("{what}: unknown global")))?;
                    if ty != want {
                        return Err(link(format!("{what}: incompatible import type")));
                    }
                    data.vmctx.set(offsets.imported_global_ptr(gi), p as u64);
                    gi += 1;
                }
                _ => return Err(link(format!("{what}: incompatible import type"))),
            }
        }

        // Defined memory and tables.
        if data.memory.is_none() {
            if let Some(ty) = info.memories.first() {
                let m = MemoryData::new(*ty, config.max_memory_pages)
                    .map_err(InstantiationError::Resource)?;
                inner.memories.push(m);
                let idx = inner.memories.len() as u32 - 1;
                let p: *mut MemoryData = &mut *inner.memories[idx as usize];
                data.memory = Some((idx, p));
            }
        }
        if let Some((_, p)) = data.memory {
            // SAFETY: the memory is owned by the store, which outlives its instances.
            unsafe { data.vmctx.set_memory(&(*p).def) };
        }
        for ty in &info.tables[data.tables.len()..] {
            let t = TableData::new(*ty, 0, config.max_table_elements)
                .map_err(InstantiationError::Resource)?;
            inner.tables.push(t);
            let idx = inner.tables.len() as u32 - 1;
            let p: *mut TableData = &mut *inner.tables[idx as usize];
            data.tables.push((idx, p));
        }
        for (i, (_, p)) in data.tables.iter().enumerate() {
            // SAFETY: tables are owned by the store.
            let def: *mut crate::vm::VmTableDefinition = unsafe { &mut (**p).def };
            data.vmctx.set(offsets.table_ptr(i as u32), def as u64);
        }

        data.vmctx.set_defined_funcrefs(module);
        let vmctx_ptr = data.vmctx.ptr();

        // The instance is now addressable; register it before running any guest-visible
        // initialisation, since shared tables may keep pointers into it even if that traps.
        let data_ptr: *mut InstanceData = &mut *data;
        data.vmctx.set(VmOffsets::INSTANCE, data_ptr as u64);
        inner.instances.push(data);
        let handle = Instance(inner.instances.len() as u32 - 1);
        // SAFETY: boxed; lives as long as the store.
        let data = unsafe { &mut *data_ptr };

        // Defined globals.
        for (i, init) in info.global_inits.iter().enumerate() {
            let raw = const_eval(data, init);
            data.vmctx.set(offsets.defined_global(i as u32), raw);
        }

        // Element segments, then data segments, in order; the first out-of-bounds one traps.
        for seg in &info.elems {
            let items: Vec<u64> = seg.items.iter().map(|e| const_eval(data, e)).collect();
            match seg.mode {
                ElemMode::Active { table, offset } => {
                    let off = const_eval(data, &offset) as u32 as u64;
                    let Some(t) = table_of(data, table) else {
                        return Err(InstantiationError::Trap(trap(TrapCode::TableOutOfBounds)));
                    };
                    // SAFETY: see `table_of`; no guest code runs during instantiation here.
                    let t = unsafe { &mut *t };
                    if !t.check_range(off, items.len() as u64) {
                        return Err(InstantiationError::Trap(trap(TrapCode::TableOutOfBounds)));
                    }
                    t.elems_mut()[off as usize..off as usize + items.len()].copy_from_slice(&items);
                    data.elems.push(None);
                }
                ElemMode::Passive => data.elems.push(Some(items)),
                ElemMode::Declared => data.elems.push(None),
            }
        }
        for (i, seg) in info.datas.iter().enumerate() {
            let Some(offset) = seg.offset else { continue };
            let off = const_eval(data, &offset) as u32 as u64;
            let Some(mem) = memory_of(data) else {
                return Err(InstantiationError::Trap(trap(TrapCode::MemoryOutOfBounds)));
            };
            if !mem.check_range(off, seg.data.len() as u64) {
                return Err(InstantiationError::Trap(trap(TrapCode::MemoryOutOfBounds)));
            }
            mem.data_mut()[off as usize..off as usize + seg.data.len()].copy_from_slice(&seg.data);
            data.data_dropped[i] = true;
        }

        if let Some(start) = info.start {
            // SAFETY: the funcref array is inside the vmctx.
            let p = unsafe { vmctx_ptr.add(offsets.funcref(start) as usize) } as *const VmFuncRef;
            let f = self.inner.func_handle(p);
            self.call(f, &[]).map_err(InstantiationError::Trap)?;
        }
        Ok(handle)
    }

    /// Calls `func` with `args`; returns its results or the trap that ended it.
    pub fn call(&mut self, func: Func, args: &[Val]) -> Result<Vec<Val>, Trap> {
        let host_err = |m: String| Trap {
            code: TrapCode::HostTrap,
            host_message: Some(m),
            backtrace: Vec::new(),
        };
        let p = *self
            .inner
            .funcs
            .get(func.0 as usize)
            .ok_or_else(|| host_err("function from another store".into()))?;
        // SAFETY: funcref records live as long as the store.
        let fr = unsafe { *p };
        let ty = self
            .inner
            .engine
            .type_of(fr.type_id as u32)
            .ok_or_else(|| host_err("unknown signature".into()))?;
        if args.len() != ty.params.len() || args.iter().zip(&ty.params).any(|(a, t)| a.ty() != *t) {
            return Err(host_err(format!("arguments do not match {ty}")));
        }
        if fr.array_call.is_null() {
            // A host function called from the host.
            // SAFETY: the vmctx of a host funcref is its HostFuncCtx, owned by this store.
            let ctx = unsafe { &*(fr.vmctx as *const HostFuncCtx) };
            return (ctx.f)(args).map_err(|e| host_err(e.0));
        }
        let n = ty.params.len().max(ty.results.len()).max(1);
        let mut values = vec![[0u64; 2]; n];
        for (slot, a) in values.iter_mut().zip(args) {
            slot[0] = self
                .inner
                .val_to_raw(a)
                .map_err(|e| host_err(e.to_string()))?;
        }
        // The outermost call switches to the store's guest stack; calls made while the guest
        // runs (none today: host functions get no store) would stay on it.
        let outermost = !traphandlers::in_guest();
        let saved_limit = self.inner.limits.stack_limit;
        let mut stack_top = 0;
        if outermost {
            if self.inner.stack.is_none() {
                let size = self.inner.engine.config().max_wasm_stack;
                let stack = GuestStack::new(size)
                    .map_err(|e| host_err(format!("mapping the guest stack: {e}")))?;
                self.inner.stack = Some(stack);
            }
            if let Some(stack) = &self.inner.stack {
                stack_top = stack.top();
                self.inner.limits.stack_limit = stack.wasm_limit() as u64;
            }
        }
        type ArrayCall = unsafe extern "C" fn(*mut u8, *mut u8, *const u8, *mut [u64; 2]);
        // SAFETY: array_call points at the array-call trampoline of this function's type in
        // loaded, executable code.
        let entry: ArrayCall = unsafe { std::mem::transmute(fr.array_call) };
        let values_ptr = values.as_mut_ptr();
        let registry: *const CodeRegistry = &self.inner.code;
        // SAFETY: the registry is not modified while guest code runs: instantiation needs
        // `&mut Store`, which host functions do not get.
        let result = catch_traps(unsafe { &*registry }, stack_top, &mut || {
            // SAFETY: the trampoline reads params and writes results in `values`, which has room
            // for both; the callee's vmctx is live for the store's lifetime.
            unsafe { entry(fr.vmctx, fr.vmctx, fr.wasm_call, values_ptr) }
        });
        self.inner.limits.stack_limit = saved_limit;
        match result {
            Ok(()) => Ok(ty
                .results
                .iter()
                .zip(&values)
                .map(|(t, s)| self.inner.val_from_raw(*t, s[0]))
                .collect()),
            Err(act) => Err(Trap {
                code: act.trap.unwrap_or(TrapCode::HostTrap),
                host_message: act.host_error.map(|e| e.0),
                backtrace: symbolize(&self.inner.code, &act.frames[..act.nframes]),
            }),
        }
    }
}
