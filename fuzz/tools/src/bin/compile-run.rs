//! `compile-run [--features HEX] FILE.{wasm,wat}`: what the `compile_valid` fuzz target does to
//! one module, without the fuzzer: compile it for the given CPU-feature mask (intersected with
//! the host's; default: the host's), load the artifact, instantiate it with host-made imports
//! (zero-returning functions, fresh tables and memories, zero globals) and call every exported
//! function with zero arguments under an epoch deadline, printing each outcome.

use fnvm_abi::{CpuFeatures, ExternKind, ImportType, ValType};
use fnvm_compiler::{compile, CompileOptions};
use fnvm_runtime::{
    Caller, Engine, EngineConfig, Extern, HostExit, HostFuncDef, Module, Store, Val,
};
use std::time::Duration;

fn zero(t: ValType) -> Val {
    match t {
        ValType::I32 => Val::I32(0),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::FuncRef => Val::FuncRef(None),
        ValType::ExternRef => Val::ExternRef(None),
    }
}

/// Every imported function: returns zeros (0 is the zero or null value of every type in the
/// slot encoding).
fn zero_results(_: &mut Caller<'_, ()>, values: &mut [u64]) -> Result<(), HostExit> {
    values.fill(0);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mask, path) = match &args[..] {
        [flag, hex, path] if flag == "--features" => (
            u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("--features HEX"),
            path,
        ),
        [path] => (u64::MAX, path),
        _ => {
            eprintln!("usage: compile-run [--features HEX] FILE.{{wasm,wat}}");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::read(path).expect("read the module");
    let wasm = if bytes.starts_with(b"\0asm") {
        bytes
    } else {
        let text = String::from_utf8(bytes).expect("a .wat file is UTF-8");
        let mut lexer = wast::lexer::Lexer::new(&text);
        lexer.allow_confusing_unicode(true);
        let buf = wast::parser::ParseBuffer::new_with_lexer(lexer).expect("lex the .wat");
        let mut wat = wast::parser::parse::<wast::Wat<'_>>(&buf).expect("parse the .wat");
        wat.encode().expect("encode the .wat")
    };
    let features = CpuFeatures(CpuFeatures::host().0 & mask);
    let names: Vec<&str> = CpuFeatures::NAMES
        .iter()
        .filter(|(bit, _)| features.0 & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    println!("features {:#x}: {}", features.0, names.join(" "));
    let options = CompileOptions {
        features,
        epoch_interruption: true,
        parallel: false,
    };
    let artifact = match compile(&wasm, &options) {
        Ok(a) => a,
        Err(e) => {
            println!("compile: error: {e}");
            std::process::exit(1);
        }
    };
    println!("compile: ok, {} byte artifact", artifact.len());
    // Host code (and, before the runtime got its own guest stacks, guest code) runs here.
    let t = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || run(&artifact));
    t.expect("spawn").join().expect("run thread");
}

fn run(artifact: &[u8]) {
    let engine = Engine::new(EngineConfig {
        max_memory_pages: 1024,
        max_table_elements: 100_000,
        epoch_tick: Some(Duration::from_millis(1)),
        ..EngineConfig::default()
    })
    .expect("engine");
    let module = match Module::from_artifact(&engine, artifact) {
        Ok(m) => m,
        Err(e) => {
            println!("load: error: {e}");
            std::process::exit(1);
        }
    };
    println!("load: ok");
    let mut store = Store::new(&engine);
    let info = module.info().clone();
    let mut imports = Vec::new();
    for imp in &info.imports {
        let ext = match imp.ty {
            ImportType::Func(t) => {
                let ty = info.types[t as usize].clone();
                Some(Extern::Func(store.new_host_func(HostFuncDef {
                    ty,
                    func: zero_results,
                    write_behind: None,
                })))
            }
            ImportType::Table(t) => store.new_table(t).ok().map(Extern::Table),
            ImportType::Memory(m) => store.new_memory(m).ok().map(Extern::Memory),
            ImportType::Global(g) => store.new_global(g, zero(g.ty)).ok().map(Extern::Global),
        };
        let Some(ext) = ext else {
            println!("import {}::{}: the store refused it", imp.module, imp.name);
            return;
        };
        imports.push(ext);
    }
    store.set_epoch_deadline(2);
    let instance = match store.instantiate(&module, &imports) {
        Ok(i) => i,
        Err(e) => {
            println!("instantiate: error: {e}");
            return;
        }
    };
    println!("instantiate: ok");
    for e in info.exports.iter().filter(|e| e.kind == ExternKind::Func) {
        let Some(Extern::Func(f)) = store.get_export(instance, &e.name) else {
            println!("export {:?}: not a function?", e.name);
            continue;
        };
        let ty = store.func_type(f).expect("type");
        let args: Vec<Val> = ty.params.iter().map(|t| zero(*t)).collect();
        store.set_epoch_deadline(2);
        match store.call(f, &args) {
            Ok(r) => println!("call {:?} {ty}: returned {r:?}", e.name),
            Err(t) => println!("call {:?} {ty}: trap: {t}", e.name),
        }
    }
}
