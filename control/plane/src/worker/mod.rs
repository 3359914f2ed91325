//! The worker role: what serves functions. It learns from the metadata store which deployments
//! are to be served (`DEPLOYING` and `READY`) and with which settings (the Functions'), woken by
//! the database's notifications where it has them (PostgreSQL) and polling otherwise; fetches
//! each deployment's artifact from the artifact store into a local cache (compiling the upload
//! itself when no artifact fits this machine); prepares it through the data plane; reports a
//! `DEPLOYING` one `READY` with its URL once it can run it; and serves every function's newest
//! `READY` deployment over HTTP ([`http`]). Switching to a new deployment swaps one pointer:
//! requests in flight finish on the old one, which is released after them. When the stores are
//! unreachable it keeps serving what it has.
//!
//! Parts: [`http`] (the endpoint: routing, bodies, limits), [`execute`] (one call as a job),
//! [`invoker`] (the threads guest code runs on, never the reactor's), [`respond`] (modes and
//! status mapping), [`logs`] (guests' stderr, per function, into the metadata store).

pub mod execute;
pub mod http;
pub mod invoker;
pub mod logs;
pub mod membership;
pub mod reactors;
pub mod respond;

use crate::artifacts::ArtifactStore;
use crate::metrics::{FunctionMetrics, Metrics};
use crate::model::{Deployment, DeploymentStatus, Function};
use crate::store::MetadataStore;
use fnvm_dataplane::{PreparedModule, Runner};
use fnvm_hostcalls::CStrings;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// A deployment this worker can run.
#[derive(Debug)]
pub struct Served {
    /// The deployment as it was when loaded (or reported ready).
    pub deployment: Deployment,
    /// The module, prepared.
    pub module: PreparedModule,
    /// Size of the uploaded code in bytes (the debug report's `size`).
    pub code_size: u64,
}

/// A Function's settings as this worker applies them, and its instances in use here.
#[derive(Debug)]
pub struct FunctionState {
    /// The Function (environment, memory, timeout, instances).
    pub function: Function,
    /// One permit per instance the Function may have at once on this worker.
    pub instances: Arc<Semaphore>,
    /// Whether its invocations are short enough to run on the reactor.
    pub runs: invoker::RunHistory,
    /// Its arguments and environment as the guest receives them, packed once.
    pub args: CStrings,
    pub environment: CStrings,
    /// Its series in `/metrics`.
    pub metrics: Arc<FunctionMetrics>,
    /// Its outbound connections: the server's egress policy with its own allowlist; `None`
    /// (no connection at all) if that list does not parse, which the API prevents.
    pub net: Option<fnvm_hostcalls::NetConfig>,
}

/// The server's side of every Function's egress: its policy lists, the TLS roots and the
/// per-invocation limits.
#[derive(Clone, Debug)]
pub struct Egress {
    /// The server's allow and deny lists (a Function's allowlist is added per Function).
    pub policy: fnvm_hostcalls::EgressPolicy,
    /// The TLS client configuration (Mozilla roots plus the operator's CAs).
    pub tls: Arc<rustls::ClientConfig>,
    /// Connections, bytes, connect timeout, per invocation.
    pub limits: fnvm_hostcalls::NetLimits,
}

impl FunctionState {
    fn new(f: Function, metrics: &Metrics, egress: &Egress) -> FunctionState {
        let (args, environment) = respond::packed_args_and_environment(&f);
        let net = match egress.policy.with_function_allow(&f.egress_allow) {
            Ok(policy) => Some(fnvm_hostcalls::NetConfig {
                policy: Arc::new(policy),
                limits: egress.limits,
                tls: egress.tls.clone(),
            }),
            Err(e) => {
                tracing::warn!(function = %f.id, error = %e, "worker: egress rules refused; no connections");
                None
            }
        };
        FunctionState {
            instances: Arc::new(Semaphore::new(f.max_instances as usize)),
            runs: invoker::RunHistory::default(),
            args,
            environment,
            metrics: metrics.function(&f.id),
            net,
            function: f,
        }
    }
}

/// What the worker serves.
#[derive(Debug, Default)]
struct Table {
    /// Every deployment loaded, by id.
    loaded: HashMap<String, Arc<Served>>,
    /// The deployment serving each function: its newest `READY` one.
    serving: HashMap<String, Arc<Served>>,
    /// The settings of the functions served.
    functions: HashMap<String, Arc<FunctionState>>,
}

