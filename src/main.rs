//! The `fnvm` command line: `fnvm serve` runs the platform (API, packager, workers); `fnvm
//! functions ...` is its client; `fnvm admin token create` makes API tokens; `fnvm run` runs a
//! WASI program (a `.wasm`, compiled through the on-disk cache, or an artifact) in a pooled
//! instance (in process, or in a KVM micro-VM with `--isolation vm`); `fnvm compile` turns a
//! WebAssembly module into an fnvm artifact; `fnvm wast` runs WebAssembly specification scripts
//! against the compiler and runtime. Argument parsing and reporting live here; the work is in
//! `fnvm_control`, `fnvm_dataplane`, `fnvm_compiler` and [`fnvm::wast`].

mod client;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Parser)]
#[command(name = "fnvm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a WASI program: a WebAssembly module (`.wasm` or `.wat`, compiled once and cached by
    /// content hash) or an fnvm artifact. Arguments after FILE go to the program. The exit
    /// status is the program's (`proc_exit`, or 0 when `_start` returns); a trap prints its
    /// kind and backtrace on stderr and exits with status 134; an error of fnvm itself (missing
    /// file, invalid module, unknown import) exits with status 1.
    #[command(override_usage = "fnvm run [OPTIONS] FILE [ARGS]...")]
    Run(RunArgs),
    /// Compile a WebAssembly module (binary or text format) into an fnvm artifact.
    Compile {
        /// The module: a `.wasm` binary or `.wat` text.
        input: PathBuf,
        /// Where to write the artifact (or, with `--emit-clif`, the IR text).
        #[arg(short, long)]
        output: PathBuf,
        /// Write our lowering of every function as Cranelift IR text instead of an artifact.
        #[arg(long)]
        emit_clif: bool,
        /// Stop (killed by the kernel) after this much CPU time, all threads together.
        #[arg(long, value_name = "SECONDS")]
        max_cpu_seconds: Option<u64>,
        /// Fail allocations beyond this much address space.
        #[arg(long, value_name = "BYTES")]
        max_memory_bytes: Option<u64>,
    },
    /// Run the platform: the API (with the packager) and a worker, on the embedded defaults
    /// (SQLite and a local artifact store under --data-dir) unless told otherwise.
    Serve(Box<ServeArgs>),
    /// Manage Functions, their deployments and releases through the API.
    Functions(client::FunctionsArgs),
    /// The fleet: the workers registered in the metadata store (an operator's token).
    Fleet(client::FleetArgs),
    /// The toolchains of server-side builds: `fnvm toolchains check` says what is installed
    /// and what is missing (exit status 1 if anything is).
    Toolchains {
        #[command(subcommand)]
        command: ToolchainsCommand,
    },
    /// Administer a platform directly through its metadata store.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Run WebAssembly specification test scripts (`.wast`) and count passed and failed
    /// directives. Exits with status 1 if any directive failed.
    Wast {
        /// The scripts.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Skip scripts whose file name contains this text (repeatable), e.g. `--exclude simd_`
        /// for the SIMD scripts, as fnvm does not support SIMD.
        #[arg(long, value_name = "TEXT")]
        exclude: Vec<String>,
        /// Run this many scripts at a time, each on its own thread with its own store.
        #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: u16,
        /// Where module instances run: `process`, or `vm` (each in a KVM micro-VM; needs
        /// /dev/kvm). A VM's instance is linked to nothing, so with `vm` a module with imports
        /// (spectest, a registered instance), `register` and `get` fail with that reason.
        #[arg(long, value_enum, default_value = "process")]
        isolation: IsolationArg,
    },
}

