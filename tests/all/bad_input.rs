//! Bad input gets a clear error and never a panic, an abort or unbounded memory use: random
//! bytes, truncated modules, absurd declared counts and sizes, deep nesting, huge functions,
//! corrupted artifacts, and memories beyond the host's limits.

use crate::engine::*;
use fnvm_compiler::{compile, CompileError, CompileOptions};
use fnvm_runtime::{Engine, EngineConfig, InstantiationError, Module, ResourceError, Store};

/// A deterministic generator, so failures reproduce.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn opts() -> CompileOptions {
    CompileOptions {
        parallel: false,
        ..CompileOptions::default()
    }
}

const VALID: &str = r#"(module
  (type (func (param i32) (result i32)))
  (import "env" "f" (func (type 0)))
  (memory 1 2)
  (table 4 funcref)
  (global (mut i64) (i64.const 5))
  (func (export "g") (param i32) (result i32)
    (block (result i32) (local.get 0) (br_if 0 (i32.const 1)) (call 0)))
  (elem (i32.const 0) 1)
  (data (i32.const 8) "hello"))"#;

#[test]
fn random_bytes_are_refused() {
    let mut rng = Lcg(1);
    for i in 0..2000 {
        let len = (rng.next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 2 == 0 {
            // Half of them get a valid header, so the section parsers see the noise.
            let mut with_header = b"\0asm\x01\0\0\0".to_vec();
            with_header.append(&mut bytes);
            bytes = with_header;
        }
        if let Err(e) = compile(&bytes, &opts()) {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Offsets where a section ends: cutting a module there leaves a valid, smaller module.
fn section_ends(wasm: &[u8]) -> Vec<usize> {
    let mut ends = vec![8];
    let mut pos = 8;
    while pos < wasm.len() {
        pos += 1; // section id
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let b = wasm[pos];
            pos += 1;
            size |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        pos += size;
        ends.push(pos);
    }
    ends
}

#[test]
fn every_truncation_of_a_valid_module_is_refused_with_an_offset() {
    let wasm = wat::parse_str(VALID).unwrap();
    compile(&wasm, &opts()).unwrap();
    let ends = section_ends(&wasm);
    assert!(ends.len() > 8, "{ends:?}");
    let mut refused = 0;
    for cut in 0..wasm.len() {
        match compile(&wasm[..cut], &opts()) {
            Err(CompileError::Invalid { offset, .. }) => {
                assert!(offset <= cut as u64, "cut {cut}: offset {offset}");
                refused += 1;
            }
            Err(e) => panic!("truncated at {cut}: {e}"),
            // Only a cut between sections leaves a module, and only one whose remaining
            // sections are consistent on their own.
            Ok(_) => assert!(ends.contains(&cut), "truncated at {cut} compiled"),
        }
    }
    assert!(
        refused > wasm.len() - ends.len() - 1,
        "{refused} of {}",
        wasm.len()
    );
}

#[test]
fn absurd_counts_and_sizes_are_refused_quickly() {
    let cases: &[(&str, &[u8])] = &[
        // type section claiming 2^32-1 entries
        ("types", b"\0asm\x01\0\0\0\x01\x05\xff\xff\xff\xff\x0f"),
        // function section claiming 2^32-1 functions
        ("funcs", b"\0asm\x01\0\0\0\x03\x05\xff\xff\xff\xff\x0f"),
        // memory of 65537 pages minimum
        ("memory", b"\0asm\x01\0\0\0\x05\x05\x01\x00\x81\x80\x04"),
        // data segment whose length runs past the end
        ("data", b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01\x0b\x08\x01\x00\x41\x00\x0b\xff\xff\xff\x0f"),
        // a body declaring 2^32-1 locals
        (
            "locals",
            b"\0asm\x01\0\0\0\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b",
        ),
        // a section size larger than the module
        ("section", b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f\x00"),
    ];
    for (what, bytes) in cases {
        let start = std::time::Instant::now();
        let err = compile(bytes, &opts()).expect_err(what);
        assert!(
            matches!(err, CompileError::Invalid { .. } | CompileError::Limit(_)),
            "{what}: {err}"
        );
        // Generous: the point is that nothing allocates or loops in proportion to the count.
        assert!(
            start.elapsed().as_secs() < 5,
            "{what} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn deeply_nested_blocks_compile_without_recursion() {
    let depth = 20_000;
    let mut wat = String::from("(module (func (export \"f\") (result i32) ");
    for _ in 0..depth {
        wat.push_str("(block (result i32) ");
    }
    wat.push_str("(i32.const 7)");
    for _ in 0..depth {
        wat.push(')');
    }
    wat.push_str("))");
    // A thread with a small stack: the compiler must not recurse per nesting level.
    let result = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let wasm = wat::parse_str(&wat).unwrap();
            compile(&wasm, &opts()).map(|_| ())
        })
        .unwrap()
        .join()
        .unwrap();
    match result {
        Ok(()) | Err(CompileError::Limit(_)) | Err(CompileError::Invalid { .. }) => {}
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_huge_function_compiles_and_runs() {
    on_big_stack(|| {
        let n = 100_000;
        let mut wat = String::from("(module (func (export \"f\") (result i32) (i32.const 0)");
        for i in 0..n {
            wat.push_str(&format!(" (i32.add (i32.const {}))", i % 7));
        }
        wat.push_str("))");
        let engine = engine();
        let (mut store, inst) = instantiate(&engine, &wat);
        let f = func(&mut store, inst, "f");
        let expected: i32 = (0..n).map(|i| i % 7).sum();
        assert_eq!(
            store.call(f, &[]).unwrap(),
            vec![fnvm_runtime::Val::I32(expected)]
        );
    });
}

#[test]
fn corrupted_artifacts_are_refused() {
    let engine = engine();
    let wasm = wat::parse_str(VALID).unwrap();
    let artifact = compile(&wasm, &opts()).unwrap();
    assert!(Module::from_artifact(&engine, &artifact).is_ok());
    let mut rng = Lcg(7);
    for i in 0..artifact.len().min(200) {
        let mut bad = artifact.clone();
        bad[i] ^= 1 << (rng.next() % 8);
        assert!(
            Module::from_artifact(&engine, &bad).is_err(),
            "header byte {i}"
        );
    }
    for _ in 0..200 {
        let mut bad = artifact.clone();
        let i = (rng.next() as usize) % bad.len();
        bad[i] = bad[i].wrapping_add(1 + (rng.next() % 255) as u8);
        let err = Module::from_artifact(&engine, &bad).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    for cut in [0, 7, 8, 50, 88, artifact.len() / 2, artifact.len() - 1] {
        assert!(
            Module::from_artifact(&engine, &artifact[..cut]).is_err(),
            "cut {cut}"
        );
    }
    assert!(
        Module::from_artifact(&engine, &wasm).is_err(),
        "raw wasm is not an artifact"
    );
}

#[test]
fn memories_beyond_the_host_cap_are_refused_and_grow_stops_there() {
    on_big_stack(|| {
        let engine = Engine::new(EngineConfig {
            max_memory_pages: 4,
            ..EngineConfig::default()
        })
        .unwrap();
        let big = module(&engine, "(module (memory 5))");
        let mut store = Store::new(&engine);
        match store.instantiate(&big, &[]) {
            Err(InstantiationError::Resource(ResourceError::MemoryTooLarge {
                needed: 5,
                limit: 4,
            })) => {}
            other => panic!("{other:?}"),
        }
        // A valid table far beyond the host's element cap.
        let huge_table = module(&engine, "(module (table 0xffffffff funcref))");
        match store.instantiate(&huge_table, &[]) {
            Err(InstantiationError::Resource(ResourceError::TableTooLarge { needed, .. })) => {
                assert_eq!(needed, 0xffff_ffff)
            }
            other => panic!("{other:?}"),
        }
        let small = module(
            &engine,
            r#"(module (memory 1)
                 (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#,
        );
        let inst = store.instantiate(&small, &[]).unwrap();
        let grow = func(&mut store, inst, "grow");
        use fnvm_runtime::Val::I32;
        assert_eq!(store.call(grow, &[I32(2)]).unwrap(), vec![I32(1)]);
        assert_eq!(store.call(grow, &[I32(2)]).unwrap(), vec![I32(-1)]);
        assert_eq!(store.call(grow, &[I32(1)]).unwrap(), vec![I32(3)]);
        assert_eq!(store.call(grow, &[I32(0)]).unwrap(), vec![I32(4)]);
        assert_eq!(store.call(grow, &[I32(-1)]).unwrap(), vec![I32(-1)]);
    });
}
