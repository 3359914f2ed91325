//! The control plane's resources as the API shows them: Functions, Deployments and Releases,
//! their statuses and platforms, and the validation of what clients send (asynchronous
//! invocations in `invocation`, Pulsar triggers in `trigger`). Field names and values follow
//! what the real platform's clients send (`../shared/spec/clever-functions-api.md`): camelCase
//! fields (snake_case for the Pulsar trigger, as the clients send it), SCREAMING_SNAKE_CASE
//! enums, RFC 3339 times.

mod fleet;
mod invocation;
mod trigger;

pub use fleet::{
    FleetScheduler, FleetWorker, FunctionLoad, Placement, PlacementReason, PlacementTarget,
    Replica, WorkerReport,
};
pub use invocation::{
    Accepted, BodyEncoding, Invocation, InvocationRequest, InvocationResult, InvocationStatus,
    RequestSummary,
};
pub use trigger::{pulsar_subscription, topic_parts, PulsarTrigger, PulsarTriggerSpec};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Default `maxMemory`: 64 MiB, as the product's documentation says.
pub const DEFAULT_MAX_MEMORY: u64 = 64 << 20;
/// Default `maxInstances`.
pub const DEFAULT_MAX_INSTANCES: u32 = 1;
/// Default `timeoutMs`: 30 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default `maxAttempts` of an event (an asynchronous invocation, a Pulsar message): the first
/// delivery and two retries, as most FaaS platforms do.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default `retryBackoffMs`: the wait before the first retry (doubling after each).
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1000;

/// Bounds on what a Function may ask for.
pub mod limits {
    /// Smallest `maxMemory`: one wasm page.
    pub const MIN_MEMORY: u64 = 64 << 10;
    /// Largest `maxMemory`: a 32-bit memory's whole 4 GiB.
    pub const MAX_MEMORY: u64 = 4 << 30;
    /// Largest `maxMemory` with `isolation: vm`: what a worker's VMs reserve for a linear
    /// memory (KVM's per-VM bookkeeping grows with it).
    pub const MAX_VM_MEMORY: u64 = 1 << 30;
    /// Largest `maxInstances`.
    pub const MAX_INSTANCES: u32 = 1024;
    /// Largest `timeoutMs`: 15 minutes.
    pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
    /// Longest name or tag, in bytes.
    pub const MAX_NAME: usize = 256;
    /// Longest description, in bytes.
    pub const MAX_DESCRIPTION: usize = 4096;
    /// Most environment variables.
    pub const MAX_ENV_VARS: usize = 256;
    /// Longest environment variable name, in bytes.
    pub const MAX_ENV_NAME: usize = 256;
    /// Most bytes of all environment names and values together.
    pub const MAX_ENV_BYTES: usize = 128 << 10;
    /// Most entries of a Function's egress allowlist.
    pub const MAX_EGRESS_RULES: usize = 64;
    /// Most deliveries of one event.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// Shortest and longest first retry delay, in milliseconds.
    pub const MIN_RETRY_BACKOFF_MS: u64 = 10;
    pub const MAX_RETRY_BACKOFF_MS: u64 = 3_600_000;
    /// Longest egress rule, in bytes.
    pub const MAX_EGRESS_RULE: usize = 300;
}

/// A point in time, in milliseconds since the Unix epoch; RFC 3339 in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// `2026-12-01T12:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// Parses what [`Timestamp::to_rfc3339`] writes (any RFC 3339 time in UTC).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let t = humantime::parse_rfc3339_weak(s).ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(Timestamp(i64::try_from(d.as_millis()).ok()?))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

/// A generated identifier: a random UUID (version 4) in its usual text form.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    // Without an entropy source the server cannot hand out unguessable ids (upload URLs, tokens
    // are derived the same way); there is nothing sensible to fall back to.
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Where a Function's invocations run: `process` (the default: a pooled instance in the
/// worker's process, isolated by guard pages) or `vm` (a KVM micro-VM per instance, with no
/// guest OS: the same artifact and hostcalls; the worker needs `/dev/kvm`). An fnvm extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In the worker's process.
    #[default]
    Process,
    /// In a KVM micro-VM.
    Vm,
}

impl Isolation {
    /// The API's (and the database's) name: `process` or `vm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Vm => "vm",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Isolation {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Isolation, UnknownValue> {
        [Isolation::Process, Isolation::Vm]
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_string()))
    }
}

