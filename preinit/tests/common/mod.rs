//! Helpers of the pre-initialisation tests: a compile cache per test, a runner on it, and the
//! JavaScript engine (built by scripts/js-engine.sh).

#![allow(dead_code)]

use fnvm_dataplane::{PreparedModule, Runner, RunnerConfig};
use fnvm_preinit::Limits;
use fnvm_runtime::PoolConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A directory removed on drop (the compile cache of one test).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("fnvm-preinit-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Limits with the compile cache shared by the tests (in cargo's temporary directory for
/// tests: the instrumented engine is the same for every script, so it is compiled once); `dir`
/// is the test's own directory.
pub fn limits(_dir: &TempDir) -> Limits {
    Limits {
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("preinit-cache")),
        ..Limits::default()
    }
}

/// A small in-process runner caching in `dir`.
pub fn runner(dir: &TempDir) -> Runner {
    Runner::new(RunnerConfig {
        cache_dir: dir.0.join("runner"),
        pool: PoolConfig {
            slots: 4,
            max_memory_pages: 4096,
            ..PoolConfig::default()
        },
        epoch_tick: Some(std::time::Duration::from_millis(10)),
    })
    .expect("creating a runner")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// The JavaScript engine, built (or found up to date) by scripts/js-engine.sh once per test
/// binary. `None` when it cannot be built outside CI (the tests then say so and pass); under
/// `CI=true` that is a failure.
pub fn js_engine() -> Option<&'static [u8]> {
    static ENGINE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let root = repo_root();
            let status = Command::new("bash")
                .arg(root.join("scripts/js-engine.sh"))
                .current_dir(&root)
                .status();
            let path = root.join("target/js-engine/fnvm-js-engine.wasm");
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            match status {
                Ok(s) if s.success() => Some(
                    std::fs::read(&path)
                        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
                ),
                other if ci => panic!("scripts/js-engine.sh failed under CI=true: {other:?}"),
                other => {
                    eprintln!(
                        "SKIPPED: the JavaScript engine could not be built ({other:?}); \
                         run scripts/js-engine.sh"
                    );
                    None
                }
            }
        })
        .as_deref()
}

/// A JavaScript function built and loaded, with what its script printed at build time.
pub struct Function {
    pub runner: Runner,
    pub prepared: PreparedModule,
    pub log: String,
    pub _dir: TempDir,
}

/// Builds `script` and loads it; `None` when the engine is unavailable (outside CI).
pub fn build(name: &str, script: &str) -> Option<Function> {
    let engine = js_engine()?;
    let dir = TempDir::new(name);
    let (wasm, log) =
        fnvm_preinit::javascript::build_function(engine, script.as_bytes(), &limits(&dir))
            .unwrap_or_else(|e| panic!("building {name}: {e}"));
    let runner = runner(&dir);
    let prepared = runner.load(&wasm).expect("loading the snapshot");
    Some(Function {
        runner,
        prepared,
        log,
        _dir: dir,
    })
}
