//! `fnvm-guest`: the guest side of fnvm's HTTP and Pulsar triggers, for Rust functions compiled
//! to `wasm32-wasip1`. The crate root owns the overview and the module list.
//!
//! A function called with `?trigger=http` reads the request as one JSON object on stdin and
//! writes the response as one JSON object on stdout (the ABI, version 1, is described in
//! `guest-sdk/README.md`). [`http::serve`] does both around a handler:
//!
//! ```no_run
//! use fnvm_guest::http::{serve, Request, Response};
//!
//! fn main() {
//!     serve(|req: Request| {
//!         Response::new(200)
//!             .header("Content-Type", "text/plain")
//!             .header("X-Powered-By", "CleverCloud")
//!             .body(format!("User-Agent: {}", req.header("user-agent").unwrap_or("")))
//!     })
//! }
//! ```
//!
//! A function behind a Pulsar trigger (structured mode) gets each message as one JSON object on
//! stdin and says with its exit status whether it consumed it; [`pulsar::consume`] does both
//! around a handler returning `Result<(), String>` (the ABI is also in `guest-sdk/README.md`).
//!
//! [`raw`] has small helpers for the default (raw) mode, where stdin is the body, stdout the
//! response body and the request comes as CGI-style environment variables. [`net`] opens
//! outbound TCP and TLS connections (`Read + Write` streams) through fnvm's host functions.
//!
//! The crate has no dependencies at all (its JSON and base64 are its own, small and strict), so
//! that it builds offline with an empty cargo registry, and it never panics on bad input.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod base64;
pub mod http;
mod json;
pub mod net;
pub mod pulsar;
mod query;
pub mod raw;

/// The version of the HTTP trigger ABI this crate speaks.
pub const ABI_VERSION: u32 = 1;

/// The version of the Pulsar trigger ABI ([`pulsar`]) this crate speaks.
pub const PULSAR_ABI_VERSION: u32 = 1;

/// A small deterministic generator for the randomized tests (no `rand`: no dependencies).
#[cfg(test)]
mod test_rng {
    #[derive(Debug)]
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        /// xorshift64*.
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform enough in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
}
