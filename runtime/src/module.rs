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
        let offsets = fnvm_abi::VmOffsets::new(art.module.vm_shape())
            .ok_or_else(|| LoadError::Limit("vmctx too large".into()))?;
        let page = crate::mmap::page_size();
        let len = art.code.len().div_ceil(page).max(1) * page;
        let map = Mmap::reserve(len).map_err(LoadError::Map)?;
        map.protect(0, len, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(LoadError::Map)?;
        // SAFETY: the mapping is `len >= code.len()` bytes, writable, and ours alone.
        unsafe { std::ptr::copy_nonoverlapping(art.code.as_ptr(), map.as_ptr(), art.code.len()) };
        map.protect(0, len, libc::PROT_READ | libc::PROT_EXEC)
            .map_err(LoadError::Map)?;
        let type_ids = art
            .module
            .types
            .iter()
            .map(|t| engine.register_type(t))
            .collect();
        let base = map.as_ptr() as usize;
        let art_code_len = art.code.len();
        let code = Arc::new(CodeInfo {
            base,
            module: art.module,
        });
        Ok(Module {
            inner: Arc::new(ModuleInner {
                code,
                code_len: art_code_len,
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
