//! `GET /v4/fleet/workers`: the fleet's workers, live or dead, with what each last reported
//! (an operator's view; organisations' tokens do not see the route).

use super::{ApiError, ApiState, Operator};
use crate::model::FleetWorker;
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
