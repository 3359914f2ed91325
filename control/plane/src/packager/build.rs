//! Server-side builds in the packager: a release of source code (Rust, Go, AssemblyScript,
//! JavaScript) becomes a WebAssembly module, which is then compiled into an artifact like an
//! upload of WebAssembly. Rust, Go and AssemblyScript are built by their toolchains in a
//! sandbox (`fnvm-builds`); JavaScript is the QuickJS engine with the script evaluated at
//! packaging time (`fnvm-preinit`). The artifact is stored under a key made of the build's
//! inputs and the toolchain's version, so the same source built by the same toolchain is built
//! once; the build's whole log is kept with the deployment.

use super::compile::{compile, trim};
use super::{Failed, PackagerConfig};
use crate::artifacts::ArtifactStore;
use crate::model::{Deployment, Platform, Release};
use crate::store::MetadataStore;
use fnvm_builds::{BuildError, Language, Source};
use sha2::{Digest, Sha256};

/// Where the QuickJS engine lives in the toolchains directory (built by
/// `scripts/js-engine.sh`).
const JS_ENGINE: &str = "javascript/engine.wasm";

/// What a build needs to know of its source: the language and the input.
enum Recipe {
    /// Built by a toolchain in the sandbox.
    Toolchain(Language, Source),
    /// The QuickJS engine and the script.
    JavaScript(Vec<u8>),
}

/// A recipe with what it needs read: the JavaScript engine's bytes.
enum Input {
    Toolchain(Language, Source),
    JavaScript { engine: Vec<u8>, script: Vec<u8> },
}

/// The recipe for a release of `platform` whose upload is `bytes`: an archive (gzip or zip,
/// by their magic numbers) is a project, anything else one source file.
fn recipe(platform: Platform, bytes: Vec<u8>) -> Result<Recipe, Failed> {
    let archive = bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(b"PK\x03\x04");
    let (language, file) = match platform {
        Platform::Rust => (Language::Rust, "main.rs"),
        Platform::TinyGo => (Language::Go, "main.go"),
        Platform::AssemblyScript => (Language::AssemblyScript, "index.ts"),
        Platform::JavaScript if archive => {
            return Err(Failed(
                "a JavaScript function is one script: upload the .js file, not an archive".into(),
            ))
        }
        Platform::JavaScript => return Ok(Recipe::JavaScript(bytes)),
        Platform::Wasm => return Err(Failed("WebAssembly needs no build".into())),
    };
    let source = if archive {
        Source::Archive { bytes }
    } else {
        Source::File {
            name: file.to_string(),
            bytes,
        }
    };
    Ok(Recipe::Toolchain(language, source))
}

/// The sha256 of `parts`, each prefixed by its length (no two lists hash alike), in hex.
fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A finished build: the module, or nothing when an artifact of the same inputs exists.
struct Outcome {
    key: String,
    wasm: Option<Vec<u8>>,
    log: String,
}

/// Builds `release` (a source) and stores its artifact, recording the key and the log on `d`.
pub(super) async fn package_source(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    config: &PackagerConfig,
    d: &Deployment,
    release: &Release,
    compat: u64,
) -> Result<(), Failed> {
    let internal = |what: &str, e: &dyn std::fmt::Display| Failed(format!("{what}: {e}"));
    let upload = artifacts
        .get_blob(&release.sha256)
        .await
        .map_err(|e| internal("reading the upload", &e))?
        .ok_or_else(|| Failed("the uploaded code is missing from the artifact store".into()))?;
    let recipe = recipe(release.platform, upload.to_vec())?;
    tracing::info!(
        release = %release.id,
        platform = %release.platform,
        bytes = release.size,
        deployment = %d.id,
        "packager: building"
    );
    let t = std::time::Instant::now();
    let outcome = match build(config, artifacts, recipe, compat).await {
        Ok(o) => o,
        Err((reason, log)) => {
            keep_log(store, &d.id, &log).await;
            return Err(Failed(trim(reason)));
        }
    };
    config.metrics.build.observe(t.elapsed());
    if let Some(wasm) = outcome.wasm {
        let t = std::time::Instant::now();
        let artifact = match compile(config, &d.id, &wasm).await {
            Ok(a) => a,
            Err(Failed(reason)) => {
                let log = format!("{}\ncompiling the built module: {reason}\n", outcome.log);
                keep_log(store, &d.id, &log).await;
                return Err(Failed(reason));
            }
        };
        config.metrics.compile.observe(t.elapsed());
        artifacts
            .put_artifact(&outcome.key, compat, artifact.into())
            .await
            .map_err(|e| internal("storing the artifact", &e))?;
    }
    keep_log(store, &d.id, &outcome.log).await;
    store
        .set_artifact_key(&d.id, &outcome.key)
        .await
        .map_err(|e| internal("recording the artifact", &e))?;
    Ok(())
}

