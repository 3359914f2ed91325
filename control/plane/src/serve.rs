//! `fnvm serve`: the platform's processes wired together. One process runs the API role (the
//! HTTP API, the packager, the garbage collector), the worker role (loading deployments through
//! the data plane), or both (the default). Roles share nothing in memory that a split would
//! break: everything between them goes through the metadata store and the artifact store.

use crate::api::{self, ApiConfig, ApiState};
use crate::artifacts::{ArtifactStore, ArtifactStoreError};
use crate::auth::UploadSigner;
use crate::delivery::queue::{AsyncQueue, QueueConfig};
use crate::metrics::Metrics;
use crate::packager::{self, PackagerConfig};
use crate::store::{MetadataStore, StoreError};
use crate::worker::http::HttpConfig;
use crate::worker::invoker::Invoker;
use crate::worker::{self, Worker};
use fnvm_dataplane::{Runner, RunnerConfig, SetupError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Which roles a process plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The API, the packager and the garbage collector.
    pub api: bool,
    /// Loading and serving deployments.
    pub worker: bool,
    /// Forwarding requests to the workers holding each function.
    pub router: bool,
}

/// Settings of `fnvm serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where the embedded defaults keep their data: the SQLite database, the local artifact
    /// store, the compile cache (`cache`), the worker's copies of fetched artifacts
    /// (`artifact-cache`), spooled uploads, the node id.
    pub data_dir: PathBuf,
    /// The metadata store; default: SQLite in `data_dir/metadata.db`.
    pub database_url: Option<String>,
    /// The artifact store (`s3://bucket/prefix` or a directory); default: `data_dir/artifacts`.
    pub artifact_store: Option<String>,
    /// Where the API listens.
    pub api_listen: SocketAddr,
    /// Where the worker's HTTP endpoint listens (it serves functions from the next issue on;
    /// today it names their URLs).
    pub http_listen: SocketAddr,
    /// Where the router listens (role router).
    pub router_listen: SocketAddr,
    /// How clients reach the API (upload URLs); default `http://{api_listen}`.
    pub public_api_url: Option<String>,
    /// How the public reaches functions (their `url`); default `http://{http_listen}`.
    pub public_url: Option<String>,
    /// The roles.
    pub roles: Roles,
    /// Largest upload accepted.
    pub max_upload_bytes: u64,
    /// The `fnvm` binary the packager runs to compile.
    pub compiler: PathBuf,
    /// Compilations at once.
    pub packager_concurrency: usize,
    /// How often unreferenced code is collected.
    pub gc_interval: Duration,
    /// How long code stays after an upload touched it, referenced or not (longer than any
    /// upload takes).
    pub gc_grace: Duration,
    /// Where the toolchains of server-side builds are.
    pub toolchains_dir: PathBuf,
    /// Limits of one server-side build.
    pub build_limits: fnvm_builds::Limits,
    /// Where functions may open connections beyond the public internet (e.g. loopback, for
    /// tests), as egress rules (`host:port` patterns, CIDRs).
    pub egress_allow: Vec<String>,
    /// Where functions may never connect.
    pub egress_deny: Vec<String>,
    /// CA certificates (PEM) trusted by `host_tls_connect` besides the Mozilla roots.
    pub egress_ca_pem: Vec<u8>,
    /// Per-invocation limits of outbound connections.
    pub egress_limits: fnvm_hostcalls::NetLimits,
    /// Invoker threads guest code runs on (the pool has a slot for each of them and for each
    /// reactor thread that may run a short job).
    pub invoker_threads: usize,
    /// Whether a pool slot is reset by a reset thread after use instead of by the thread that
    /// used it (inline, after the response went out: the default, cheaper on a busy worker).
    pub background_reset: bool,
    /// How long the worker's fleet registration lives without renewal.
    pub worker_lease: Duration,
    /// The scheduler's autoscaling.
    pub scale: crate::scheduler::autoscale::ScaleConfig,
    /// Whether the threads that run guest code confine themselves with the seccomp filter.
    pub seccomp: bool,
    /// Limits of the worker's HTTP endpoint.
    pub http: HttpConfig,
    /// Settings of asynchronous invocations (`concurrency` and `max_response_bytes` are taken
    /// from the invoker threads and `http`).
    pub queue: crate::delivery::queue::QueueConfig,
}

