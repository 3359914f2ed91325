//! The HTTP API under `/v4/functions`, as the real platform's clients call it: Functions,
//! Deployments (with their signed upload URL and `/trigger`), Releases, Pulsar triggers,
//! asynchronous invocations, the operators' view of deployments by status, `/openapi.json` and `/healthz`.
//! Handlers are thin: they check who is asking ([`Org`]), parse and validate, and call the
//! stores; the errors they return ([`ApiError`]) are JSON with the status a client can act on.

mod deployments;
mod error;
mod fleet;
mod functions;
mod invocations;
mod openapi;
mod triggers;
mod uploads;

pub use error::ApiError;

use crate::artifacts::ArtifactStore;
use crate::auth::{self, UploadSigner, OPERATOR_SCOPE};
use crate::store::MetadataStore;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use axum::Router;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the API role.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// How clients reach this API (for upload URLs), e.g. `http://127.0.0.1:8080`.
    pub public_api_url: String,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Where uploads are spooled while they stream in (and are hashed).
    pub spool_dir: PathBuf,
}

/// Everything a handler may use. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Metadata.
    pub store: MetadataStore,
    /// Uploaded code and artifacts.
    pub artifacts: ArtifactStore,
    /// Signs and checks upload URLs.
    pub signer: UploadSigner,
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// Wakes the packager when a deployment is triggered (it also polls the store).
    pub packager_wakeup: Arc<tokio::sync::Notify>,
    /// The process's metrics (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    tokens: Arc<TokenCache>,
}

impl ApiState {
    /// The state for a router.
    pub fn new(
        metrics: Arc<crate::metrics::Metrics>,
        store: MetadataStore,
        artifacts: ArtifactStore,
        signer: UploadSigner,
        config: ApiConfig,
        packager_wakeup: Arc<tokio::sync::Notify>,
    ) -> ApiState {
        ApiState {
            store,
            artifacts,
            signer,
            config: Arc::new(config),
            packager_wakeup,
            metrics,
            tokens: Arc::new(TokenCache::default()),
        }
    }
}

/// Recently seen token hashes and their organisations, so that a client's requests do not each
/// cost a database round trip. Entries live a few seconds: tokens are only ever added today, and
/// a revocation (later) would take effect within that time.
#[derive(Debug, Default)]
struct TokenCache {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    fn get(&self, hash: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (org, at) = entries.get(hash)?;
        (at.elapsed() < TOKEN_CACHE_TTL).then(|| org.clone())
    }

    fn put(&self, hash: String, org: String) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(hash, (org, Instant::now()));
    }
}

/// The organisation a request acts for: its bearer token's, which must be the one in the
/// path's `ownerId` (or an operator's). A token of another organisation gets 404, as if nothing
/// were there; a missing or unknown token, 401.
#[derive(Clone, Debug)]
pub struct Org(pub String);

/// The scope of the request's bearer token, whatever the path.
async fn token_scope(parts: &Parts, state: &ApiState) -> Result<String, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let hash = auth::hash_token(token);
    if let Some(org) = state.tokens.get(&hash) {
        return Ok(org);
    }
    let org = state
        .store
        .org_of_token(&hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    state.tokens.put(hash, org.clone());
    Ok(org)
}

impl FromRequestParts<ApiState> for Org {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Org, ApiError> {
        let scope = token_scope(parts, state).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("organisation"))?;
        let owner = params
            .get("ownerId")
            .ok_or(ApiError::NotFound("organisation"))?;
        if scope != *owner && scope != OPERATOR_SCOPE {
            return Err(ApiError::NotFound("organisation"));
        }
        Ok(Org(owner.clone()))
    }
}

/// An operator's request (token scoped to every organisation).
#[derive(Clone, Copy, Debug)]
pub struct Operator;

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Operator, ApiError> {
        if token_scope(parts, state).await? == OPERATOR_SCOPE {
            Ok(Operator)
        } else {
            // Not an operator: the route does not exist for this caller.
            Err(ApiError::NotFound("route"))
        }
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let org = "/v4/functions/organisations/{ownerId}/functions";
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(openapi::document))
        .route(
            "/metrics",
            get(
                |axum::extract::State(s): axum::extract::State<ApiState>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        s.metrics.render(),
                    )
                },
            ),
        )
        .route(&format!("{org}/{{functionId}}/logs"), get(functions::logs))
        .route(
            &format!("{org}/{{functionId}}/replicas"),
            get(fleet::replicas),
        )
        .route(org, get(functions::list).post(functions::create))
        .route(
            &format!("{org}/{{functionId}}"),
            get(functions::get)
                .put(functions::replace)
                .delete(functions::delete),
        )
        .route(
            &format!("{org}/{{functionId}}/deployments"),
            get(deployments::list).post(deployments::create),
        )
        .route(
            &format!("{org}/{{functionId}}/deployments/{{deploymentId}}"),
            get(deployments::get)
                .put(deployments::update)
                .delete(deployments::delete)
                // One of the real clients triggers by POSTing here.
                .post(deployments::trigger),
        )
        .route(
            &format!("{org}/{{functionId}}/deployments/{{deploymentId}}/trigger"),
            post(deployments::trigger),
        )
        .route(
            &format!("{org}/{{functionId}}/deployments/{{deploymentId}}/logs"),
            get(deployments::build_log),
        )
        .route(
            &format!("{org}/{{functionId}}/trigger-pulsar"),
            get(triggers::get)
                .post(triggers::set)
                .delete(triggers::delete),
        )
        .route(
            &format!("{org}/{{functionId}}/invocations"),
            get(invocations::list),
        )
        .route(
            &format!("{org}/{{functionId}}/invocations/{{invocationId}}"),
            get(invocations::get),
        )
        .route(
            &format!("{org}/{{functionId}}/invocations/{{invocationId}}/retry"),
            post(invocations::retry),
        )
        .route(
            &format!("{org}/{{functionId}}/releases"),
            get(deployments::list_releases),
        )
        .route(
            &format!("{org}/{{functionId}}/releases/{{releaseId}}"),
            get(deployments::get_release),
        )
        .route(
            "/v4/functions/deployments/{status}",
            get(deployments::by_status),
        )
        .route("/v4/functions/uploads/{deploymentId}", put(uploads::upload))
        .route("/v4/fleet/workers", get(fleet::workers))
        .route("/v4/fleet/scheduler", get(fleet::scheduler))
        .route("/v4/fleet/placements", get(fleet::placements))
        .fallback(|| async { ApiError::NotFound("route") })
        .with_state(state)
}