/// What a deployment's upload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Platform {
    /// A compiled WebAssembly module.
    Wasm,
    /// Rust source.
    Rust,
    /// Go source (TinyGo in the product description).
    TinyGo,
    /// AssemblyScript source.
    AssemblyScript,
    /// JavaScript source.
    JavaScript,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 5] = [
        Platform::Wasm,
        Platform::Rust,
        Platform::TinyGo,
        Platform::AssemblyScript,
        Platform::JavaScript,
    ];

    /// The API's (and the database's) name: `WASM`, `TINY_GO`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Wasm => "WASM",
            Platform::Rust => "RUST",
            Platform::TinyGo => "TINY_GO",
            Platform::AssemblyScript => "ASSEMBLY_SCRIPT",
            Platform::JavaScript => "JAVA_SCRIPT",
        }
    }

    /// The platform of a CLI code as the product description gives them (`rust`, `go`,
    /// `tinygo`, `assemblyscript`, `asc`, `js`, `javascript`, `wasm`), or of an API name.
    pub fn from_code(code: &str) -> Option<Platform> {
        Some(match code.to_ascii_lowercase().as_str() {
            "wasm" => Platform::Wasm,
            "rust" => Platform::Rust,
            "go" | "tinygo" | "tiny_go" => Platform::TinyGo,
            "assemblyscript" | "asc" | "assembly_script" => Platform::AssemblyScript,
            "js" | "javascript" | "java_script" => Platform::JavaScript,
            _ => return None,
        })
    }

    /// The platform a file name's extension suggests (`.wasm`, `.rs`, `.go`, `.ts`, `.js`).
    pub fn from_file_name(name: &str) -> Option<Platform> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "wasm" => Platform::Wasm,
            "rs" => Platform::Rust,
            "go" => Platform::TinyGo,
            "ts" => Platform::AssemblyScript,
            "js" | "mjs" => Platform::JavaScript,
            _ => return None,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Platform, UnknownValue> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_string()))
    }
}

/// A stored value that names no known status or platform.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

/// Where a deployment is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// Created; the code is to be uploaded to its `uploadUrl`, then `/trigger`ed.
    WaitingForUpload,
    /// The packager is checking and compiling the upload.
    Packaging,
    /// Compiled; workers are loading it.
    Deploying,
    /// Served at its `url`.
    Ready,
    /// Failed; `errorReason` says why.
    Error,
}

impl DeploymentStatus {
    /// Every status.
    pub const ALL: [DeploymentStatus; 5] = [
        DeploymentStatus::WaitingForUpload,
        DeploymentStatus::Packaging,
        DeploymentStatus::Deploying,
        DeploymentStatus::Ready,
        DeploymentStatus::Error,
    ];

    /// The API's (and the database's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::WaitingForUpload => "WAITING_FOR_UPLOAD",
            DeploymentStatus::Packaging => "PACKAGING",
            DeploymentStatus::Deploying => "DEPLOYING",
            DeploymentStatus::Ready => "READY",
            DeploymentStatus::Error => "ERROR",
        }
    }

    /// Whether the deployment can still change status on its own (packaging or deploying).
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Packaging | DeploymentStatus::Deploying
        )
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<DeploymentStatus, UnknownValue> {
        DeploymentStatus::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_string()))
    }
}

/// A Function: the unit users deploy and call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// Identifier.
    pub id: String,
    /// The organisation that owns it.
    pub owner_id: String,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Free-form tag.
    pub tag: Option<String>,
    /// Environment variables every invocation gets.
    pub environment: BTreeMap<String, String>,
    /// Linear memory cap of an invocation, in bytes.
    pub max_memory: u64,
    /// Instances that may run at once.
    pub max_instances: u32,
    /// How long one invocation may run, in milliseconds.
    pub timeout_ms: u64,
    /// Where its invocations may open connections (`host:port` patterns and CIDRs); empty:
    /// anywhere the platform's policy allows. An fnvm extension.
    #[serde(default)]
    pub egress_allow: Vec<String>,
    /// How many times an event (an asynchronous invocation, a Pulsar message) is delivered
    /// before it is dead-lettered. An fnvm extension.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait before an event's first retry, in milliseconds (doubling after each). An fnvm
    /// extension.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Where its invocations run: `process` or `vm`. An fnvm extension.
    #[serde(default)]
    pub isolation: Isolation,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// What a client says about a Function when creating it or replacing it (`PUT`: every field,
