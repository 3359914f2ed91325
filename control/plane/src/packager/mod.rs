//! The packager: what turns an uploaded deployment into something workers can load. It claims
//! `PACKAGING` deployments from the metadata store under a lease (so two API processes never
//! package the same one, and one whose packager died is taken over when the lease lapses),
//! builds a source release into WebAssembly ([`build`]: Rust, Go, AssemblyScript in a
//! sandbox, JavaScript on the QuickJS engine), compiles the module with fnvm's compiler in a
//! child process under CPU-time, memory and wall-clock limits ([`compile`]: hostile input
//! cannot take the server down), stores the artifact in the artifact store keyed by release
//! (or build inputs) and compiler/CPU compatibility (an existing one is reused), and moves the
//! deployment on to `DEPLOYING`, or to `ERROR` with the compiler's message. Deployments waiting
//! for a free packager slot stay `PACKAGING` in the store: that is the build queue.

mod build;
mod compile;

use crate::artifacts::ArtifactStore;
use crate::model::{Deployment, DeploymentStatus, Platform};
use crate::store::MetadataStore;
use compile::compile;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Settings of the packager.
#[derive(Clone, Debug)]
pub struct PackagerConfig {
    /// Who holds the leases (stable across restarts of one node, so a restarted node resumes
    /// its own work at once).
    pub holder: String,
    /// The `fnvm` binary, whose `compile` subcommand does the work.
    pub compiler: PathBuf,
    /// Compilations at once.
    pub concurrency: usize,
    /// CPU time one compilation may use.
    pub cpu_seconds: u64,
    /// Address space one compilation may use.
    pub memory_bytes: u64,
    /// Wall-clock time one compilation may take.
    pub wall_timeout: Duration,
    /// Where inputs and outputs of the compiler are written.
    pub work_dir: PathBuf,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// How often the store is polled when nothing wakes the packager.
    pub poll: Duration,
    /// Where compile and build durations go.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The toolchains of server-side builds.
    pub toolchains: Arc<fnvm_builds::Toolchains>,
    /// Limits of one sandboxed build.
    pub build_limits: fnvm_builds::Limits,
    /// Limits of evaluating a JavaScript function's script at packaging time.
    pub js_limits: fnvm_preinit::Limits,
}

/// Why a deployment could not be packaged: the text becomes its `errorReason`.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

/// Runs the packager until the task is dropped.
pub async fn run(
    store: MetadataStore,
    artifacts: ArtifactStore,
    config: PackagerConfig,
    wakeup: Arc<Notify>,
) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match store
            .claim(DeploymentStatus::Packaging, &config.holder, config.lease)
            .await
        {
            Ok(Some(d)) => {
                let (store, artifacts, config) = (store.clone(), artifacts.clone(), config.clone());
                tokio::spawn(async move {
                    package_claimed(&store, &artifacts, &config, d).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    _ = wakeup.notified() => {}
                    _ = tokio::time::sleep(config.poll) => {}
                }
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "packager: claiming work");
                tokio::time::sleep(config.poll).await;
            }
        }
    }
}

/// Packages a claimed deployment, renewing the claim meanwhile, and records the outcome.
async fn package_claimed(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    config: &PackagerConfig,
    d: Deployment,
) {
    let work = package(store, artifacts, config, &d);
    let renew = async {
        loop {
            tokio::time::sleep(config.lease / 3).await;
            match store.renew(&d.id, &config.holder, config.lease).await {
                Ok(true) => {}
                // Deleted, or taken over: stop working on it.
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(deployment = %d.id, error = %e, "packager: renewing a claim")
                }
            }
        }
    };
    let outcome = tokio::select! {
        r = work => r,
        () = renew => return,
    };
    let (to, reason) = match outcome {
        Ok(()) => (DeploymentStatus::Deploying, None),
        Err(Failed(reason)) => (DeploymentStatus::Error, Some(reason)),
    };
    if let Err(e) = store
        .transition(
            &d.id,
            &[DeploymentStatus::Packaging],
            to,
            reason.as_deref(),
            None,
        )
        .await
    {
        // The claim lapses and the deployment is packaged again.
        tracing::warn!(deployment = %d.id, error = %e, "packager: recording an outcome");
    }
}

/// The artifact of `d`'s release, stored in the artifact store.
async fn package(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    config: &PackagerConfig,
    d: &Deployment,
) -> Result<(), Failed> {
    let internal = |what: &str, e: &dyn std::fmt::Display| Failed(format!("{what}: {e}"));
    let rid = d
        .release_id
        .as_deref()
        .ok_or_else(|| Failed("nothing was uploaded".into()))?;
    let release = store
        .get_release(&d.owner_id, &d.function_id, rid)
        .await
        .map_err(|e| internal("reading the release", &e))?
        .ok_or_else(|| Failed("the release no longer exists".into()))?;
    let compat = fnvm_abi::artifact::compat_hash(fnvm_abi::CpuFeatures::host());
    if release.platform != Platform::Wasm {
        return build::package_source(store, artifacts, config, d, &release, compat).await;
    }
    if artifacts
        .get_artifact(&release.sha256, compat)
        .await
        .map_err(|e| internal("reading the artifact store", &e))?
        .is_some()
    {
        return Ok(());
    }
    let wasm = artifacts
        .get_blob(&release.sha256)
        .await
        .map_err(|e| internal("reading the upload", &e))?
        .ok_or_else(|| Failed("the uploaded code is missing from the artifact store".into()))?;
    tracing::info!(
        release = %release.id,
        bytes = release.size,
        deployment = %d.id,
        "packager: compiling"
    );
    let t = std::time::Instant::now();
    let artifact = compile(config, &d.id, &wasm).await?;
    config.metrics.compile.observe(t.elapsed());
    artifacts
        .put_artifact(&release.sha256, compat, artifact.into())
        .await
        .map_err(|e| internal("storing the artifact", &e))
}

/// How long an uploaded blob is safe from collection after an upload touched it: longer than
/// any upload takes between touching the blob and recording its release.
pub const BLOB_GRACE: Duration = Duration::from_secs(600);

/// Collects the stored code (and artifacts) of releases nobody references any more, every
/// `every`, until the task is dropped. A blob is first marked as being collected (only if it
/// is still garbage), then its bytes are deleted, then it is forgotten: an upload of the same
/// bytes meanwhile waits for the collection and stores them afresh.
pub async fn collect_garbage(
    store: MetadataStore,
    artifacts: ArtifactStore,
    every: Duration,
    grace: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = collect_once(&store, &artifacts, grace).await {
            tracing::warn!(error = %e, "gc: collecting unreferenced code");
        }
    }
}

/// One collection; the number of blobs deleted.
pub async fn collect_once(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    grace: Duration,
) -> Result<usize, String> {
    let blobs = store
        .unreferenced_blobs(grace)
        .await
        .map_err(|e| format!("listing unreferenced code: {e}"))?;
    let mut deleted = 0;
    for sha in blobs {
        let marked = store
            .begin_blob_collection(&sha, grace)
            .await
            .map_err(|e| format!("marking {sha}: {e}"))?;
        if !marked {
            continue;
        }
        artifacts
            .delete_blob(&sha)
            .await
            .map_err(|e| format!("deleting {sha}: {e}"))?;
        if store
            .forget_blob(&sha)
            .await
            .map_err(|e| format!("forgetting {sha}: {e}"))?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}
