//! A vCPU set up for CPL3 guest code, and its exits.
//!
//! On this host KVM is PVM (software virtualisation nested in a VM, see
//! /work/shared/kvm-probe/NOTES.md): 64-bit CPL0 guest code is emulated instruction by
//! instruction, while CPL3 code with PVM's user selectors (CS=0x33, SS=0x2b) runs natively. So
//! every vCPU starts in 64-bit user mode with the probe's exact segment, control-register and EFER
//! values, built from the vCPU's own KVM_GET_SREGS answer, and stays there: there is no IDT and no
//! guest kernel, so any exception (including `out`/`hlt`, which fault at CPL3) is a triple fault,
//! [`Exit::Shutdown`]. Guests leave by writing to a guest-physical address no memory slot covers,
//! which KVM reports as [`Exit::Mmio`].
//!
//! Each vCPU ioctl costs about 5 us on PVM, so when KVM_CAP_SYNC_REGS is available the general
//! registers travel in the shared kvm_run page instead: KVM reads them on entry when marked dirty
//! and writes them back on every exit, which makes "set registers, run to the first exit" a single
//! ioctl. Segment and control registers are set by ioctl at creation and on [`Vcpu::reset`] only.

use super::kick::{KickTarget, Kicker};
use super::vm::{os_error, MemorySlot, Vm};
use kvm_bindings::{
    kvm_regs, kvm_segment, kvm_sregs, kvm_xcrs, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_MMIO,
    KVM_SYNC_X86_REGS,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// Failures of vCPU operations (a guest's behaviour is an [`Exit`], never one of these).
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("KVM_CREATE_VCPU failed: {0}")]
    Create(io::Error),
    #[error("KVM_SET_CPUID2 failed: {0}")]
    SetCpuid(io::Error),
    #[error("KVM_GET_SREGS failed: {0}")]
    GetSregs(io::Error),
    #[error("KVM_SET_SREGS failed: {0}")]
    SetSregs(io::Error),
    #[error("KVM_GET_REGS failed: {0}")]
    GetRegs(io::Error),
    #[error("KVM_SET_REGS failed: {0}")]
    SetRegs(io::Error),
    #[error("KVM_SET_XCRS failed: {0}")]
    SetXcrs(io::Error),
    #[error("KVM_RUN failed: {0}")]
    Run(io::Error),
    #[error("the last exit was not an MMIO read, so there is no read to answer")]
    NoPendingMmioRead,
}

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An access to guest-physical memory outside every slot: the exit and hostcall path. For a
    /// write, `data` holds the `len` bytes written (little-endian, upper bytes zero); for a read
    /// it is 0 and [`Vcpu::set_mmio_read_data`] supplies the value before the next run.
    Mmio {
        addr: u64,
        data: u64,
        len: u32,
        is_write: bool,
    },
    /// A triple fault: any exception at CPL3, since the guest has no IDT.
    Shutdown,
    /// `hlt` executed (only reachable at CPL0; at CPL3 it faults).
    Hlt,
    /// A port access (only reachable at CPL0 or with an I/O bitmap; at CPL3 it faults).
    Io { port: u16, len: u32, is_write: bool },
    /// KVM could not handle the exit itself, e.g. an instruction its emulator does not know.
    InternalError { suberror: u32 },
    /// The hardware (or PVM) refused to enter the guest.
    FailEntry { reason: u64, cpu: u32 },
    /// KVM_RUN returned EINTR (a signal, or `immediate_exit`); the guest can be run again.
    Interrupted,
    /// Any other KVM_EXIT_* reason, by number.
    Other(u32),
}

/// A vCPU of a [`Vm`], in 64-bit user mode.
#[derive(Debug)]
pub struct Vcpu {
    // Declared before the descriptor, whose kvm_run mapping it points into.
    kick: KickTarget,
    // Declared before the slots so the vCPU descriptor (which keeps the kernel VM alive) closes
    // before the slots' memory is released.
    fd: VcpuFd,
    /// The segment and control registers every run starts from (see [`Vcpu::reset`]).
    sregs: kvm_sregs,
    sync_regs: bool,
    /// Whether KVM offers SYNC_REGS at all.
    can_sync_regs: bool,
    _slots: Arc<[MemorySlot]>,
}