/// The options of `fnvm serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the embedded defaults keep their data (SQLite database, artifacts, caches).
    #[arg(long, default_value = "./fnvm-data", env = "FNVM_DATA_DIR")]
    data_dir: PathBuf,
    /// A PostgreSQL (`postgres://...`) or SQLite (`sqlite://PATH`) metadata store instead of
    /// `DATA_DIR/metadata.db`.
    #[arg(long, env = "FNVM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// An artifact store `s3://bucket/prefix` (endpoint and credentials from the AWS_*
    /// variables) or a directory, instead of `DATA_DIR/artifacts`.
    #[arg(long, env = "FNVM_ARTIFACT_STORE")]
    artifact_store: Option<String>,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api_listen: std::net::SocketAddr,
    /// Where the worker's HTTP endpoint listens (functions' URLs are under it).
    #[arg(long, default_value = "127.0.0.1:8081")]
    http_listen: std::net::SocketAddr,
    /// Where the router listens (role router): it forwards `/{functionId}/...` to a worker
    /// holding the function.
    #[arg(long, default_value = "127.0.0.1:8082")]
    router_listen: std::net::SocketAddr,
    /// How clients reach the API, for upload URLs (default http://API_LISTEN).
    #[arg(long)]
    public_api_url: Option<String>,
    /// How the public reaches functions, for their URLs (default http://HTTP_LISTEN).
    #[arg(long)]
    public_url: Option<String>,
    /// Run only these roles (repeatable: api, worker, router; default api and worker).
    #[arg(long, value_enum)]
    role: Vec<Role>,
    /// Largest upload accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_upload_bytes: u64,
    /// Compilations and builds at once (default: the number of CPUs); deployments beyond
    /// wait in the PACKAGING status, in order.
    #[arg(long)]
    packager_concurrency: Option<usize>,
    /// Where the toolchains of server-side builds are (installed by scripts/toolchains.sh and
    /// scripts/js-engine.sh; default DATA_DIR/toolchains; `fnvm toolchains check` lists them).
    #[arg(long, env = "FNVM_TOOLCHAINS_DIR")]
    toolchains_dir: Option<PathBuf>,
    /// CPU seconds one server-side build may use.
    #[arg(long, default_value_t = 300)]
    build_cpu_secs: u64,
    /// Wall-clock seconds one server-side build may take.
    #[arg(long, default_value_t = 600)]
    build_wall_secs: u64,
    /// Memory (address space) of each process of a server-side build, in bytes.
    #[arg(long, default_value_t = 4 << 30)]
    build_memory_bytes: u64,
    /// Let functions connect here although the default policy refuses it (loopback, private,
    /// link-local ranges...): a `host:port` pattern or a CIDR with an optional port
    /// (repeatable; e.g. `127.0.0.0/8` for tests on loopback).
    #[arg(long = "egress-allow", value_name = "RULE")]
    egress_allow: Vec<String>,
    /// Never let functions connect here (repeatable; wins over every allow).
    #[arg(long = "egress-deny", value_name = "RULE")]
    egress_deny: Vec<String>,
    /// A PEM file of CA certificates `host_tls_connect` trusts besides the Mozilla roots
    /// (repeatable).
    #[arg(long = "egress-ca-file", value_name = "PEM")]
    egress_ca_files: Vec<PathBuf>,
    /// Connections one invocation may have open at once.
    #[arg(long, default_value_t = 16)]
    egress_max_connections: u32,
    /// Bytes one invocation may send and receive over its connections.
    #[arg(long, default_value_t = 64 << 20)]
    egress_max_bytes: u64,
    /// Milliseconds one connect (name resolution, TCP, TLS handshake) may take.
    #[arg(long, default_value_t = 5000)]
    egress_connect_timeout_ms: u64,
    /// Seconds between collections of unreferenced code.
    #[arg(long, default_value_t = 60)]
    gc_interval_secs: u64,
    /// Seconds uploaded code is kept after an upload, referenced or not (longer than any
    /// upload takes).
    #[arg(long, default_value_t = 600)]
    gc_grace_secs: u64,
    /// Threads guest code runs on, and instances at once (default: twice the CPUs, at least 4).
    #[arg(long)]
    invoker_threads: Option<usize>,
    /// Milliseconds a worker's fleet registration lives without renewal (renewed every third
    /// of it); a worker silent for longer is dead to the rest of the fleet.
    #[arg(long, default_value_t = 6000)]
    worker_lease_ms: u64,
    /// Scheduler: milliseconds without a request after which a function has no replica (it
    /// stays deployed: the next request loads it on a worker); 0: never.
    #[arg(long, default_value_t = 15 * 60 * 1000)]
    idle_to_zero_ms: u64,
    /// Scheduler: milliseconds a function's demand must stay below its replicas before they
    /// are reduced.
    #[arg(long, default_value_t = 30_000)]
    scale_in_after_ms: u64,
    /// Confine the threads that run guest code with a seccomp filter (an allowlist of system
    /// calls; Linux x86_64): defence in depth under the in-process isolation.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    seccomp: bool,
    /// Scheduler: mean concurrent instances per core of a worker that one replica aims at.
    #[arg(long, default_value_t = 0.7)]
    scale_target_per_core: f64,
    /// Largest request body the worker accepts, in bytes (413 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    max_request_bytes: u64,
    /// Largest response body a function may write, in bytes (502 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    max_response_bytes: usize,
    /// Milliseconds a request waits for one of its function's instances (503 after).
    #[arg(long, default_value_t = 1000)]
    instance_wait_ms: u64,
    /// Largest request body of an asynchronous invocation (`?async`), in bytes: it is stored
    /// until it runs (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    max_async_request_bytes: u64,
    /// Unfinished asynchronous invocations a function may have (429 beyond).
    #[arg(long, default_value_t = 100_000)]
    max_queued_invocations: u64,
    /// Seconds finished asynchronous invocations (results, dead letters) are kept.
    #[arg(long, default_value_t = 86_400)]
    invocation_retention_secs: u64,
    /// Milliseconds a client may take to send a request's head (the connection is closed after).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Milliseconds a client may stay silent while sending a body (408 after).
    #[arg(long, default_value_t = 10_000)]
    body_idle_timeout_ms: u64,
    /// Milliseconds a client may take to send a whole body (408 after).
    #[arg(long, default_value_t = 60_000)]
    body_timeout_ms: u64,
    /// Whether invocations of Functions whose recent runs were all short (under 1 ms) may run
    /// on the HTTP threads that read them (all but one of them at once with `--http-threads
    /// 0`), instead of being handed to an invoker thread (which costs several context switches
    /// per request).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    inline_short_jobs: bool,
    /// Threads that accept and serve HTTP connections, each owning its connections (default:
    /// one per CPU); 0 serves them on the shared async runtime instead.
    #[arg(long)]
    http_threads: Option<usize>,
    /// How pool slots are reset after an invocation: `inline` by the thread that ran it, after
    /// the response went out, or `background` by a reset thread.
    #[arg(long, value_enum, default_value = "inline")]
    slot_reset: SlotReset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SlotReset {
    Inline,
    Background,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    Api,
    Worker,
    Router,
}

