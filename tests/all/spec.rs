//! The WebAssembly 2.0 specification scripts (without SIMD), one test per script, each run through
//! `fnvm::wast` and required to pass every directive.
//!
//! The scripts are read from `$FNVM_SPEC_DIR`, by default `../shared/wasm-spec-testsuite` next to
//! the workspace. Without them the tests fail under CI (`CI=true`) and are skipped otherwise.

use std::path::PathBuf;

/// The scripts' directory, or `None` (after saying so) when they are absent outside CI.
fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("FNVM_SPEC_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/wasm-spec-testsuite"
        )),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "spec test directory {} is missing (set FNVM_SPEC_DIR)",
        dir.display()
    );
    eprintln!(
        "note: spec test directory {} is missing; skipping (set FNVM_SPEC_DIR)",
        dir.display()
    );
    None
}

fn run(script: &str) {
    let Some(dir) = spec_dir() else {
        return;
    };
    let counts = match fnvm::wast::run_file(&dir.join(script)) {
        Ok(counts) => counts,
        Err(e) => panic!("{script}: {e:#}"),
    };
    let failures: Vec<String> = counts.failures.iter().map(|f| f.to_string()).collect();
    assert!(
        failures.is_empty(),
        "{script}: {counts}\n{}",
        failures.join("\n")
    );
}

macro_rules! spec_tests {
    ($($test:ident => $script:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run($script);
            }
        )*

        /// Every script the tests above run.
        const SCRIPTS: &[&str] = &[$($script),*];
    };
}

spec_tests! {
    address_wast => "address.wast",
    align_wast => "align.wast",
    binary_leb128_wast => "binary-leb128.wast",
    binary_wast => "binary.wast",
    block_wast => "block.wast",
    br_wast => "br.wast",
    br_if_wast => "br_if.wast",
    br_table_wast => "br_table.wast",
    bulk_wast => "bulk.wast",
    call_wast => "call.wast",
    call_indirect_wast => "call_indirect.wast",
    comments_wast => "comments.wast",
    const_wast => "const.wast",
    conversions_wast => "conversions.wast",
    custom_wast => "custom.wast",
    data_wast => "data.wast",
    elem_wast => "elem.wast",
    endianness_wast => "endianness.wast",
    exports_wast => "exports.wast",
    f32_wast => "f32.wast",
    f32_bitwise_wast => "f32_bitwise.wast",
    f32_cmp_wast => "f32_cmp.wast",
    f64_wast => "f64.wast",
    f64_bitwise_wast => "f64_bitwise.wast",
    f64_cmp_wast => "f64_cmp.wast",
    fac_wast => "fac.wast",
    float_exprs_wast => "float_exprs.wast",
    float_literals_wast => "float_literals.wast",
    float_memory_wast => "float_memory.wast",
    float_misc_wast => "float_misc.wast",
    forward_wast => "forward.wast",
    func_wast => "func.wast",
    func_ptrs_wast => "func_ptrs.wast",
    global_wast => "global.wast",
    i32_wast => "i32.wast",
    i64_wast => "i64.wast",
    if_wast => "if.wast",
    imports_wast => "imports.wast",
    inline_module_wast => "inline-module.wast",
    int_exprs_wast => "int_exprs.wast",
    int_literals_wast => "int_literals.wast",
    labels_wast => "labels.wast",
    left_to_right_wast => "left-to-right.wast",
    linking_wast => "linking.wast",
    load_wast => "load.wast",
    local_get_wast => "local_get.wast",
    local_set_wast => "local_set.wast",
    local_tee_wast => "local_tee.wast",
    loop_wast => "loop.wast",
    memory_wast => "memory.wast",
    memory_copy_wast => "memory_copy.wast",
    memory_fill_wast => "memory_fill.wast",
    memory_grow_wast => "memory_grow.wast",
    memory_init_wast => "memory_init.wast",
    memory_redundancy_wast => "memory_redundancy.wast",
    memory_size_wast => "memory_size.wast",
    memory_trap_wast => "memory_trap.wast",
    names_wast => "names.wast",
    nop_wast => "nop.wast",
    obsolete_keywords_wast => "obsolete-keywords.wast",
    ref_func_wast => "ref_func.wast",
    ref_is_null_wast => "ref_is_null.wast",
    ref_null_wast => "ref_null.wast",
    return_wast => "return.wast",
    select_wast => "select.wast",
    skip_stack_guard_page_wast => "skip-stack-guard-page.wast",
    stack_wast => "stack.wast",
    start_wast => "start.wast",
    store_wast => "store.wast",
    switch_wast => "switch.wast",
    table_sub_wast => "table-sub.wast",
    table_wast => "table.wast",
    table_copy_wast => "table_copy.wast",
    table_fill_wast => "table_fill.wast",
    table_get_wast => "table_get.wast",
    table_grow_wast => "table_grow.wast",
    table_init_wast => "table_init.wast",
    table_set_wast => "table_set.wast",
    table_size_wast => "table_size.wast",
    token_wast => "token.wast",
    traps_wast => "traps.wast",
    type_wast => "type.wast",
    unreachable_wast => "unreachable.wast",
    unreached_invalid_wast => "unreached-invalid.wast",
    unreached_valid_wast => "unreached-valid.wast",
    unwind_wast => "unwind.wast",
    utf8_custom_section_id_wast => "utf8-custom-section-id.wast",
    utf8_import_field_wast => "utf8-import-field.wast",
    utf8_import_module_wast => "utf8-import-module.wast",
    utf8_invalid_encoding_wast => "utf8-invalid-encoding.wast",
}

#[test]
fn every_script_has_a_test() {
    let Some(dir) = spec_dir() else {
        return;
    };
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("reading the spec test directory")
        .map(|entry| {
            entry
                .expect("reading the spec test directory")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".wast") && !name.starts_with("simd_"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        found,
        listed,
        "the scripts in {} and the tests differ",
        dir.display()
    );
    assert_eq!(listed.len(), 90);
}
