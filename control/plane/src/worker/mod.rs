//! The worker role: what serves functions. It learns from the metadata store which functions
//! the scheduler placed on it (the deployment to serve, and its share of the function's
//! instances) and with which settings (the Functions'), woken by the database's notifications
//! where it has them (PostgreSQL) and polling otherwise; fetches each placed deployment's
//! artifact from the artifact store into a local cache (compiling the upload itself when no
//! artifact fits this machine) ahead of traffic; prepares it through the data plane (on the
//! in-process pool, or, for a Function with `isolation: vm`, on a KVM backend made the first
//! time one asks: [`Worker::vm_runner`]); reports back what it has loaded and the instances it
//! lets run (a `DEPLOYING` deployment is `READY` once every replica has it); and serves every
//! function's newest `READY` deployment it holds over HTTP ([`http`]). A request for a
//! function it does not hold loads it on demand and asks the scheduler for a replica here
//! ([`Worker::route_or_demand`]): a stale route is a slower request, not an error. Switching to
//! a new deployment swaps one pointer: requests in flight finish on the old one, which is
//! released after them. When the stores are unreachable it keeps serving what it has.
//!
//! Parts: [`http`] (the endpoint: routing, bodies, limits), [`execute`] (one call as a job),
//! [`invoker`] (the threads guest code runs on, never the reactor's), [`respond`] (modes and
//! status mapping), [`logs`] (guests' stderr, per function, into the metadata store),
//! [`share`] (a function's instances here), [`membership`] (this worker's lease in the fleet).

pub mod execute;
pub mod http;
pub mod invoker;
pub mod logs;
pub mod membership;
pub mod reactors;
pub mod respond;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod seccomp;
pub mod share;

use crate::artifacts::ArtifactStore;
use crate::metrics::{FunctionMetrics, Metrics};
use crate::model::{Deployment, DeploymentStatus, Function, Placement};
use crate::store::MetadataStore;
use fnvm_dataplane::{AnyModule, Runner};
use fnvm_hostcalls::CStrings;
use fnvm_runtime::kvm::KvmBackend;
use futures::StreamExt;
use share::InstanceGate;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a thread that runs guest code applies to itself before it does: the seccomp filter
/// ([`seccomp`]); an error says why it could not.
pub type Confine = fn() -> Result<(), String>;

/// The confinement of guest threads, if `enabled` (and this platform has a filter).
pub fn confinement(enabled: bool) -> Option<Confine> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        enabled
            .then_some((|| seccomp::apply_to_this_thread().map_err(|e| e.to_string())) as Confine)
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = enabled;
        None
    }
}

/// A deployment this worker can run.
#[derive(Debug)]
pub struct Served {
    /// The deployment as it was when loaded (or reported ready).
    pub deployment: Deployment,
    /// The module, prepared on the backend of its Function's isolation (and that backend's
    /// runner).
    pub module: AnyModule,
    /// Size of the uploaded code in bytes (the debug report's `size`).
    pub code_size: u64,
}

impl Served {
    /// The same module, serving `deployment` as the store now has it (its status moved on).
    fn with_deployment(&self, deployment: Deployment) -> Arc<Served> {
        Arc::new(Served {
            deployment,
            module: self.module.clone(),
            code_size: self.code_size,
        })
    }
}

