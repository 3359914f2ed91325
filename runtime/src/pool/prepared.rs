//! Modules prepared for the pool: a linked module plus what is specific to running it in
//! process: its initial memory as a sealed memfd image that slots map copy-on-write, and one
//! function-pointer context per imported host function, which the slots' import records point
//! to.

use super::MemoryImage;
use crate::hostcall::HostCallCtx;
use crate::link::InstanceTemplate;
use crate::{LinkedModule, Module, ResourceError};
use std::sync::Arc;

pub(super) struct PooledInner<T> {
    linked: LinkedModule<T>,
    image: Option<MemoryImage>,
    /// One per imported function, in import order; never moves (boxed slice).
    host_calls: Box<[HostCallCtx<T>]>,
}

/// A module prepared for an [`InstancePool`](super::InstancePool). Cheap to clone.
pub struct PooledModule<T> {
    pub(super) inner: Arc<PooledInner<T>>,
}

impl<T> Clone for PooledModule<T> {
    fn clone(&self) -> Self {
        PooledModule {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for PooledModule<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledModule")
            .field("linked", &self.inner.linked)
            .field("image_bytes", &self.image_bytes())
            .finish()
    }
}

impl<T: Send + 'static> PooledModule<T> {
    pub(super) fn new(linked: &LinkedModule<T>) -> Result<PooledModule<T>, ResourceError> {
        let len = linked.image_bytes();
        let image = if len > 0 {
            Some(
                MemoryImage::new(len, |m| linked.write_image(m))
                    .map_err(ResourceError::MemoryImage)?,
            )
        } else {
            None
        };
        let host_calls = linked.host_funcs().iter().map(HostCallCtx::new).collect();
        Ok(PooledModule {
            inner: Arc::new(PooledInner {
                linked: linked.clone(),
                image,
                host_calls,
            }),
        })
    }
}

impl<T> PooledModule<T> {
    /// The linked module.
    pub fn linked(&self) -> &LinkedModule<T> {
        &self.inner.linked
    }

    /// The module.
    pub fn module(&self) -> &Module {
        self.inner.linked.module()
    }

    /// Bytes of the memory image (the initial memory up to its last data byte).
    pub fn image_bytes(&self) -> usize {
        self.inner.image.as_ref().map_or(0, |i| i.len())
    }

    /// Host memory the prepared module itself holds, shared by all its instances: its code and
    /// its memory image.
    pub fn resident_bytes(&self) -> usize {
        self.module().code_bytes() + self.image_bytes()
    }
}

/// What a slot needs of the module it is set up for, whatever its host state type: the slot
/// keeps it alive (its vmctx points into it) and resets from its image.
pub(super) trait SlotModule: Send + Sync {
    fn id(&self) -> u64;
    fn module(&self) -> &Module;
    fn template(&self) -> &InstanceTemplate;
    fn image(&self) -> Option<&MemoryImage>;
    /// Where the host-call context of imported function `i` lives (what the import record's
    /// "callee vmctx" points to).
    fn host_call(&self, i: usize) -> Option<*const u8>;
}

impl<T: Send + 'static> SlotModule for PooledInner<T> {
    fn id(&self) -> u64 {
        self.linked.id()
    }

    fn module(&self) -> &Module {
        self.linked.module()
    }

    fn template(&self) -> &InstanceTemplate {
        self.linked.template()
    }

    fn image(&self) -> Option<&MemoryImage> {
        self.image.as_ref()
    }

    fn host_call(&self, i: usize) -> Option<*const u8> {
        self.host_calls
            .get(i)
            .map(|c| c as *const HostCallCtx<T> as *const u8)
    }
}
