//! Server-side builds: a source file or a project archive, for a platform, becomes a WebAssembly
//! module, built by that platform's toolchain in a sandbox (no network, nothing of the server
//! visible but the toolchain and a temporary directory, limits on CPU, memory, processes, time,
//! disk and output), with the whole build log kept.
//!
//! The crate root owns the public interface: [`Language`], [`Source`], [`Built`],
//! [`BuildError`], [`build`] and [`input_hash`]. The pieces live in their own modules:
//! [`limits`] (what a build may use), [`toolchains`] (the operator's toolchain directory and its
//! `check`), `archive` (untrusted archives unpacked with limits), `sandbox` (bubblewrap, rlimits,
//! wall time, bounded output), `log` (the bounded log and the trimmed reason), and one module per
//! language (`rust`, `go`, `assemblyscript`) that lays out the project and writes the build
//! script run inside the sandbox.
//!
//! How a build goes: the source is written (or unpacked) into a fresh host directory, bound
//! read-only at `/src` inside a bubblewrap sandbox whose only writable place is a size-limited
//! tmpfs at `/tmp`; a shell script copies `/src` to `/tmp/build`, runs the compiler there and
//! writes the module to a pipe (fd 3) the compiler never sees. Everything the build prints goes
//! through a bounded reader. See `sandbox.rs` for the isolation and the limits, and why each is
//! enforced the way it is.

mod archive;
mod assemblyscript;
mod go;
pub mod limits;
mod log;
mod rust;
mod sandbox;
pub mod toolchains;
mod workdir;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use limits::Limits;
pub use toolchains::{ToolchainStatus, Toolchains};

/// The languages built here (JavaScript is `fnvm-preinit`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// Rust, built by cargo for `wasm32-wasip1` (release) with `fnvm-guest` available.
    Rust,
    /// Go, built by `go build` with `GOOS=wasip1 GOARCH=wasm`.
    Go,
    /// AssemblyScript, built by `asc` with the WASI shim.
    AssemblyScript,
}

impl Language {
    /// Every language, in the order `check` lists them.
    pub const ALL: [Language; 3] = [Language::Rust, Language::Go, Language::AssemblyScript];

    /// The lowercase name used in the API, the CLI and `check`: `rust`, `go`, `assemblyscript`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Go => "go",
            Language::AssemblyScript => "assemblyscript",
        }
    }

    /// The extension a single source file must have, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Language::Rust => "rs",
            Language::Go => "go",
            Language::AssemblyScript => "ts",
        }
    }

    /// The language of a single source file, from its extension (`.rs`, `.go`, `.ts`).
    pub fn from_file_name(name: &str) -> Option<Language> {
        let ext = name.rsplit_once('.')?.1;
        Language::ALL.into_iter().find(|l| l.extension() == ext)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Language {
    type Err = String;

    /// Accepts the names of [`Language::name`] plus the short forms `rs` and `as`.
    fn from_str(s: &str) -> Result<Language, String> {
        match s.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Language::Rust),
            "go" | "golang" => Ok(Language::Go),
            "assemblyscript" | "as" => Ok(Language::AssemblyScript),
            other => Err(format!(
                "unknown language {other:?} (rust, go or assemblyscript)"
            )),
        }
    }
}

/// What the user uploaded.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// One source file; only its extension matters (it must be the language's), it becomes
    /// `src/main.rs`, `main.go` or `assembly/index.ts` of a generated project.
    File {
        /// The uploaded file's name.
        name: String,
        /// Its contents.
        bytes: Vec<u8>,
    },
    /// A project archive, `.tar.gz`, `.tar` or `.zip`, told apart by its first bytes. The
    /// project is the archive's root, or its only top-level directory.
    Archive {
        /// The archive's bytes.
        bytes: Vec<u8>,
    },
}

impl Source {
    /// The size of the upload in bytes.
    pub fn len(&self) -> usize {
        match self {
            Source::File { bytes, .. } | Source::Archive { bytes } => bytes.len(),
        }
    }

    /// Whether the upload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Source {
    // Sources can be megabytes: their length, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { name, bytes } => f
                .debug_struct("File")
                .field("name", name)
                .field("len", &bytes.len())
                .finish(),
            Source::Archive { bytes } => f
                .debug_struct("Archive")
                .field("len", &bytes.len())
                .finish(),
        }
    }
}

/// A successful build.
#[derive(Clone)]
pub struct Built {
    /// The WebAssembly module (it starts with `\0asm`; not validated further here).
    pub wasm: Vec<u8>,
    /// The build's output (stdout and stderr interleaved), bounded by [`Limits::log_bytes`].
    pub log: String,
}

impl fmt::Debug for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Built")
            .field("wasm_len", &self.wasm.len())
            .field("log", &self.log)
            .finish()
    }
}

