;; Arithmetic that traps (division, conversions) and that does not (saturating, sign extension).
(module
  (global $g (mut i64) (i64.const 0))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "rem") (param i64 i64) (result i64) (i64.rem_u (local.get 0) (local.get 1)))
  (func (export "trunc") (param f64) (result i32) (i32.trunc_f64_s (local.get 0)))
  (func (export "trunc_sat") (param f32) (result i64) (i64.trunc_sat_f32_u (local.get 0)))
  (func (export "ext") (param i32) (result i32) (i32.extend8_s (local.get 0)))
  (func (export "fmin") (param f32 f32) (result f32) (f32.min (local.get 0) (local.get 1)))
  (func (export "bump") (global.set $g (i64.add (global.get $g) (i64.const 1)))))
