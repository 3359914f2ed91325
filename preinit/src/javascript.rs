//! JavaScript functions: the QuickJS engine (js-engine/, built by scripts/js-engine.sh) with the
//! user's script evaluated at build time. [`build_function`] checks the script, runs the
//! engine's `fnvm_preinit` export on it (the script on stdin) through [`preinitialize`], and
//! returns the snapshot module: its `_start` serves invocations (the HTTP trigger ABI under
//! `FNVM_TRIGGER=http`, the raw mode otherwise) with the script already evaluated.
//!
//! What the script gets and must define is documented in js-engine/README.md.

use crate::{preinitialize, Limits, PreinitError};

/// The engine's pre-initialisation export.
pub const INIT_EXPORT: &str = "fnvm_preinit";

/// Largest script accepted, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 8 << 20;

/// Builds a JavaScript function: `engine_wasm` (the QuickJS engine) pre-initialised with
/// `script`. Returns the module and what the script printed while it was evaluated (its stdout,
/// then its stderr). A script that does not parse, throws, or defines neither
/// `trigger_http(request)` nor `main(input)` is refused with QuickJS's message
/// ([`PreinitError::Failed`], whose `stderr` holds it).
pub fn build_function(
    engine_wasm: &[u8],
    script: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, String), PreinitError> {
    if script.len() > MAX_SCRIPT_BYTES {
        return Err(PreinitError::TooLarge {
            what: "the script",
            size: script.len() as u64,
            limit: MAX_SCRIPT_BYTES as u64,
        });
    }
    if let Err(e) = std::str::from_utf8(script) {
        return Err(PreinitError::Unsupported(format!(
            "the script is not valid UTF-8 ({e})"
        )));
    }
    let out = preinitialize(engine_wasm, INIT_EXPORT, script.to_vec(), limits)?;
    // The snapshot must still be the engine: an entry point, and the init export gone.
    let mut has_start = false;
    for payload in wasmparser::Parser::new(0).parse_all(&out.wasm) {
        if let Ok(wasmparser::Payload::ExportSection(r)) = payload {
            for e in r.into_iter().flatten() {
                has_start |= e.name == "_start";
                if e.name == INIT_EXPORT {
                    return Err(PreinitError::Output(format!(
                        "`{INIT_EXPORT}` is still exported"
                    )));
                }
            }
        }
    }
    if !has_start {
        return Err(PreinitError::Output(
            "the engine exports no `_start`".into(),
        ));
    }
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.wasm, log))
}