/// `CR0`: paging, alignment mask, write protect, numeric error, extension type, monitor
/// coprocessor, protected mode (the probe's value).
const CR0: u64 = 0x8005_0033;
/// `CR4`: PAE, OSFXSR, OSXMMEXCPT, FSGSBASE (the probe's CPL3 value).
const CR4: u64 = 0x20 | 0x200 | 0x400 | 0x1_0000;
/// `EFER`: SCE, LME, LMA, NXE (NXE makes the page tables' no-execute bit valid).
const EFER: u64 = 0x1 | 0x100 | 0x400 | 0x800;
/// `CR4.OSXSAVE`: XSETBV/XGETBV and VEX-encoded (AVX, BMI) instructions are allowed.
const CR4_OSXSAVE: u64 = 1 << 18;
/// `XCR0` with AVX: x87, SSE and AVX state enabled.
const XCR0_AVX: u64 = 0x7;
/// CPUID leaf 1, ECX: XSAVE and AVX.
const CPUID1_ECX_XSAVE: u32 = 1 << 26;
const CPUID1_ECX_AVX: u32 = 1 << 28;
/// PVM runs guest user mode on the host's `__USER_CS` and `__USER_DS` (Linux's selectors).
const USER_CS: u16 = 0x33;
const USER_DS: u16 = 0x2b;
/// `RFLAGS` at entry: the reserved bit 1 and IF, as the probe sets them for CPL3.
const RFLAGS: u64 = 0x202;

impl Vcpu {
    /// Creates vCPU `id` of `vm`, gives it KVM's supported CPUID, and puts it in 64-bit user mode
    /// with page tables at guest-physical `cr3` and the GDT at `gdt_base` (24 bytes: null, code,
    /// data). The general registers are left for [`Vcpu::set_regs`].
    pub fn new(vm: &Vm, id: u64, cr3: u64, gdt_base: u64) -> Result<Vcpu, VcpuError> {
        let mut fd = vm
            .fd()
            .create_vcpu(id)
            .map_err(|e| VcpuError::Create(os_error(e)))?;
        fd.set_cpuid2(vm.kvm().supported_cpuid())
            .map_err(|e| VcpuError::SetCpuid(os_error(e)))?;
        let initial = fd
            .get_sregs()
            .map_err(|e| VcpuError::GetSregs(os_error(e)))?;
        let sregs = user_mode_sregs(initial, cr3, gdt_base);
        fd.set_sregs(&sregs)
            .map_err(|e| VcpuError::SetSregs(os_error(e)))?;
        let can_sync_regs = vm.kvm().has_sync_regs();
        let sync_regs = can_sync_regs;
        if sync_regs {
            // KVM copies the general registers into kvm_run on every exit from now on.
            fd.set_sync_valid_reg(SyncReg::Register);
        }
        let immediate_exit: *mut u8 = &mut fd.get_kvm_run().immediate_exit;
        // SAFETY: the byte is in the vCPU's kvm_run mapping, which lives as long as `fd`; the
        // target is declared before `fd` in Vcpu, so it is dropped first.
        let kick = unsafe { KickTarget::new(immediate_exit) };
        Ok(Vcpu {
            kick,
            fd,
            sregs,
            sync_regs,
            can_sync_regs,
            _slots: vm.shared_slots(),
        })
    }

    /// Lets guest code use AVX (VEX-encoded instructions, which compiled code uses when the host
    /// has AVX) where the guest's own XSAVE state governs that: if KVM's CPUID offers XSAVE and
    /// AVX, sets CR4.OSXSAVE (kept across [`Vcpu::reset`]) and XCR0 to x87+SSE+AVX and returns
    /// true. Otherwise changes nothing and returns false: on PVM, whose CPUID has no XSAVE, guest
    /// user mode runs natively under the host's XCR0 and VEX code runs as it is (tested).
    pub fn enable_avx(&mut self, vm: &Vm) -> Result<bool, VcpuError> {
        let leaf1 = vm
            .kvm()
            .supported_cpuid()
            .as_slice()
            .iter()
            .find(|e| e.function == 1)
            .map_or(0, |e| e.ecx);
        let wanted = CPUID1_ECX_XSAVE | CPUID1_ECX_AVX;
        if leaf1 & wanted != wanted {
            return Ok(false);
        }
        let mut xcrs = kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        xcrs.xcrs[0].xcr = 0;
        xcrs.xcrs[0].value = XCR0_AVX;
        self.sregs.cr4 |= CR4_OSXSAVE;
        self.fd
            .set_sregs(&self.sregs)
            .map_err(|e| VcpuError::SetSregs(os_error(e)))?;
        self.fd
            .set_xcrs(&xcrs)
            .map_err(|e| VcpuError::SetXcrs(os_error(e)))?;
        Ok(true)
    }