#[derive(Debug, Subcommand)]
enum ToolchainsCommand {
    /// What is there and what is missing, with versions.
    Check {
        /// The toolchains directory (default DATA_DIR/toolchains).
        #[arg(long, env = "FNVM_TOOLCHAINS_DIR")]
        dir: Option<PathBuf>,
        /// The data directory `fnvm serve` uses.
        #[arg(long, default_value = "./fnvm-data", env = "FNVM_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a new token for an organisation (or an operator token); prints it as the last word.
    Create {
        /// The organisation the token acts for.
        #[arg(long, required_unless_present = "operator")]
        org: Option<String>,
        /// A token for operators: every organisation, and the operator routes.
        #[arg(long, conflicts_with = "org")]
        operator: bool,
        /// A label to recognise the token by.
        #[arg(long)]
        label: Option<String>,
        /// The data directory `fnvm serve` uses.
        #[arg(long, default_value = "./fnvm-data", env = "FNVM_DATA_DIR")]
        data_dir: PathBuf,
        /// The metadata store `fnvm serve` uses, if not the one in the data directory.
        #[arg(long, env = "FNVM_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Compile {
            input,
            output,
            emit_clif,
            max_cpu_seconds,
            max_memory_bytes,
        } => limit_self(max_cpu_seconds, max_memory_bytes)
            .and_then(|()| compile(&input, &output, emit_clif))
            .map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve(*args),
        Command::Functions(args) => client::run(args),
        Command::Fleet(args) => client::run_fleet(args),
        Command::Toolchains {
            command: ToolchainsCommand::Check { dir, data_dir },
        } => toolchains_check(dir.unwrap_or_else(|| data_dir.join("toolchains"))),
        Command::Admin { command } => admin(command),
        Command::Wast {
            files,
            exclude,
            jobs,
            isolation,
        } => wast(&files, &exclude, usize::from(jobs), isolation),
    };
    result.unwrap_or_else(|e| {
        eprintln!("fnvm: error: {e:#}");
        ExitCode::FAILURE
    })
}

