//! `/organisations/{ownerId}/functions[/{functionId}]`: create, list, read, replace (all fields at
//! once) and delete Functions.

use super::error::JsonBody;
use super::{ApiError, ApiState, Org};
use crate::model::{Function, FunctionSpec};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

/// Lists the organisation's Functions, oldest first.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions",
    params(("ownerId" = String, Path, description = "Organisation")),
    responses((status = 200, body = Vec<Function>), (status = 401), (status = 404)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    Org(owner): Org,
) -> Result<Json<Vec<Function>>, ApiError> {
    Ok(Json(state.store.list_functions(&owner).await?))
}

/// Creates a Function (every field optional: defaults `maxMemory` 64 MiB, `maxInstances` 1,
/// `timeoutMs` 30 s).
#[utoipa::path(post, path = "/v4/functions/organisations/{ownerId}/functions",
    params(("ownerId" = String, Path, description = "Organisation")),
    request_body = FunctionSpec,
    responses((status = 201, body = Function), (status = 400), (status = 401), (status = 404), (status = 415)))]
pub(super) async fn create(
    State(state): State<ApiState>,
    Org(owner): Org,
    JsonBody(spec): JsonBody<FunctionSpec>,
) -> Result<(StatusCode, Json<Function>), ApiError> {
    spec.validate()?;
    let f = state.store.create_function(&owner, &spec).await?;
    Ok((StatusCode::CREATED, Json(f)))
}

/// Reads a Function.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    responses((status = 200, body = Function), (status = 401), (status = 404)))]
pub(super) async fn get(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Function>, ApiError> {
    state
        .store
        .get_function(&owner, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("function"))
}

/// Replaces a Function's settings, all at once (absent fields take their defaults).
#[utoipa::path(put, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    request_body = FunctionSpec,
    responses((status = 200, body = Function), (status = 400), (status = 401), (status = 404), (status = 415)))]
pub(super) async fn replace(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, id)): Path<(String, String)>,
    JsonBody(spec): JsonBody<FunctionSpec>,
) -> Result<Json<Function>, ApiError> {
    spec.validate()?;
    state
        .store
        .replace_function(&owner, &id, &spec)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("function"))
}

/// Deletes a Function with its deployments and releases.
#[utoipa::path(delete, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    responses((status = 204), (status = 401), (status = 404)))]
pub(super) async fn delete(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_function(&owner, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("function"))
    }
}

/// The query of the logs route.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct LogsQuery {
    /// Only entries after this one (a previous entry's `cursor`).
    after: Option<String>,
    /// At most this many entries (default 100, at most 1000).
    limit: Option<u32>,
}

/// What the Function's invocations wrote to stderr, oldest first: its latest entries, after
/// `after` when given.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/logs",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function"), LogsQuery),
    responses((status = 200, body = Vec<crate::model::LogEntry>), (status = 401), (status = 404)))]
pub(super) async fn logs(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, id)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<LogsQuery>,
) -> Result<Json<Vec<crate::model::LogEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .logs(&owner, &id, q.after.as_deref(), limit)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("function"))
}