    /// Whether registers travel through the kvm_run page (KVM_CAP_SYNC_REGS) rather than ioctls.
    pub fn uses_sync_regs(&self) -> bool {
        self.sync_regs
    }

    /// Chooses how registers travel: through kvm_run (`true`, the default when KVM offers it) or
    /// KVM_SET_REGS/KVM_GET_REGS ioctls (`false`; for comparison and to exercise that path).
    /// Registers already set for the next run carry over.
    pub fn set_sync_regs(&mut self, on: bool) -> Result<(), VcpuError> {
        let on = on && self.can_sync_regs;
        if on == self.sync_regs {
            return Ok(());
        }
        if on {
            // KVM holds the current registers; copy them so `regs` is right before the next run.
            let regs = self
                .fd
                .get_regs()
                .map_err(|e| VcpuError::GetRegs(os_error(e)))?;
            self.fd.sync_regs_mut().regs = regs;
            self.fd.set_sync_valid_reg(SyncReg::Register);
        } else {
            // Registers set through kvm_run but not yet entered: hand them over by ioctl.
            if self.fd.get_kvm_run().kvm_dirty_regs & u64::from(KVM_SYNC_X86_REGS) != 0 {
                let regs = self.fd.sync_regs_mut().regs;
                self.fd
                    .set_regs(&regs)
                    .map_err(|e| VcpuError::SetRegs(os_error(e)))?;
                self.fd.clear_sync_dirty_reg(SyncReg::Register);
            }
            self.fd.clear_sync_valid_reg(SyncReg::Register);
        }
        self.sync_regs = on;
        Ok(())
    }

    /// Sets the general registers for the next run (no ioctl with SYNC_REGS). Safe to use after
    /// an MMIO write exit (KVM has completed the instruction, RIP is past it: the hostcall answer
    /// path), but not after an MMIO read exit, whose instruction KVM finishes only on the next
    /// run: answer those with [`Vcpu::set_mmio_read_data`].
    pub fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), VcpuError> {
        if self.sync_regs {
            self.fd.sync_regs_mut().regs = *regs;
            self.fd.set_sync_dirty_reg(SyncReg::Register);
            Ok(())
        } else {
            self.fd
                .set_regs(regs)
                .map_err(|e| VcpuError::SetRegs(os_error(e)))
        }
    }

    /// The general registers as of the last exit (or as last set, before the next run).
    pub fn regs(&mut self) -> Result<kvm_regs, VcpuError> {
        if self.sync_regs {
            Ok(self.fd.sync_regs_mut().regs)
        } else {
            self.fd
                .get_regs()
                .map_err(|e| VcpuError::GetRegs(os_error(e)))
        }
    }

    /// Restores the user-mode segment and control registers (one ioctl) and sets `regs`: what a
    /// pooled vCPU needs after a fault, when the guest state is whatever the fault left.
    pub fn reset(&mut self, regs: &kvm_regs) -> Result<(), VcpuError> {
        self.fd
            .set_sregs(&self.sregs)
            .map_err(|e| VcpuError::SetSregs(os_error(e)))?;
        self.set_regs(regs)
    }

    /// Enters the guest until its next exit. Exits are values, whatever the guest did. A
    /// [`Kicker`] ends the run (or the next) with [`Exit::Interrupted`].
    pub fn run(&mut self) -> Result<Exit, VcpuError> {
        let fd = &mut self.fd;
        let exit = match self.kick.running(move || fd.run()) {
            Ok(exit) => decode(exit),
            Err(e) if e.errno() == libc::EINTR => return Ok(Exit::Interrupted),
            Err(e) => return Err(VcpuError::Run(os_error(e))),
        };
        Ok(exit.unwrap_or_else(|| self.raw_exit()))
    }

    /// A handle that ends this vCPU's runs from any thread.
    pub fn kicker(&self) -> Kicker {
        self.kick.kicker()
    }

    /// Whether a [`Kicker`] kicked this vCPU since the last call (clearing the kick, so that
    /// the next run enters the guest). An [`Exit::Interrupted`] with no kick is a stray
    /// signal: run again.
    pub fn take_kick(&mut self) -> bool {
        self.kick.take_kick()
    }

    /// Exits the wrapper crate reports without detail, read from kvm_run directly.
    fn raw_exit(&mut self) -> Exit {
        let run = self.fd.get_kvm_run();
        match run.exit_reason {
            KVM_EXIT_INTERNAL_ERROR => {
                // SAFETY: the kernel set exit_reason to KVM_EXIT_INTERNAL_ERROR, whose payload is
                // the `internal` member of the union; every bit pattern is a valid u32.
                let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
                Exit::InternalError { suberror }
            }
            reason => Exit::Other(reason),
        }
    }

    /// Supplies the value an MMIO read returns to the guest when it is next run (the low `len`
    /// bytes of `value`). Fails unless the last exit was an MMIO read.
    pub fn set_mmio_read_data(&mut self, value: u64) -> Result<(), VcpuError> {
        let run = self.fd.get_kvm_run();
        if run.exit_reason != KVM_EXIT_MMIO {
            return Err(VcpuError::NoPendingMmioRead);
        }
        // SAFETY: the kernel set exit_reason to KVM_EXIT_MMIO, whose payload is the `mmio` member
        // of the union; it is plain integers and bytes.
        let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
        if mmio.is_write != 0 {
            return Err(VcpuError::NoPendingMmioRead);
        }
        mmio.data = value.to_le_bytes();
        Ok(())
    }
}

