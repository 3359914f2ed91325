//! The store: the general, linkable form of the runtime, which the specification scripts need.
//! It owns instances, memories, tables, globals and host functions that may import each other;
//! handles such as [`Func`] index into it. Calls go through the same guest-call path and host
//! functions through the same dispatch as the pool's; host functions here take no host state
//! (`T = ()`).

use crate::call::{call_wasm, host_trap, GuestContext};
use crate::hostcall::HostCallCtx;
use crate::instance::{const_eval, memory_of, table_of, trap, InstanceData, VmCtx};
use crate::memory::MemoryData;
use crate::table::TableData;
use crate::traphandlers::{CodeRegistry, GuestStack};
use crate::vm::{VmFuncRef, VmLimits};
use crate::{
    Engine, Halt, InstantiationError, LinkError, Module, ResourceError, RuntimeError, Trap, Val,
};
use fnvm_abi::module::*;
use fnvm_abi::{TrapCode, VmOffsets};
use fnvm_host_interface::{Caller, Deadline, HostExit, HostFuncDef};

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

/// A host function of the store. `ctx` must stay first: the import's "callee vmctx" (and the
/// funcref's) point at it, and the host-call trampoline loads the dispatcher from offset 0.
#[repr(C)]
struct StoreHostFunc {
    ctx: HostCallCtx<()>,
    funcref: VmFuncRef,
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
    host_funcs: Vec<Box<StoreHostFunc>>,
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
                .ok_or(RuntimeError::ForeignHandle),
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
    pub fn new_host_func(&mut self, def: HostFuncDef<()>) -> Func {
        let type_id = self.inner.engine.register_type(&def.ty);
        let mut f = Box::new(StoreHostFunc {
            ctx: HostCallCtx::new(&def),
            funcref: VmFuncRef {
                // A host function has no wasm-convention entry of its own: it gets the importing
                // module's host-call trampoline when imported.
                wasm_call: std::ptr::null(),
                array_call: std::ptr::null(),
                type_id: type_id as u64,
                vmctx: std::ptr::null_mut(),
            },
        });
        let ctx_ptr: *mut HostCallCtx<()> = &mut f.ctx;
        f.funcref.vmctx = ctx_ptr.cast();
        let fr: *const VmFuncRef = &f.funcref;
        self.inner.host_funcs.push(f);
        self.inner.func_handle(fr)
    }

