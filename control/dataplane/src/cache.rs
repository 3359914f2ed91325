//! The on-disk compile cache: WebAssembly bytes are compiled once per content, compiler build
//! and CPU, and the artifact is kept under a name derived from all three, so the second run of
//! the same module loads native code instead of compiling it.
//!
//! Entries are written to a temporary file and renamed into place, so concurrent runs never see
//! a partial artifact. An entry that fails to load (corrupted, truncated) is recompiled and
//! replaced: the artifact's own checksum and compatibility checks decide.

use fnvm_abi::artifact::{compat_hash, MAGIC as ARTIFACT_MAGIC};
use fnvm_abi::CpuFeatures;
use fnvm_compiler::{compile, CompileError, CompileOptions};
use fnvm_runtime::LoadError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a module could not be turned into an artifact.
#[derive(Debug, Error)]
pub enum CacheError {
    /// The module is invalid or uses an unsupported feature.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The artifact could not be loaded (given as such, or freshly compiled).
    #[error("loading the artifact: {0}")]
    Load(#[from] fnvm_runtime::LoadError),
    /// Reading or writing the cache directory failed.
    #[error("compile cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Where an artifact came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The input already was an artifact.
    Artifact,
    /// Found in the cache.
    Hit,
    /// Compiled now (and stored).
    Compiled,
}

/// A directory of compiled artifacts keyed by content hash.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    options: CompileOptions,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> ArtifactCache {
        ArtifactCache {
            dir: dir.into(),
            options: CompileOptions::default(),
        }
    }

    /// The default location: `$FNVM_CACHE_DIR`, else `$XDG_CACHE_HOME/fnvm`, else
    /// `$HOME/.cache/fnvm`, else a directory under the system temporary directory.
    pub fn default_dir() -> PathBuf {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("FNVM_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("fnvm")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("fnvm")))
            .unwrap_or_else(|| std::env::temp_dir().join("fnvm-cache"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an artifact of `wasm` is cached in.
    pub fn path_for(&self, wasm: &[u8]) -> PathBuf {
        let features = CpuFeatures::host();
        let mut h = Sha256::new();
        h.update(wasm);
        h.update(compat_hash(features).to_le_bytes());
        h.update([self.options.epoch_interruption as u8]);
        let digest = h.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.fnvmart"))
    }

    /// Loads the artifact for `bytes`: `bytes` itself if it is an artifact (with
    /// `from_bytes`), else the cached compilation of the module, mapped from its file
    /// (`from_file`), compiling and storing it on a miss or when the cached entry does not load
    /// (damaged, or from another build).
    pub fn load<T>(
        &self,
        bytes: &[u8],
        from_bytes: impl Fn(&[u8]) -> Result<T, LoadError>,
        from_file: impl Fn(&File) -> Result<T, LoadError>,
    ) -> Result<(T, CacheOutcome), CacheError> {
        if bytes.starts_with(&ARTIFACT_MAGIC) {
            return Ok((from_bytes(bytes)?, CacheOutcome::Artifact));
        }
        let path = self.path_for(bytes);
        if let Some(loaded) = File::open(&path).ok().and_then(|f| from_file(&f).ok()) {
            return Ok((loaded, CacheOutcome::Hit));
        }
        let artifact = compile(bytes, &self.options)?;
        self.store(&path, &artifact)?;
        Ok((from_bytes(&artifact)?, CacheOutcome::Compiled))
    }

    fn store(&self, path: &Path, artifact: &[u8]) -> Result<(), CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, artifact).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fnvm-cache-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Loads through the runtime, as the runner does, returning the artifact's code base to
    /// tell loads apart.
    fn load(cache: &ArtifactCache, bytes: &[u8]) -> Result<CacheOutcome, CacheError> {
        let engine = fnvm_runtime::Engine::new(Default::default()).unwrap();
        cache
            .load(
                bytes,
                |b| fnvm_runtime::Module::from_artifact(&engine, b),
                |f| fnvm_runtime::Module::from_file(&engine, f),
            )
            .map(|(_, o)| o)
    }

    #[test]
    fn second_lookup_hits_and_damaged_entries_are_recompiled() {
        let dir = temp_dir("hit");
        let cache = ArtifactCache::new(&dir);
        let wasm = wat::parse_str("(module (func (export \"f\")))").unwrap();
        assert_eq!(load(&cache, &wasm).unwrap(), CacheOutcome::Compiled);
        let a = std::fs::read(cache.path_for(&wasm)).unwrap();
        assert_eq!(load(&cache, &wasm).unwrap(), CacheOutcome::Hit);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // An entry the runtime refuses is replaced.
        std::fs::write(cache.path_for(&wasm), b"garbage").unwrap();
        assert_eq!(load(&cache, &wasm).unwrap(), CacheOutcome::Compiled);
        assert_eq!(std::fs::read(cache.path_for(&wasm)).unwrap(), a);
        // Artifacts pass through; other modules get other entries.
        assert_eq!(load(&cache, &a).unwrap(), CacheOutcome::Artifact);
        let other = wat::parse_str("(module)").unwrap();
        assert_ne!(cache.path_for(&other), cache.path_for(&wasm));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_modules_are_errors_not_entries() {
        let dir = temp_dir("bad");
        let cache = ArtifactCache::new(&dir);
        assert!(matches!(
            load(&cache, b"\0asm\x01\0\0\0\x05"),
            Err(CacheError::Compile(_))
        ));
        assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().count() == 0);
    }
}
