//! Arbitrary bytes into the compiler: it must return `Ok` or a `CompileError`, never panic,
//! abort or hang.
#![no_main]

use fnvm_compiler::{compile, CompileOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = CompileOptions {
        // One thread: faster for small inputs and keeps the fuzzer deterministic.
        parallel: false,
        ..CompileOptions::default()
    };
    let _ = compile(data, &options);
});
