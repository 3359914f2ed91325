//! Builds the Cranelift target for a set of CPU features, with the flags our code relies on.

use crate::CompileError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use fnvm_abi::CpuFeatures;

/// Cranelift's name for each of our CPU features.
const CRANELIFT_FLAGS: [(&str, &str); 9] = [
    ("sse3", "has_sse3"),
    ("ssse3", "has_ssse3"),
    ("sse4.1", "has_sse41"),
    ("sse4.2", "has_sse42"),
    ("popcnt", "has_popcnt"),
    ("bmi1", "has_bmi1"),
    ("bmi2", "has_bmi2"),
    ("lzcnt", "has_lzcnt"),
    ("avx", "has_avx"),
];

/// Features every target must have: without SSE4.1, Cranelift lowers float rounding
/// (`ceil`, `floor`, `trunc`, `nearest`) to calls into libm, which an artifact cannot link.
/// This is the x86-64-v2 baseline that every x86 server of the last decade has.
pub(crate) const REQUIRED_FEATURES: [&str; 3] = ["sse3", "ssse3", "sse4.1"];

pub(crate) fn build(features: CpuFeatures) -> Result<OwnedTargetIsa, CompileError> {
    let missing: Vec<&str> = REQUIRED_FEATURES
        .iter()
        .copied()
        .filter(|f| !features.has(f))
        .collect();
    if !missing.is_empty() {
        return Err(CompileError::Target(format!(
            "the target CPU lacks {}, which fnvm requires (x86-64-v2)",
            missing.join(", ")
        )));
    }
    let err = |e: &dyn std::fmt::Display| CompileError::Limit(format!("target setup: {e}"));
    let mut shared = settings::builder();
    for (name, value) in [
        ("opt_level", "speed"),
        // Backtraces walk the frame-pointer chain.
        ("preserve_frame_pointers", "true"),
        // The prologue's stack-limit check covers the whole frame, so no probes are needed.
        ("enable_probestack", "false"),
        (
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        ),
        ("is_pic", "true"),
        ("unwind_info", "false"),
        ("enable_multi_ret_implicit_sret", "true"),
    ] {
        shared.set(name, value).map_err(|e| err(&e))?;
    }
    let mut isa =
        cranelift_codegen::isa::lookup_by_name("x86_64-unknown-linux-gnu").map_err(|e| err(&e))?;
    for (ours, theirs) in CRANELIFT_FLAGS {
        let on = if features.has(ours) { "true" } else { "false" };
        isa.set(theirs, on).map_err(|e| err(&e))?;
    }
    isa.finish(settings::Flags::new(shared))
        .map_err(|e| err(&e))
}