/// A Function's settings as this worker applies them, and its instances in use here.
#[derive(Debug)]
pub struct FunctionState {
    /// The Function (environment, memory, timeout, instances).
    pub function: Function,
    /// Its instances on this worker: its share of the Function's `maxInstances`.
    pub instances: Arc<InstanceGate>,
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
    fn new(
        f: Function,
        metrics: &Metrics,
        egress: &Egress,
        instances: Arc<InstanceGate>,
    ) -> FunctionState {
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
            instances,
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
    /// Each function's instances here (kept across changes of its settings).
    gates: HashMap<String, Arc<InstanceGate>>,
    /// When this worker last asked for a replica of a function, by function.
    demanded: HashMap<String, Instant>,
}

/// The worker.
#[derive(Debug)]
pub struct Worker {
    /// This worker's node id (its placements are under it).
    node: String,
    store: MetadataStore,
    artifacts: ArtifactStore,
    /// Wakes the sync loop (a share finished draining, a replica was asked for).
    wake: Arc<Notify>,
    /// One lock per function being loaded on demand: two requests for a function it does not
    /// hold load it once, while other functions load alongside.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The runtime the worker was made on (the process's, not confined): see
    /// [`Worker::off_guest_threads`].
    shared_runtime: Option<tokio::runtime::Handle>,
    runner: Arc<Runner>,
    /// The runner on the KVM backend, made when a Function first asks for `isolation: vm`
    /// (or why it could not be).
    vm_runner: std::sync::OnceLock<Result<Arc<Runner<KvmBackend>>, String>>,
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
    /// Worker `node` of the fleet whose stores are `store` and `artifacts`, running modules
    /// with `runner`, serving functions under `public_url`, caching artifacts in `cache_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: String,
        store: MetadataStore,
        artifacts: ArtifactStore,
        runner: Arc<Runner>,
        public_url: String,
        cache_dir: PathBuf,
        metrics: Arc<Metrics>,
        egress: Egress,
    ) -> Worker {
        Worker {
            node,
            store,
            artifacts,
            wake: Arc::new(Notify::new()),
            loading: Mutex::default(),
            shared_runtime: tokio::runtime::Handle::try_current().ok(),
            egress,
            runner,
            vm_runner: std::sync::OnceLock::new(),
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

    /// Like [`Worker::route`], for a request: a function this worker holds no share of (it
    /// does not hold it, or is giving it up) is asked for (the scheduler then gives this worker
    /// a replica and a share) and, if not loaded here, loaded now (with how long that took).
    /// `None`: the function is not served anywhere (no deployment `READY`), or loading it
    /// failed.
    pub async fn route_or_demand(
        self: &Arc<Self>,
        function_id: &str,
    ) -> Option<(Arc<Served>, Arc<FunctionState>, Option<Duration>)> {
        if let Some((served, state)) = self.route(function_id) {
            if state.instances.share() > 0 {
                return Some((served, state, None));
            }
        }
        let (me, id) = (self.clone(), function_id.to_string());
        self.off_guest_threads(async move { me.demand_and_load(&id).await })
            .await
            .flatten()
    }

    /// Runs `task` on the process's shared runtime, whose threads are not confined, and waits
    /// for it: what the HTTP reactor threads (confined by seccomp, as they run guests) cannot do
    /// themselves, such as writing the artifact cache, building memory images, or the store
    /// opening a new SQLite connection (a thread started from a confined thread is confined
    /// too). `None` if the runtime is shutting down.
    pub async fn off_guest_threads<F>(&self, task: F) -> Option<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.shared_runtime {
            Some(h) => h.spawn(task).await.ok(),
            None => Some(task.await),
        }
    }

    /// The body of [`Worker::route_or_demand`] past the fast path, on the shared runtime.
    async fn demand_and_load(
        self: &Arc<Self>,
        function_id: &str,
    ) -> Option<(Arc<Served>, Arc<FunctionState>, Option<Duration>)> {
        if let Some((served, state)) = self.route(function_id) {
            if state.instances.share() == 0 {
                self.demand(function_id, &served.deployment.id).await;
            }
            return Some((served, state, None));
        }
        // Only functions the store lists as served are looked up: an unknown id costs no query.
        let owner = {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            table.functions.get(function_id)?.function.owner_id.clone()
        };
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading.entry(function_id.to_string()).or_default().clone()
        };
        let loaded = {
            let _one_at_a_time = lock.lock().await;
            self.load_on_demand(function_id, &owner).await
        };
        // The last one out takes the function's lock away.
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&lock) == 2 {
            loading.remove(function_id);
        }
        loaded
    }

    /// [`Worker::demand_and_load`] with the function's loading lock held: loads its newest
    /// `READY` deployment, unless a request before this one did.
    async fn load_on_demand(
        self: &Arc<Self>,
        function_id: &str,
        owner: &str,
    ) -> Option<(Arc<Served>, Arc<FunctionState>, Option<Duration>)> {
        if let Some((served, state)) = self.route(function_id) {
            return Some((served, state, None));
        }
        let deployments = match self.store.list_deployments(owner, function_id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(function = %function_id, error = %e, "worker: loading on demand");
                return None;
            }
        };
        let d = deployments
            .into_iter()
            .filter(|d| d.status == DeploymentStatus::Ready)
            .reduce(|a, b| if b.is_newer_than(&a) { b } else { a })?;
        self.demand(function_id, &d.id).await;
        let started = Instant::now();
        match load(&self.store, &self.artifacts, self, &d).await {
            Ok((module, code_size)) => {
                tracing::info!(function = %function_id, deployment = %d.id,
                    ms = started.elapsed().as_millis() as u64, "worker: loaded on demand");
                self.add_loaded(d, module, code_size);
            }
            Err(reason) => {
                tracing::warn!(function = %function_id, %reason, "worker: loading on demand");
                return None;
            }
        }
        let (served, state) = self.route(function_id)?;
        Some((served, state, Some(started.elapsed())))
    }

    /// Asks for a replica of `function_id` here (at most once a second per function).
    async fn demand(&self, function_id: &str, deployment_id: &str) {
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let recent = table
                .demanded
                .get(function_id)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1));
            if recent {
                return;
            }
            table.demanded.insert(function_id.to_string(), now);
        }
        match self
            .store
            .request_placement(function_id, &self.node, deployment_id)
            .await
        {
            Ok(_) => self.wake.notify_one(),
            Err(e) => {
                tracing::warn!(function = %function_id, error = %e, "worker: asking for a replica")
            }
        }
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

    /// The demand of every function this worker holds a share of or has run.
    pub fn function_loads(&self) -> Vec<crate::model::FunctionLoad> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut loads: Vec<_> = table
            .gates
            .iter()
            .filter_map(|(id, gate)| {
                let d = gate.demand();
                let share = gate.share();
                (share > 0 || d.granted > 0 || d.refused > 0).then(|| crate::model::FunctionLoad {
                    function_id: id.clone(),
                    share,
                    granted: d.granted,
                    refused: d.refused,
                    busy_us: d.busy_us,
                    last_request_at: d.last_granted,
                })
            })
            .collect();
        loads.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        loads
    }

    /// Ids of the deployments loaded.
    pub fn loaded_ids(&self) -> HashSet<String> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.loaded.keys().cloned().collect()
    }

    /// Keeps `module`, the loaded `deployment`, and reroutes.
    fn add_loaded(&self, deployment: Deployment, module: AnyModule, code_size: u64) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let served = Arc::new(Served {
            deployment,
            module,
            code_size,
        });
        table.loaded.insert(served.deployment.id.clone(), served);
        Worker::reroute(&mut table);
    }

    /// Deployment `id`, loaded here, was just reported `READY`: it serves from now on (rather
    /// than from the next pass, which would send the first requests down the on-demand path).
    fn now_ready(&self, id: &str) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = table.loaded.get(id) {
            let mut deployment = s.deployment.clone();
            deployment.status = DeploymentStatus::Ready;
            deployment.url = Some(self.url_of(&deployment.function_id));
            let updated = s.with_deployment(deployment);
            table.loaded.insert(id.to_string(), updated);
            Worker::reroute(&mut table);
        }
    }

    /// The runner.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// The runner on the KVM backend (sharing the in-process runner's engine and compile
    /// cache), made on first use; why not where `/dev/kvm` is missing or unusable.
    pub fn vm_runner(&self) -> Result<Arc<Runner<KvmBackend>>, String> {
        self.vm_runner
            .get_or_init(|| {
                let mut config = fnvm_dataplane::KvmRunnerConfig {
                    engine: Some(self.runner.engine().clone()),
                    ..fnvm_dataplane::KvmRunnerConfig::default()
                };
                // The most a vm Function may ask for (the API refuses more).
                config.backend.vm.max_memory_pages =
                    (crate::model::limits::MAX_VM_MEMORY / 65536) as u32;
                match Runner::kvm(config, self.runner.cache().clone()) {
                    Ok(r) => {
                        tracing::info!("worker: KVM backend ready for isolation vm");
                        let backend = r.backend().clone();
                        self.metrics.set_vm_pool(Arc::new(move || {
                            fnvm_runtime::ExecutionBackend::stats(&backend)
                        }));
                        Ok(Arc::new(r))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "worker: no KVM backend");
                        Err(e.to_string())
                    }
                }
            })
            .clone()
    }

    /// Recomputes which deployment serves each function.
    fn reroute(table: &mut Table) {
        let mut serving: HashMap<String, Arc<Served>> = HashMap::new();
        for s in table.loaded.values() {
            if s.deployment.status != DeploymentStatus::Ready {
                continue;
            }
            let newer = serving
                .get(&s.deployment.function_id)
                .is_none_or(|cur| s.deployment.is_newer_than(&cur.deployment));
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
        let wake = worker.wake.clone();
        match changes.as_mut() {
            Some(c) => {
                // Notified, woken, or a fallback poll in case a notification was missed.
                let waited = tokio::select! {
                    w = c.wait(poll * 10) => w,
                    _ = wake.notified() => Ok(()),
                };
                if let Err(e) = waited {
                    tracing::warn!(error = %e, "worker: change notifications lost; polling");
                    changes = None;
                    tokio::time::sleep(poll).await;
                }
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = wake.notified() => {}
                }
                // (`changes` is `None` at once where the database has no notifications.)
                if subscribed_at.elapsed() >= RESUBSCRIBE {
                    changes = store.changes().await;
                    subscribed_at = tokio::time::Instant::now();
                }
            }
        }
    }
}

