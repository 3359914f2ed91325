;; Direct, imported and indirect calls; multi-value results.
(module
  (import "env" "host" (func $host (param i32) (result i32)))
  (type $t (func (param i32) (result i32)))
  (table 4 funcref)
  (func $inc (type $t) (i32.add (local.get 0) (i32.const 1)))
  (func (export "direct") (param i32) (result i32) (call $inc (local.get 0)))
  (func (export "imported") (param i32) (result i32) (call $host (local.get 0)))
  (func (export "indirect") (param i32 i32) (result i32)
    (call_indirect (type $t) (local.get 0) (local.get 1)))
  (func (export "pair") (result i32 f64) (i32.const 1) (f64.const 2.5)))
