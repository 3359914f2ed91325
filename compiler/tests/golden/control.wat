;; Structured control flow: blocks with results, loops with deadline checks, br_table with values.
(module
  (func (export "sum") (param i32) (result i32) (local i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get 0)))
        (local.set 1 (i32.add (local.get 1) (local.get 0)))
        (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
        (br $l)))
    (local.get 1))
  (func (export "pick") (param i32) (result i32)
    (block $a (result i32)
      (block $b (result i32)
        (br_table $a $b $a (i32.const 10) (local.get 0)))
      (i32.const 1)
      (i32.add)))
  (func (export "sel") (param i32 i64 i64) (result i64)
    (if (result i64) (local.get 0) (then (local.get 1)) (else (local.get 2)))))
