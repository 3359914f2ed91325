//! What the KVM micro-VM substrate costs on this host, next to an in-process indirect call.
//!
//! Prints median, p99, min and mean over `--iters` samples (default 2000) after a warm-up:
//! a pooled run to the first MMIO exit (registers reset each time), one MMIO round trip, a pooled
//! run with one hostcall, a reset after a fault, VM+vCPU creation and destruction (plain, then with
//! the probe's debugfs trick), and an in-process indirect call for scale. Then compiled
//! WebAssembly: one call of a trivial export, `fib(20)`, and a trapping call, each in a
//! [`WasmVm`](fnvm_runtime::kvm::WasmVm) and in process (a [`Store`](fnvm_runtime::Store)), plus
//! creating a `WasmVm`. Last, whole invocations through the two execution backends
//! ([`KvmBackend`](fnvm_runtime::kvm::KvmBackend) and the in-process
//! [`InstancePool`](fnvm_runtime::InstancePool)): a WASI hello and the benchmarks' 1 MiB-data
//! module (fresh WASI context, instantiate, `_start`, stdout checked, drop), an empty
//! `_start`, their resets alone, hello invocations per second on two threads, and a hostcall
//! round trip (a loop calling an empty import).
//!
//! ```sh
//! cargo run --release -p fnvm-runtime --example kvm_costs -- --cpu 1 --iters 2000
//! ```

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    imp::main()
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    eprintln!("kvm_costs needs KVM on Linux x86_64");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use fnvm_abi::{FuncType, ValType};
    use fnvm_hostcalls::WasiCtx;
    use fnvm_runtime::kvm::{
        Exit, GuestMemory, Kvm, KvmBackend, KvmBackendConfig, Layout, Vcpu, Vm, WasmVm,
        WasmVmConfig, DEFAULT_MEMORY_SIZE, GDT_ADDR,
    };
    use fnvm_runtime::{
        BackendInstance, Caller, Engine, EngineConfig, ExecutionBackend, Extern, HostExit,
        HostFuncDef, Import, InstanceLimits, InstancePool, LinkedModule, Module, PoolConfig, Store,
        Val,
    };
    use std::error::Error;
    use std::hint::black_box;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::Arc;
    use std::time::Instant;

    /// One image, several entry points (offsets into the code). `rsi` = the MMIO page.
    #[rustfmt::skip]
    const CODE: [u8; 41] = [
        // 0x00 DONE: end at once
        0x48, 0x89, 0x46, 0x08, // mov [rsi+8], rax
        0xeb, 0xfe,             // jmp $
        0x90, 0x90,             // nop; nop (padding)
        // 0x08 LOOP: one hostcall per run, forever
        0x89, 0x06,             // mov [rsi], eax
        0xeb, 0xfc,             // jmp 0x08
        0x90, 0x90, 0x90, 0x90, // padding
        // 0x10 INVOKE: one hostcall, then end with the host's answer
        0x48, 0x89, 0x3e,       // mov [rsi], rdi
        0x48, 0x89, 0x46, 0x08, // mov [rsi+8], rax
        0xeb, 0xfe,             // jmp $
        0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, // padding
        // 0x20 LOAD: end with the word at [rdi] (a fault when rdi is unmapped)
        0x48, 0x8b, 0x07,       // mov rax, [rdi]
        0x48, 0x89, 0x46, 0x08, // mov [rsi+8], rax
        0xeb, 0xfe,             // jmp $
    ];
    const DONE: u64 = 0x00;
    const LOOP: u64 = 0x08;
    const INVOKE: u64 = 0x10;
    const LOAD: u64 = 0x20;
    /// `_IO(KVMIO, 0xce)`: not wrapped by kvm-ioctls 0.25.
    const KVM_GET_STATS_FD: u64 = 0xaece;

    type Res<T> = Result<T, Box<dyn Error>>;

    struct Args {
        iters: usize,
        cpu: Option<usize>,
    }

    fn args() -> Res<Args> {
        let mut a = Args {
            iters: 2000,
            cpu: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--iters" => a.iters = value.parse()?,
                "--cpu" => a.cpu = Some(value.parse()?),
                _ => return Err(format!("unknown flag {flag} (--iters N, --cpu C)").into()),
            }
        }
        Ok(a)
    }

    fn pin(cpu: usize) -> Res<()> {
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity get valid
        // pointers to it and its size.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(
                format!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error()).into(),
            );
        }
        Ok(())
    }

    fn fmt(ns: f64) -> String {
        if ns >= 1e6 {
            format!("{:9.3} ms", ns / 1e6)
        } else if ns >= 1e4 {
            format!("{:9.2} us", ns / 1e3)
        } else {
            format!("{ns:9.1} ns")
        }
    }

    fn report(name: &str, samples: &mut [f64]) {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let p99 = samples[((0.99 * n as f64).ceil() as usize).saturating_sub(1)];
        let mean = samples.iter().sum::<f64>() / n as f64;
        println!(
            "  {name:<58} n={n:5} med={} p99={} min={} mean={}",
            fmt(samples[n / 2]),
            fmt(p99),
            fmt(samples[0]),
            fmt(mean)
        );
    }

    /// Times `f` `iters` times after `iters / 10` warm-up calls, in nanoseconds.
    fn measure(iters: usize, mut f: impl FnMut() -> Res<()>) -> Res<Vec<f64>> {
        for _ in 0..iters / 10 {
            f()?;
        }
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            f()?;
            samples.push(t.elapsed().as_nanos() as f64);
        }
        Ok(samples)
    }

    fn run(vcpu: &mut Vcpu) -> Res<Exit> {
        loop {
            match vcpu.run()? {
                Exit::Interrupted => continue,
                exit => return Ok(exit),
            }
        }
    }

    fn expect_write(vcpu: &mut Vcpu, addr: u64) -> Res<u64> {
        match run(vcpu)? {
            Exit::Mmio {
                addr: a,
                data,
                is_write: true,
                ..
            } if a == addr => Ok(data),
            exit => Err(format!("expected an MMIO write to {addr:#x}, got {exit:?}").into()),
        }
    }

    fn create(kvm: &Kvm, memory: &Arc<GuestMemory>, layout: &Layout) -> Res<(Vm, Vcpu)> {
        let vm = Vm::new(kvm, Arc::clone(memory))?;
        let vcpu = Vcpu::new(&vm, 0, layout.cr3, GDT_ADDR)?;
        Ok((vm, vcpu))
    }

    fn creation(
        kvm: &Kvm,
        memory: &Arc<GuestMemory>,
        layout: &Layout,
        a: &Args,
        tag: &str,
    ) -> Res<()> {
        let mut s = measure(a.iters, || {
            drop(create(kvm, memory, layout)?);
            Ok(())
        })?;
        report(&format!("{tag}create VM+slot+vCPU, destroy"), &mut s);
        let (mut vm_s, mut vcpu_s, mut drop_s) = (Vec::new(), Vec::new(), Vec::new());
        let mut first = measure(a.iters, || {
            let t0 = Instant::now();
            let vm = Vm::new(kvm, Arc::clone(memory))?;
            let t1 = Instant::now();
            let mut vcpu = Vcpu::new(&vm, 0, layout.cr3, GDT_ADDR)?;
            let t2 = Instant::now();
            vcpu.set_regs(&mmio_regs(layout, DONE))?;
            expect_write(&mut vcpu, layout.mmio + 8)?;
            let t3 = Instant::now();
            drop((vcpu, vm));
            let t4 = Instant::now();
            vm_s.push((t1 - t0).as_nanos() as f64);
            vcpu_s.push((t2 - t1).as_nanos() as f64);
            drop_s.push((t4 - t3).as_nanos() as f64);
            Ok(())
        })?;
        // The closure's warm-up calls recorded parts too; keep the timed ones.
        for parts in [&mut vm_s, &mut vcpu_s, &mut drop_s] {
            parts.drain(..a.iters / 10);
        }
        report(
            &format!("{tag}  Vm::new (KVM_CREATE_VM + memory slot)"),
            &mut vm_s,
        );
        report(
            &format!("{tag}  Vcpu::new (vCPU, kvm_run, CPUID, sregs)"),
            &mut vcpu_s,
        );
        report(&format!("{tag}  drop vCPU + VM"), &mut drop_s);
        report(
            &format!("{tag}fresh VM: create, run to first exit, destroy"),
            &mut first,
        );
        Ok(())
    }

    fn mmio_regs(layout: &Layout, entry: u64) -> fnvm_runtime::kvm::kvm_regs {
        let mut regs = layout.entry_regs(layout.code.start + entry);
        regs.rsi = layout.mmio;
        regs
    }

    pub fn main() -> Res<()> {
        let a = args()?;
        if let Some(cpu) = a.cpu {
            pin(cpu)?;
        }
        let kvm = Kvm::open()?;
        let memory = Arc::new(GuestMemory::anonymous(DEFAULT_MEMORY_SIZE)?);
        let layout = Layout::prepare(&memory, &CODE)?;
        let (_vm, mut vcpu) = create(&kvm, &memory, &layout)?;
        println!(
            "kvm_costs: {} iterations, pinned to CPU {:?}, SYNC_REGS {}, READONLY_MEM {}",
            a.iters,
            a.cpu,
            if vcpu.uses_sync_regs() { "on" } else { "off" },
            if kvm.has_readonly_mem() { "yes" } else { "no" }
        );

        println!("\npooled VM + vCPU (CPL3 guest, exits by MMIO write):");
        let done = mmio_regs(&layout, DONE);
        let mut s = measure(a.iters, || {
            vcpu.set_regs(&done)?;
            expect_write(&mut vcpu, layout.mmio + 8)?;
            Ok(())
        })?;
        report("set registers + run to first MMIO exit", &mut s);

        if vcpu.uses_sync_regs() {
            vcpu.set_sync_regs(false)?;
            let mut s = measure(a.iters, || {
                vcpu.set_regs(&done)?;
                expect_write(&mut vcpu, layout.mmio + 8)?;
                Ok(())
            })?;
            report("same, registers by KVM_SET_REGS ioctl", &mut s);
            vcpu.set_sync_regs(true)?;
        }

        vcpu.set_regs(&mmio_regs(&layout, LOOP))?;
        let mut s = measure(a.iters, || {
            expect_write(&mut vcpu, layout.mmio)?;
            Ok(())
        })?;
        report("one MMIO round trip (KVM_RUN to the next exit)", &mut s);

        let mut invoke = mmio_regs(&layout, INVOKE);
        invoke.rdi = 41;
        let mut s = measure(a.iters, || {
            vcpu.set_regs(&invoke)?;
            let arg = expect_write(&mut vcpu, layout.mmio)?;
            let mut regs = vcpu.regs()?;
            regs.rax = arg + 1;
            vcpu.set_regs(&regs)?;
            if expect_write(&mut vcpu, layout.mmio + 8)? != 42 {
                return Err("wrong hostcall answer".into());
            }
            Ok(())
        })?;
        report(
            "set registers + run with 1 hostcall (answer in rax) + end",
            &mut s,
        );

        let mut s = measure(a.iters, || {
            vcpu.reset(&done)?;
            expect_write(&mut vcpu, layout.mmio + 8)?;
            Ok(())
        })?;
        report(
            "reset (KVM_SET_SREGS + registers) + run to first exit",
            &mut s,
        );

        // A guest fault (what a trap would be): PVM logs each triple fault to the kernel log,
        // so this runs a tenth of the iterations.
        let mut fault = mmio_regs(&layout, LOAD);
        fault.rdi = 0;
        let mut s = measure(a.iters / 10, || {
            vcpu.reset(&fault)?;
            match run(&mut vcpu)? {
                Exit::Shutdown => Ok(()),
                exit => Err(format!("expected a triple fault, got {exit:?}").into()),
            }
        })?;
        report(
            "reset + run to a page fault (triple fault, Exit::Shutdown)",
            &mut s,
        );

        println!("\nVM lifecycle (guest memory prepared once, shared):");
        creation(&kvm, &memory, &layout, &a, "")?;

        // The probe's trick: a VM kept alive only by a vCPU stats fd keeps its debugfs directory
        // "<pid>-<vm fd>", and later VMs created on the same descriptor number skip debugfs
        // ("KVM: debugfs: duplicate directory"). It depends on descriptor numbering, so it is a
        // measurement here, not something the backend does.
        let (vm, vcpu2) = create(&kvm, &memory, &layout)?;
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new descriptor or -1.
        let fd = unsafe { libc::ioctl(vcpu2.as_raw_fd(), KVM_GET_STATS_FD as _) };
        if fd < 0 {
            return Err(format!("KVM_GET_STATS_FD: {}", std::io::Error::last_os_error()).into());
        }
        // SAFETY: the descriptor was just returned by the kernel and nothing else owns it.
        let stats = unsafe { OwnedFd::from_raw_fd(fd) };
        // The stats fd keeps the kernel VM, so keep the memory its slot points at too.
        let keep = (stats, Arc::clone(&memory));
        drop((vcpu2, vm));
        println!("\nVM lifecycle, per-VM debugfs skipped (probe's duplicate-directory trick):");
        creation(&kvm, &memory, &layout, &a, "no debugfs: ")?;
        drop(keep);

        wasm(&kvm, &a)?;
        invocations(&kvm, &a)?;

        println!("\nin-process, for scale:");
        let f: fn(u64) -> u64 = black_box(add_one);
        let mut sink = 0u64;
        let mut s = measure(a.iters, || {
            for i in 0..1000 {
                sink = sink.wrapping_add(f(black_box(i)));
            }
            Ok(())
        })?;
        s.iter_mut().for_each(|x| *x /= 1000.0);
        report("indirect call (per call, batches of 1000)", &mut s);
        let mut s = measure(a.iters, || {
            sink = sink.wrapping_add(f(black_box(sink)));
            Ok(())
        })?;
        report(
            "indirect call, timed singly (incl. Instant::now pair)",
            &mut s,
        );
        let mut s = measure(a.iters, || Ok(()))?;
        report("timer overhead (Instant::now pair)", &mut s);
        black_box(sink);
        Ok(())
    }

    const WASM: &str = r#"(module
      (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
      (func $fib (export "fib") (param i32) (result i32)
        local.get 0 i32.const 2 i32.lt_s
        if (result i32) local.get 0
        else
          local.get 0 i32.const 1 i32.sub call $fib
          local.get 0 i32.const 2 i32.sub call $fib
          i32.add
        end)
      (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s))"#;

    /// The same compiled exports in a WasmVm and in process.
    fn wasm(kvm: &Kvm, a: &Args) -> Res<()> {
        let engine = Engine::new(EngineConfig::default())?;
        let artifact = fnvm_compiler::compile(
            &wat::parse_str(WASM)?,
            &fnvm_compiler::CompileOptions::default(),
        )?;
        let module = Module::from_artifact(&engine, &artifact)?;
        let mut vm = WasmVm::new(kvm, &module)?;
        let mut store = Store::new(&engine);
        let inst = store.instantiate(&module, &[])?;
        let mut export = |name: &str| match store.get_export(inst, name) {
            Some(Extern::Func(f)) => Ok(f),
            _ => Err(format!("no export {name}")),
        };
        let (add, fib, div) = (export("add")?, export("fib")?, export("div")?);
        let add_args = [Val::I32(1), Val::I32(2)];
        let fib_args = [Val::I32(20)];
        let div_args = [Val::I32(1), Val::I32(0)];

        println!("\ncompiled WebAssembly, WasmVm (pooled VM + vCPU) vs in process (Store::call):");
        let mut s = measure(a.iters, || match vm.call("add", &add_args)? {
            Ok(r) if r == [Val::I32(3)] => Ok(()),
            other => Err(format!("add in the VM: {other:?}").into()),
        })?;
        report("VM: call add(1, 2)", &mut s);
        let mut s = measure(a.iters, || match store.call(add, &add_args) {
            Ok(r) if r == [Val::I32(3)] => Ok(()),
            other => Err(format!("add in process: {other:?}").into()),
        })?;
        report("in process: call add(1, 2)", &mut s);

        let iters = (a.iters / 10).max(10);
        let mut s = measure(iters, || match vm.call("fib", &fib_args)? {
            Ok(r) if r == [Val::I32(6765)] => Ok(()),
            other => Err(format!("fib in the VM: {other:?}").into()),
        })?;
        report("VM: call fib(20) (21891 calls inside)", &mut s);
        let mut s = measure(iters, || match store.call(fib, &fib_args) {
            Ok(r) if r == [Val::I32(6765)] => Ok(()),
            other => Err(format!("fib in process: {other:?}").into()),
        })?;
        report("in process: call fib(20)", &mut s);

        // Traps: PVM logs each triple fault to the kernel log, so a tenth of the iterations.
        // The VM's figure includes the next call's reset (KVM_SET_SREGS), done at its start.
        let mut s = measure(iters, || {
            match vm.call("div", &div_args)? {
                Err(fnvm_runtime::Halt::Trap(t))
                    if t.code == fnvm_abi::TrapCode::IntegerDivisionByZero => {}
                other => return Err(format!("div in the VM: {other:?}").into()),
            }
            match vm.call("add", &add_args)? {
                Ok(r) if r == [Val::I32(3)] => Ok(()),
                other => Err(format!("add after a trap: {other:?}").into()),
            }
        })?;
        report("VM: div by zero trap, then call add (reset)", &mut s);
        let mut s = measure(iters, || {
            match store.call(div, &div_args) {
                Err(t) if t.code == fnvm_abi::TrapCode::IntegerDivisionByZero => {}
                other => return Err(format!("div in process: {other:?}").into()),
            }
            match store.call(add, &add_args) {
                Ok(r) if r == [Val::I32(3)] => Ok(()),
                other => Err(format!("add after a trap: {other:?}").into()),
            }
        })?;
        report("in process: div by zero trap, then call add", &mut s);

        let mut s = measure(iters, || {
            drop(WasmVm::new(kvm, &module)?);
            Ok(())
        })?;
        report(
            "WasmVm::new + drop (VM, 3 slots, page tables, vCPU)",
            &mut s,
        );
        Ok(())
    }

    /// Like [`measure`], but `f` times the part it wants measured and returns nanoseconds.
    fn measure_part(iters: usize, mut f: impl FnMut() -> Res<f64>) -> Res<Vec<f64>> {
        for _ in 0..iters / 10 {
            f()?;
        }
        (0..iters).map(|_| f()).collect()
    }

    const HELLO: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "Hello World\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 12))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then unreachable))
        (if (i32.ne (i32.load (i32.const 8)) (i32.const 12))
          (then unreachable))))"#;

    /// The benchmarks' 1 MiB-data module (benches/compare's `data_wat`): 16 data segments of
    /// 64 KiB of pseudo-random bytes; `_start` reads a word of each, traps unless their xor is
    /// right, then writes the hello like [`HELLO`].
    fn data_wat() -> String {
        use std::fmt::Write;
        const SEGMENTS: usize = 16;
        const BYTES: usize = 64 << 10;
        let mut wat = String::from(
            "(module\n  (import \"wasi_snapshot_preview1\" \"fd_write\"\n    (func $fd_write (param i32 i32 i32 i32) (result i32)))\n",
        );
        let _ = writeln!(wat, "  (memory (export \"memory\") {})", SEGMENTS + 1);
        wat.push_str("  (data (i32.const 16) \"Hello World\\n\")\n");
        let (mut expected, mut reads) = (0u32, String::new());
        for i in 0..SEGMENTS {
            let mut x = (0x9e37_79b9_7f4a_7c15u64 ^ i as u64) | 1;
            let mut bytes = Vec::with_capacity(BYTES + 8);
            while bytes.len() < BYTES {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                bytes.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
            }
            bytes.truncate(BYTES);
            let base = (i + 1) * BYTES;
            let off = (i * 4099) % (BYTES - 4);
            let word = [bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]];
            expected ^= u32::from_le_bytes(word);
            let _ = writeln!(
                reads,
                "    (local.set $x (i32.xor (local.get $x) (i32.load (i32.const {}))))",
                base + off
            );
            let _ = write!(wat, "  (data (i32.const {base}) \"");
            for b in bytes {
                let _ = write!(wat, "\\{b:02x}");
            }
            wat.push_str("\")\n");
        }
        let _ = write!(
            wat,
            r#"  (func (export "_start") (local $x i32)
{reads}    (if (i32.ne (local.get $x) (i32.const {expected})) (then unreachable))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
      (then unreachable))))
