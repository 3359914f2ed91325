//! The worker's side of deployments: it learns from the metadata store which deployments are to
//! be served (`DEPLOYING` and `READY`), fetches each one's artifact from the artifact store
//! (compiling the uploaded module itself when no artifact fits this machine), prepares it
//! through the data plane, and reports a `DEPLOYING` one `READY` with its URL once it can run
//! it. Deleted deployments are dropped. After a restart, `READY` deployments are loaded again
//! from their artifacts, without recompiling. The HTTP endpoint serving them is built on
//! [`Worker::serving`].

use crate::artifacts::ArtifactStore;
use crate::model::{Deployment, DeploymentStatus};
use crate::store::MetadataStore;
use fnvm_dataplane::{PreparedModule, Runner};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A deployment this worker can run.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The deployment as it was when loaded.
    pub deployment: Deployment,
    /// The module, prepared.
    pub module: PreparedModule,
    /// Size of the uploaded code in bytes (the debug report's `size`).
    pub code_size: u64,
}

/// The deployments a worker holds.
#[derive(Debug)]
pub struct Worker {
    runner: Arc<Runner>,
    loaded: Mutex<HashMap<String, Loaded>>,
    /// How the public reaches functions: `{public_url}/{functionId}`.
    public_url: String,
}

impl Worker {
    /// A worker running modules with `runner`, serving functions under `public_url`.
    pub fn new(runner: Arc<Runner>, public_url: String) -> Worker {
        Worker {
            runner,
            loaded: Mutex::new(HashMap::new()),
            public_url: public_url.trim_end_matches('/').to_string(),
        }
    }

    /// The URL of a function.
    pub fn url_of(&self, function_id: &str) -> String {
        format!("{}/{function_id}", self.public_url)
    }

    /// The deployment of `function_id` to serve: its newest loaded `READY` (or just loaded)
    /// deployment.
    pub fn serving(&self, function_id: &str) -> Option<Loaded> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded
            .values()
            .filter(|l| l.deployment.function_id == function_id)
            .max_by_key(|l| (l.deployment.created_at, l.deployment.id.clone()))
            .cloned()
    }

    /// Ids of the deployments loaded.
    pub fn loaded_ids(&self) -> HashSet<String> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.keys().cloned().collect()
    }

    /// The runner.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }
}

/// Keeps `worker` in step with the metadata store, polling every `poll`, until dropped.
pub async fn run(
    store: MetadataStore,
    artifacts: ArtifactStore,
    worker: Arc<Worker>,
    poll: Duration,
) {
    loop {
        if let Err(e) = sync(&store, &artifacts, &worker).await {
            eprintln!("fnvm worker: {e}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// One pass: load what is new, drop what is gone, report what became ready.
async fn sync(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    worker: &Arc<Worker>,
) -> Result<(), String> {
    let mut wanted = Vec::new();
    for status in [DeploymentStatus::Deploying, DeploymentStatus::Ready] {
        wanted.extend(
            store
                .deployments_with_status(status)
                .await
                .map_err(|e| format!("listing deployments: {e}"))?,
        );
    }
    let ids: HashSet<String> = wanted.iter().map(|d| d.id.clone()).collect();
    {
        let mut loaded = worker.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|id, _| ids.contains(id));
    }
    let have = worker.loaded_ids();
    for d in wanted {
        if have.contains(&d.id) {
            if d.status == DeploymentStatus::Deploying {
                // Loaded, but the report did not reach the store: report again.
                mark_ready(store, worker, &d).await;
            }
            continue;
        }
        match load(store, artifacts, worker, &d).await {
            Ok((module, code_size)) => {
                let url = worker.url_of(&d.function_id);
                let mut deployment = d.clone();
                if d.status == DeploymentStatus::Deploying {
                    if let Some(now) = mark_ready(store, worker, &d).await {
                        deployment = now;
                    }
                }
                deployment.url.get_or_insert(url);
                let mut loaded = worker.loaded.lock().unwrap_or_else(|e| e.into_inner());
                loaded.insert(
                    d.id.clone(),
                    Loaded {
                        deployment,
                        module,
                        code_size,
                    },
                );
            }
            Err(reason) if d.status == DeploymentStatus::Deploying => {
                let r = store
                    .transition(
                        &d.id,
                        &[DeploymentStatus::Deploying],
                        DeploymentStatus::Error,
                        Some(&reason),
                        None,
                    )
                    .await;
                if let Err(e) = r {
                    eprintln!("fnvm worker: recording the failure of {}: {e}", d.id);
                }
            }
            // A READY deployment this worker cannot load (yet): try again on the next pass.
            Err(reason) => eprintln!("fnvm worker: loading {}: {reason}", d.id),
        }
    }
    Ok(())
}

async fn mark_ready(store: &MetadataStore, worker: &Worker, d: &Deployment) -> Option<Deployment> {
    let url = worker.url_of(&d.function_id);
    match store
        .transition(
            &d.id,
            &[DeploymentStatus::Deploying],
            DeploymentStatus::Ready,
            None,
            Some(&url),
        )
        .await
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fnvm worker: reporting {} ready: {e}", d.id);
            None
        }
    }
}

/// The module of `d` (and the size of its upload), from its artifact for this machine, else
/// compiled here from the upload.
async fn load(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    worker: &Arc<Worker>,
    d: &Deployment,
) -> Result<(PreparedModule, u64), String> {
    let rid = d
        .release_id
        .as_deref()
        .ok_or_else(|| "the deployment has no release".to_string())?;
    let release = store
        .get_release(&d.owner_id, &d.function_id, rid)
        .await
        .map_err(|e| format!("reading the release: {e}"))?
        .ok_or_else(|| "the release no longer exists".to_string())?;
    let compat = fnvm_abi::artifact::compat_hash(fnvm_abi::CpuFeatures::host());
    let bytes = match artifacts
        .get_artifact(&release.sha256, compat)
        .await
        .map_err(|e| format!("reading the artifact: {e}"))?
    {
        Some(a) => a,
        None => artifacts
            .get_blob(&release.sha256)
            .await
            .map_err(|e| format!("reading the upload: {e}"))?
            .ok_or_else(|| "neither an artifact nor the upload is stored".to_string())?,
    };
    let runner = worker.runner.clone();
    let module = tokio::task::spawn_blocking(move || runner.load(&bytes))
        .await
        .map_err(|e| format!("loading: {e}"))?
        .map_err(|e| format!("loading: {e}"))?;
    Ok((module, release.size))
}