/// The options and operands of `fnvm run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Set an environment variable for the program: `NAME=VALUE`, or `NAME` to pass the
    /// host's value (repeatable).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Give the program a host directory: `HOST::GUEST` makes HOST visible at guest path
    /// GUEST, `HOST` alone at the same path (repeatable). Nothing outside it is reachable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Feed this file as standard input (default: fnvm's own standard input).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Print the debug report (JSON: stdout, stderr, dmesg trace, trigger, responseBody,
    /// currentPages, size) instead of the program's output. The exit status is still the
    /// program's.
    #[arg(long)]
    debug: bool,
    /// Maximum linear memory of the program, in bytes (the Function's maxMemory).
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<u64>,
    /// Stop the program after this many milliseconds (a trap, status 134).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Where the program runs: `process` (a pooled instance in fnvm's process) or `vm` (a KVM
    /// micro-VM with no guest OS; needs /dev/kvm). Same output, exit status and report.
    #[arg(long, value_enum, default_value = "process")]
    isolation: IsolationArg,
    /// The program, then its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "FILE [ARGS]"
    )]
    command: Vec<String>,
}

/// `--isolation`: where guests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum IsolationArg {
    /// In fnvm's process (guard pages, signal handlers).
    Process,
    /// In a KVM micro-VM (needs /dev/kvm).
    Vm,
}

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Exit status for a guest trap, as `wasmtime run` uses (128 + SIGABRT).
const TRAP_EXIT_STATUS: i32 = 134;

