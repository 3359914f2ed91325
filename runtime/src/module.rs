//! Loaded modules: an artifact's code mapped read+execute and its checked metadata.

use crate::mmap::Mmap;
use crate::{Engine, LoadError};
use fnvm_abi::{Artifact, CpuFeatures, ModuleInfo};
use std::sync::Arc;

/// What the signal handler and backtraces need about a module's code.
#[derive(Debug)]
pub(crate) struct CodeInfo {
    /// Address of the first byte of the code section.
    pub(crate) base: usize,
    /// The module's metadata.
    pub(crate) module: ModuleInfo,
}

#[derive(Debug)]
pub(crate) struct ModuleInner {
    pub(crate) code: Arc<CodeInfo>,
    /// Length of the code in bytes.
    pub(crate) code_len: usize,
    /// Keeps the code mapped as long as any store uses the module.
    _map: Mmap,
    /// Engine-wide signature id of each module type.
    pub(crate) type_ids: Box<[u32]>,
    pub(crate) offsets: fnvm_abi::VmOffsets,
    pub(crate) engine: Engine,
}

/// A compiled module, loaded and ready to instantiate. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

impl Module {
    /// Loads an artifact produced by `fnvm compile`: checks its header, checksum and metadata,
    /// and maps its code read+execute (never writable and executable at once).
    pub fn from_artifact(engine: &Engine, bytes: &[u8]) -> Result<Module, LoadError> {
        let art = Artifact::parse(bytes, CpuFeatures::host())?;
        let page = crate::mmap::page_size();
        let len = art.code.len().div_ceil(page).max(1) * page;
        let map = Mmap::reserve(len).map_err(LoadError::Map)?;
        // SAFETY: a fresh mapping nothing references: it becomes writable to be filled, then
        // read+execute (never both), with no reference into it held across the change.
        unsafe {
            map.protect(0, len, libc::PROT_READ | libc::PROT_WRITE)
                .map_err(LoadError::Map)?;
            std::ptr::copy_nonoverlapping(art.code.as_ptr(), map.as_ptr(), art.code.len());
            map.protect(0, len, libc::PROT_READ | libc::PROT_EXEC)
                .map_err(LoadError::Map)?;
        }
        Self::with_code(engine, art.module, art.code.len(), map)
    }

    /// Loads an artifact file, mapping it instead of reading it: the checks are those of
    /// [`Module::from_artifact`], and the code is mapped read+execute straight from the file's
    /// page-aligned code section (the code is position independent, nothing is patched), so
    /// loading a large module copies nothing and its code pages are shared through the page
    /// cache by every process that loads it.
    ///
    /// The file must not be truncated or rewritten in place while the module is loaded (the
    /// compile cache only ever replaces entries by renaming); use [`Module::from_artifact`] for
    /// files that others may modify.
    pub fn from_file(engine: &Engine, file: &std::fs::File) -> Result<Module, LoadError> {
        use std::os::fd::AsFd;
        let len = file.metadata().map_err(LoadError::Map)?.len() as usize;
        let whole =
            Mmap::map_file(file.as_fd(), 0, len, libc::PROT_READ).map_err(LoadError::Map)?;
        // SAFETY: the mapping is `len` readable bytes, unchanged while we read it (contract).
        let bytes = unsafe { std::slice::from_raw_parts(whole.as_ptr(), len) };
        let art = Artifact::parse(bytes, CpuFeatures::host())?;
        // Artifact::parse checked that the code lies inside the blob; its offset is page
        // aligned by the format, and the mapping below checks it again.
        let code_off = art.code.as_ptr() as usize - bytes.as_ptr() as usize;
        let code_len = art.code.len();
        let map = Mmap::map_file(
            file.as_fd(),
            code_off,
            code_len.max(1),
            libc::PROT_READ | libc::PROT_EXEC,
        )
        .map_err(LoadError::Map)?;
        Self::with_code(engine, art.module, code_len, map)
    }

    fn with_code(
        engine: &Engine,
        module: ModuleInfo,
        code_len: usize,
        map: Mmap,
    ) -> Result<Module, LoadError> {
        let offsets =
            fnvm_abi::VmOffsets::new(module.vm_shape()).ok_or(LoadError::VmctxTooLarge)?;
        let type_ids = module
            .types
            .iter()
            .map(|t| engine.register_type(t))
            .collect();
        let base = map.as_ptr() as usize;
        let code = Arc::new(CodeInfo { base, module });
        Ok(Module {
            inner: Arc::new(ModuleInner {
                code,
                code_len,
                _map: map,
                type_ids,
                offsets,
                engine: engine.clone(),
            }),
        })
    }

    /// The module's metadata.
    pub fn info(&self) -> &ModuleInfo {
        &self.inner.code.module
    }

    /// Bytes of mapped code (what a loaded module holds in host memory besides its metadata).
    pub fn code_bytes(&self) -> usize {
        self.inner.code_len.div_ceil(crate::mmap::page_size()) * crate::mmap::page_size()
    }

    pub(crate) fn code_base(&self) -> *const u8 {
        self.inner.code.base as *const u8
    }
}

/// A file mapped read-only, for reading large inputs (a `.wasm` to hash and compile) without
/// copying them onto the heap page by page.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<Mmap>,
    len: usize,
}

impl MappedFile {
    /// Maps `file`. Like [`Module::from_file`], the file must not be truncated while mapped
    /// (reading a truncated part would fault); use `std::fs::read` for files others modify.
    pub fn new(file: &std::fs::File) -> std::io::Result<MappedFile> {
        use std::os::fd::AsFd;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large"))?;
        if len == 0 {
            return Ok(MappedFile { map: None, len });
        }
        let map = Mmap::map_file(file.as_fd(), 0, len, libc::PROT_READ)?;
        Ok(MappedFile {
            map: Some(map),
            len,
        })
    }

    /// The contents.
    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            // SAFETY: the mapping holds `len` readable bytes for as long as `self` lives.
            Some(m) => unsafe { std::slice::from_raw_parts(m.as_ptr(), self.len) },
            None => &[],
        }
    }
}
