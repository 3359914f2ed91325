//! `wasm2wat FILE.wasm`: prints a binary module as text (what `wasm-tools print` does), to
//! describe a module that a fuzz target generated (see `FNVM_FUZZ_DUMP` in fuzz/README.md).

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: wasm2wat FILE.wasm");
        std::process::exit(2);
    };
    let bytes = std::fs::read(&path).expect("read the module");
    match wasmprinter::print_bytes(&bytes) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("{path}: {e:#}");
            std::process::exit(1);
        }
    }
}