fn run(args: RunArgs) -> Result<ExitCode> {
    use fnvm_dataplane::{Runner, RunnerConfig};
    let Some(file) = args.command.first() else {
        anyhow::bail!("no program given");
    };
    let path = Path::new(file);
    // Mapped, not read: a large module is hashed (and, on a cache miss, compiled) in place.
    let mapped = std::fs::File::open(path)
        .and_then(|f| fnvm_runtime::MappedFile::new(&f))
        .with_context(|| format!("reading {file}"))?;
    let text;
    let bytes: &[u8] = if mapped.bytes().starts_with(WASM_MAGIC)
        || mapped.bytes().starts_with(&fnvm_abi::artifact::MAGIC)
    {
        mapped.bytes()
    } else {
        text = to_wasm(path, mapped.bytes())?;
        &text
    };
    match args.isolation {
        IsolationArg::Process => {
            let runner = Runner::new(RunnerConfig {
                pool: fnvm_runtime::PoolConfig {
                    slots: 1,
                    max_memory_pages: 65536,
                    background_reset: false,
                    ..fnvm_runtime::PoolConfig::default()
                },
                // The ticker thread only runs when there is a deadline to count.
                epoch_tick: args
                    .timeout_ms
                    .map(|_| std::time::Duration::from_millis(10)),
                ..RunnerConfig::default()
            })?;
            run_on(runner, &args, file, bytes)
        }
        IsolationArg::Vm => {
            let runner = Runner::kvm(
                fnvm_dataplane::KvmRunnerConfig {
                    backend: fnvm_runtime::kvm::KvmBackendConfig {
                        vms: 1,
                        background_reset: false,
                        // The in-process run's cap (4 GiB): `--max-memory` means the same.
                        vm: fnvm_runtime::kvm::WasmVmConfig {
                            max_memory_pages: 65536,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    ..Default::default()
                },
                fnvm_dataplane::ArtifactCache::new(fnvm_dataplane::ArtifactCache::default_dir()),
            )?;
            run_on(runner, &args, file, bytes)
        }
    }
}

/// `fnvm run` once the runner is made: loads `bytes` (the program `file`), runs it and exits
/// with its status.
fn run_on<B: fnvm_runtime::ExecutionBackend>(
    runner: fnvm_dataplane::Runner<B>,
    args: &RunArgs,
    file: &str,
    bytes: &[u8],
) -> Result<ExitCode> {
    use fnvm_dataplane::{Invocation, Status};
    use fnvm_hostcalls::{CStrings, Output, Stdin};
    let function = runner
        .load(bytes)
        .with_context(|| format!("loading {file}"))?;
    let mut env = Vec::new();
    for e in &args.env {
        match e.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push((e.clone(), v));
                }
            }
        }
    }
    let preopens = args
        .dirs
        .iter()
        .map(|d| match d.split_once("::") {
            Some((host, guest)) => (PathBuf::from(host), guest.to_string()),
            None => (PathBuf::from(d), d.clone()),
        })
        .collect();
    let stdin = match &args.stdin {
        Some(p) => {
            Stdin::Bytes(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => Stdin::Inherit,
    };
    let limits = fnvm_runtime::InstanceLimits {
        max_memory_bytes: args.max_memory,
        timeout: args.timeout_ms.map(std::time::Duration::from_millis),
        ..fnvm_runtime::InstanceLimits::default()
    };
    let outcome = runner.invoke(
        &function,
        Invocation {
            args: CStrings::from_args(&args.command).context("an argument")?,
            env: CStrings::from_vars(env).context("an environment variable")?,
            preopens,
            stdin,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            debug: args.debug,
            limits,
            ..Invocation::default()
        },
    )?;
    if let Some(report) = &outcome.report {
        println!("{}", report.to_json());
    }
    let code = match &outcome.status {
        Status::Exited(code) => *code,
        Status::Trapped(trap) => {
            if !args.debug {
                eprintln!("fnvm: {file}: trap: {trap}");
            }
            TRAP_EXIT_STATUS
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    drop(runner);
    std::process::exit(code)
}

/// Puts this process under the given CPU-time and address-space limits (the packager runs
/// `fnvm compile` on untrusted uploads).
fn limit_self(cpu_seconds: Option<u64>, memory_bytes: Option<u64>) -> Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    if let Some(s) = cpu_seconds {
        let l = Rlimit {
            current: Some(s),
            maximum: Some(s),
        };
        setrlimit(Resource::Cpu, l).context("limiting CPU time")?;
    }
    if let Some(b) = memory_bytes {
        let l = Rlimit {
            current: Some(b),
            maximum: Some(b),
        };
        setrlimit(Resource::As, l).context("limiting address space")?;
    }
    Ok(())
}

/// A tokio runtime for the commands that serve or talk to stores.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    eprintln!("fnvm serve: shutting down");
}

fn serve_config(
    data_dir: PathBuf,
    database_url: Option<String>,
) -> fnvm_control::serve::ServeConfig {
    let toolchains_dir = data_dir.join("toolchains");
    fnvm_control::serve::ServeConfig {
        data_dir,
        database_url,
        artifact_store: None,
        api_listen: ([127, 0, 0, 1], 8080).into(),
        http_listen: ([127, 0, 0, 1], 8081).into(),
        router_listen: ([127, 0, 0, 1], 8082).into(),
        public_api_url: None,
        public_url: None,
        roles: fnvm_control::serve::Roles {
            api: true,
            worker: true,
            router: false,
        },
        max_upload_bytes: 64 << 20,
        compiler: PathBuf::from("fnvm"),
        packager_concurrency: 1,
        gc_interval: std::time::Duration::from_secs(60),
        gc_grace: fnvm_control::packager::BLOB_GRACE,
        toolchains_dir,
        build_limits: fnvm_builds::Limits::default(),
        egress_allow: Vec::new(),
        egress_deny: Vec::new(),
        egress_ca_pem: Vec::new(),
        egress_limits: fnvm_hostcalls::NetLimits::default(),
        invoker_threads: 4,
        background_reset: false,
        worker_lease: fnvm_control::worker::membership::DEFAULT_LEASE,
        scale: fnvm_control::scheduler::autoscale::ScaleConfig::default(),
        seccomp: true,
        http: fnvm_control::worker::http::HttpConfig::default(),
        queue: fnvm_control::delivery::queue::QueueConfig::default(),
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    // Structured logs on stderr; RUST_LOG or FNVM_LOG chooses what (default: info).
    let filter = std::env::var("FNVM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let roles = if args.role.is_empty() {
        fnvm_control::serve::Roles {
            api: true,
            worker: true,
            router: false,
        }
    } else {
        fnvm_control::serve::Roles {
            api: args.role.contains(&Role::Api),
            worker: args.role.contains(&Role::Worker),
            router: args.role.contains(&Role::Router),
        }
    };
    let config = fnvm_control::serve::ServeConfig {
        artifact_store: args.artifact_store,
        api_listen: args.api_listen,
        http_listen: args.http_listen,
        router_listen: args.router_listen,
        public_api_url: args.public_api_url,
        public_url: args.public_url,
        roles,
        max_upload_bytes: args.max_upload_bytes,
        compiler: std::env::current_exe().context("finding the fnvm binary")?,
        packager_concurrency: args
            .packager_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        gc_interval: std::time::Duration::from_secs(args.gc_interval_secs.max(1)),
        gc_grace: std::time::Duration::from_secs(args.gc_grace_secs),
        egress_allow: args.egress_allow,
        egress_deny: args.egress_deny,
        egress_ca_pem: {
            let mut pem = Vec::new();
            for f in &args.egress_ca_files {
                pem.extend(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?);
                pem.push(b'\n');
            }
            pem
        },
        egress_limits: fnvm_hostcalls::NetLimits {
            max_connections: args.egress_max_connections,
            max_bytes: args.egress_max_bytes,
            connect_timeout: std::time::Duration::from_millis(args.egress_connect_timeout_ms),
        },
        toolchains_dir: args
            .toolchains_dir
            .unwrap_or_else(|| args.data_dir.join("toolchains")),
        build_limits: fnvm_builds::Limits {
            cpu_seconds: args.build_cpu_secs,
            wall: std::time::Duration::from_secs(args.build_wall_secs),
            memory_bytes: args.build_memory_bytes,
            ..fnvm_builds::Limits::default()
        },
        background_reset: args.slot_reset == SlotReset::Background,
        worker_lease: std::time::Duration::from_millis(args.worker_lease_ms.max(300)),
        seccomp: args.seccomp,
        scale: fnvm_control::scheduler::autoscale::ScaleConfig {
            target_per_core: if args.scale_target_per_core.is_finite()
                && args.scale_target_per_core > 0.0
            {
                args.scale_target_per_core
            } else {
                anyhow::bail!("--scale-target-per-core must be a positive number")
            },
            scale_in_after: std::time::Duration::from_millis(args.scale_in_after_ms),
            idle_to_zero: (args.idle_to_zero_ms > 0)
                .then(|| std::time::Duration::from_millis(args.idle_to_zero_ms)),
        },
        invoker_threads: args.invoker_threads.unwrap_or_else(|| {
            (2 * std::thread::available_parallelism().map_or(1, |n| n.get())).max(4)
        }),
        http: fnvm_control::worker::http::HttpConfig {
            max_body_bytes: args.max_request_bytes,
            max_response_bytes: args.max_response_bytes,
            instance_wait: std::time::Duration::from_millis(args.instance_wait_ms),
            header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
            body_idle_timeout: std::time::Duration::from_millis(args.body_idle_timeout_ms),
            body_timeout: std::time::Duration::from_millis(args.body_timeout_ms),
            inline_short_jobs: args.inline_short_jobs,
            reactor_threads: args
                .http_threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            ..fnvm_control::worker::http::HttpConfig::default()
        },
        queue: fnvm_control::delivery::queue::QueueConfig {
            max_request_bytes: args.max_async_request_bytes,
            max_unfinished: args.max_queued_invocations,
            retention: std::time::Duration::from_secs(args.invocation_retention_secs),
            ..fnvm_control::delivery::queue::QueueConfig::default()
        },
        ..serve_config(args.data_dir, args.database_url)
    };
    runtime()?.block_on(fnvm_control::serve::serve(config, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// `fnvm toolchains check`: one line per toolchain.
fn toolchains_check(dir: PathBuf) -> Result<ExitCode> {
    let toolchains = fnvm_builds::Toolchains::new(&dir);
    let mut missing = 0;
    println!("toolchains in {}", dir.display());
    for t in toolchains.check() {
        if t.present {
            println!(
                "  {:<16} ok       {} {}",
                t.name,
                t.version.as_deref().unwrap_or(""),
                t.detail
            );
        } else {
            missing += 1;
            println!("  {:<16} MISSING  {}", t.name, t.detail);
        }
    }
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn admin(command: AdminCommand) -> Result<ExitCode> {
    let AdminCommand::Token {
        command:
            TokenCommand::Create {
                org,
                operator,
                label,
                data_dir,
                database_url,
            },
    } = command;
    let scope = if operator {
        fnvm_control::auth::OPERATOR_SCOPE.to_string()
    } else {
        let org = org.ok_or_else(|| anyhow::anyhow!("--org or --operator is required"))?;
        if org.is_empty() || org == fnvm_control::auth::OPERATOR_SCOPE || org.contains('/') {
            anyhow::bail!("invalid organisation {org:?}");
        }
        org
    };
    let config = serve_config(data_dir, database_url);
    let token = fnvm_control::auth::new_token();
    runtime()?.block_on(async {
        let store = fnvm_control::serve::open_store(&config).await?;
        store
            .add_token(
                &scope,
                &fnvm_control::auth::hash_token(&token),
                label.as_deref(),
            )
            .await?;
        anyhow::Ok(())
    })?;
    if operator {
        println!("operator token: {token}");
    } else {
        println!("token for organisation {scope}: {token}");
    }
    Ok(ExitCode::SUCCESS)
}

fn compile(input: &Path, output: &Path, emit_clif: bool) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let wasm = to_wasm(input, &bytes)?;
    let options = fnvm_compiler::CompileOptions::default();
    let artifact = if emit_clif {
        fnvm_compiler::translate_to_clif(&wasm, &options).map(String::into_bytes)
    } else {
        fnvm_compiler::compile(&wasm, &options)
    }
    .with_context(|| format!("compiling {}", input.display()))?;
    std::fs::write(output, artifact).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// The module's binary form: binaries as they are, text (`.wat`) converted. Bytes that are
/// neither go to the compiler, which says at which offset they stop being WebAssembly.
fn to_wasm(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.starts_with(WASM_MAGIC) {
        return Ok(bytes.to_vec());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => wat::parse_str(text).map_err(|mut e| {
            e.set_path(path);
            anyhow::Error::new(e).context(format!(
                "{} is neither a WebAssembly binary nor valid text format",
                path.display()
            ))
        }),
        Err(_) => Ok(bytes.to_vec()),
    }
}

fn wast(
    files: &[PathBuf],
    exclude: &[String],
    jobs: usize,
    isolation: IsolationArg,
) -> Result<ExitCode> {
    let isolation = match isolation {
        IsolationArg::Process => fnvm::wast::Isolation::Process,
        IsolationArg::Vm => {
            fnvm_runtime::kvm::Kvm::open().context("isolation vm needs /dev/kvm")?;
            fnvm::wast::Isolation::Vm
        }
    };
    let file_name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    };
    let (excluded, scripts): (Vec<&PathBuf>, Vec<&PathBuf>) = files.iter().partition(|path| {
        let name = file_name(path);
        exclude
            .iter()
            .any(|pattern| name.contains(pattern.as_str()))
    });
    let results = run_scripts(&scripts, jobs, isolation);

    let mut total = fnvm::wast::Counts::default();
    for (path, result) in scripts.iter().zip(results) {
        let name = file_name(path);
        match result {
            Ok(counts) => {
                for failure in &counts.failures {
                    eprintln!("{failure}");
                }
                println!("{name}: {counts}");
                total.add(counts);
            }
            Err(e) => {
                // A script that cannot run at all counts as one failure.
                eprintln!("{}: error: {e:#}", path.display());
                println!("{name}: error");
                total.failures.push(fnvm::wast::Failure {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    directive: "script",
                    reason: format!("{e:#}"),
                });
            }
        }
    }
    if !excluded.is_empty() {
        println!("skipped {} excluded scripts", excluded.len());
    }
    println!("{total}");
    Ok(if total.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `scripts` on up to `jobs` threads; the results are in the order of `scripts`.
fn run_scripts(
    scripts: &[&PathBuf],
    jobs: usize,
    isolation: fnvm::wast::Isolation,
) -> Vec<Result<fnvm::wast::Counts>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<fnvm::wast::Counts>>>> =
        scripts.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(scripts.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = scripts.get(i) else {
                    break;
                };
                let result = fnvm::wast::run_file_isolated(path, isolation);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(anyhow::anyhow!("the script was not run")))
        })
        .collect()
}
