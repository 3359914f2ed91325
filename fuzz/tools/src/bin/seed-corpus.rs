//! `seed-corpus SPEC_DIR OUT_DIR`: encodes every module of every `.wast` script in SPEC_DIR
//! (modules, module definitions, and the modules of assert_invalid, assert_malformed and
//! assert_unlinkable, binary or text) and writes each distinct one to OUT_DIR, named by a hash
//! of its bytes. The result seeds the `compile_bytes` fuzz target.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastDirective};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, spec, out] = &args[..] else {
        eprintln!("usage: seed-corpus SPEC_DIR OUT_DIR");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let mut files: Vec<PathBuf> = std::fs::read_dir(spec)
        .expect("read SPEC_DIR")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wast"))
        .collect();
    files.sort();
    let (mut written, mut skipped) = (0usize, 0usize);
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read script");
        let mut lexer = Lexer::new(&text);
        lexer.allow_confusing_unicode(true);
        let Ok(buf) = ParseBuffer::new_with_lexer(lexer) else {
            eprintln!("{}: does not lex, skipped", path.display());
            continue;
        };
        let Ok(script) = parser::parse::<Wast<'_>>(&buf) else {
            eprintln!("{}: does not parse, skipped", path.display());
            continue;
        };
        for directive in script.directives {
            let mut module: QuoteWat<'_> = match directive {
                WastDirective::Module(m)
                | WastDirective::ModuleDefinition(m)
                | WastDirective::AssertInvalid { module: m, .. }
                | WastDirective::AssertMalformed { module: m, .. } => m,
                WastDirective::AssertUnlinkable { module, .. } => QuoteWat::Wat(module),
                _ => continue,
            };
            let Ok(bytes) = module.encode() else {
                skipped += 1;
                continue;
            };
            let mut h = DefaultHasher::new();
            bytes.hash(&mut h);
            let file = out.join(format!("{:016x}", h.finish()));
            if !file.exists() {
                std::fs::write(&file, &bytes).expect("write seed");
                written += 1;
            }
        }
    }
    println!(
        "{} scripts: wrote {written} new seeds to {} ({skipped} quoted modules do not encode)",
        files.len(),
        out.display()
    );
}
