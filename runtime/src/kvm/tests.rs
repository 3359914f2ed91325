//! Tests of the KVM substrate with tiny hand-assembled guests.
//!
//! Guest register convention here: `rsi` = the MMIO page, `rdi` (and `rdx`) = arguments. The
//! guest calls the host by writing to `[rsi]` and ends by writing its result to `[rsi + 8]`.
//! Tests that need KVM skip (with a note on stderr) when /dev/kvm is unusable, except in CI
//! (`CI=true`), where that is a failure.

use super::*;
use kvm_bindings::kvm_regs;
use std::sync::Arc;

/// The hostcall slot and the end slot in the MMIO page.
const HOSTCALL: u64 = MMIO_ADDR;
const DONE: u64 = MMIO_ADDR + 8;

pub(super) fn skip(why: &dyn std::fmt::Display) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no usable /dev/kvm in CI: {why}");
    }
    eprintln!("skipped: no usable /dev/kvm ({why})");
}

/// A VM with the standard layout and `code` loaded, and its vCPU.
struct Guest {
    vm: Vm,
    vcpu: Vcpu,
    layout: Layout,
}

fn guest(code: &[u8]) -> Option<Guest> {
    guest_in(GuestMemory::anonymous(DEFAULT_MEMORY_SIZE).unwrap(), code)
}

