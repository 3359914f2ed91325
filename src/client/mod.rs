//! `fnvm functions ...`: the command-line client of the API. It speaks HTTP to `fnvm serve`
//! (`--api`, `$FNVM_API`) with an organisation's token (`--token`, `$FNVM_TOKEN`), and prints
//! human tables, or JSON with `--json` for scripts. `deploy` creates a deployment, uploads the
//! file to its signed URL, triggers it and follows its status until `READY` (printing the URL)
//! or `ERROR` (printing the reason, and exiting non-zero).

mod fleet;
mod invocations;
mod triggers;

pub use fleet::{run as run_fleet, FleetArgs};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use fnvm_control::model::{
    Deployment, DeploymentStatus, Function, FunctionSpec, LogEntry, Platform, Release,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the API is and who is asking: options of every client command.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API's base URL.
    #[arg(
        long,
        global = true,
        env = "FNVM_API",
        default_value = "http://127.0.0.1:8080"
    )]
    api: String,
    /// The API token: an organisation's (`fnvm admin token create` makes one), or an
    /// operator's.
    #[arg(long, global = true, env = "FNVM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Options every `functions` command takes.
#[derive(Debug, Args)]
pub struct FunctionsArgs {
    /// The organisation.
    #[arg(long, global = true, env = "FNVM_ORG")]
    org: Option<String>,
    #[command(flatten)]
    conn: ApiArgs,
    #[command(subcommand)]
    command: FunctionsCommand,
}

#[derive(Debug, Subcommand)]
enum FunctionsCommand {
    /// Create a Function; prints it as JSON.
    Create {
        /// Name.
        #[arg(long)]
        name: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Tag.
        #[arg(long)]
        tag: Option<String>,
        /// Linear memory cap of an invocation, in bytes.
        #[arg(long)]
        max_memory: Option<u64>,
        /// Instances at once.
        #[arg(long)]
        max_instances: Option<u32>,
        /// Invocation timeout in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Where invocations may open connections: a `host:port` pattern or a CIDR
        /// (repeatable; none: anywhere the platform's policy allows).
        #[arg(long = "egress-allow", value_name = "RULE")]
        egress_allow: Vec<String>,
        /// Deliveries of an event (an asynchronous invocation, a Pulsar message) before it is
        /// dead-lettered.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Milliseconds before an event's first retry (doubling after each).
        #[arg(long)]
        retry_backoff_ms: Option<u64>,
        /// Where invocations run: `process` (default) or `vm` (a KVM micro-VM; the workers
        /// need /dev/kvm).
        #[arg(long, value_parser = parse_isolation)]
        isolation: Option<fnvm_control::model::Isolation>,
    },
    /// List the organisation's Functions.
    List,
    /// Show a Function.
    Get {
        /// The Function.
        function: String,
    },
    /// Replace a Function's environment: `FOO=BAR,HELLO=WORLD` (empty: none).
    SetEnv {
        /// The variables.
        vars: String,
        /// The Function.
        function: String,
    },
    /// Deploy code: `deploy FILE [PLATFORM] FUNCTION`; or `deploy --release RELEASE FUNCTION` to
    /// deploy an earlier release again; `deploy list FUNCTION`; `deploy delete FUNCTION
    /// DEPLOYMENT`; `deploy logs FUNCTION DEPLOYMENT` (a server-side build's log).
    #[command(args_conflicts_with_subcommands = true)]
    Deploy(DeployArgs),
    /// Delete a Function and its deployments.
    Delete {
        /// The Function.
        function: String,
    },
    /// List a Function's releases.
    Releases {
        /// The Function.
        function: String,
    },
    /// Follow asynchronous invocations (`POST /{functionId}?async`): `invocations list
    /// FUNCTION [--status dead]`, `invocations get FUNCTION ID`, `invocations retry FUNCTION ID`.
    #[command(subcommand)]
    Invocations(invocations::InvocationsCommand),
    /// A Function's event triggers: `trigger pulsar set FUNCTION --url URL --topic TOPIC
    /// [--regex] [--token-file FILE] [--structured] [--dead-letter-topic TOPIC]`, `trigger
    /// pulsar get FUNCTION`, `trigger pulsar delete FUNCTION`.
    #[command(subcommand)]
    Trigger(triggers::TriggerCommand),
    /// Show what the Function's invocations wrote to stderr (its latest entries).
    Logs {
        /// The Function.
        function: String,
        /// Keep showing new entries as they come.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Args)]
struct DeployArgs {
    #[command(subcommand)]
    command: Option<DeployCommand>,
    /// Deploy this release again (no upload).
    #[arg(long)]
    release: Option<String>,
    /// Stop following the deployment after this many seconds.
    #[arg(long, default_value_t = 300)]
    wait_secs: u64,
    /// FILE [PLATFORM] FUNCTION (PLATFORM: wasm, rust, go/tinygo, assemblyscript/asc,
    /// js/javascript; default from FILE's extension), or FUNCTION with --release.
    #[arg(num_args = 1..=3)]
    operands: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// List a Function's deployments.
    List {
        /// The Function.
        function: String,
    },
    /// Delete a deployment.
    Delete {
        /// The Function.
        function: String,
        /// The deployment.
        deployment: String,
    },
    /// Show the whole log of a deployment's server-side build.
    Logs {
        /// The Function.
        function: String,
        /// The deployment.
        deployment: String,
    },
}

/// An API error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    field: Option<String>,
}

struct Client {
    agent: ureq::Agent,
    api: String,
    token: String,
    org: String,
}

impl Client {
    /// A client of the API at `api`, each request bounded by `timeout`.
    fn new(api: &str, token: String, org: String, timeout: Duration) -> Client {
        Client {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into(),
            api: api.to_string(),
            token,
            org,
        }
    }

