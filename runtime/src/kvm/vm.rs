//! Opening `/dev/kvm` and creating VMs with their memory slots.
//!
//! [`Kvm`] is the process-wide handle: it opens the device once, checks the API version and the
//! capabilities this backend relies on, and fetches the supported CPUID table every vCPU is given.
//! It is cheap to clone (one `Arc`), so each [`Vm`] keeps one to create its vCPUs.
//!
//! A [`Vm`] owns its KVM VM file descriptor and `Arc`s of the guest memory it registered as slots.
//! vCPUs hold the same `Arc`s: the kernel keeps a VM alive while any of its vCPU descriptors is
//! open, so the memory behind its slots must live at least as long as every vCPU, or a later host
//! mapping at the same address would become guest-visible.

use super::memory::GuestMemory;
use kvm_bindings::{
    kvm_userspace_memory_region, CpuId, KVM_API_VERSION, KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY,
};
use kvm_ioctls::{Cap, VmFd};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The KVM device's usual path.
pub const KVM_PATH: &str = "/dev/kvm";

/// Failures of opening KVM and creating VMs.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{path} does not exist or has no driver (KVM is not available on this host)")]
    Missing { path: PathBuf },
    #[error("{path} is not accessible to this user ({source}); add the user to the kvm group")]
    NotAccessible { path: PathBuf, source: io::Error },
    #[error("opening {path} failed: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("KVM API version {found}, expected {KVM_API_VERSION}")]
    ApiVersion { found: i32 },
    #[error("KVM lacks the capability {0}")]
    MissingCapability(&'static str),
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    SupportedCpuid(io::Error),
    #[error("KVM_CREATE_VM failed: {0}")]
    CreateVm(io::Error),
    #[error("memory slot {slot} at {gpa:#x}: {reason}")]
    BadSlot {
        slot: u32,
        gpa: u64,
        reason: &'static str,
    },
    #[error("a VM needs at least one memory slot")]
    NoSlots,
    #[error("{count} memory slots requested, KVM allows {max}")]
    TooManySlots { count: usize, max: usize },
    #[error("KVM_SET_USER_MEMORY_REGION for slot {slot} failed: {source}")]
    SetMemoryRegion { slot: u32, source: io::Error },
}

/// Converts rust-vmm's errno wrapper so this module's public errors are plain `io::Error`s.
pub(super) fn os_error(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

/// An open KVM device with the facts the backend needs about it.
#[derive(Clone, Debug)]
pub struct Kvm {
    inner: Arc<KvmInner>,
}

#[derive(Debug)]
struct KvmInner {
    kvm: kvm_ioctls::Kvm,
    cpuid: CpuId,
    sync_regs: bool,
    readonly_mem: bool,
    max_slots: usize,
}

impl Kvm {
    /// Opens [`KVM_PATH`].
    pub fn open() -> Result<Kvm, VmError> {
        Kvm::open_path(Path::new(KVM_PATH))
    }

    /// Opens the KVM device at `path` and checks it.
    pub fn open_path(path: &Path) -> Result<Kvm, VmError> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL");
            VmError::Open {
                path: path.to_owned(),
                source,
            }
        })?;
        let kvm = kvm_ioctls::Kvm::new_with_path(&c_path).map_err(|e| {
            let path = path.to_owned();
            match e.errno() {
                libc::ENOENT | libc::ENODEV | libc::ENXIO => VmError::Missing { path },
                libc::EACCES | libc::EPERM => VmError::NotAccessible {
                    path,
                    source: os_error(e),
                },
                _ => VmError::Open {
                    path,
                    source: os_error(e),
                },
            }
        })?;
        let found = kvm.get_api_version();
        if found != KVM_API_VERSION as i32 {
            return Err(VmError::ApiVersion { found });
        }
        // Memory slots from host mappings and KVM_GET_SUPPORTED_CPUID are required; SYNC_REGS is
        // optional (registers go through the kvm_run page instead of two ~5 us vCPU ioctls).
        if !kvm.check_extension(Cap::UserMemory) {
            return Err(VmError::MissingCapability("KVM_CAP_USER_MEMORY"));
        }
        if !kvm.check_extension(Cap::ExtCpuid) {
            return Err(VmError::MissingCapability("KVM_CAP_EXT_CPUID"));
        }
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmError::SupportedCpuid(os_error(e)))?;
        let sync_regs = kvm.check_extension(Cap::SyncRegs);
        let readonly_mem = kvm.check_extension(Cap::ReadonlyMem);
        // KVM_CAP_NR_MEMSLOTS answers 0 on kernels too old to report it; KVM promises 32 there.
        let max_slots = match kvm.get_nr_memslots() {
            0 => 32,
            n => n,
        };
        Ok(Kvm {
            inner: Arc::new(KvmInner {
                kvm,
                cpuid,
                sync_regs,
                readonly_mem,
                max_slots,
            }),
        })
    }

    /// Whether vCPU registers can be passed in the shared kvm_run page (KVM_CAP_SYNC_REGS).
    pub fn has_sync_regs(&self) -> bool {
        self.inner.sync_regs
    }

    /// Whether memory slots can be read-only for the guest (KVM_CAP_READONLY_MEM): guest writes
    /// to them then exit as MMIO instead of reaching the host mapping.
    pub fn has_readonly_mem(&self) -> bool {
        self.inner.readonly_mem
    }

    /// The CPUID table KVM supports, which every vCPU is given (as the probe does).
    pub fn supported_cpuid(&self) -> &CpuId {
        &self.inner.cpuid
    }

    /// The descriptor of the device, for ioctls the wrapper crate lacks.
    pub fn as_raw_fd(&self) -> RawFd {
        self.inner.kvm.as_raw_fd()
    }
}

