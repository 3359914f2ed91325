//! `/organisations/{ownerId}/functions/{functionId}/trigger-pulsar`: a Function's Pulsar trigger
//! (GET the details, POST to set or replace it, DELETE), with the real platform's snake_case
//! fields. The token is sealed before it is stored and never returned.

use super::error::JsonBody;
use super::{ApiError, ApiState, Org};
use crate::model::{PulsarTrigger, PulsarTriggerSpec};
use crate::sealed::Sealer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

/// The Function's Pulsar trigger (404 when it has none).
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/trigger-pulsar",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    responses((status = 200, body = PulsarTrigger), (status = 401), (status = 404)))]
pub(super) async fn get(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, function_id)): Path<(String, String)>,
) -> Result<Json<PulsarTrigger>, ApiError> {
    state
        .store
        .pulsar_trigger(&owner, &function_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("trigger"))
}

/// Sets (or replaces) the Function's Pulsar trigger: every worker serving the Function consumes
/// the topic with one shared subscription, a message per invocation.
#[utoipa::path(post, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/trigger-pulsar",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    request_body = PulsarTriggerSpec,
    responses((status = 200, body = PulsarTrigger), (status = 400), (status = 401), (status = 404), (status = 415)))]
pub(super) async fn set(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, function_id)): Path<(String, String)>,
    JsonBody(spec): JsonBody<PulsarTriggerSpec>,
) -> Result<Json<PulsarTrigger>, ApiError> {
    let dead_letter = spec.validate(&function_id)?;
    let sealed = match &spec.pulsar_token {
        Some(token) => Some(
            Sealer::of(&state.store)
                .await
                .and_then(|s| s.seal(token.as_bytes(), &function_id))
                .map_err(|e| ApiError::Internal(format!("sealing the token: {e}")))?,
        ),
        None => None,
    };
    state
        .store
        .set_pulsar_trigger(&owner, &function_id, &spec, &dead_letter, sealed.as_deref())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("function"))
}

/// Removes the Function's Pulsar trigger; workers stop consuming (the subscription stays on the
/// broker, with what it has not consumed).
#[utoipa::path(delete, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/trigger-pulsar",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    responses((status = 204), (status = 401), (status = 404)))]
pub(super) async fn delete(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, function_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .delete_pulsar_trigger(&owner, &function_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("trigger"))
    }
}
