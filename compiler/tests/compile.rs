//! Compiler-only tests: valid modules compile to checkable artifacts, bad ones get clear errors.

use fnvm_abi::{Artifact, CpuFeatures};
use fnvm_compiler::{compile, CompileError, CompileOptions};

fn build(wat: &str) -> Result<Vec<u8>, CompileError> {
    compile(&wat::parse_str(wat).unwrap(), &CompileOptions::default())
}

#[test]
fn small_module_compiles_to_a_valid_artifact() {
    let blob = build(
        r#"(module
            (memory 1)
            (table 2 funcref)
            (global $g (mut i32) (i32.const 7))
            (func $add (export "add") (param i32 i32) (result i32)
                local.get 0 local.get 1 i32.add global.get $g i32.add)
            (func (export "loop") (param i32) (result i32) (local i32)
                (loop $l
                    (local.set 1 (i32.add (local.get 1) (i32.load (local.get 0))))
                    (br_if $l (i32.eqz (local.get 1))))
                (call $add (local.get 1) (i32.const 1)))
            (func (export "multi") (result i32 i64 f32) i32.const 1 i64.const 2 f32.const 3)
            (func (export "ind") (param i32) (result i32) (call_indirect (result i32) (local.get 0)))
            (elem (i32.const 0) $add))"#,
    )
    .unwrap();
    let a = Artifact::parse(&blob, CpuFeatures::host()).unwrap();
    assert_eq!(a.module.funcs.len(), 4);
    assert_eq!(a.module.code.len(), 4);
    assert!(a
        .module
        .traps
        .iter()
        .any(|t| t.code == fnvm_abi::TrapCode::MemoryOutOfBounds));
    assert!(a
        .module
        .traps
        .iter()
        .any(|t| t.code == fnvm_abi::TrapCode::BadSignature));
    assert!(!a.code.is_empty());
}

#[test]
fn simd_is_refused_by_name() {
    let err = build(r#"(module (func (result v128) v128.const i64x2 0 0))"#).unwrap_err();
    match err {
        CompileError::Unsupported { feature, .. } => assert_eq!(feature, "simd"),
        other => panic!("{other}"),
    }
    let err = build(r#"(module (func return_call 0))"#).unwrap_err();
    assert!(
        err.to_string().contains("unsupported feature: tail-call"),
        "{err}"
    );
}

/// The byte range of the contents of section `id` of `wasm`.
fn section(wasm: &[u8], id: u8) -> std::ops::Range<u64> {
    wasmparser::Parser::new(0)
        .parse_all(wasm)
        .find_map(|p| p.unwrap().as_section().filter(|(i, _)| *i == id))
        .expect("section present")
        .1
}

#[test]
fn unsupported_features_point_at_the_construct() {
    // A SIMD operator in a body: the offset is the operator's (0xfd 0x11 is i32x4.splat).
    let wasm = wat::parse_str("(module (func (drop (i32x4.splat (i32.const 0)))))").unwrap();
    let code = section(&wasm, 10);
    let at = wasm[code.start as usize..]
        .windows(2)
        .position(|w| w == [0xfd, 0x11])
        .unwrap();
    assert_eq!(
        compile(&wasm, &CompileOptions::default()).unwrap_err(),
        CompileError::Unsupported {
            feature: "simd".into(),
            offset: code.start + at as u64,
        }
    );
    // A v128 in a function type: the offset lies inside the type section.
    let wasm = wat::parse_str("(module (func (param v128)))").unwrap();
    match compile(&wasm, &CompileOptions::default()).unwrap_err() {
        CompileError::Unsupported { feature, offset } => {
            assert_eq!(feature, "simd");
            assert!(section(&wasm, 1).contains(&offset), "{offset}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn invalid_modules_report_an_offset() {
    let err = compile(b"\0asm\x01\0\0\0\x01\x05", &CompileOptions::default()).unwrap_err();
    assert!(matches!(err, CompileError::Invalid { .. }), "{err}");
    let err = build(r#"(module (func (result i32) i64.const 1))"#).unwrap_err();
    match err {
        CompileError::Invalid { message, offset } => {
            assert!(message.contains("type mismatch"), "{message}");
            assert!(offset > 8);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn targets_without_sse41_are_refused_up_front() {
    let wasm =
        wat::parse_str(r#"(module (func (param f32) (result f32) (f32.nearest (local.get 0))))"#)
            .unwrap();
    let options = CompileOptions {
        features: CpuFeatures(0),
        ..CompileOptions::default()
    };
    let err = compile(&wasm, &options).unwrap_err();
    assert!(matches!(err, CompileError::Target(_)), "{err}");
    assert!(err.to_string().contains("sse4.1"), "{err}");
    // Every baseline set compiles float rounding without library calls.
    let names = ["sse3", "ssse3", "sse4.1"];
    let bits = CpuFeatures::NAMES
        .iter()
        .filter(|(_, n)| names.contains(n))
        .fold(0, |acc, (b, _)| acc | b);
    let options = CompileOptions {
        features: CpuFeatures(bits),
        ..CompileOptions::default()
    };
    compile(&wasm, &options).unwrap();
}
