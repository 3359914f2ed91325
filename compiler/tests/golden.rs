//! Golden tests of our lowering: each `tests/golden/NAME.wat` is translated to Cranelift IR and
//! compared with `NAME.clif`. After an intended change, regenerate with
//! `BLESS=1 cargo test -p fnvm-compiler --test golden` and review the diff.

use fnvm_compiler::{translate_to_clif, CompileOptions};
use std::path::Path;

#[test]
fn lowering_matches_the_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("BLESS").is_some();
    let mut checked = 0;
    let mut mismatched = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for wat_path in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
    {
        let wasm = wat::parse_file(wat_path).unwrap();
        let clif = translate_to_clif(&wasm, &CompileOptions::default()).unwrap();
        let golden = wat_path.with_extension("clif");
        if bless {
            std::fs::write(&golden, &clif).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if want != clif {
                mismatched.push(format!(
                    "{}:\n--- expected\n{want}\n--- got\n{clif}",
                    golden.display()
                ));
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} golden files");
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}
