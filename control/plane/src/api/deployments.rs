//! Deployments and releases of a Function: creating a deployment (answered with its signed
//! `uploadUrl`, or straight to packaging when it redeploys an existing release), reading,
//! renaming and deleting it, `/trigger` after the upload, the releases, and the operators' list
//! of deployments by status.

use super::error::JsonBody;
use super::{ApiError, ApiState, Operator, Org};
use crate::auth::{unix_now, UPLOAD_URL_TTL_SECS};
use crate::model::{Deployment, DeploymentSpec, DeploymentStatus, NewDeployment, Release};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// A deployment as creation returns it: with the URL to `PUT` the code to, when one is expected.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDeployment {
    /// The deployment.
    #[serde(flatten)]
    pub deployment: Deployment,
    /// Where to `PUT` the raw code (no authentication: the URL is signed and expires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
}

/// The signed upload URL of deployment `id`.
pub(super) fn upload_url(state: &ApiState, id: &str) -> String {
    let expires = unix_now() + UPLOAD_URL_TTL_SECS;
    let sig = state.signer.sign(id, expires);
    format!(
        "{}/v4/functions/uploads/{id}?expires={expires}&signature={sig}",
        state.config.public_api_url.trim_end_matches('/')
    )
}

async fn function_exists(state: &ApiState, owner: &str, fid: &str) -> Result<(), ApiError> {
    match state.store.get_function(owner, fid).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound("function")),
    }
}

/// Lists a Function's deployments, oldest first.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments",
    params(("ownerId" = String, Path), ("functionId" = String, Path)),
    responses((status = 200, body = Vec<Deployment>), (status = 401), (status = 404)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid)): Path<(String, String)>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    function_exists(&state, &owner, &fid).await?;
    Ok(Json(state.store.list_deployments(&owner, &fid).await?))
}

/// Creates a deployment: `{platform, name?, description?, tag?}` answers `WAITING_FOR_UPLOAD`
/// with an `uploadUrl`; `{releaseId}` deploys that release again, without an upload.
#[utoipa::path(post, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments",
    params(("ownerId" = String, Path), ("functionId" = String, Path)),
    request_body = NewDeployment,
    responses((status = 201, body = CreatedDeployment), (status = 400), (status = 401), (status = 404), (status = 415)))]
pub(super) async fn create(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid)): Path<(String, String)>,
    JsonBody(new): JsonBody<NewDeployment>,
) -> Result<(StatusCode, Json<CreatedDeployment>), ApiError> {
    let spec = DeploymentSpec {
        name: new.name,
        description: new.description,
        tag: new.tag,
    };
    spec.validate()?;
    if let Some(rid) = &new.release_id {
        let release = state
            .store
            .get_release(&owner, &fid, rid)
            .await?
            .ok_or(ApiError::NotFound("release"))?;
        if new.platform.is_some_and(|p| p != release.platform) {
            return Err(ApiError::field(
                "platform",
                format!("the release is {}", release.platform),
            ));
        }
        let d = state
            .store
            .create_deployment(
                &owner,
                &fid,
                release.platform,
                &spec,
                Some(&release.id),
                DeploymentStatus::Packaging,
            )
            .await?
            .ok_or(ApiError::NotFound("function"))?;
        state.packager_wakeup.notify_one();
        return Ok((
            StatusCode::CREATED,
            Json(CreatedDeployment {
                deployment: d,
                upload_url: None,
            }),
        ));
    }
    let platform = new
        .platform
        .ok_or_else(|| ApiError::field("platform", "required (or a releaseId)"))?;
    let d = state
        .store
        .create_deployment(
            &owner,
            &fid,
            platform,
            &spec,
            None,
            DeploymentStatus::WaitingForUpload,
        )
        .await?
        .ok_or(ApiError::NotFound("function"))?;
    let url = upload_url(&state, &d.id);
    Ok((
        StatusCode::CREATED,
        Json(CreatedDeployment {
            deployment: d,
            upload_url: Some(url),
        }),
    ))
}

/// Reads a deployment (while it waits for its upload, with a fresh `uploadUrl`).
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}",
    params(("ownerId" = String, Path), ("functionId" = String, Path), ("deploymentId" = String, Path)),
    responses((status = 200, body = CreatedDeployment), (status = 401), (status = 404)))]
pub(super) async fn get(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid, did)): Path<(String, String, String)>,
) -> Result<Json<CreatedDeployment>, ApiError> {
    let d = state
        .store
        .get_deployment(&owner, &fid, &did)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let upload_url =
        (d.status == DeploymentStatus::WaitingForUpload).then(|| upload_url(&state, &d.id));
    Ok(Json(CreatedDeployment {
        deployment: d,
        upload_url,
    }))
}

/// A deployment's build: where it stands and the whole log of its server-side build.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentLog {
    /// The deployment.
    pub deployment_id: String,
    /// Its status.
    pub status: DeploymentStatus,
    /// Why it failed (status `ERROR`): the compiler's message, trimmed.
    pub error_reason: Option<String>,
    /// The build's whole output (bounded; absent when nothing was built: a WebAssembly
    /// upload, or a build not started yet).
    pub log: Option<String>,
}

