//! A differential test over the WebAssembly specification scripts: every module of a script
//! that imports nothing is instantiated both in a [`WasmVm`] and in process (a
//! [`Store`](crate::Store)), and every `invoke` of it (plain, or inside `assert_return`,
//! `assert_trap` and `assert_exhaustion`) runs on both; results must be bit for bit the same
//! and traps must have the same code. The scripts' own expectations are the in-process runner's
//! business (`tests/all/spec.rs`); this checks that the VM changes nothing.
//!
//! The scripts are read from `$FNVM_SPEC_DIR`, by default `shared/wasm-spec-testsuite` next to
//! the workspace, as `tests/all/spec.rs` does: without them the test fails under CI
//! (`CI=true`) and is skipped otherwise. It needs /dev/kvm like the other KVM tests.

use super::tests::skip;
use super::*;
use crate::{Engine, EngineConfig, Extern, Halt, Instance, LinkedModule, Module, Store, Val};
use fnvm_abi::TrapCode;
use std::path::{Path, PathBuf};
use wast::core::WastArgCore;
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke};

/// The scripts' directory, or `None` (after saying so) when they are absent outside CI.
fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("FNVM_SPEC_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/wasm-spec-testsuite"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "spec test directory {} is missing (set FNVM_SPEC_DIR)",
        dir.display()
    );
    eprintln!("skipped: no spec test directory at {}", dir.display());
    None
}

/// What one side did: results, or a trap code.
type Outcome = Result<Vec<Val>, TrapCode>;

/// Counts over the scripts.
#[derive(Debug, Default)]
struct Counts {
    modules: usize,
    /// Modules left out: they import something, or fail to compile or load.
    modules_skipped: usize,
    compared: usize,
    /// Invokes left out: of skipped or named modules, or with arguments a VM call cannot take
    /// (most of them v128, in the SIMD scripts).
    skipped: usize,
    mismatches: Vec<String>,
}

/// The current module on both sides.
struct Pair {
    store: Store,
    instance: Instance,
    vm: WasmVm,
}

fn arg(a: &WastArg<'_>) -> Option<Val> {
    Some(match a {
        WastArg::Core(WastArgCore::I32(v)) => Val::I32(*v),
        WastArg::Core(WastArgCore::I64(v)) => Val::I64(*v),
        WastArg::Core(WastArgCore::F32(f)) => Val::F32(f.bits),
        WastArg::Core(WastArgCore::F64(f)) => Val::F64(f.bits),
        _ => return None,
    })
}

/// Compiles and loads a module; `None` if the compiler or loader refuses it.
fn load(engine: &Engine, module: &mut QuoteWat<'_>) -> Option<Module> {
    let bytes = module.encode().ok()?;
    let options = fnvm_compiler::CompileOptions::default();
    let artifact = fnvm_compiler::compile(&bytes, &options).ok()?;
    Module::from_artifact(engine, &artifact).ok()
}

/// The module instantiated on both sides, if both accept it; a difference is a mismatch.
fn instantiate(
    kvm: &Kvm,
    engine: &Engine,
    module: &Module,
    at: &str,
    counts: &mut Counts,
) -> Option<Pair> {
    if !module.info().imports.is_empty() {
        counts.modules_skipped += 1;
        return None;
    }
    counts.modules += 1;
    let mut store = Store::new(engine);
    let here = store.instantiate(module, &[]);
    // The store's caps: 4 GiB of memory, ten million table elements.
    let config = WasmVmConfig {
        max_memory_pages: engine.config().max_memory_pages,
        max_table_elements: engine.config().max_table_elements,
        ..WasmVmConfig::default()
    };
    let there = LinkedModule::new(module, |_| None)
        .map_err(WasmVmError::Link)
        .and_then(|linked| WasmVm::with_host(kvm, &linked, (), &config));
    match (here, there) {
        (Ok(instance), Ok(vm)) => Some(Pair {
            store,
            instance,
            vm,
        }),
        (Err(_), Err(WasmVmError::Link(_) | WasmVmError::Start(_))) => None,
        (here, there) => {
            counts.mismatches.push(format!(
                "{at}: instantiation: in process {:?}, in the VM {:?}",
                here.err().map(|e| e.to_string()),
                there.err().map(|e| e.to_string()),
            ));
            None
        }
    }
}