"#,
            expected = expected as i32
        );
        wat
    }

    /// A module calling an import that does nothing `n` times.
    const NOP_LOOP: &str = r#"(module
      (import "bench" "nop" (func $nop (param i32) (result i32)))
      (func (export "loop") (param $n i32) (result i32) (local $acc i32)
        (block $done
          (loop $l
            (br_if $done (i32.eqz (local.get $n)))
            (local.set $acc (i32.add (local.get $acc) (call $nop (local.get $n))))
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            (br $l)))
        (local.get $acc)))"#;

    fn nop(_: &mut Caller<'_, WasiCtx>, _: &mut [u64]) -> Result<(), HostExit> {
        Ok(())
    }

    fn resolve(imp: &Import) -> Option<HostFuncDef<WasiCtx>> {
        if imp.module == "bench" && imp.name == "nop" {
            return Some(HostFuncDef {
                ty: FuncType {
                    params: vec![ValType::I32],
                    results: vec![ValType::I32],
                },
                func: nop,
                write_behind: None,
            });
        }
        fnvm_hostcalls::resolve(&imp.module, &imp.name)
    }

    /// Prints `line\n` 100 times, one `fd_write` each (as Rust's line-buffered `println!`
    /// does): what write-behind is for.
    const LINES: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "line\n")
      (func (export "_start") (local $i i32)
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 5))
        (loop $l
          (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
            (then unreachable))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))))"#;

    /// A module with one memory page and an empty `_start`: an invocation's fixed cost.
    const EMPTY: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

    /// One invocation: fresh WASI context, instantiate, `_start`, stdout checked (`want`),
    /// instance dropped (which resets it inline in both backends here).
    fn invoke<B: ExecutionBackend>(b: &B, pre: &B::Prepared<WasiCtx>, want: &[u8]) -> Res<()> {
        let ctx = WasiCtx::builder().build()?;
        let mut inst = b.instantiate(pre, &InstanceLimits::default(), ctx)?;
        inst.call("_start", &[])
            .map_err(|h| format!("_start: {h}"))?;
        let out = inst.into_data().take_stdout();
        if out != want {
            return Err(format!("stdout {out:?}").into());
        }
        Ok(())
    }

    /// The same, timing only the drop (the reset).
    fn reset_only<B: ExecutionBackend>(b: &B, pre: &B::Prepared<WasiCtx>) -> Res<f64> {
        let ctx = WasiCtx::builder().build()?;
        let mut inst = b.instantiate(pre, &InstanceLimits::default(), ctx)?;
        inst.call("_start", &[])
            .map_err(|h| format!("_start: {h}"))?;
        let t = Instant::now();
        drop(inst);
        Ok(t.elapsed().as_nanos() as f64)
    }

    /// Calls of `f` per second with two threads making `n` calls each at once, each pinned to
    /// its own CPU (they would inherit the main thread's single one).
    fn rate(n: usize, f: impl Fn(usize) -> Res<()> + Sync) -> Res<f64> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let start = Instant::now();
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|i| {
                    let f = &f;
                    s.spawn(move || -> Result<(), String> {
                        pin(i % cpus).map_err(|e| e.to_string())?;
                        for _ in 0..n {
                            f(i).map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err("a thread panicked".into())))
                .collect()
        });
        for r in results {
            r?;
        }
        Ok(2.0 * n as f64 / start.elapsed().as_secs_f64())
    }

    /// Whole invocations through the two backends, their resets, and a hostcall.
    fn invocations(kvm: &Kvm, a: &Args) -> Res<()> {
        let engine = Engine::new(EngineConfig::default())?;
        let vm_config = KvmBackendConfig {
            background_reset: false,
            ..KvmBackendConfig::default()
        };
        let vms = KvmBackend::new(&engine, kvm, vm_config)?;
        let pool_config = PoolConfig {
            slots: 4,
            background_reset: false,
            ..PoolConfig::default()
        };
        let pool = InstancePool::new(&engine, pool_config)?;
        let link = |wat: &str| -> Res<LinkedModule<WasiCtx>> {
            let artifact = fnvm_compiler::compile(
                &wat::parse_str(wat)?,
                &fnvm_compiler::CompileOptions::default(),
            )?;
            let module = Module::from_artifact(&engine, &artifact)?;
            Ok(LinkedModule::new(&module, resolve)?)
        };
        println!(
            "\ninvocations through the backends (KvmBackend vs InstancePool, both resetting inline):"
        );
        let iters = (a.iters / 4).max(10);
        let hello = b"Hello World\n".as_slice();
        let lines = b"line\n".repeat(100);
        let modules = [
            ("empty _start", EMPTY.to_owned(), &b""[..]),
            ("WASI hello", HELLO.to_owned(), hello),
            ("1 MiB data", data_wat(), hello),
            ("100 lines", LINES.to_owned(), &lines[..]),
        ];
        // The same VMs with every write a host call: what write-behind saves.
        let mut exiting = KvmBackendConfig {
            background_reset: false,
            ..KvmBackendConfig::default()
        };
        exiting.vm.write_behind = false;
        let vms_exiting = KvmBackend::new(&engine, kvm, exiting)?;
        for (label, wat, want) in modules {
            let linked = link(&wat)?;
            let vpre = vms.prepare(&linked)?;
            let ppre = pool.prepare(&linked)?;
            let mut s = measure(iters, || invoke(&vms, &vpre, want))?;
            report(
                &format!("VM: {label} invocation (instantiate.._start..drop)"),
                &mut s,
            );
            if !want.is_empty() {
                let epre = vms_exiting.prepare(&linked)?;
                let mut s = measure(iters, || invoke(&vms_exiting, &epre, want))?;
                report(&format!("VM, every write a host call: {label}"), &mut s);
            }
            let mut s = measure(iters, || invoke(&pool, &ppre, want))?;
            report(&format!("in process: {label} invocation"), &mut s);
            let mut s = measure_part(iters, || reset_only(&vms, &vpre))?;
            report(&format!("VM: {label} reset (drop)"), &mut s);
            let mut s = measure_part(iters, || reset_only(&pool, &ppre))?;
            report(&format!("in process: {label} reset (drop)"), &mut s);
        }
        // Invocations per second with two threads invoking at once (each its own instance).
        let linked = link(HELLO)?;
        let vpre = vms.prepare(&linked)?;
        let ppre = pool.prepare(&linked)?;
        // What a pooled VM saves: a VM for the module (1 GiB memory slot, image mapped).
        let mut s = measure(iters / 5, || {
            let ctx = WasiCtx::builder().build()?;
            drop(WasmVm::with_host(
                kvm,
                &linked,
                ctx,
                &WasmVmConfig::default(),
            )?);
            Ok(())
        })?;
        report("VM: WasmVm::with_host + drop for the hello", &mut s);
        let n = a.iters.max(100);
        let vm_rate = rate(n, |_| invoke(&vms, &vpre, hello))?;
        // The same with a prepared module per thread: a VM then stays on its thread's CPU.
        let per_thread = [vms.prepare(&linked)?, vms.prepare(&linked)?];
        let vm_rate_own = rate(n, |i| invoke(&vms, &per_thread[i], hello))?;
        let pool_rate = rate(n, |_| invoke(&pool, &ppre, hello))?;
        println!(
            "  WASI hello invocations/s on 2 threads: VM {vm_rate:.0} (VMs shared by the threads), {vm_rate_own:.0} (each thread its own), in process {pool_rate:.0} ({n} per thread)"
        );

        let linked = link(NOP_LOOP)?;
        let vpre = vms.prepare(&linked)?;
        let ppre = pool.prepare(&linked)?;
        let ctx = || WasiCtx::builder().build();
        let mut vinst = vms.instantiate(&vpre, &InstanceLimits::default(), ctx()?)?;
        let mut pinst = pool.instantiate(&ppre, &InstanceLimits::default(), ctx()?)?;
        const N: i32 = 100;
        let mut s = measure(iters, || {
            vinst
                .call("loop", &[Val::I32(N)])
                .map_err(|h| format!("loop: {h}"))?;
            Ok(())
        })?;
        s.iter_mut().for_each(|x| *x /= f64::from(N));
        report(
            "VM: hostcall round trip (nop import, per call of 100)",
            &mut s,
        );
        let mut s = measure(iters, || {
            pinst
                .call("loop", &[Val::I32(N)])
                .map_err(|h| format!("loop: {h}"))?;
            Ok(())
        })?;
        s.iter_mut().for_each(|x| *x /= f64::from(N));
        report("in process: hostcall round trip (nop import)", &mut s);
        Ok(())
    }

    #[inline(never)]
    fn add_one(x: u64) -> u64 {
        x + 1
    }
}
