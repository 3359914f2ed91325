//! The `fnvm` package's library half: what the `fnvm` command does, in a form the integration
//! tests can call directly. Today that is the WebAssembly specification script runner
//! ([`wast`]); the command line itself lives in `main.rs`.

pub mod wast;