/// absent ones take their defaults). Unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionSpec {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Linear memory cap in bytes (default 64 MiB).
    #[serde(default = "default_max_memory")]
    pub max_memory: u64,
    /// Instances at once (default 1).
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Invocation timeout in milliseconds (default 30 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Where its invocations may open connections: `host:port` patterns (`api.example.com:443`,
    /// `*.example.com:*`) and CIDRs (`203.0.113.0/24`, with an optional `:port`); empty (the
    /// default): anywhere the platform's egress policy allows.
    #[serde(default)]
    pub egress_allow: Vec<String>,
    /// Deliveries of an event (an asynchronous invocation, a Pulsar message) before it is
    /// dead-lettered (default 3: the first and two retries; at most 100).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Milliseconds before an event's first retry, doubling after each (default 1000).
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Where its invocations run: `process` (default, in the worker's process) or `vm` (a KVM
    /// micro-VM per instance, `maxMemory` at most 1 GiB; a deployment fails on a worker
    /// without `/dev/kvm`).
    #[serde(default)]
    pub isolation: Isolation,
}

fn default_max_memory() -> u64 {
    DEFAULT_MAX_MEMORY
}
fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_retry_backoff_ms() -> u64 {
    DEFAULT_RETRY_BACKOFF_MS
}
fn default_max_instances() -> u32 {
    DEFAULT_MAX_INSTANCES
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl Default for FunctionSpec {
    fn default() -> Self {
        FunctionSpec {
            name: None,
            description: None,
            tag: None,
            environment: BTreeMap::new(),
            max_memory: DEFAULT_MAX_MEMORY,
            max_instances: DEFAULT_MAX_INSTANCES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            egress_allow: Vec::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_backoff_ms: DEFAULT_RETRY_BACKOFF_MS,
            isolation: Isolation::Process,
        }
    }
}

/// A field a client got wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The field, as the API names it (`maxMemory`, `environment.FOO`, ...).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValidationError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks an optional free-text field.
fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), ValidationError> {
    if let Some(v) = v {
        if v.len() > max {
            return Err(ValidationError::new(
                field,
                format!("longer than {max} bytes"),
            ));
        }
        if v.chars().any(|c| c.is_control()) {
            return Err(ValidationError::new(field, "contains control characters"));
        }
    }
    Ok(())
}

/// Whether `name` may be an environment variable name: a letter or `_`, then letters, digits
/// and `_` (what shells and CGI accept).
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl FunctionSpec {
    /// Checks every field against [`limits`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("name", &self.name, limits::MAX_NAME)?;
        check_text("description", &self.description, limits::MAX_DESCRIPTION)?;
        check_text("tag", &self.tag, limits::MAX_NAME)?;
        if self.environment.len() > limits::MAX_ENV_VARS {
            return Err(ValidationError::new(
                "environment",
                format!("more than {} variables", limits::MAX_ENV_VARS),
            ));
        }
        let mut total = 0usize;
        for (k, v) in &self.environment {
            if k.len() > limits::MAX_ENV_NAME || !valid_env_name(k) {
                return Err(ValidationError::new(
                    format!("environment.{k}"),
                    "names are a letter or `_` followed by letters, digits and `_`",
                ));
            }
            if v.contains('\0') {
                return Err(ValidationError::new(
                    format!("environment.{k}"),
                    "values cannot contain NUL",
                ));
            }
            total += k.len() + v.len();
        }
        if total > limits::MAX_ENV_BYTES {
            return Err(ValidationError::new(
                "environment",
                format!("more than {} bytes in all", limits::MAX_ENV_BYTES),
            ));
        }
        if self.egress_allow.len() > limits::MAX_EGRESS_RULES {
            return Err(ValidationError::new(
                "egressAllow",
                format!("more than {} rules", limits::MAX_EGRESS_RULES),
            ));
        }
        for (i, rule) in self.egress_allow.iter().enumerate() {
            if rule.is_empty()
                || rule.len() > limits::MAX_EGRESS_RULE
                || !rule.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ValidationError::new(
                    format!("egressAllow[{i}]"),
                    format!(
                        "a rule is a `host:port` pattern or a CIDR: printable ASCII without \
                         spaces, at most {} bytes",
                        limits::MAX_EGRESS_RULE
                    ),
                ));
            }
            // The worker parses them with the same parser: what passes here applies there.
            if let Err(why) = fnvm_hostcalls::net::policy::Rule::parse(rule) {
                return Err(ValidationError::new(format!("egressAllow[{i}]"), why));
            }
        }
        if !(limits::MIN_MEMORY..=limits::MAX_MEMORY).contains(&self.max_memory) {
            return Err(ValidationError::new(
                "maxMemory",
                format!(
                    "must be between {} and {} bytes",
                    limits::MIN_MEMORY,
                    limits::MAX_MEMORY
                ),
            ));
        }
        if self.isolation == Isolation::Vm && self.max_memory > limits::MAX_VM_MEMORY {
            return Err(ValidationError::new(
                "maxMemory",
                format!(
                    "must be at most {} bytes with isolation vm",
                    limits::MAX_VM_MEMORY
                ),
            ));
        }
        if !(1..=limits::MAX_INSTANCES).contains(&self.max_instances) {
            return Err(ValidationError::new(
                "maxInstances",
                format!("must be between 1 and {}", limits::MAX_INSTANCES),
            ));
        }
        if !(1..=limits::MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ValidationError::new(
                "maxAttempts",
                format!("must be between 1 and {}", limits::MAX_ATTEMPTS),
            ));
        }
        if !(limits::MIN_RETRY_BACKOFF_MS..=limits::MAX_RETRY_BACKOFF_MS)
            .contains(&self.retry_backoff_ms)
        {
            return Err(ValidationError::new(
                "retryBackoffMs",
                format!(
                    "must be between {} and {}",
                    limits::MIN_RETRY_BACKOFF_MS,
                    limits::MAX_RETRY_BACKOFF_MS
                ),
            ));
        }
        if !(1..=limits::MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(ValidationError::new(
                "timeoutMs",
                format!("must be between 1 and {}", limits::MAX_TIMEOUT_MS),
            ));
        }
        Ok(())
    }
}