/// One memory slot: host memory shown to the guest at a guest-physical address.
#[derive(Clone, Debug)]
pub struct MemorySlot {
    pub guest_phys_addr: u64,
    pub memory: Arc<GuestMemory>,
}

/// A KVM VM with its memory slots; vCPUs are created from it (see `Vcpu::new`).
#[derive(Debug)]
pub struct Vm {
    // Declared first so the VM descriptor closes before the slots' memory is released (vCPUs
    // hold their own references, see the module comment).
    fd: VmFd,
    kvm: Kvm,
    slots: Arc<[MemorySlot]>,
}

impl Vm {
    /// Creates a VM with `memory` as slot 0 at guest-physical address 0.
    pub fn new(kvm: &Kvm, memory: Arc<GuestMemory>) -> Result<Vm, VmError> {
        Vm::with_slots(
            kvm,
            vec![MemorySlot {
                guest_phys_addr: 0,
                memory,
            }],
        )
    }

    /// Creates a VM with the given slots (numbered in order), which must be page aligned and must
    /// not overlap. Guest-physical addresses outside every slot are MMIO: guest accesses there
    /// exit to the host. A slot over read-only memory ([`GuestMemory::is_writable`]) is made
    /// read-only for the guest when KVM offers that; otherwise a guest write to it makes KVM_RUN
    /// fail (the guest's page tables should not allow one).
    pub fn with_slots(kvm: &Kvm, slots: Vec<MemorySlot>) -> Result<Vm, VmError> {
        let max = kvm.inner.max_slots;
        if slots.is_empty() {
            return Err(VmError::NoSlots);
        }
        if slots.len() > max {
            return Err(VmError::TooManySlots {
                count: slots.len(),
                max,
            });
        }
        check_slots(&slots)?;
        let fd = kvm
            .inner
            .kvm
            .create_vm()
            .map_err(|e| VmError::CreateVm(os_error(e)))?;
        for (i, s) in slots.iter().enumerate() {
            let slot = i as u32;
            let flags = if !s.memory.is_writable() && kvm.inner.readonly_mem {
                KVM_MEM_READONLY
            } else {
                0
            };
            let region = kvm_userspace_memory_region {
                slot,
                flags,
                guest_phys_addr: s.guest_phys_addr,
                memory_size: s.memory.len() as u64,
                userspace_addr: s.memory.host_address(),
            };
            // SAFETY: the region describes a live mapping owned by `s.memory`, whose `Arc` the VM
            // and each of its vCPUs keep, so it stays mapped while the kernel can reach it.
            unsafe { fd.set_user_memory_region(region) }.map_err(|e| VmError::SetMemoryRegion {
                slot,
                source: os_error(e),
            })?;
        }
        Ok(Vm {
            fd,
            kvm: kvm.clone(),
            slots: slots.into(),
        })
    }

    /// The slots, in slot-number order.
    pub fn slots(&self) -> &[MemorySlot] {
        &self.slots
    }

    /// The memory of slot 0.
    pub fn memory(&self) -> &Arc<GuestMemory> {
        // Never out of bounds: `with_slots` rejects an empty list.
        &self.slots[0].memory
    }

    pub(super) fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    pub(super) fn fd(&self) -> &VmFd {
        &self.fd
    }

    pub(super) fn shared_slots(&self) -> Arc<[MemorySlot]> {
        Arc::clone(&self.slots)
    }
}

impl AsRawFd for Vm {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn check_slots(slots: &[MemorySlot]) -> Result<(), VmError> {
    let page = super::memory::PAGE_SIZE;
    let mut ranges = Vec::with_capacity(slots.len());
    for (i, s) in slots.iter().enumerate() {
        let (slot, gpa) = (i as u32, s.guest_phys_addr);
        let bad = |reason| VmError::BadSlot { slot, gpa, reason };
        if !gpa.is_multiple_of(page) {
            return Err(bad("address not 4 KiB aligned"));
        }
        let end = gpa
            .checked_add(s.memory.len() as u64)
            .ok_or_else(|| bad("slot wraps around"))?;
        if ranges.iter().any(|&(a, b)| gpa < b && a < end) {
            return Err(bad("slot overlaps another"));
        }
        ranges.push((gpa, end));
    }
    Ok(())
}
