;; Reference types and bulk operations: inline table.get/set/size, builtins for the rest.
(module
  (table $t 2 10 externref)
  (memory 1)
  (data $d "abc")
  (elem $e func 0)
  (func (export "get") (param i32) (result externref) (table.get $t (local.get 0)))
  (func (export "set") (param i32 externref) (table.set $t (local.get 0) (local.get 1)))
  (func (export "size") (result i32) (table.size $t))
  (func (export "grow") (param externref i32) (result i32) (table.grow $t (local.get 0) (local.get 1)))
  (func (export "is_null") (param externref) (result i32) (ref.is_null (local.get 0)))
  (func (export "fref") (result funcref) (ref.func 0))
  (func (export "init") (param i32) (memory.init $d (local.get 0) (i32.const 0) (i32.const 3)))
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2))))