/// A deployment: one upload (or release) of a Function's code on its way to being served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Identifier.
    pub id: String,
    /// The Function.
    pub function_id: String,
    /// The organisation owning the Function.
    pub owner_id: String,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Free-form tag.
    pub tag: Option<String>,
    /// What the upload is.
    pub platform: Platform,
    /// Where it is in its life.
    pub status: DeploymentStatus,
    /// Why it failed (status `ERROR`).
    pub error_reason: Option<String>,
    /// Where it is served (status `READY`).
    pub url: Option<String>,
    /// The release it deploys, once uploaded.
    pub release_id: Option<String>,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// The key of its artifact when it is not its release's (a source built on the server):
    /// internal, not part of the API.
    #[serde(skip)]
    #[schema(ignore)]
    pub artifact_key: Option<String>,
}

/// What a client sends to create a deployment: an upload to come, or an existing release to
/// deploy again (then `platform` may be omitted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDeployment {
    /// What will be uploaded.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Deploy this release again instead of uploading (a rollback).
    #[serde(default)]
    pub release_id: Option<String>,
}

/// What a client may change of a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form tag.
    #[serde(default)]
    pub tag: Option<String>,
}

impl Deployment {
    /// Whether this deployment of a function came after `other` (by creation, then id: the
    /// order in which the newest one serves).
    pub fn is_newer_than(&self, other: &Deployment) -> bool {
        (&self.created_at, &self.id) > (&other.created_at, &other.id)
    }
}

/// The newest of `deployments` for each function among them, by function id.
pub fn newest_per_function<'a>(
    deployments: impl Iterator<Item = &'a Deployment>,
) -> std::collections::HashMap<&'a str, &'a Deployment> {
    let mut newest: std::collections::HashMap<&str, &Deployment> = Default::default();
    for d in deployments {
        let newer = newest
            .get(d.function_id.as_str())
            .is_none_or(|cur| d.is_newer_than(cur));
        if newer {
            newest.insert(d.function_id.as_str(), d);
        }
    }
    newest
}

impl DeploymentSpec {
    /// Checks the free-text fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("name", &self.name, limits::MAX_NAME)?;
        check_text("description", &self.description, limits::MAX_DESCRIPTION)?;
        check_text("tag", &self.tag, limits::MAX_NAME)
    }
}