/// Runs `invoke` on both sides and compares.
fn compare(pair: Option<&mut Pair>, invoke: &WastInvoke<'_>, at: &str, counts: &mut Counts) {
    let (Some(pair), None) = (pair, invoke.module) else {
        counts.skipped += 1;
        return;
    };
    let Some(args) = invoke.args.iter().map(arg).collect::<Option<Vec<_>>>() else {
        counts.skipped += 1;
        return;
    };
    let Some(Extern::Func(f)) = pair.store.get_export(pair.instance, invoke.name) else {
        counts.skipped += 1;
        return;
    };
    let here: Outcome = pair.store.call(f, &args).map_err(|t| t.code);
    let there: Outcome = match pair.vm.call(invoke.name, &args) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Halt::Trap(t))) => Err(t.code),
        Ok(Err(exit)) => {
            counts
                .mismatches
                .push(format!("{at}: {}: the VM exited: {exit}", invoke.name));
            return;
        }
        // References the VM cannot pass (the in-process side may return them).
        Err(WasmVmError::UnrepresentableResult(_) | WasmVmError::ArgumentType { .. }) => {
            counts.skipped += 1;
            return;
        }
        Err(e) => {
            counts
                .mismatches
                .push(format!("{at}: {}: host-side error {e}", invoke.name));
            return;
        }
    };
    counts.compared += 1;
    if here != there {
        counts.mismatches.push(format!(
            "{at}: {}{args:?}: in process {here:?}, in the VM {there:?}",
            invoke.name
        ));
    }
}

fn run_script(kvm: &Kvm, path: &Path, counts: &mut Counts) {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let text = std::fs::read_to_string(path).unwrap();
    // The scripts use confusing Unicode on purpose (names.wast tests exports named with it).
    let mut lexer = Lexer::new(&text);
    lexer.allow_confusing_unicode(true);
    let buf = ParseBuffer::new_with_lexer(lexer).unwrap();
    let wast: Wast<'_> = parser::parse(&buf).unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let mut current: Option<Pair> = None;
    for directive in wast.directives {
        let (line, _) = directive.span().linecol_in(&text);
        let at = format!("{name}:{}", line + 1);
        match directive {
            WastDirective::Module(mut module) => {
                current = None;
                match load(&engine, &mut module) {
                    Some(m) => current = instantiate(kvm, &engine, &m, &at, counts),
                    None => counts.modules_skipped += 1,
                }
            }
            WastDirective::Invoke(invoke)
            | WastDirective::AssertReturn {
                exec: WastExecute::Invoke(invoke),
                ..
            }
            | WastDirective::AssertTrap {
                exec: WastExecute::Invoke(invoke),
                ..
            }
            | WastDirective::AssertExhaustion { call: invoke, .. } => {
                compare(current.as_mut(), &invoke, &at, counts)
            }
            // Definitions, instances of them, registrations and module assertions leave the
            // current module as it is (their invokes name modules, which are skipped).
            _ => {}
        }
    }
}

#[test]
fn spec_scripts_run_the_same_in_the_vm_as_in_process() {
    let Some(dir) = spec_dir() else { return };
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => return skip(&e),
    };
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wast"))
        .collect();
    scripts.sort();
    let mut counts = Counts::default();
    for script in &scripts {
        run_script(&kvm, script, &mut counts);
    }
    eprintln!(
        "{} scripts: {} modules ({} skipped), {} invokes compared ({} skipped)",
        scripts.len(),
        counts.modules,
        counts.modules_skipped,
        counts.compared,
        counts.skipped
    );
    assert!(counts.compared > 1000, "{counts:?}");
    assert!(
        counts.mismatches.is_empty(),
        "{} mismatches:\n{}",
        counts.mismatches.len(),
        counts.mismatches.join("\n")
    );
}
