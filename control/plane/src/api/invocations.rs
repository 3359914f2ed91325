//! `/organisations/{ownerId}/functions/{functionId}/invocations[/{id}[/retry]]`: following
//! asynchronous invocations (queued by `POST /{functionId}?async` on a worker): one with its
//! result, a Function's (the dead letters with `?status=dead`), and requeueing a dead letter.

use super::{ApiError, ApiState, Org};
use crate::model::{Invocation, InvocationStatus};
use crate::store::Retried;
use axum::extract::{Path, Query, State};
use axum::Json;

/// An asynchronous invocation: status, attempts, and its result once it has one.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/invocations/{invocationId}",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function"),
           ("invocationId" = String, Path, description = "Invocation")),
    responses((status = 200, body = Invocation), (status = 401), (status = 404)))]
pub(super) async fn get(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, function_id, id)): Path<(String, String, String)>,
) -> Result<Json<Invocation>, ApiError> {
    state
        .store
        .invocation(&owner, &function_id, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("invocation"))
}

/// The query of the list route.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct ListQuery {
    /// Only invocations in this status (`queued`, `running`, `succeeded`, `dead`; any case).
    status: Option<String>,
    /// Only invocations after this one (the last id of the previous page).
    after: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The Function's asynchronous invocations kept (finished ones until their retention ends),
/// oldest first; `?status=dead` lists its dead letters.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/invocations",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function"), ListQuery),
    responses((status = 200, body = Vec<Invocation>), (status = 400), (status = 401), (status = 404)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, function_id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Invocation>>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<InvocationStatus>)
        .transpose()
        .map_err(|why| ApiError::field("status", why))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .invocations(&owner, &function_id, status, q.after.as_deref(), limit)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("function"))
}

/// Queues a dead letter again, with all its attempts (409 unless it is `DEAD`).
#[utoipa::path(post, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/invocations/{invocationId}/retry",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function"),
           ("invocationId" = String, Path, description = "Invocation")),
    responses((status = 200, body = Invocation), (status = 401), (status = 404), (status = 409)))]
pub(super) async fn retry(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, function_id, id)): Path<(String, String, String)>,
) -> Result<Json<Invocation>, ApiError> {
    match state
        .store
        .retry_invocation(&owner, &function_id, &id)
        .await?
    {
        Retried::Queued(i) => Ok(Json(*i)),
        Retried::NotFound => Err(ApiError::NotFound("invocation")),
        Retried::NotDead(status) => Err(ApiError::Conflict(format!(
            "only a DEAD invocation can be retried; this one is {status}"
        ))),
    }
}
