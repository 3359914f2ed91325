//! `GET /v4/fleet/workers`: the fleet's workers, live or dead, with what each last reported;
//! `GET /v4/fleet/scheduler`: which API process schedules; `GET /v4/fleet/placements`: which
//! workers hold which functions, with their shares (operators' views; organisations' tokens
//! do not see the routes).

use super::{ApiError, ApiState, Operator};
use crate::model::{FleetScheduler, FleetWorker, Placement, Timestamp};
use axum::extract::State;
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
