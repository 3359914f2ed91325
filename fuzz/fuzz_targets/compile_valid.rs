//! A valid module from wasm-smith, restricted to what fnvm supports (WebAssembly 2.0 without
//! SIMD): it must compile, load, instantiate (with host-made imports) and run every exported
//! function to a result or a trap. Infinite loops end at an epoch deadline.
#![no_main]

use arbitrary::{Result, Unstructured};
use fnvm_abi::CpuFeatures;
use fnvm_compiler::{compile, CompileOptions};
use fnvm_runtime::Module;
use libfuzzer_sys::{fuzz_target, Corpus};
use std::sync::OnceLock;

fn config(u: &mut Unstructured<'_>) -> Result<wasm_smith::Config> {
    // Fields are evaluated in order, so the input bytes are read in the order below.
    let c = wasm_smith::Config {
        // The WebAssembly 2.0 proposals fnvm implements.
        reference_types_enabled: true,
        bulk_memory_enabled: true,
        multi_value_enabled: true,
        sign_extension_ops_enabled: true,
        saturating_float_to_int_enabled: true,
        // Everything else off.
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        tail_call_enabled: false,
        max_memories: 1,
        memory64_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        extended_const_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        compact_imports_enabled: false,
        custom_descriptors_enabled: false,
        // Sizes: small enough that an input runs in milliseconds.
        max_memory32_bytes: 16 << 20,
        max_table_elements: 10_000,
        max_imports: 20,
        max_funcs: 50,
        max_instructions: 500,
        // Let the input pick a few shape knobs.
        export_everything: u.arbitrary()?,
        allow_start_export: u.arbitrary()?,
        canonicalize_nans: false,
        disallow_traps: u.ratio(1, 8)?,
        generate_custom_sections: u.ratio(1, 8)?,
        ..wasm_smith::Config::default()
    };
    Ok(c)
}

fn run(data: &[u8]) -> Result<Corpus> {
    let mut u = Unstructured::new(data);
    // A subset of the host's CPU features, so code is generated for several targets; the
    // x86-64-v2 baseline (sse3, ssse3, sse4.1: bits 0-2) is always kept, since the compiler
    // refuses targets without it.
    let mask: u16 = u.arbitrary()?;
    let features = CpuFeatures(CpuFeatures::host().0 & (mask as u64 | 0b111 | !0x1ff));
    let config = config(&mut u)?;
    let supported = fnvm_compiler::supported_features();
    let module = wasm_smith::Module::new(config, &mut u)?;
    let wasm = module.to_bytes();
    if let Err(e) = wasmparser::Validator::new_with_features(supported).validate_all(&wasm) {
        panic!("harness bug: wasm-smith made a module outside fnvm's feature set: {e}");
    }
    dump(&wasm, features);
    let options = CompileOptions {
        features,
        epoch_interruption: true,
        parallel: false,
    };
    let t0 = std::time::Instant::now();
    let artifact = match compile(&wasm, &options) {
        Ok(a) => a,
        Err(e) => panic!("a valid module failed to compile: {e}"),
    };
    let t1 = std::time::Instant::now();
    let args = u.take_rest().to_vec();
    let stats = fnvm_fuzz::on_big_stack(move || {
        let module = match Module::from_artifact(fnvm_fuzz::engine(), &artifact) {
            Ok(m) => m,
            Err(e) => panic!("a fresh artifact failed to load: {e}"),
        };
        fnvm_fuzz::run_exports(&module, &args)
    });
    report(wasm.len(), stats, t1 - t0, t1.elapsed());
    Ok(Corpus::Keep)
}

/// With `FNVM_FUZZ_DUMP=DIR`, writes each generated module to `DIR/<features>-<hash>.wasm`
/// (features as a hex mask) before compiling it: run a crash input this way to get its module.
fn dump(wasm: &[u8], features: CpuFeatures) {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let Some(dir) = DIR.get_or_init(|| std::env::var_os("FNVM_FUZZ_DUMP").map(Into::into)) else {
        return;
    };
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut h);
    let path = dir.join(format!("{:03x}-{:016x}.wasm", features.0, h.finish()));
    let _ = std::fs::create_dir_all(dir);
    std::fs::write(&path, wasm).expect("FNVM_FUZZ_DUMP: write the module");
    eprintln!("FNVM_FUZZ_DUMP: {} ({} bytes)", path.display(), wasm.len());
}

/// With `FNVM_FUZZ_STATS=1`, prints every 2000 modules how many instantiated and how their
/// calls ended, to check that the harness reaches guest execution at all.
fn report(
    wasm_len: usize,
    stats: fnvm_fuzz::RunStats,
    compile: std::time::Duration,
    run: std::time::Duration,
) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static ON: OnceLock<bool> = OnceLock::new();
    static COUNTS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
    if !*ON.get_or_init(|| std::env::var_os("FNVM_FUZZ_STATS").is_some_and(|v| v == "1")) {
        return;
    }
    let add = |i: usize, n: u64| COUNTS[i].fetch_add(n, Relaxed);
    add(1, wasm_len as u64);
    add(2, stats.instantiated as u64);
    add(3, stats.returned as u64);
    add(4, stats.trapped as u64);
    add(5, compile.as_micros() as u64);
    add(6, run.as_micros() as u64);
    let n = add(0, 1) + 1;
    if n % 2_000 == 0 {
        let c: Vec<u64> = COUNTS.iter().map(|c| c.load(Relaxed)).collect();
        eprintln!(
            "stats: {n} modules, mean {} bytes, {} instantiated, {} calls returned, {} trapped; \
             mean {} us compiling, {} us loading and running",
            c[1] / n,
            c[2],
            c[3],
            c[4],
            c[5] / n,
            c[6] / n
        );
    }
}

fuzz_target!(|data: &[u8]| -> Corpus { run(data).unwrap_or(Corpus::Reject) });
