//! The host side of one build's files: [`Workdir`], a fresh directory under the system's
//! temporary directory holding the sources (`src/`, bound read-only into the sandbox), removed
//! when the build ends, and the helpers that write the generated project files into it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::BuildError;

/// A build's host directory: `<tmp>/fnvm-build-<unique>/src`.
#[derive(Debug)]
pub(crate) struct Workdir {
    root: PathBuf,
    src: PathBuf,
}

impl Workdir {
    pub(crate) fn new() -> Result<Workdir, BuildError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        // Unique per process (pid), per build (counter), and unguessable enough (time) that
        // another local user cannot prepare the path in advance; create fails if it exists.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut last = None;
        for _ in 0..8 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let root = base.join(format!("fnvm-build-{}-{n}-{nanos:x}", std::process::id()));
            // 0711: the sandbox's user (not the owner when the server runs as root) may
            // traverse it to bind src/, but nobody else may list it.
            match fs::DirBuilder::new().mode(0o711).create(&root) {
                Ok(()) => {
                    let src = root.join("src");
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&src)
                        .map_err(|e| sandbox_err(&src, e))?;
                    return Ok(Workdir { root, src });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(sandbox_err(&root, e)),
            }
        }
        Err(sandbox_err(
            &base,
            last.unwrap_or_else(|| io::Error::other("no free name")),
        ))
    }

    /// The directory bound at `/src`: the project goes here.
    pub(crate) fn src(&self) -> &Path {
        &self.src
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        // Best effort: a leftover directory is harmless (and only ours can be under it).
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn sandbox_err(path: &Path, e: io::Error) -> BuildError {
    BuildError::Sandbox(format!("creating {}: {e}", path.display()))
}

/// Writes a generated file (relative path under `dir`), creating its parent directories,
/// readable by the sandbox's user.
pub(crate) fn write_file(dir: &Path, rel: &str, bytes: &[u8]) -> Result<(), BuildError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| sandbox_err(parent, e))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| sandbox_err(&path, e))?;
    io::Write::write_all(&mut f, bytes).map_err(|e| sandbox_err(&path, e))
}

/// Checks a single source file's extension against the language's.
pub(crate) fn check_file_name(name: &str, ext: &str, language: &str) -> Result<(), BuildError> {
    let ok = name
        .rsplit_once('.')
        .is_some_and(|(_, e)| e.eq_ignore_ascii_case(ext));
    if ok {
        Ok(())
    } else {
        Err(BuildError::Source(format!(
            "a single {language} source file must be named *.{ext}, not {name:?}"
        )))
    }
}