/// The worker.
#[derive(Debug)]
pub struct Worker {
    runner: Arc<Runner>,
    table: RwLock<Table>,
    /// How the public reaches functions: `{public_url}/{functionId}`.
    public_url: String,
    /// Where fetched artifacts are kept between restarts.
    cache_dir: PathBuf,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Guests' stderr on its way to the metadata store.
    pub logs: Arc<logs::LogBuffer>,
    /// Where functions may connect, and how much.
    egress: Egress,
}

impl Worker {
    /// A worker running modules with `runner`, serving functions under `public_url`, caching
    /// artifacts in `cache_dir`.
    pub fn new(
        runner: Arc<Runner>,
        public_url: String,
        cache_dir: PathBuf,
        metrics: Arc<Metrics>,
        egress: Egress,
    ) -> Worker {
        Worker {
            egress,
            runner,
            table: RwLock::new(Table::default()),
            public_url: public_url.trim_end_matches('/').to_string(),
            cache_dir,
            metrics,
            logs: Arc::new(logs::LogBuffer::default()),
        }
    }

    /// The platform's egress policy (what the connections functions and their triggers make
    /// may reach).
    pub fn egress_policy(&self) -> &fnvm_hostcalls::EgressPolicy {
        &self.egress.policy
    }

    /// The URL of a function.
    pub fn url_of(&self, function_id: &str) -> String {
        format!("{}/{function_id}", self.public_url)
    }

    /// The deployment serving `function_id` and the function's settings.
    pub fn route(&self, function_id: &str) -> Option<(Arc<Served>, Arc<FunctionState>)> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let served = table.serving.get(function_id)?.clone();
        let state = table.functions.get(function_id)?.clone();
        Some((served, state))
    }

    /// The Functions this worker serves (a `READY` deployment loaded), with their timeouts.
    pub fn served_functions(&self) -> Vec<(String, Duration)> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table
            .serving
            .keys()
            .filter_map(|id| {
                let f = &table.functions.get(id)?.function;
                Some((id.clone(), Duration::from_millis(f.timeout_ms)))
            })
            .collect()
    }

    /// Ids of the deployments loaded.
    pub fn loaded_ids(&self) -> HashSet<String> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.loaded.keys().cloned().collect()
    }

    /// The runner.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Recomputes which deployment serves each function.
    fn reroute(table: &mut Table) {
        let mut serving: HashMap<String, Arc<Served>> = HashMap::new();
        for s in table.loaded.values() {
            if s.deployment.status != DeploymentStatus::Ready {
                continue;
            }
            let newer = serving.get(&s.deployment.function_id).is_none_or(|cur| {
                (&s.deployment.created_at, &s.deployment.id)
                    > (&cur.deployment.created_at, &cur.deployment.id)
            });
            if newer {
                serving.insert(s.deployment.function_id.clone(), s.clone());
            }
        }
        table.serving = serving;
    }
}

/// Keeps `worker` in step with the metadata store until dropped: a pass at start, then one
/// whenever the store signals a change (PostgreSQL), or every `poll`.
pub async fn run(
    store: MetadataStore,
    artifacts: ArtifactStore,
    worker: Arc<Worker>,
    poll: Duration,
) {
    // How often a worker that lost its subscription (the database went away) tries again; it
    // polls meanwhile.
    const RESUBSCRIBE: Duration = Duration::from_secs(5);
    let mut changes = store.changes().await;
    let mut subscribed_at = tokio::time::Instant::now();
    loop {
        if let Err(e) = sync(&store, &artifacts, &worker).await {
            tracing::warn!(error = %e, "worker: syncing with the metadata store");
        }
        match changes.as_mut() {
            Some(c) => {
                // Notified, or a fallback poll in case a notification was missed.
                if let Err(e) = c.wait(poll * 10).await {
                    tracing::warn!(error = %e, "worker: change notifications lost; polling");
                    changes = None;
                    tokio::time::sleep(poll).await;
                }
            }
            None => {
                tokio::time::sleep(poll).await;
                // (`changes` is `None` at once where the database has no notifications.)
                if subscribed_at.elapsed() >= RESUBSCRIBE {
                    changes = store.changes().await;
                    subscribed_at = tokio::time::Instant::now();
                }
            }
        }
    }
}