fn guest_in(memory: GuestMemory, code: &[u8]) -> Option<Guest> {
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    let memory = Arc::new(memory);
    let layout = Layout::prepare(&memory, code).unwrap();
    // A device that opens but cannot make VMs is just as unusable.
    let vm = match Vm::new(&kvm, memory) {
        Ok(vm) => vm,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    let vcpu = match Vcpu::new(&vm, 0, layout.cr3, GDT_ADDR) {
        Ok(vcpu) => vcpu,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    Some(Guest { vm, vcpu, layout })
}

impl Guest {
    /// Entry registers at `offset` into the code, with `rsi` = the MMIO page.
    fn regs_at(&self, offset: u64) -> kvm_regs {
        let mut regs = self.layout.entry_regs(self.layout.code.start + offset);
        regs.rsi = self.layout.mmio;
        regs
    }

    /// Runs to the next exit, re-entering after signals (which say nothing about the guest).
    fn run(&mut self) -> Exit {
        loop {
            match self.vcpu.run().unwrap() {
                Exit::Interrupted => continue,
                exit => return exit,
            }
        }
    }

    /// Runs and expects an MMIO write to `addr`; returns the value written.
    fn expect_write(&mut self, addr: u64) -> u64 {
        match self.run() {
            Exit::Mmio {
                addr: a,
                data,
                is_write: true,
                ..
            } if a == addr => data,
            exit => panic!("expected an MMIO write to {addr:#x}, got {exit:?}"),
        }
    }
}

#[test]
fn mmio_write_exits_with_address_and_value() {
    #[rustfmt::skip]
    let code = [
        0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // movabs rax, 0x1122334455667788
        0x48, 0x89, 0x06,                                           // mov [rsi], rax
        0x89, 0x46, 0x10,                                           // mov [rsi+16], eax
        0xeb, 0xfe,                                                 // jmp $ (never resumed)
    ];
    let Some(mut g) = guest(&code) else { return };
    let regs = g.regs_at(0);
    g.vcpu.set_regs(&regs).unwrap();
    assert_eq!(
        g.run(),
        Exit::Mmio {
            addr: MMIO_ADDR,
            data: 0x1122_3344_5566_7788,
            len: 8,
            is_write: true
        }
    );
    // Resuming continues after the write: a 4-byte write at another offset of the page.
    assert_eq!(
        g.run(),
        Exit::Mmio {
            addr: MMIO_ADDR + 16,
            data: 0x5566_7788,
            len: 4,
            is_write: true
        }
    );
}

#[test]
fn hostcall_round_trip_answers_in_registers_memory_and_mmio_reads() {
    #[rustfmt::skip]
    let code = [
        0x48, 0x89, 0x3e,       // mov [rsi], rdi      ; hostcall(rdi): the host sets rax, writes [rdx]
        0x48, 0x03, 0x02,       // add rax, [rdx]      ; + the word the host wrote
        0x48, 0x03, 0x46, 0x10, // add rax, [rsi+16]   ; + an MMIO read the host answers
        0x48, 0x89, 0x46, 0x08, // mov [rsi+8], rax    ; done(rax)
        0xeb, 0xfe,             // jmp $
    ];
    let Some(mut g) = guest(&code) else { return };
    let mut regs = g.regs_at(0);
    regs.rdi = 41;
    regs.rdx = g.layout.data.start;
    g.vcpu.set_regs(&regs).unwrap();

    assert_eq!(g.expect_write(HOSTCALL), 41);
    let mut regs = g.vcpu.regs().unwrap();
    regs.rax = 42;
    g.vcpu.set_regs(&regs).unwrap();
    g.vm.memory().write_u64(g.layout.data.start, 1000).unwrap();

    match g.run() {
        Exit::Mmio {
            addr,
            len: 8,
            is_write: false,
            ..
        } if addr == MMIO_ADDR + 16 => {}
        exit => panic!("expected an 8-byte MMIO read, got {exit:?}"),
    }
    g.vcpu.set_mmio_read_data(5000).unwrap();
    assert_eq!(g.expect_write(DONE), 42 + 1000 + 5000);
    // Only a pending MMIO read can be answered.
    assert!(matches!(
        g.vcpu.set_mmio_read_data(1),
        Err(VcpuError::NoPendingMmioRead)
    ));
}

#[test]
fn hostcall_loop() {
    #[rustfmt::skip]
    let code = [
        0x31, 0xdb,             // 0x0: xor ebx, ebx
        0x48, 0x89, 0x3e,       // 0x2: mov [rsi], rdi   ; hostcall(rdi): the host answers rax = 3 * rdi
        0x48, 0x01, 0xc3,       // 0x5: add rbx, rax
        0x48, 0xff, 0xcf,       // 0x8: dec rdi
        0x75, 0xf5,             // 0xb: jnz 0x2
        0x48, 0x89, 0x5e, 0x08, // 0xd: mov [rsi+8], rbx ; done(sum)
        0xeb, 0xfe,             // jmp $
    ];
    let Some(mut g) = guest(&code) else { return };
    const N: u64 = 100;
    // Rounds 0 and 2 pass registers through kvm_run (when KVM offers it), round 1 by ioctl.
    for round in 0..3 {
        g.vcpu.set_sync_regs(round != 1).unwrap();
        let mut regs = g.regs_at(0);
        regs.rdi = N;
        g.vcpu.set_regs(&regs).unwrap();
        let mut calls = 0;
        let sum = loop {
            match g.run() {
                Exit::Mmio {
                    addr: HOSTCALL,
                    data,
                    is_write: true,
                    ..
                } => {
                    calls += 1;
                    let mut regs = g.vcpu.regs().unwrap();
                    regs.rax = 3 * data;
                    g.vcpu.set_regs(&regs).unwrap();
                }
                Exit::Mmio {
                    addr: DONE,
                    data,
                    is_write: true,
                    ..
                } => break data,
                exit => panic!("round {round}: unexpected exit {exit:?}"),
            }
        };
        assert_eq!(calls, N);
        assert_eq!(sum, 3 * N * (N + 1) / 2);
    }
}

#[test]
fn million_iterations_at_cpl3_finish() {
    #[rustfmt::skip]
    let code = [
        0x31, 0xc0,                   // 0x0: xor eax, eax
        0xb9, 0x40, 0x42, 0x0f, 0x00, // 0x2: mov ecx, 1000000
        0x48, 0x01, 0xc8,             // 0x7: add rax, rcx
        0x48, 0xff, 0xc9,             // 0xa: dec rcx
        0x75, 0xf8,                   // 0xd: jnz 0x7
        0x48, 0x89, 0x46, 0x08,       // 0xf: mov [rsi+8], rax ; done(sum)
        0xeb, 0xfe,                   // jmp $
    ];
    let Some(mut g) = guest(&code) else { return };
    let regs = g.regs_at(0);
    g.vcpu.set_regs(&regs).unwrap();
    assert_eq!(g.expect_write(DONE), 1_000_000 * 1_000_001 / 2);
}

#[rustfmt::skip]
const LOAD_STORE: [u8; 18] = [
    0x48, 0x8b, 0x07,       // 0x0: mov rax, [rdi]    ; load from where the host points
    0x48, 0x89, 0x46, 0x08, // 0x3: mov [rsi+8], rax  ; done(value)
    0xeb, 0xfe,             // 0x7: jmp $
    0x48, 0x89, 0x07,       // 0x9: mov [rdi], rax    ; store to where the host points
    0x48, 0x89, 0x46, 0x08, // 0xc: mov [rsi+8], rax  ; done(value)
    0xeb, 0xfe,             // 0x10: jmp $
];
const LOAD: u64 = 0;
const STORE: u64 = 9;

#[test]
fn faults_shut_down_and_the_vcpu_is_reusable_after_reset() {
    let Some(mut g) = guest(&LOAD_STORE) else {
        return;
    };
    let data = g.layout.data.start;
    g.vm.memory().write_u64(data, 0x77).unwrap();
    // The same bytes as the end of the load guest, in a non-executable page.
    g.vm.memory().write(data + 8, &LOAD_STORE[3..9]).unwrap();

    let load = |g: &Guest, addr: u64| {
        let mut regs = g.regs_at(LOAD);
        regs.rdi = addr;
        regs
    };
    let mut bad = vec![
        ("load from the null guard", load(&g, 0x8)),
        ("load from the guard after the code", load(&g, CODE.end)),
        ("load from the supervisor-only GDT", load(&g, GDT_ADDR)),
        (
            "load from the unmapped page tables",
            load(&g, PAGE_TABLES.start),
        ),
        ("load from the stack guard", load(&g, g.layout.data.end)),
        ("load beyond all mappings", load(&g, 1 << 40)),
        (
            "load from a non-canonical address",
            load(&g, 0x8000_0000_0000_0000),
        ),
    ];
    let mut store = g.regs_at(STORE);
    store.rdi = g.layout.code.start;
    bad.push(("store to read-only code", store));
    let mut exec = g.layout.entry_regs(data + 8);
    exec.rsi = g.layout.mmio;
    bad.push(("execute from no-execute data", exec));

    for (what, regs) in bad {
        g.vcpu.reset(&regs).unwrap();
        assert_eq!(g.run(), Exit::Shutdown, "{what}");
        // The registers still point at the faulting instruction (every case faults on its
        // first one), which is what will turn a fault into a WebAssembly trap code.
        assert_eq!(g.vcpu.regs().unwrap().rip, regs.rip, "{what}");
        // The same VM and vCPU, reset, run a good guest.
        let good = load(&g, data);
        g.vcpu.reset(&good).unwrap();
        assert_eq!(g.expect_write(DONE), 0x77, "after {what}");
    }
}

#[test]
fn pooled_vcpu_runs_100_times_with_registers_reset() {
    #[rustfmt::skip]
    let code = [
        0x48, 0x8d, 0x47, 0x01, // lea rax, [rdi+1]
        0x48, 0x89, 0x46, 0x08, // mov [rsi+8], rax ; done(rdi + 1)
        0xeb, 0xfe,             // jmp $
    ];
    // Guest memory in a memfd (the form a copy-on-write snapshot will take) runs the same.
    let memory = GuestMemory::with_memfd(DEFAULT_MEMORY_SIZE).unwrap();
    let Some(mut g) = guest_in(memory, &code) else {
        return;
    };
    for i in 0..100 {
        let mut regs = g.regs_at(0);
        regs.rdi = i;
        g.vcpu.set_regs(&regs).unwrap();
        // The second half passes registers by ioctl; the switch carries the ones just set.
        if i == 50 {
            g.vcpu.set_sync_regs(false).unwrap();
        }
        assert_eq!(g.expect_write(DONE), i + 1, "run {i}");
    }
}

#[test]
fn layout_maps_what_the_diagram_shows() {
    let memory = GuestMemory::anonymous(DEFAULT_MEMORY_SIZE).unwrap();
    let layout = Layout::prepare(&memory, &[0x90]).unwrap();
    let size = DEFAULT_MEMORY_SIZE as u64;
    assert_eq!(layout.stack, size - STACK_SIZE..size);
    assert_eq!(layout.data, DATA_START..size - 2 * STACK_SIZE);
    let flags = |gva| translate(&memory, layout.cr3, gva).map(|t| t.flags);
    let gdt = PageFlags::KERNEL_RODATA;
    let (code, data) = (PageFlags::USER_CODE, PageFlags::USER_DATA);
    let expected = [
        (0, None),
        (GDT_ADDR, Some(gdt)),
        (PAGE_TABLES.start, None),
        (PAGE_TABLES.end - 1, None),
        (CODE.start, Some(code)),
        (CODE.end - 1, Some(code)),
        (CODE.end, None),
        (DATA_START - 1, None),
        (DATA_START, Some(data)),
        (layout.data.end - 1, Some(data)),
        (layout.data.end, None),
        (layout.stack.start - 1, None),
        (layout.stack.start, Some(data)),
        (size - 1, Some(data)),
        (size, None),
        (MMIO_ADDR - 1, None),
        (MMIO_ADDR, Some(data)),
        (MMIO_ADDR + PAGE_SIZE, None),
    ];
    for (gva, want) in expected {
        assert_eq!(flags(gva), want, "{gva:#x}");
    }
    let mut first = [0u8; 1];
    memory.read(CODE.start, &mut first).unwrap();
    assert_eq!(first, [0x90]);
    // Too small for the layout, too much code.
    let small = GuestMemory::anonymous(0x4_0000).unwrap();
    assert!(Layout::prepare(&small, &[]).is_err());
    assert!(Layout::prepare(&memory, &[0u8; 0x1_0001]).is_err());
}

#[test]
fn missing_device_is_a_typed_error() {
    let err = Kvm::open_path(std::path::Path::new("/nonexistent/kvm")).unwrap_err();
    assert!(matches!(err, VmError::Missing { .. }), "{err:?}");
}
