//! `GET /v4/fleet/workers`: the fleet's workers, live or dead, with what each last reported;
//! `GET /v4/fleet/scheduler`: which API process schedules; `GET /v4/fleet/placements`: which
//! workers hold which functions, with their shares (operators' views; organisations' tokens
//! do not see the routes). And an organisation's view of its function's replicas:
//! `GET .../functions/{functionId}/replicas`.

use super::{ApiError, ApiState, Operator, Org};
use crate::model::{FleetScheduler, FleetWorker, Placement, Replica, Timestamp};
use axum::extract::{Path, State};
use axum::Json;

/// Every registered worker, live ones first.
#[utoipa::path(get, path = "/v4/fleet/workers",
    responses((status = 200, body = Vec<FleetWorker>), (status = 401), (status = 404)))]
pub(super) async fn workers(
    State(state): State<ApiState>,
    _: Operator,
) -> Result<Json<Vec<FleetWorker>>, ApiError> {
    Ok(Json(state.store.list_workers().await?))
}

/// The scheduler's role as last recorded; 404 if no API process ever took it.
#[utoipa::path(get, path = "/v4/fleet/scheduler",
    responses((status = 200, body = FleetScheduler), (status = 401), (status = 404)))]
pub(super) async fn scheduler(
    State(state): State<ApiState>,
    _: Operator,
) -> Result<Json<FleetScheduler>, ApiError> {
    let lease = state
        .store
        .singleton(crate::scheduler::ROLE)
        .await?
        .ok_or(ApiError::NotFound("scheduler"))?;
    Ok(Json(FleetScheduler {
        live: lease.lease_until > Timestamp::now(),
        holder: lease.holder,
        term: lease.term,
        acquired_at: lease.acquired_at,
        lease_until: lease.lease_until,
    }))
}

/// Every placement: which workers hold which functions, by function then worker.
#[utoipa::path(get, path = "/v4/fleet/placements",
    responses((status = 200, body = Vec<Placement>), (status = 401), (status = 404)))]
pub(super) async fn placements(
    State(state): State<ApiState>,
    _: Operator,
) -> Result<Json<Vec<Placement>>, ApiError> {
    Ok(Json(state.store.list_placements().await?))
}

/// The function's replicas: the workers holding it (not which), each with its share.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/replicas",
    params(("ownerId" = String, Path, description = "Organisation"),
           ("functionId" = String, Path, description = "Function")),
    responses((status = 200, body = Vec<Replica>), (status = 401), (status = 404)))]
pub(super) async fn replicas(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Vec<Replica>>, ApiError> {
    state
        .store
        .get_function(&owner, &id)
        .await?
        .ok_or(ApiError::NotFound("function"))?;
    let placements = state.store.placements_of_function(&id).await?;
    Ok(Json(placements.iter().map(Replica::of).collect()))
}