/// One pass: refresh the functions' settings, load what is new, drop what is gone, report what
/// became ready, and reroute.
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
    let functions = store
        .serving_functions()
        .await
        .map_err(|e| format!("reading functions: {e}"))?;
    {
        let mut table = worker.table.write().unwrap_or_else(|e| e.into_inner());
        let mut states = HashMap::new();
        for f in functions {
            let state = match table.functions.get(&f.id) {
                // Unchanged: keep it (and the instances in use).
                Some(s) if s.function == f => s.clone(),
                // Changed: new settings; requests in flight keep the permits they hold.
                _ => Arc::new(FunctionState::new(f, &worker.metrics, &worker.egress)),
            };
            states.insert(state.function.id.clone(), state);
        }
        // Series of Functions no longer served end (those with instances running stay).
        worker
            .metrics
            .retain_functions(|id| states.contains_key(id));
        table.functions = states;
        let ids: HashSet<&str> = wanted.iter().map(|d| d.id.as_str()).collect();
        table.loaded.retain(|id, _| ids.contains(id.as_str()));
        // Statuses move on (DEPLOYING -> READY, by this worker or another): take the store's.
        for d in &wanted {
            if let Some(s) = table.loaded.get(&d.id) {
                if s.deployment.status != d.status {
                    let updated = Arc::new(Served {
                        deployment: d.clone(),
                        module: s.module.clone(),
                        code_size: s.code_size,
                    });
                    table.loaded.insert(d.id.clone(), updated);
                }
            }
        }
        Worker::reroute(&mut table);
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
                let mut deployment = d.clone();
                if d.status == DeploymentStatus::Deploying {
                    if let Some(now) = mark_ready(store, worker, &d).await {
                        deployment = now;
                    }
                }
                let mut table = worker.table.write().unwrap_or_else(|e| e.into_inner());
                table.loaded.insert(
                    d.id.clone(),
                    Arc::new(Served {
                        deployment,
                        module,
                        code_size,
                    }),
                );
                Worker::reroute(&mut table);
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
                    tracing::warn!(deployment = %d.id, error = %e, "worker: recording a failure");
                }
            }
            // A READY deployment this worker cannot load (yet): try again on the next pass.
            Err(reason) => {
                tracing::warn!(deployment = %d.id, %reason, "worker: loading a ready deployment")
            }
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
            tracing::warn!(deployment = %d.id, error = %e, "worker: reporting ready");
            None
        }
    }
}

/// The module of `d` (and the size of its upload): its artifact for this machine, from the
/// local cache or fetched into it, else compiled here from the upload.
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
    // A source built on the server has its artifact under the build's key; an upload of
    // WebAssembly, under its own hash.
    let key = d.artifact_key.as_deref().unwrap_or(&release.sha256);
    let cached = worker.cache_dir.join(format!("{key}-{compat:016x}.fnvm"));
    let bytes = match tokio::fs::read(&cached).await {
        Ok(b) => {
            worker.metrics.artifact_cache(true);
            bytes::Bytes::from(b)
        }
        Err(_) => {
            worker.metrics.artifact_cache(false);
            match artifacts
                .get_artifact(key, compat)
                .await
                .map_err(|e| format!("reading the artifact: {e}"))?
            {
                Some(a) => {
                    keep(&worker.cache_dir, &cached, &a).await;
                    a
                }
                // Only WebAssembly can be compiled here; a source needs the packager's build.
                None if release.platform != crate::model::Platform::Wasm => {
                    return Err(format!(
                        "the artifact of this {} build is missing from the artifact store",
                        release.platform
                    ))
                }
                None => artifacts
                    .get_blob(&release.sha256)
                    .await
                    .map_err(|e| format!("reading the upload: {e}"))?
                    .ok_or_else(|| "neither an artifact nor the upload is stored".to_string())?,
            }
        }
    };
    let runner = worker.runner.clone();
    let module = tokio::task::spawn_blocking(move || runner.load(&bytes))
        .await
        .map_err(|e| format!("loading: {e}"))?
        .map_err(|e| format!("loading: {e}"))?;
    Ok((module, release.size))
}

/// Writes a fetched artifact into the local cache (by rename: a reader never sees half of
/// one); a failure only costs a fetch next time.
async fn keep(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp-{}", crate::model::new_id()));
    let written = async {
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        tracing::warn!(path = %path.display(), error = %e, "worker: caching an artifact");
    }
}
