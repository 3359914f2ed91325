//! Builds one source file or archive from the command line, for trying the crate by hand and
//! timing builds: `cargo run -p fnvm-builds --example build -- LANGUAGE FILE [TOOLCHAINS_DIR]`
//! writes FILE's module to FILE.wasm and prints the time taken; `... -- check [DIR]` prints
//! what `Toolchains::check` says. DIR defaults to target/toolchains.

use std::time::Instant;

use fnvm_builds::{build, Language, Limits, Source, Toolchains};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| "target/toolchains".into())
    };
    if args.first().map(String::as_str) == Some("check") {
        for s in Toolchains::new(dir(1)).check() {
            let version = s.version.unwrap_or_default();
            println!(
                "{:<15} {:<8} {version:<45} {}",
                s.name,
                if s.present { "present" } else { "MISSING" },
                s.detail
            );
        }
        return;
    }
    let (Some(lang), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("usage: build LANGUAGE FILE [TOOLCHAINS_DIR] | build check [TOOLCHAINS_DIR]");
        std::process::exit(2);
    };
    let language: Language = lang.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    });
    let source = if [".tar.gz", ".tgz", ".tar", ".zip"]
        .iter()
        .any(|e| path.ends_with(e))
    {
        Source::Archive { bytes }
    } else {
        Source::File {
            name: path.clone(),
            bytes,
        }
    };
    let start = Instant::now();
    match build(
        language,
        &source,
        &Toolchains::new(dir(2)),
        &Limits::default(),
    ) {
        Ok(built) => {
            let out = format!("{path}.wasm");
            std::fs::write(&out, &built.wasm).expect("writing the module");
            println!(
                "{out}: {} bytes in {:.2?}",
                built.wasm.len(),
                start.elapsed()
            );
        }
        Err(e) => {
            eprintln!("{e}\n--- log ---\n{}", e.log().unwrap_or(""));
            eprintln!("after {:.2?}", start.elapsed());
            std::process::exit(1);
        }
    }
}