    fn base(&self) -> String {
        format!(
            "{}/v4/functions/organisations/{}/functions",
            self.api.trim_end_matches('/'),
            self.org
        )
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>> {
        let auth = format!("Bearer {}", self.token);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(url).header("Authorization", &auth).call(),
            ("DELETE", _) => self.agent.delete(url).header("Authorization", &auth).call(),
            ("POST", Some(b)) => self
                .agent
                .post(url)
                .header("Authorization", &auth)
                .send_json(b),
            ("POST", None) => self
                .agent
                .post(url)
                .header("Authorization", &auth)
                .send_empty(),
            ("PUT", Some(b)) => self
                .agent
                .put(url)
                .header("Authorization", &auth)
                .send_json(b),
            _ => bail!("unsupported request {method}"),
        }
        .with_context(|| format!("{method} {url}"))?;
        decode(resp, method, url)
    }
}

/// The body of a successful response (None for 204), or the API's error as an error.
fn decode<T: DeserializeOwned>(
    mut resp: ureq::http::Response<ureq::Body>,
    method: &str,
    url: &str,
) -> Result<Option<T>> {
    let status = resp.status();
    if status == 204 {
        return Ok(None);
    }
    let text = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer to {method} {url}"))?;
    if !status.is_success() {
        let msg = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(ErrorBody {
                error,
                field: Some(f),
            }) => format!("{error} (field {f})"),
            Ok(ErrorBody { error, .. }) => error,
            Err(_) => text.trim().to_string(),
        };
        bail!(
            "{} {}: {msg}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("decoding the answer to {method} {url}"))
}

fn some<T>(v: Option<T>) -> Result<T> {
    v.ok_or_else(|| anyhow!("the API answered with no content"))
}

/// Runs a `functions` command; returns the process's exit status.
pub fn run(args: FunctionsArgs) -> Result<std::process::ExitCode> {
    let org = args
        .org
        .clone()
        .ok_or_else(|| anyhow!("no organisation: pass --org or set FNVM_ORG"))?;
    let token = args.conn.token.clone().ok_or_else(|| {
        anyhow!("no token: pass --token or set FNVM_TOKEN (fnvm admin token create makes one)")
    })?;
    let c = Client::new(&args.conn.api, token, org, Duration::from_secs(600));
    let json = args.conn.json;
    match args.command {
        FunctionsCommand::Create {
            name,
            description,
            tag,
            max_memory,
            max_instances,
            timeout_ms,
            egress_allow,
            max_attempts,
            retry_backoff_ms,
            isolation,
        } => {
            let d = FunctionSpec::default();
            let spec = FunctionSpec {
                name,
                description,
                tag,
                environment: BTreeMap::new(),
                max_memory: max_memory.unwrap_or(d.max_memory),
                max_instances: max_instances.unwrap_or(d.max_instances),
                timeout_ms: timeout_ms.unwrap_or(d.timeout_ms),
                egress_allow,
                max_attempts: max_attempts.unwrap_or(d.max_attempts),
                retry_backoff_ms: retry_backoff_ms.unwrap_or(d.retry_backoff_ms),
                isolation: isolation.unwrap_or(d.isolation),
            };
            let f: Function =
                some(c.send("POST", &c.base(), Some(&serde_json::to_value(&spec)?))?)?;
            // As the product description shows it: the Function as JSON.
            println!("{}", serde_json::to_string_pretty(&f)?);
        }
        FunctionsCommand::List => {
            let fs: Vec<Function> = some(c.send("GET", &c.base(), None)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&fs)?);
            } else {
                table(
                    &[
                        "ID",
                        "NAME",
                        "MAX MEMORY",
                        "MAX INSTANCES",
                        "TIMEOUT MS",
                        "UPDATED",
                    ],
                    fs.iter()
                        .map(|f| {
                            vec![
                                f.id.clone(),
                                f.name.clone().unwrap_or_default(),
                                f.max_memory.to_string(),
                                f.max_instances.to_string(),
                                f.timeout_ms.to_string(),
                                f.updated_at.to_rfc3339(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        FunctionsCommand::Get { function } => {
            let f: Function = some(c.send("GET", &format!("{}/{function}", c.base()), None)?)?;
            print_function(&f, json)?;
            if !json {
                let url = format!("{}/{function}/replicas", c.base());
                let replicas: Vec<fnvm_control::model::Replica> = some(c.send("GET", &url, None)?)?;
                let shares: Vec<String> = replicas
                    .iter()
                    .map(|r| format!("{} instances, {}", r.max_instances, r.state))
                    .collect();
                println!(
                    "{:<14} {} ({})",
                    "replicas",
                    replicas.len(),
                    shares.join("; ")
                );
            }
        }
        FunctionsCommand::SetEnv { vars, function } => {
            let url = format!("{}/{function}", c.base());
            let f: Function = some(c.send("GET", &url, None)?)?;
            let spec = FunctionSpec {
                name: f.name,
                description: f.description,
                tag: f.tag,
                environment: parse_env(&vars)?,
                max_memory: f.max_memory,
                max_instances: f.max_instances,
                timeout_ms: f.timeout_ms,
                egress_allow: f.egress_allow,
                max_attempts: f.max_attempts,
                retry_backoff_ms: f.retry_backoff_ms,
                isolation: f.isolation,
            };
            let f: Function = some(c.send("PUT", &url, Some(&serde_json::to_value(&spec)?))?)?;
            print_function(&f, json)?;
        }
        FunctionsCommand::Deploy(d) => return deploy(&c, d, json),
        FunctionsCommand::Delete { function } => {
            c.send::<serde_json::Value>("DELETE", &format!("{}/{function}", c.base()), None)?;
            if !json {
                println!("deleted {function}");
            }
        }
        FunctionsCommand::Releases { function } => {
            let rs: Vec<Release> =
                some(c.send("GET", &format!("{}/{function}/releases", c.base()), None)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rs)?);
            } else {
                table(
                    &["ID", "PLATFORM", "SIZE", "SHA256", "CREATED"],
                    rs.iter()
                        .map(|r| {
                            vec![
                                r.id.clone(),
                                r.platform.to_string(),
                                r.size.to_string(),
                                r.sha256.clone(),
                                r.created_at.to_rfc3339(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        FunctionsCommand::Invocations(command) => invocations::run(&c, command, json)?,
        FunctionsCommand::Trigger(command) => triggers::run(&c, command, json)?,
        FunctionsCommand::Logs { function, follow } => {
            let mut after: Option<String> = None;
            loop {
                let mut url = format!("{}/{function}/logs?limit=1000", c.base());
                if let Some(a) = &after {
                    url.push_str("&after=");
                    url.push_str(a);
                }
                let entries: Vec<LogEntry> = some(c.send("GET", &url, None)?)?;
                for e in &entries {
                    if json {
                        println!("{}", serde_json::to_string(e)?);
                    } else {
                        let text = e.text.trim_end_matches('\n');
                        println!("{} {} {}", e.at.to_rfc3339(), e.invocation_id, text);
                    }
                }
                let _ = std::io::stdout().flush();
                if let Some(last) = entries.last() {
                    after = Some(last.cursor.clone());
                }
                if !follow {
                    break;
                }
                if entries.is_empty() {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `FOO=BAR,HELLO=WORLD` as a map (an empty string: no variables).
fn parse_env(vars: &str) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for pair in vars.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("{pair:?} is not NAME=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

fn print_function(f: &Function, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(f)?);
        return Ok(());
    }
    let env: Vec<String> = f
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let rows = [
        ("id", f.id.clone()),
        ("owner", f.owner_id.clone()),
        ("name", f.name.clone().unwrap_or_default()),
        ("description", f.description.clone().unwrap_or_default()),
        ("tag", f.tag.clone().unwrap_or_default()),
        ("environment", env.join(",")),
        ("max memory", f.max_memory.to_string()),
        ("max instances", f.max_instances.to_string()),
        ("timeout ms", f.timeout_ms.to_string()),
        ("egress allow", f.egress_allow.join(",")),
        ("max attempts", f.max_attempts.to_string()),
        ("retry backoff", format!("{} ms", f.retry_backoff_ms)),
        ("isolation", f.isolation.to_string()),
        ("created", f.created_at.to_rfc3339()),
        ("updated", f.updated_at.to_rfc3339()),
    ];
    for (k, v) in rows {
        println!("{k:<14} {v}");
    }
    Ok(())
}

/// Prints rows under a header, columns padded.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn print_deployments(ds: &[Deployment], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(ds)?);
        return Ok(());
    }
    table(
        &[
            "ID",
            "STATUS",
            "PLATFORM",
            "RELEASE",
            "URL / ERROR",
            "CREATED",
        ],
        ds.iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.status.to_string(),
                    d.platform.to_string(),
                    d.release_id.clone().unwrap_or_default(),
                    d.url
                        .clone()
                        .or_else(|| d.error_reason.clone())
                        .unwrap_or_default(),
                    d.created_at.to_rfc3339(),
                ]
            })
            .collect(),
    );
    Ok(())
}

/// A created deployment with its upload URL.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(flatten)]
    deployment: Deployment,
    upload_url: Option<String>,
}

fn deploy(c: &Client, args: DeployArgs, json: bool) -> Result<std::process::ExitCode> {
    match args.command {
        Some(DeployCommand::List { function }) => {
            let ds: Vec<Deployment> =
                some(c.send("GET", &format!("{}/{function}/deployments", c.base()), None)?)?;
            print_deployments(&ds, json)?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Some(DeployCommand::Delete {
            function,
            deployment,
        }) => {
            c.send::<serde_json::Value>(
                "DELETE",
                &format!("{}/{function}/deployments/{deployment}", c.base()),
                None,
            )?;
            if !json {
                println!("deleted {deployment}");
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Some(DeployCommand::Logs {
            function,
            deployment,
        }) => {
            let log: serde_json::Value = some(c.send(
                "GET",
                &format!("{}/{function}/deployments/{deployment}/logs", c.base()),
                None,
            )?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                match log.get("log").and_then(|l| l.as_str()) {
                    Some(text) => print!("{text}"),
                    None => eprintln!(
                        "no build log: nothing was built for {deployment} (a WebAssembly upload, \
                         or a build not started yet)"
                    ),
                }
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        None => {}
    }
    let created: Created = if let Some(release) = &args.release {
        let [function] = args.operands.as_slice() else {
            bail!("usage: fnvm functions deploy --release RELEASE FUNCTION");
        };
        some(c.send(
            "POST",
            &format!("{}/{function}/deployments", c.base()),
            Some(&serde_json::json!({ "releaseId": release })),
        )?)?
    } else {
        let (file, platform, function) = match args.operands.as_slice() {
            [file, function] => {
                let p = Platform::from_file_name(file).ok_or_else(|| {
                    anyhow!("cannot tell the platform of {file}: give it (wasm, rust, go, assemblyscript, js)")
                })?;
                (file, p, function)
            }
            [file, platform, function] => {
                let p = Platform::from_code(platform)
                    .ok_or_else(|| anyhow!("unknown platform {platform:?} (wasm, rust, go/tinygo, assemblyscript/asc, js/javascript)"))?;
                (file, p, function)
            }
            _ => bail!("usage: fnvm functions deploy FILE [PLATFORM] FUNCTION"),
        };
        let bytes =
            std::fs::read(PathBuf::from(file)).with_context(|| format!("reading {file}"))?;
        let created: Created = some(c.send(
            "POST",
            &format!("{}/{function}/deployments", c.base()),
            Some(&serde_json::json!({ "platform": platform })),
        )?)?;
        let url = created
            .upload_url
            .clone()
            .ok_or_else(|| anyhow!("the API gave no upload URL"))?;
        // The signed URL needs no token, as with the real platform's clients.
        let resp = c
            .agent
            .put(&url)
            .header("Content-Type", "application/wasm")
            .send(&bytes[..])
            .context("uploading")?;
        decode::<serde_json::Value>(resp, "PUT", "the upload URL")?;
        let d = &created.deployment;
        some(c.send::<Deployment>(
            "POST",
            &format!(
                "{}/{}/deployments/{}/trigger",
                c.base(),
                d.function_id,
                d.id
            ),
            None,
        )?)?;
        created
    };
    follow(
        c,
        &created.deployment,
        Duration::from_secs(args.wait_secs),
        json,
    )
}

/// Polls a deployment until it is `READY` or `ERROR`, showing its status as it moves.
fn follow(
    c: &Client,
    d: &Deployment,
    limit: Duration,
    json: bool,
) -> Result<std::process::ExitCode> {
    let url = format!("{}/{}/deployments/{}", c.base(), d.function_id, d.id);
    let tty = std::io::stderr().is_terminal() && !json;
    let start = Instant::now();
    let mut last = None;
    loop {
        let now: Deployment = some(c.send("GET", &url, None)?)?;
        if last != Some(now.status) && !json {
            if tty {
                eprint!(
                    "\r\x1b[K{} {} ({:.1} s)",
                    now.id,
                    now.status,
                    start.elapsed().as_secs_f64()
                );
            } else {
                eprintln!("{} {}", now.id, now.status);
            }
            let _ = std::io::stderr().flush();
            last = Some(now.status);
        }
        match now.status {
            DeploymentStatus::Ready => {
                if tty {
                    eprintln!();
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&now)?);
                } else {
                    println!("{}", now.url.unwrap_or_default());
                }
                return Ok(std::process::ExitCode::SUCCESS);
            }
            DeploymentStatus::Error => {
                if tty {
                    eprintln!();
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&now)?);
                } else {
                    eprintln!(
                        "deployment failed: {}",
                        now.error_reason.unwrap_or_else(|| "no reason given".into())
                    );
                    if now.platform != Platform::Wasm {
                        eprintln!(
                            "the whole build log: fnvm functions deploy logs {} {}",
                            now.function_id, now.id
                        );
                    }
                }
                return Ok(std::process::ExitCode::FAILURE);
            }
            _ => {}
        }
        if start.elapsed() > limit {
            bail!("the deployment is still {} after {limit:?}", now.status);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `--isolation`: `process` or `vm`.
fn parse_isolation(s: &str) -> Result<fnvm_control::model::Isolation, String> {
    s.parse()
        .map_err(|_| format!("{s:?}: expected \"process\" or \"vm\""))
}