/// One pass: refresh the functions' settings and this worker's placements, load what is newly
/// placed, drop what is no longer, set each function's share, report what it has, and reroute.
async fn sync(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    worker: &Arc<Worker>,
) -> Result<(), String> {
    let mut candidates = Vec::new();
    for status in [DeploymentStatus::Deploying, DeploymentStatus::Ready] {
        candidates.extend(
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
    let placements: HashMap<String, Placement> = store
        .placements_of_worker(&worker.node)
        .await
        .map_err(|e| format!("reading placements: {e}"))?
        .into_iter()
        .map(|p| (p.function_id.clone(), p))
        .collect();
    let wanted = placed_deployments(&candidates, &placements);
    {
        let mut table = worker.table.write().unwrap_or_else(|e| e.into_inner());
        let mut states = HashMap::new();
        let mut gates = HashMap::new();
        for f in functions {
            let gate = table
                .gates
                .get(&f.id)
                .cloned()
                .unwrap_or_else(|| InstanceGate::with_notify(0, Some(worker.wake.clone())));
            gate.set_share(placements.get(&f.id).map_or(0, |p| p.max_instances));
            let state = match table.functions.get(&f.id) {
                // Unchanged: keep it.
                Some(s) if s.function == f => s.clone(),
                // Changed: new settings, the same instances.
                _ => Arc::new(FunctionState::new(
                    f,
                    &worker.metrics,
                    &worker.egress,
                    gate.clone(),
                )),
            };
            state.metrics.set_share(gate.share());
            gates.insert(state.function.id.clone(), gate);
            states.insert(state.function.id.clone(), state);
        }
        // Series of Functions no longer served end (those with instances running stay).
        worker
            .metrics
            .retain_functions(|id| states.contains_key(id));
        table.functions = states;
        table.gates = gates;
        let ids: HashSet<&str> = wanted.iter().map(|d| d.id.as_str()).collect();
        // A deployment loaded on the other backend than its Function now asks for is loaded
        // again below.
        let t = &mut *table;
        t.loaded.retain(|id, s| {
            let asked = t.functions.get(&s.deployment.function_id);
            ids.contains(id.as_str())
                && asked.is_none_or(|f| f.function.isolation == isolation(&s.module))
        });
        // Statuses move on (DEPLOYING -> READY): take the store's.
        for d in &wanted {
            if let Some(s) = table.loaded.get(&d.id) {
                if s.deployment.status != d.status {
                    let updated = s.with_deployment(d.clone());
                    table.loaded.insert(d.id.clone(), updated);
                }
            }
        }
        Worker::reroute(&mut table);
    }
    let have = worker.loaded_ids();
    let missing = wanted.into_iter().filter(|d| !have.contains(&d.id));
    // A few at a time: one slow load (a large artifact, a compile) holds up neither the others
    // nor, for long, the acknowledgements of share changes below.
    let mut loads = futures::stream::iter(missing)
        .map(|d| async move {
            let loaded = load(store, artifacts, worker, &d).await;
            (d, loaded)
        })
        .buffer_unordered(LOADS_AT_ONCE);
    while let Some((d, loaded)) = loads.next().await {
        match loaded {
            Ok((module, code_size)) => worker.add_loaded(d.clone(), module, code_size),
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
    report(store, worker, &placements).await;
    overtaken_ready(store, worker, &placements).await;
    Ok(())
}

/// Deployments a sync pass loads at once.
const LOADS_AT_ONCE: usize = 4;

/// Reports `READY` the `DEPLOYING` deployments loaded here that are not placed (a newer one of
/// their function is): they load, and serve until the newer one is ready.
async fn overtaken_ready(
    store: &MetadataStore,
    worker: &Worker,
    placements: &HashMap<String, Placement>,
) {
    let overtaken: Vec<Deployment> = {
        let table = worker.table.read().unwrap_or_else(|e| e.into_inner());
        table
            .loaded
            .values()
            .filter(|s| s.deployment.status == DeploymentStatus::Deploying)
            .filter(|s| {
                placements
                    .get(&s.deployment.function_id)
                    .is_some_and(|p| p.deployment_id != s.deployment.id)
            })
            .map(|s| s.deployment.clone())
            .collect()
    };
    for d in overtaken {
        let url = worker.url_of(&d.function_id);
        let r = store
            .transition(
                &d.id,
                &[DeploymentStatus::Deploying],
                DeploymentStatus::Ready,
                None,
                Some(&url),
            )
            .await;
        match r {
            Ok(Some(_)) => worker.now_ready(&d.id),
            Ok(None) => {}
            Err(e) => tracing::warn!(deployment = %d.id, error = %e, "worker: reporting ready"),
        }
    }
}

/// The deployments this worker is to have loaded: for each function placed on it, the
/// deployment placed, its newest `READY` one (which serves until the placed one is ready), and
/// any `DEPLOYING` one a newer deployment overtook (loading it is what makes it `READY`).
fn placed_deployments(
    candidates: &[Deployment],
    placements: &HashMap<String, Placement>,
) -> Vec<Deployment> {
    let newest_ready = crate::model::newest_per_function(
        candidates
            .iter()
            .filter(|d| d.status == DeploymentStatus::Ready),
    );
    candidates
        .iter()
        .filter(|d| {
            placements.get(&d.function_id).is_some_and(|p| {
                p.deployment_id == d.id
                    || d.status == DeploymentStatus::Deploying
                    || newest_ready
                        .get(d.function_id.as_str())
                        .is_some_and(|r| r.id == d.id)
            })
        })
        .cloned()
        .collect()
}

/// Tells the store, for each placement that changed here, what this worker has loaded and the
/// instances it lets run; a placed `DEPLOYING` deployment becomes `READY` once every replica
/// has it.
async fn report(store: &MetadataStore, worker: &Worker, placements: &HashMap<String, Placement>) {
    for p in placements.values() {
        let (loaded, applied, status) = {
            let table = worker.table.read().unwrap_or_else(|e| e.into_inner());
            let target = table.loaded.get(&p.deployment_id);
            let loaded = match target {
                Some(_) => Some(p.deployment_id.clone()),
                None => table
                    .serving
                    .get(&p.function_id)
                    .map(|s| s.deployment.id.clone()),
            };
            let applied = table.gates.get(&p.function_id).map_or(0, |g| g.applied());
            (loaded, applied, target.map(|s| s.deployment.status))
        };
        let unchanged = p.loaded_deployment_id == loaded
            && p.applied_max_instances == applied
            && p.acked_generation == p.generation;
        if !unchanged {
            let r = store
                .report_placement(
                    &p.function_id,
                    &worker.node,
                    p.generation,
                    loaded.as_deref(),
                    applied,
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(function = %p.function_id, error = %e, "worker: reporting a placement");
            }
        }
        if status == Some(DeploymentStatus::Deploying) {
            let url = worker.url_of(&p.function_id);
            match store.ready_if_replicated(&p.deployment_id, &url).await {
                Ok(true) => worker.now_ready(&p.deployment_id),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(deployment = %p.deployment_id, error = %e, "worker: reporting ready")
                }
            }
        }
    }
}

/// The isolation a loaded module runs under, as the model names it.
fn isolation(m: &AnyModule) -> crate::model::Isolation {
    match m.isolation() {
        fnvm_dataplane::Isolation::Process => crate::model::Isolation::Process,
        fnvm_dataplane::Isolation::Vm => crate::model::Isolation::Vm,
    }
}

/// The module of `d` (and the size of its upload): its artifact for this machine, from the
/// local cache or fetched into it, else compiled here from the upload; prepared on the backend
/// of its Function's isolation (a Function asking for `vm` on a worker without a usable
/// `/dev/kvm` fails here, with the reason).
async fn load(
    store: &MetadataStore,
    artifacts: &ArtifactStore,
    worker: &Arc<Worker>,
    d: &Deployment,
) -> Result<(AnyModule, u64), String> {
    let isolation = {
        let table = worker.table.read().unwrap_or_else(|e| e.into_inner());
        table
            .functions
            .get(&d.function_id)
            .map_or(crate::model::Isolation::Process, |s| s.function.isolation)
    };
    let vm_runner = match isolation {
        crate::model::Isolation::Vm => Some(worker.vm_runner()?),
        crate::model::Isolation::Process => None,
    };
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
    let module = tokio::task::spawn_blocking(move || match vm_runner {
        Some(vm) => vm.load(&bytes).map(|m| AnyModule::Vm(vm.clone(), m)),
        None => runner
            .load(&bytes)
            .map(|m| AnyModule::Process(runner.clone(), m)),
    })
    .await
    .map_err(|e| format!("loading: {e}"))?
    .map_err(|e| format!("loading: {e}"))?;
    tracing::info!(deployment = %d.id, function = %d.function_id, %isolation, "worker: prepared");
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