    /// Creates a global.
    pub fn new_global(&mut self, ty: GlobalType, val: Val) -> Result<Global, RuntimeError> {
        if val.ty() != ty.ty {
            return Err(RuntimeError::TypeMismatch {
                expected: ty.ty,
                found: val.ty(),
            });
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
        let t = TableData::new(ty, 0, cap)?;
        self.inner.tables.push(t);
        Ok(Table(self.inner.tables.len() as u32 - 1))
    }

    /// Creates a memory.
    pub fn new_memory(&mut self, ty: MemoryType) -> Result<Memory, RuntimeError> {
        let cap = self.inner.engine.config().max_memory_pages;
        let m = MemoryData::new(ty, cap)?;
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
        if !module.inner.engine.same(&self.inner.engine) {
            return Err(LinkError::WrongEngine.into());
        }
        let info = module.info();
        if imports.len() != info.imports.len() {
            return Err(LinkError::ImportCount {
                expected: info.imports.len(),
                given: imports.len(),
            }
            .into());
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
            // Store host functions take `()`: any well-aligned pointer is a valid `&mut ()`.
            host_data: std::ptr::NonNull::<()>::dangling().as_ptr(),
        });

        // Imports.
        let (mut fi, mut gi) = (0u32, 0u32);
        for (imp, ext) in info.imports.iter().zip(imports) {
            let foreign = || LinkError::ForeignItem {
                module: imp.module.clone(),
                name: imp.name.clone(),
            };
            let incompatible = |expected: String, found: String| LinkError::IncompatibleImport {
                module: imp.module.clone(),
                name: imp.name.clone(),
                expected,
                found,
            };
            match (imp.ty, ext) {
                (ImportType::Func(t), Extern::Func(f)) => {
                    let p = *inner.funcs.get(f.0 as usize).ok_or_else(foreign)?;
                    // SAFETY: funcref records live as long as the store.
                    let mut fr = unsafe { *p };
                    if fr.type_id != module.inner.type_ids[t as usize] as u64 {
                        let found = inner
                            .engine
                            .type_of(fr.type_id as u32)
                            .map_or_else(|| "?".into(), |t| t.to_string());
                        return Err(incompatible(
                            format!("a function {}", info.types[t as usize]),
                            format!("a function {found}"),
                        )
                        .into());
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
                    let tab = inner.tables.get_mut(t.0 as usize).ok_or_else(foreign)?;
                    let have = Limits {
                        min: tab.len() as u32,
                        max: tab.ty.limits.max,
                    };
                    if tab.ty.elem != want.elem || !have.matches(&want.limits) {
                        return Err(incompatible(
                            format!("a table {want:?}"),
                            format!("a table {:?} of {} elements", tab.ty, tab.len()),
                        )
                        .into());
                    }
                    let p: *mut TableData = &mut **tab;
                    data.tables.push((t.0, p));
                }
                (ImportType::Memory(want), Extern::Memory(m)) => {
                    let mem = inner.memories.get_mut(m.0 as usize).ok_or_else(foreign)?;
                    let have = Limits {
                        min: mem.pages() as u32,
                        max: mem.ty.limits.max,
                    };
                    if !have.matches(&want.limits) {
                        return Err(incompatible(
                            format!("a memory {want:?}"),
                            format!("a memory {:?} of {} pages", mem.ty, mem.pages()),
                        )
                        .into());
                    }
                    let p: *mut MemoryData = &mut **mem;
                    data.memory = Some((m.0, p));
                }
                (ImportType::Global(want), Extern::Global(g)) => {
                    let (p, ty) = *inner.globals.get(g.0 as usize).ok_or_else(foreign)?;
                    if ty != want {
                        return Err(incompatible(
                            format!("a global {want:?}"),
                            format!("a global {ty:?}"),
                        )
                        .into());
                    }
                    data.vmctx.set(offsets.imported_global_ptr(gi), p as u64);
                    gi += 1;
                }
                (want, got) => {
                    return Err(incompatible(format!("{want:?}"), format!("{got:?}")).into())
                }
            }
        }

        // Defined memory and tables.
        if data.memory.is_none() {
            if let Some(ty) = info.memories.first() {
                let m = MemoryData::new(*ty, config.max_memory_pages)?;
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
            let t = TableData::new(*ty, 0, config.max_table_elements)?;
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
            // SAFETY: the memory is owned by the store; no guest code runs during
            // instantiation here, and no other reference to the memory is live.
            let Some(mem) = (unsafe { memory_of(data) }) else {
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

    /// Calls `func` with `args`; returns its results or the trap that ended it (an exit asked
    /// by a host function is reported as a host trap).
    pub fn call(&mut self, func: Func, args: &[Val]) -> Result<Vec<Val>, Trap> {
        let p = *self
            .inner
            .funcs
            .get(func.0 as usize)
            .ok_or_else(|| host_trap("function from another store"))?;
        // SAFETY: funcref records live as long as the store.
        let fr = unsafe { *p };
        let ty = self
            .inner
            .engine
            .type_of(fr.type_id as u32)
            .ok_or_else(|| host_trap("unknown signature"))?;
        if args.len() != ty.params.len() || args.iter().zip(&ty.params).any(|(a, t)| a.ty() != *t) {
            return Err(host_trap(format!("arguments do not match {ty}")));
        }
        let n = ty.params.len().max(ty.results.len()).max(1);
        let mut values = vec![[0u64; 2]; n];
        for (slot, a) in values.iter_mut().zip(args) {
            slot[0] = self
                .inner
                .val_to_raw(a)
                .map_err(|e| host_trap(e.to_string()))?;
        }
        let result = if fr.array_call.is_null() {
            // A host function called from the host: no caller memory.
            // SAFETY: the vmctx of a host funcref is its StoreHostFunc's context, owned by
            // this store.
            let ctx = unsafe { &*(fr.vmctx as *const HostCallCtx<()>) };
            let (mut no_memory, mut no_state) = ([0u8; 0], ());
            let mut caller = Caller::new(&mut no_memory, &mut no_state, &Deadline::NEVER);
            ctx.invoke(&mut caller, &mut values[..ctx.nslots().min(n)])
                .map_err(|e| match e {
                    HostExit::Exit(code) => Halt::Exit {
                        code,
                        backtrace: Vec::new(),
                    },
                    HostExit::Trap(m) => Halt::Trap(host_trap(m)),
                    HostExit::DeadlineExceeded => Halt::Trap(trap(TrapCode::Interrupt)),
                })
        } else {
            if self.inner.stack.is_none() {
                let size = self.inner.engine.config().max_wasm_stack;
                let stack = GuestStack::new(size)
                    .map_err(|e| host_trap(ResourceError::Stack(e).to_string()))?;
                self.inner.stack = Some(stack);
            }
            let inner = &mut *self.inner;
            let Some(stack) = &inner.stack else {
                return Err(host_trap("no guest stack"));
            };
            let cx = GuestContext {
                code: &inner.code,
                limits: &mut *inner.limits,
                stack,
                max_stack: usize::MAX,
            };
            // SAFETY: `fr` is a funcref of this store with a non-null array_call, so a defined
            // function of one of its instances, whose code the store's registry holds and whose
            // vmctx points at the store's limits; `values` holds type-checked arguments with
            // room for the results; store instances' host state is `()`.
            unsafe { call_wasm(&cx, &fr, &mut values) }
        };
        match result {
            Ok(()) => Ok(ty
                .results
                .iter()
                .zip(&values)
                .map(|(t, s)| self.inner.val_from_raw(*t, s[0]))
                .collect()),
            Err(Halt::Trap(t)) => Err(t),
            Err(Halt::Exit { code, backtrace }) => Err(Trap {
                code: TrapCode::HostTrap,
                host_message: Some(format!("exit with status {code}")),
                backtrace,
            }),
        }
    }
}
