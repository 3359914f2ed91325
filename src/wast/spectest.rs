//! The `spectest` host module the specification scripts import: print functions, four immutable
//! globals, a table and a memory, as the WebAssembly reference interpreter defines them.

use anyhow::{Context, Result};
use fnvm_abi::{FuncType, GlobalType, Limits, MemoryType, TableType, ValType};
use fnvm_runtime::{Caller, Extern, HostExit, HostFuncDef, Store, Val};
use std::collections::HashMap;

/// Creates the `spectest` items in `store`, by export name.
///
/// The print functions print nothing: the scripts only call them to check that imports work, and
/// their output would drown the runner's.
pub(super) fn create(store: &mut Store) -> Result<HashMap<String, Extern>> {
    use ValType::{F32, F64, I32, I64};
    let mut items = HashMap::new();

    let prints: [(&str, Vec<ValType>); 7] = [
        ("print", vec![]),
        ("print_i32", vec![I32]),
        ("print_i64", vec![I64]),
        ("print_f32", vec![F32]),
        ("print_f64", vec![F64]),
        ("print_i32_f32", vec![I32, F32]),
        ("print_f64_f64", vec![F64, F64]),
    ];
    for (name, params) in prints {
        let ty = FuncType {
            params,
            results: vec![],
        };
        let func = store.new_host_func(HostFuncDef::new(ty, print));
        items.insert(name.to_string(), Extern::Func(func));
    }

    let globals = [
        ("global_i32", I32, Val::I32(666)),
        ("global_i64", I64, Val::I64(666)),
        ("global_f32", F32, Val::F32(666.6f32.to_bits())),
        ("global_f64", F64, Val::F64(666.6f64.to_bits())),
    ];
    for (name, ty, val) in globals {
        let global = store
            .new_global(GlobalType { ty, mutable: false }, val)
            .with_context(|| format!("creating spectest.{name}"))?;
        items.insert(name.to_string(), Extern::Global(global));
    }

    let table = store
        .new_table(TableType {
            elem: ValType::FuncRef,
            limits: Limits {
                min: 10,
                max: Some(20),
            },
        })
        .context("creating spectest.table")?;
    items.insert("table".to_string(), Extern::Table(table));

    let memory = store
        .new_memory(MemoryType {
            limits: Limits {
                min: 1,
                max: Some(2),
            },
        })
        .context("creating spectest.memory")?;
    items.insert("memory".to_string(), Extern::Memory(memory));

    Ok(items)
}

/// The print functions: they take their arguments and return nothing.
fn print(_: &mut Caller<'_, ()>, _: &mut [u64]) -> Result<(), HostExit> {
    Ok(())
}