/// Keeps the build log; losing it costs the user the details, not the deployment.
async fn keep_log(store: &MetadataStore, id: &str, log: &str) {
    if let Err(e) = store.put_build_log(id, log).await {
        tracing::warn!(deployment = %id, error = %e, "packager: keeping a build log");
    }
}

/// Runs the build (on a blocking thread: builds take seconds to minutes), unless an artifact
/// of the same inputs exists. The error is the reason and the whole log.
async fn build(
    config: &PackagerConfig,
    artifacts: &ArtifactStore,
    recipe: Recipe,
    compat: u64,
) -> Result<Outcome, (String, String)> {
    let toolchains = config.toolchains.clone();
    let limits = config.build_limits.clone();
    // The key first: the toolchain's version (or the engine's hash) is part of it. The
    // engine is read once, for the key and for the build.
    let (key, input) = match recipe {
        Recipe::Toolchain(language, source) => {
            let t = toolchains.clone();
            let version = tokio::task::spawn_blocking(move || t.version(language))
                .await
                .map_err(|e| (format!("the build stopped: {e}"), String::new()))?
                .map_err(build_error)?;
            let key = fnvm_builds::input_hash(language, &source, &version);
            (key, Input::Toolchain(language, source))
        }
        Recipe::JavaScript(script) => {
            let engine = js_engine(config).await?;
            let key = hash_parts(&[b"javascript", &engine, &script]);
            (key, Input::JavaScript { engine, script })
        }
    };
    match artifacts.get_artifact(&key, compat).await {
        Ok(Some(_)) => {
            return Ok(Outcome {
                key,
                wasm: None,
                log: "The same source was built by the same toolchain before: its artifact is \
                      used.\n"
                    .into(),
            })
        }
        Ok(None) => {}
        Err(e) => return Err((format!("reading the artifact store: {e}"), String::new())),
    }
    let built = match input {
        Input::Toolchain(language, source) => tokio::task::spawn_blocking(move || {
            fnvm_builds::build(language, &source, &toolchains, &limits)
                .map(|b| (b.wasm, b.log))
                .map_err(build_error)
        })
        .await
        .map_err(|e| (format!("the build stopped: {e}"), String::new()))??,
        Input::JavaScript { engine, script } => {
            let js_limits = config.js_limits.clone();
            tokio::task::spawn_blocking(move || {
                fnvm_preinit::javascript::build_function(&engine, &script, &js_limits)
                    .map_err(|e| (e.to_string(), e.to_string()))
            })
            .await
            .map_err(|e| (format!("the build stopped: {e}"), String::new()))??
        }
    };
    Ok(Outcome {
        key,
        wasm: Some(built.0),
        log: built.1,
    })
}

/// The QuickJS engine's module, from the toolchains directory.
async fn js_engine(config: &PackagerConfig) -> Result<Vec<u8>, (String, String)> {
    let path = config.toolchains.dir().join(JS_ENGINE);
    tokio::fs::read(&path).await.map_err(|e| {
        let reason = format!(
            "the javascript toolchain is missing: {} ({e}); install it with \
             scripts/js-engine.sh",
            path.display()
        );
        (reason.clone(), reason)
    })
}

/// A build error as the deployment's reason and its log.
fn build_error(e: BuildError) -> (String, String) {
    let log = e.log().map(str::to_string).unwrap_or_else(|| e.to_string());
    (e.to_string(), log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_files_or_archives_by_their_magic() {
        let file = |p, b: &[u8]| match recipe(p, b.to_vec()) {
            Ok(Recipe::Toolchain(_, Source::File { name, .. })) => name,
            _ => panic!("not a file"),
        };
        assert_eq!(file(Platform::Rust, b"fn main() {}"), "main.rs");
        assert_eq!(file(Platform::TinyGo, b"package main"), "main.go");
        assert_eq!(file(Platform::AssemblyScript, b"export"), "index.ts");
        assert!(matches!(
            recipe(Platform::Rust, vec![0x1f, 0x8b, 8, 0]),
            Ok(Recipe::Toolchain(Language::Rust, Source::Archive { .. }))
        ));
        assert!(matches!(
            recipe(Platform::TinyGo, b"PK\x03\x04rest".to_vec()),
            Ok(Recipe::Toolchain(Language::Go, Source::Archive { .. }))
        ));
        assert!(matches!(
            recipe(Platform::JavaScript, b"function main() {}".to_vec()),
            Ok(Recipe::JavaScript(_))
        ));
        assert!(recipe(Platform::JavaScript, vec![0x1f, 0x8b]).is_err());
        assert!(recipe(Platform::Wasm, b"\0asm".to_vec()).is_err());
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
    }
}