/// The log of a deployment's server-side build.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}/logs",
    params(("ownerId" = String, Path), ("functionId" = String, Path), ("deploymentId" = String, Path)),
    responses((status = 200, body = DeploymentLog), (status = 401), (status = 404)))]
pub(super) async fn build_log(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid, did)): Path<(String, String, String)>,
) -> Result<Json<DeploymentLog>, ApiError> {
    let d = state
        .store
        .get_deployment(&owner, &fid, &did)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let log = state
        .store
        .build_log(&owner, &fid, &did)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    Ok(Json(DeploymentLog {
        deployment_id: d.id,
        status: d.status,
        error_reason: d.error_reason,
        log,
    }))
}

/// Changes a deployment's name, description and tag.
#[utoipa::path(put, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}",
    params(("ownerId" = String, Path), ("functionId" = String, Path), ("deploymentId" = String, Path)),
    request_body = DeploymentSpec,
    responses((status = 200, body = Deployment), (status = 400), (status = 401), (status = 404)))]
pub(super) async fn update(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid, did)): Path<(String, String, String)>,
    JsonBody(spec): JsonBody<DeploymentSpec>,
) -> Result<Json<Deployment>, ApiError> {
    spec.validate()?;
    state
        .store
        .update_deployment(&owner, &fid, &did, &spec)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("deployment"))
}

/// Deletes a deployment; workers stop serving it.
#[utoipa::path(delete, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}",
    params(("ownerId" = String, Path), ("functionId" = String, Path), ("deploymentId" = String, Path)),
    responses((status = 204), (status = 401), (status = 404)))]
pub(super) async fn delete(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid, did)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_deployment(&owner, &fid, &did).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("deployment"))
    }
}

/// Starts packaging an uploaded deployment (409 before the upload, or if it already started).
#[utoipa::path(post, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}/trigger",
    params(("ownerId" = String, Path), ("functionId" = String, Path), ("deploymentId" = String, Path)),
    responses((status = 200, body = Deployment), (status = 401), (status = 404), (status = 409)))]
pub(super) async fn trigger(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid, did)): Path<(String, String, String)>,
) -> Result<Json<Deployment>, ApiError> {
    let d = state
        .store
        .get_deployment(&owner, &fid, &did)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    if d.status != DeploymentStatus::WaitingForUpload {
        return Err(ApiError::Conflict(format!(
            "the deployment is {}, not waiting for its upload",
            d.status
        )));
    }
    if d.release_id.is_none() {
        return Err(ApiError::Conflict(
            "nothing was uploaded yet: PUT the code to the uploadUrl first".into(),
        ));
    }
    let d = state
        .store
        .transition(
            &d.id,
            &[DeploymentStatus::WaitingForUpload],
            DeploymentStatus::Packaging,
            None,
            None,
        )
        .await?
        .ok_or_else(|| ApiError::Conflict("the deployment changed meanwhile".into()))?;
    state.packager_wakeup.notify_one();
    Ok(Json(d))
}

/// Lists a Function's releases, oldest first.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/releases",
    params(("ownerId" = String, Path), ("functionId" = String, Path)),
    responses((status = 200, body = Vec<Release>), (status = 401), (status = 404)))]
pub(super) async fn list_releases(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid)): Path<(String, String)>,
) -> Result<Json<Vec<Release>>, ApiError> {
    function_exists(&state, &owner, &fid).await?;
    Ok(Json(state.store.list_releases(&owner, &fid).await?))
}

/// Reads a release.
#[utoipa::path(get, path = "/v4/functions/organisations/{ownerId}/functions/{functionId}/releases/{releaseId}",
    params(("ownerId" = String, Path), ("functionId" = String, Path), ("releaseId" = String, Path)),
    responses((status = 200, body = Release), (status = 401), (status = 404)))]
pub(super) async fn get_release(
    State(state): State<ApiState>,
    Org(owner): Org,
    Path((_, fid, rid)): Path<(String, String, String)>,
) -> Result<Json<Release>, ApiError> {
    state
        .store
        .get_release(&owner, &fid, &rid)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("release"))
}

/// Every deployment in a status, whatever its organisation (operator tokens only).
#[utoipa::path(get, path = "/v4/functions/deployments/{status}",
    params(("status" = DeploymentStatus, Path)),
    responses((status = 200, body = Vec<Deployment>), (status = 400), (status = 401), (status = 404)))]
pub(super) async fn by_status(
    State(state): State<ApiState>,
    _: Operator,
    Path(status): Path<String>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    let status: DeploymentStatus = status.parse().map_err(|_| {
        ApiError::field(
            "status",
            "one of WAITING_FOR_UPLOAD, PACKAGING, DEPLOYING, READY, ERROR",
        )
    })?;
    Ok(Json(state.store.deployments_with_status(status).await?))
}