impl AsRawFd for Vcpu {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The exits the wrapper crate decodes fully; `None` for those read from kvm_run instead.
fn decode(exit: VcpuExit<'_>) -> Option<Exit> {
    Some(match exit {
        VcpuExit::MmioWrite(addr, data) => Exit::Mmio {
            addr,
            data: le_u64(data),
            len: data.len() as u32,
            is_write: true,
        },
        VcpuExit::MmioRead(addr, data) => Exit::Mmio {
            addr,
            data: 0,
            len: data.len() as u32,
            is_write: false,
        },
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::IoOut(port, data) => Exit::Io {
            port,
            len: data.len() as u32,
            is_write: true,
        },
        VcpuExit::IoIn(port, data) => Exit::Io {
            port,
            len: data.len() as u32,
            is_write: false,
        },
        VcpuExit::FailEntry(reason, cpu) => Exit::FailEntry { reason, cpu },
        VcpuExit::Intr => Exit::Interrupted,
        _ => return None,
    })
}

/// Up to 8 little-endian bytes as a u64 (KVM splits MMIO into accesses of at most 8 bytes; any
/// excess is ignored rather than trusted).
fn le_u64(data: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(bytes)
}

/// The probe's CPL3 segment and control registers on top of what KVM_GET_SREGS returned for a
/// fresh vCPU (which supplies the fields not set here: LDT, TR, APIC base, ...).
fn user_mode_sregs(mut s: kvm_sregs, cr3: u64, gdt_base: u64) -> kvm_sregs {
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: USER_CS,
        type_: 11, // execute/read, accessed
        present: 1,
        dpl: 3,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: USER_DS,
        type_: 3, // read/write, accessed
        db: 1,
        l: 0,
        ..code
    };
    s.cs = code;
    s.ss = data;
    s.ds = data;
    s.es = data;
    // FS and GS carry no selector (their bases come from FSGSBASE or MSRs, as in Linux).
    s.fs = kvm_segment {
        selector: 0,
        ..data
    };
    s.gs = kvm_segment {
        selector: 0,
        ..data
    };
    s.gdt.base = gdt_base;
    s.gdt.limit = 23;
    // No IDT: any exception becomes a triple fault, i.e. Exit::Shutdown.
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = CR0;
    s.cr3 = cr3;
    s.cr4 = CR4;
    s.efer = EFER;
    s
}

/// General registers for entering user code at `rip` with stack pointer `rsp`, everything else
/// zero (callers put arguments in the registers their guest expects).
pub fn entry_regs(rip: u64, rsp: u64) -> kvm_regs {
    kvm_regs {
        rip,
        rsp,
        rflags: RFLAGS,
        ..Default::default()
    }
}