/// A release: uploaded bytes of a Function, content-addressed (the same bytes are one release).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Identifier.
    pub id: String,
    /// The Function.
    pub function_id: String,
    /// What the bytes are.
    pub platform: Platform,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was first uploaded.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What a guest wrote to stderr in one invocation, as the logs show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Where the entry stands in the Function's log: pass it as `after` to get what follows.
    pub cursor: String,
    /// When the invocation ended.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The deployment that ran.
    pub deployment_id: String,
    /// The invocation (its `Fnvm-Invocation` id).
    pub invocation_id: String,
    /// The text (lossily decoded as UTF-8, cut at the worker's limit).
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_follow_the_clients() {
        let f = Function {
            id: "f".into(),
            owner_id: "o".into(),
            name: Some("n".into()),
            description: None,
            tag: None,
            environment: BTreeMap::from([("A".into(), "1".into())]),
            max_memory: DEFAULT_MAX_MEMORY,
            max_instances: 1,
            timeout_ms: 30_000,
            egress_allow: Vec::new(),
            max_attempts: 3,
            retry_backoff_ms: 1000,
            isolation: Isolation::Vm,
            created_at: Timestamp(1_764_590_400_123),
            updated_at: Timestamp(0),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["ownerId"], "o");
        assert_eq!(v["maxMemory"], 64 << 20);
        assert_eq!(v["createdAt"], "2025-12-01T12:00:00.123Z");
        assert_eq!(v["updatedAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["isolation"], "vm");
        let back: Function = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
        assert_eq!(serde_json::to_value(Platform::TinyGo).unwrap(), "TINY_GO");
        assert_eq!(
            serde_json::to_value(DeploymentStatus::WaitingForUpload).unwrap(),
            "WAITING_FOR_UPLOAD"
        );
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn platform_codes_and_extensions() {
        assert_eq!(Platform::from_code("go"), Some(Platform::TinyGo));
        assert_eq!(Platform::from_code("asc"), Some(Platform::AssemblyScript));
        assert_eq!(Platform::from_code("JS"), Some(Platform::JavaScript));
        assert_eq!(Platform::from_code("cobol"), None);
        assert_eq!(Platform::from_file_name("a/b.rs"), Some(Platform::Rust));
        assert_eq!(Platform::from_file_name("x.wasm"), Some(Platform::Wasm));
        assert_eq!(Platform::from_file_name("x"), None);
    }

    #[test]
    fn specs_validate_with_the_field_named() {
        let ok = FunctionSpec::default();
        assert!(ok.validate().is_ok());
        let spec: FunctionSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, ok);
        assert_eq!(spec.isolation, Isolation::Process);
        let vm: FunctionSpec = serde_json::from_str(r#"{"isolation": "vm"}"#).unwrap();
        assert_eq!(vm.isolation, Isolation::Vm);
        assert!(vm.validate().is_ok());
        let big = FunctionSpec {
            max_memory: limits::MAX_VM_MEMORY + 65536,
            ..vm.clone()
        };
        assert_eq!(big.clone().validate().unwrap_err().field, "maxMemory");
        assert!(FunctionSpec {
            isolation: Isolation::Process,
            ..big
        }
        .validate()
        .is_ok());
        // Anything else is refused with the values it may take.
        let e = serde_json::from_str::<FunctionSpec>(r#"{"isolation": "container"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("process") && e.contains("vm"), "{e}");
        for i in [Isolation::Process, Isolation::Vm] {
            assert_eq!(i.as_str().parse::<Isolation>(), Ok(i));
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
        let bad = |s: FunctionSpec| s.validate().unwrap_err().field;
        assert_eq!(
            bad(FunctionSpec {
                max_memory: 1,
                ..ok.clone()
            }),
            "maxMemory"
        );
        assert_eq!(
            bad(FunctionSpec {
                max_instances: 0,
                ..ok.clone()
            }),
            "maxInstances"
        );
        assert_eq!(
            bad(FunctionSpec {
                timeout_ms: 0,
                ..ok.clone()
            }),
            "timeoutMs"
        );
        assert_eq!(
            bad(FunctionSpec {
                environment: BTreeMap::from([("1X".into(), "v".into())]),
                ..ok.clone()
            }),
            "environment.1X"
        );
        assert_eq!(
            bad(FunctionSpec {
                name: Some("x".repeat(300)),
                ..ok.clone()
            }),
            "name"
        );
        assert_eq!(
            bad(FunctionSpec {
                egress_allow: vec!["ok.example:443".into(), "two words".into()],
                ..ok.clone()
            }),
            "egressAllow[1]"
        );
        assert_eq!(
            bad(FunctionSpec {
                egress_allow: vec!["10.0.0.0/99".into()],
                ..ok.clone()
            }),
            "egressAllow[0]"
        );
        assert_eq!(
            bad(FunctionSpec {
                egress_allow: vec!["a:1".into(); limits::MAX_EGRESS_RULES + 1],
                ..ok.clone()
            }),
            "egressAllow"
        );
        let spec: FunctionSpec =
            serde_json::from_str(r#"{"egressAllow": ["10.0.0.0/8"]}"#).unwrap();
        assert_eq!(spec.egress_allow, ["10.0.0.0/8"]);
        assert!(serde_json::from_str::<FunctionSpec>(r#"{"maxMemroy": 1}"#).is_err());
    }

    #[test]
    fn ids_are_uuids() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_id());
    }
}