/// Why `fnvm serve` could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The metadata store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact store could not be opened.
    #[error(transparent)]
    Artifacts(#[from] ArtifactStoreError),
    /// The data plane could not be set up.
    #[error(transparent)]
    Runner(#[from] SetupError),
    /// A listening address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The API server failed.
    #[error("serving the API: {0}")]
    Api(#[source] std::io::Error),
    /// The invoker threads could not be started.
    #[error("starting the invoker threads: {0}")]
    Invoker(#[source] std::io::Error),
    /// The HTTP endpoint's threads could not be started.
    #[error("starting the HTTP endpoint: {0}")]
    Http(#[source] std::io::Error),
    /// The server's egress rules do not parse.
    #[error("egress policy: {0}")]
    Egress(#[from] fnvm_hostcalls::PolicyError),
    /// The extra CA certificates could not be used.
    #[error("egress CA certificates: {0}")]
    EgressCa(#[from] fnvm_hostcalls::TlsConfigError),
}

impl ServeConfig {
    /// The metadata store's URL.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("metadata.db").display()),
        }
    }
}

/// This node's id: stable across restarts (kept in the data directory), so that a restarted
/// node resumes the work it had claimed without waiting for its leases to lapse.
fn node_id(data_dir: &Path) -> Result<String, ServeError> {
    let path = data_dir.join("node-id");
    let err = |source| ServeError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let id = crate::model::new_id();
    let tmp = data_dir.join(format!("node-id.{}", std::process::id()));
    std::fs::write(&tmp, &id).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}

/// Opens the metadata store named by `config` (the same one `fnvm serve` would use).
pub async fn open_store(config: &ServeConfig) -> Result<MetadataStore, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    Ok(MetadataStore::connect(&config.database_url()).await?)
}

/// Runs the configured roles until `shutdown` completes.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = open_store(&config).await?;
    let artifacts = match &config.artifact_store {
        Some(url) => ArtifactStore::open(url)?,
        None => ArtifactStore::local(&config.data_dir.join("artifacts"))?,
    };
    let node = node_id(&config.data_dir)?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.http_listen));
    tracing::info!(
        %node,
        metadata = store.describe(),
        artifacts = %artifacts.describe(),
        "fnvm serve: starting"
    );
    let mut tasks = tokio::task::JoinSet::new();
    let mut http = None;
    let mut scheduler = None;
    let metrics = Arc::new(Metrics::default());

    if config.roles.worker {
        let threads = config.invoker_threads.max(1);
        // Short jobs may run on every thread of the endpoint's own (each delays only its own
        // connections), or on all but one of the shared runtime's (none if it has one).
        let inline_slots = match (config.http.inline_short_jobs, config.http.reactor_threads) {
            (false, _) => 0,
            (true, 0) => tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .saturating_sub(1),
            (true, n) => n,
        };
        // A slot for every thread that may run a guest at once, and as many again for slots
        // waiting on the reset thread: a thread that finds no free slot spins, then sleeps.
        let slots = (threads + inline_slots) * if config.background_reset { 2 } else { 1 };
        let runner = Runner::new(RunnerConfig {
            cache_dir: config.data_dir.join("cache"),
            pool: fnvm_runtime::PoolConfig {
                slots: u32::try_from(slots).unwrap_or(u32::MAX),
                max_memory_pages: 65536,
                // A busy worker is the normal case: by default the invoking thread resets the
                // slot after the response went out, instead of handing every slot to a reset
                // thread (benches/README.md, "HTTP", measures both).
                background_reset: config.background_reset,
                ..fnvm_runtime::PoolConfig::default()
            },
            ..RunnerConfig::default()
        })?;
        let pool = runner.backend().clone();
        metrics.set_pool(Arc::new(move || pool.stats()));
        let egress = crate::worker::Egress {
            policy: fnvm_hostcalls::EgressPolicy::new(
                &config.egress_allow,
                &config.egress_deny,
                &[] as &[String],
            )?,
            tls: fnvm_hostcalls::NetConfig::tls_config(&config.egress_ca_pem)?,
            limits: config.egress_limits,
        };
        let worker = Arc::new(Worker::new(
            node.clone(),
            store.clone(),
            artifacts.clone(),
            Arc::new(runner),
            public_url.clone(),
            config.data_dir.join("artifact-cache"),
            metrics.clone(),
            egress,
        ));
        let confine = worker::confinement(config.seccomp);
        let invoker =
            Arc::new(Invoker::new(threads, inline_slots, confine).map_err(ServeError::Invoker)?);
        tasks.spawn(worker::run(
            store.clone(),
            artifacts.clone(),
            worker.clone(),
            Duration::from_millis(200),
        ));
        tasks.spawn(worker::membership::run(
            store.clone(),
            worker::membership::Identity {
                id: node.clone(),
                url: public_url.clone(),
                started_at: crate::model::Timestamp::now(),
                cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            },
            worker.clone(),
            metrics.clone(),
            config.worker_lease,
        ));
        tasks.spawn(worker::logs::flush(
            store.clone(),
            worker.logs.clone(),
            Duration::from_millis(500),
        ));
        let listener = std::net::TcpListener::bind(config.http_listen).map_err(|source| {
            ServeError::Listen {
                addr: config.http_listen,
                source,
            }
        })?;
        let addr = listener.local_addr().unwrap_or(config.http_listen);
        tracing::info!(
            %addr,
            threads,
            reactor_threads = config.http.reactor_threads,
            "worker role: functions served over HTTP"
        );
        let queue = AsyncQueue::new(
            store.clone(),
            &node,
            QueueConfig {
                concurrency: threads,
                max_response_bytes: config.http.max_response_bytes,
                ..config.queue.clone()
            },
        );
        tasks.spawn(crate::delivery::queue::run(
            queue.clone(),
            worker.clone(),
            invoker.clone(),
        ));
        tasks.spawn(crate::delivery::pulsar::run(
            store.clone(),
            worker.clone(),
            invoker.clone(),
            crate::delivery::pulsar::PulsarConfig {
                ca_pem: config.egress_ca_pem.clone(),
                max_output_bytes: config.http.max_response_bytes,
            },
        ));
        http = Some(
            worker::http::start(
                listener,
                worker,
                invoker,
                queue,
                HttpConfig {
                    confine,
                    ..config.http.clone()
                },
            )
            .map_err(ServeError::Http)?,
        );
    }

    let mut router = None;
    if config.roles.router {
        let table = crate::router::SharedTable::default();
        tasks.spawn(crate::router::run(
            store.clone(),
            table.clone(),
            Duration::from_millis(200),
        ));
        let listener = std::net::TcpListener::bind(config.router_listen).map_err(|source| {
            ServeError::Listen {
                addr: config.router_listen,
                source,
            }
        })?;
        let addr = listener.local_addr().unwrap_or(config.router_listen);
        router = Some(
            crate::router::proxy::start(
                listener,
                table,
                crate::router::proxy::RouterConfig {
                    max_body_bytes: config.http.max_body_bytes,
                    ..crate::router::proxy::RouterConfig::default()
                },
            )
            .map_err(|source| ServeError::Listen { addr, source })?,
        );
        tracing::info!(%addr, "router role: requests forwarded to the workers holding each function");
    }

    if config.roles.api {
        let spool_dir = config.data_dir.join("spool");
        let work_dir = config.data_dir.join("packager");
        for dir in [&spool_dir, &work_dir] {
            // Leftovers of a previous run are partial uploads or compilations: never used.
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).map_err(|source| ServeError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        let key = store
            .secret("upload-url-key", UploadSigner::new_key)
            .await?;
        let wakeup = Arc::new(tokio::sync::Notify::new());
        let state = ApiState::new(
            metrics.clone(),
            store.clone(),
            artifacts.clone(),
            UploadSigner::new(key),
            ApiConfig {
                public_api_url: config
                    .public_api_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", config.api_listen)),
                max_upload_bytes: config.max_upload_bytes,
                spool_dir,
            },
            wakeup.clone(),
        );
        tasks.spawn(packager::run(
            store.clone(),
            artifacts.clone(),
            PackagerConfig {
                // This incarnation of the node: it never claims what it already works on, and
                // takes over what an earlier one left at once (see `MetadataStore::claim`).
                holder: format!("{node}/{}", crate::model::new_id()),
                compiler: config.compiler.clone(),
                concurrency: config.packager_concurrency,
                cpu_seconds: 300,
                memory_bytes: 8 << 30,
                wall_timeout: Duration::from_secs(600),
                work_dir,
                lease: Duration::from_secs(15),
                poll: Duration::from_millis(500),
                metrics: metrics.clone(),
                toolchains: Arc::new(fnvm_builds::Toolchains::new(&config.toolchains_dir)),
                build_limits: config.build_limits.clone(),
                js_limits: fnvm_preinit::Limits {
                    timeout: config.build_limits.wall.min(Duration::from_secs(60)),
                    // The engine is compiled once, then found in the cache.
                    cache_dir: Some(config.data_dir.join("cache")),
                    ..fnvm_preinit::Limits::default()
                },
            },
            wakeup,
        ));
        // This incarnation contends for the scheduler's role (another process's lapsed lease is
        // taken over within one lease; a clean stop releases it).
        let scheduler_holder = format!("{node}/{}", crate::model::new_id());
        tasks.spawn(crate::scheduler::run(
            store.clone(),
            scheduler_holder.clone(),
            crate::scheduler::DEFAULT_LEASE,
            crate::scheduler::DEFAULT_POLL,
            config.scale.clone(),
            metrics.clone(),
        ));
        scheduler = Some(scheduler_holder);
        tasks.spawn(packager::collect_garbage(
            store.clone(),
            artifacts.clone(),
            config.gc_interval,
            config.gc_grace,
        ));
        let listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: config.api_listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(config.api_listen);
        tracing::info!(%addr, "api role: the API");
        let app = api::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Api)?;
    } else {
        shutdown.await;
    }
    if let Some(http) = http {
        http.stop().await;
    }
    if let Some(router) = router {
        router.stop().await;
    }
    tasks.abort_all();
    if let Some(holder) = scheduler {
        // Another API process takes the role at once rather than when the lease lapses.
        if let Err(e) = store
            .release_singleton(crate::scheduler::ROLE, &holder)
            .await
        {
            tracing::warn!(error = %e, "scheduler: could not release the role; its lease will lapse");
        }
    }
    if config.roles.worker {
        // Out of the fleet at once rather than when the lease lapses.
        if let Err(e) = store.remove_worker(&node).await {
            tracing::warn!(error = %e, "fleet: could not deregister; the lease will lapse");
        }
    }
    Ok(())
}
