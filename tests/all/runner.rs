//! The script runner checked against small scripts with known outcomes, so that the spec tests'
//! "0 failed" means something: wrong expectations must be counted as failures, right ones as
//! passes, for every kind of directive.

use fnvm::wast::{run_script, Counts};

fn run(text: &str) -> Counts {
    match run_script("test.wast", text.to_string()) {
        Ok(counts) => counts,
        Err(e) => panic!("{e:#}"),
    }
}

/// The 1-based lines of the failed directives.
fn failed_lines(counts: &Counts) -> Vec<usize> {
    counts.failures.iter().map(|f| f.line).collect()
}

#[test]
fn right_and_wrong_expectations() {
    let counts = run(r#"(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
  (func (export "nan") (result f32) f32.const nan)
  (func (export "loop") (call 3))
  (global (export "g") i32 (i32.const 7)))
(assert_return (invoke "add" (i32.const 1) (i32.const 2)) (i32.const 3))
(assert_return (invoke "add" (i32.const 1) (i32.const 2)) (i32.const 4))
(assert_trap (invoke "div" (i32.const 1) (i32.const 0)) "integer divide by zero")
(assert_trap (invoke "div" (i32.const 1) (i32.const 1)) "integer divide by zero")
(assert_trap (invoke "div" (i32.const 1) (i32.const 0)) "unreachable")
(assert_return (invoke "nan") (f32.const nan:canonical))
(assert_return (invoke "nan") (f32.const 0))
(assert_return (get "g") (i32.const 7))
(assert_return (get "g") (i32.const 8))
(assert_exhaustion (invoke "loop") "call stack exhausted")
(invoke "div" (i32.const 1) (i32.const 0))
(invoke "nope")
"#);
    assert_eq!(
        failed_lines(&counts),
        [8, 10, 11, 13, 15, 17, 18],
        "{counts:?}"
    );
    assert_eq!(counts.passed, 6, "{counts:?}");
}

#[test]
fn module_level_assertions() {
    let counts = run(
        r#"(assert_invalid (module (func (result i32))) "type mismatch")
(assert_invalid (module (func (result i32) i32.const 0)) "type mismatch")
(assert_malformed (module quote "(func") "unexpected end")
(assert_malformed (module binary "\00asm\01\00\00\00") "nothing wrong")
(assert_malformed (module binary "\00asm\01\00\00") "unexpected end")
(assert_unlinkable (module (import "spectest" "nope" (func))) "unknown import")
(assert_unlinkable (module (import "spectest" "print_i32" (func (param i64)))) "incompatible import type")
(assert_unlinkable (module (import "spectest" "print_i32" (func (param i32)))) "too good")
(assert_trap (module (func $f unreachable) (start $f)) "unreachable")
(assert_trap (module (memory 1) (data (i32.const 65536) "x")) "out of bounds memory access")
(assert_trap (module (memory 1) (data (i32.const 0) "x")) "out of bounds memory access")
"#,
    );
    assert_eq!(failed_lines(&counts), [2, 4, 8, 11], "{counts:?}");
    assert_eq!(counts.passed, 7, "{counts:?}");
}

#[test]
fn imports_registration_and_named_modules() {
    let counts = run(r#"(module $a
  (import "spectest" "global_i32" (global $g i32))
  (import "spectest" "print_i32" (func $print (param i32)))
  (func (export "get") (result i32) (call $print (global.get $g)) (global.get $g)))
(register "a" $a)
(module $b
  (import "a" "get" (func $get (result i32)))
  (func (export "twice") (result i32) (i32.add (call $get) (call $get))))
(assert_return (invoke $a "get") (i32.const 666))
(assert_return (invoke "twice") (i32.const 1332))
(assert_return (invoke $b "twice") (i32.const 1332))
(assert_return (invoke $c "twice") (i32.const 1332))
(module (import "a" "missing" (func)))
(assert_return (invoke "twice") (i32.const 1332))
"#);
    // The module on line 13 does not link, after which no module is current.
    assert_eq!(failed_lines(&counts), [12, 13, 14], "{counts:?}");
    assert_eq!(counts.passed, 6, "{counts:?}");
}

#[test]
fn unparsable_script_is_an_error() {
    let err = run_script("bad.wast", "(module (func".to_string()).unwrap_err();
    assert!(format!("{err:#}").contains("bad.wast"), "{err:#}");
}
