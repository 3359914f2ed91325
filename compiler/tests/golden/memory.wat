;; Loads and stores: no bounds check within the guard region, an explicit one beyond it.
(module
  (memory 1)
  (func (export "load") (param i32) (result i32) (i32.load offset=16 (local.get 0)))
  (func (export "store8") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "far") (param i32) (result i64) (i64.load offset=0xfffffff0 (local.get 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size)))
