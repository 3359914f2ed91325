//! `GET /openapi.json`: the API described from the handlers' own annotations (utoipa), so the
//! document cannot drift from the routes.

use super::{deployments, fleet, functions, invocations, triggers, uploads};
use crate::model::{
    Accepted, BodyEncoding, Deployment, DeploymentSpec, DeploymentStatus, FleetScheduler,
    FleetWorker, Function, FunctionLoad, FunctionSpec, Invocation, InvocationResult,
    InvocationStatus, Isolation, LogEntry, NewDeployment, Placement, PlacementReason, Platform,
    PulsarTrigger, PulsarTriggerSpec, Release, Replica, RequestSummary, WorkerReport,
};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "fnvm", description = "Functions, Deployments and Releases of fnvm's control plane"),
    paths(
        functions::list, functions::create, functions::get, functions::replace, functions::delete,
        functions::logs,
        deployments::list, deployments::create, deployments::get, deployments::update,
        deployments::delete, deployments::trigger, deployments::list_releases,
        deployments::get_release, deployments::by_status, deployments::build_log,
        uploads::upload, invocations::get, invocations::list, invocations::retry,
        triggers::get, triggers::set, triggers::delete, fleet::workers,
        fleet::scheduler, fleet::placements, fleet::replicas,
    ),
    components(schemas(Function, FunctionSpec, Deployment, NewDeployment, DeploymentSpec,
        DeploymentStatus, Platform, Isolation, Release, LogEntry, deployments::CreatedDeployment,
        deployments::DeploymentLog, Invocation, InvocationStatus, InvocationResult, BodyEncoding,
        RequestSummary, Accepted, PulsarTrigger, PulsarTriggerSpec, FleetWorker, WorkerReport, FleetScheduler,
        Placement, PlacementReason, Replica, FunctionLoad)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the bearer-token scheme every route but the upload URL uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