/// Why a build gave no module.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The language's toolchain (or the sandbox, `bubblewrap`) is not installed in the
    /// toolchain directory; `detail` says what is missing and how to install it.
    #[error("toolchain {name} is missing: {detail}")]
    ToolchainMissing {
        /// `rust`, `go`, `assemblyscript` or `bubblewrap`, as in [`Toolchains::check`].
        name: &'static str,
        /// What is missing and how to install it.
        detail: String,
    },
    /// The upload cannot be built: wrong extension, bad or dangerous archive, no project.
    #[error("bad source: {0}")]
    Source(String),
    /// The compiler (or the user's build code) failed: `reason` is its first error message,
    /// at most about 2 KiB; `log` the whole bounded output.
    #[error("build failed: {reason}")]
    Failed {
        /// The compiler's message, trimmed.
        reason: String,
        /// The whole (bounded) build output.
        log: String,
    },
    /// The build went over one of its [`Limits`]; `what` names it.
    #[error("build stopped: {what}")]
    Limit {
        /// Which limit, with its value: "wall time (30s)", "processes (512)", ...
        what: String,
        /// The build output up to then (bounded).
        log: String,
    },
    /// The sandbox could not be set up or run: a server-side problem, not the user's.
    #[error("build sandbox: {0}")]
    Sandbox(String),
}

impl BuildError {
    /// The build output, for the errors that have one.
    pub fn log(&self) -> Option<&str> {
        match self {
            BuildError::Failed { log, .. } | BuildError::Limit { log, .. } => Some(log),
            _ => None,
        }
    }
}

/// Builds `source` as `language` with the toolchains of `toolchains`, within `limits`.
///
/// Blocking (seconds to minutes): call it on a blocking thread. Several builds may run at once,
/// from any threads: each has its own directories and sandbox, and shares nothing mutable.
pub fn build(
    language: Language,
    source: &Source,
    toolchains: &Toolchains,
    limits: &Limits,
) -> Result<Built, BuildError> {
    limits
        .validate()
        .map_err(|e| BuildError::Sandbox(format!("invalid limits: {e}")))?;
    if source.len() as u64 > limits.source_bytes {
        return Err(BuildError::Source(format!(
            "the upload is {} bytes, more than the limit of {} bytes",
            source.len(),
            limits.source_bytes
        )));
    }
    // The sandbox and the toolchain first: a missing one is the operator's problem and is
    // reported as such, whatever the source.
    let sandbox = toolchains.sandbox()?;
    let work = workdir::Workdir::new()?;
    let job = match language {
        Language::Rust => rust::prepare(source, toolchains, &work, limits)?,
        Language::Go => go::prepare(source, toolchains, &work, limits)?,
        Language::AssemblyScript => assemblyscript::prepare(source, toolchains, &work, limits)?,
    };
    let outcome = sandbox::run(&sandbox, &job, limits)?;
    outcome.into_result(language, limits)
}

/// The cache key of a build: the SHA-256 (lowercase hex) of the language, the toolchain
/// version ([`Toolchains::version`]) and the source's bytes. A single file's name is left out
/// (only its extension matters, and it must be the language's), so the same code uploaded
/// under two names is one artifact; the limits are left out too (they decide whether a build
/// succeeds, not what it produces).
pub fn input_hash(language: Language, source: &Source, toolchain_version: &str) -> String {
    let mut h = Sha256::new();
    // Every field is length-prefixed, so that no two different inputs hash the same bytes.
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"fnvm-builds input v1");
    field(language.name().as_bytes());
    field(toolchain_version.as_bytes());
    match source {
        Source::File { bytes, .. } => {
            field(b"file");
            field(bytes);
        }
        Source::Archive { bytes } => {
            field(b"archive");
            field(bytes);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_names_round_trip() {
        for l in Language::ALL {
            assert_eq!(l.name().parse::<Language>().unwrap(), l);
            assert_eq!(
                Language::from_file_name(&format!("x.{}", l.extension())),
                Some(l)
            );
        }
        assert!("cobol".parse::<Language>().is_err());
        assert_eq!(Language::from_file_name("noext"), None);
    }

    #[test]
    fn input_hash_depends_on_what_matters() {
        let file = |name: &str, b: &[u8]| Source::File {
            name: name.into(),
            bytes: b.to_vec(),
        };
        let a = input_hash(Language::Rust, &file("a.rs", b"fn main(){}"), "v1");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        // Same code under another name: same artifact.
        assert_eq!(
            a,
            input_hash(Language::Rust, &file("b.rs", b"fn main(){}"), "v1")
        );
        assert_ne!(
            a,
            input_hash(Language::Rust, &file("a.rs", b"fn main(){ }"), "v1")
        );
        assert_ne!(
            a,
            input_hash(Language::Rust, &file("a.rs", b"fn main(){}"), "v2")
        );
        assert_ne!(
            a,
            input_hash(Language::Go, &file("a.rs", b"fn main(){}"), "v1")
        );
        assert_ne!(
            a,
            input_hash(
                Language::Rust,
                &Source::Archive {
                    bytes: b"fn main(){}".to_vec()
                },
                "v1"
            )
        );
    }
}
