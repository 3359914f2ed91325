//! `PUT /v4/functions/uploads/{deploymentId}?expires=&signature=`: the signed upload URL a
//! deployment's creation hands out. The raw bytes stream into a spool file while they are hashed
//! and counted (an upload over the limit is refused as soon as it crosses it, and nothing of it
//! is kept); then they are stored content-addressed in the artifact store, recorded as a release
//! of the Function, and bound to the deployment, which can then be triggered.

use super::{ApiError, ApiState};
use crate::auth::{unix_now, UploadUrlError};
use crate::model::{Deployment, DeploymentStatus, Platform};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a client may stay silent in the middle of an upload.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The signed URL's query.
#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    expires: Option<u64>,
    signature: Option<String>,
}

/// A spool file, removed when dropped (whatever happened to the upload).
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Media types that are surely not raw code: forms and JSON.
fn refused_media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let refused = ct.starts_with("multipart/")
        || ct.starts_with("application/x-www-form-urlencoded")
        || ct.starts_with("application/json");
    refused.then_some(ct)
}

/// Receives the code of a deployment.
#[utoipa::path(put, path = "/v4/functions/uploads/{deploymentId}",
    params(("deploymentId" = String, Path),
           ("expires" = u64, Query, description = "From the uploadUrl"),
           ("signature" = String, Query, description = "From the uploadUrl")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The raw code"),
    responses((status = 200, body = Deployment), (status = 403), (status = 404), (status = 409),
              (status = 413), (status = 415), (status = 422)))]
pub(super) async fn upload(
    State(state): State<ApiState>,
    Path(did): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Deployment>, ApiError> {
    let (Some(expires), Some(signature)) = (q.expires, q.signature) else {
        return Err(ApiError::Forbidden(
            "upload URLs carry `expires` and `signature`".into(),
        ));
    };
    state
        .signer
        .verify(&did, expires, &signature, unix_now())
        .map_err(|e: UploadUrlError| ApiError::Forbidden(e.to_string()))?;
    if let Some(ct) = refused_media_type(&headers) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the raw code (e.g. Content-Type: application/wasm), not {ct}"
        )));
    }
    let max = state.config.max_upload_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    let d = state
        .store
        .deployment(&did)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    if d.status != DeploymentStatus::WaitingForUpload {
        return Err(ApiError::Conflict(format!(
            "the deployment is {}; uploads go to a deployment waiting for one",
            d.status
        )));
    }

    let spool = Spool(
        state
            .config
            .spool_dir
            .join(format!("upload-{}", crate::model::new_id())),
    );
    let (sha256, size) = receive(&spool.0, body, max, d.platform).await?;
    // Once the bytes are all here, storing them runs to its end even if the client goes away
    // (a multipart upload to S3 cut in the middle would leave parts behind).
    let (state2, d2) = (state.clone(), d.clone());
    let stored = tokio::spawn(async move { store(&state2, &d2, spool, &sha256, size).await });
    let d = stored
        .await
        .map_err(|e| ApiError::Internal(format!("storing an upload: {e}")))??;
    Ok(Json(d))
}

/// Stores the spooled upload as a release of `d`'s Function and binds it to `d`.
async fn store(
    state: &ApiState,
    d: &Deployment,
    spool: Spool,
    sha256: &str,
    size: u64,
) -> Result<Deployment, ApiError> {
    // Touched first, so the garbage collector cannot delete these bytes between storing them
    // and recording the release.
    state
        .store
        .touch_blob(sha256, size, std::time::Duration::from_secs(30))
        .await?;
    state.artifacts.put_blob(sha256, &spool.0).await?;
    drop(spool);
    let release = state
        .store
        .add_release(&d.function_id, d.platform, sha256, size)
        .await?;
    if release.platform != d.platform {
        return Err(ApiError::Conflict(format!(
            "these bytes were uploaded before as {} (release {}): deploy that release, or \
             upload them to a {} deployment",
            release.platform, release.id, release.platform
        )));
    }
    state
        .store
        .set_deployment_release(&d.id, &release.id)
        .await?
        .ok_or_else(|| ApiError::Conflict("the deployment changed during the upload".into()))
}

/// Streams `body` into `path`, hashing and counting; refuses it past `max` bytes, and, for a
/// WebAssembly platform, when it does not start like a module.
async fn receive(
    path: &FsPath,
    body: Body,
    max: u64,
    platform: Platform,
) -> Result<(String, u64), ApiError> {
    let io = |e: std::io::Error| ApiError::Internal(format!("spooling an upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head = Vec::with_capacity(4);
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Err(_) => {
                return Err(ApiError::BadRequest {
                    field: None,
                    message: format!("the upload stalled for {IDLE_TIMEOUT:?}"),
                })
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::BadRequest {
                    field: None,
                    message: format!("reading the upload: {e}"),
                })
            }
            Ok(Some(Ok(c))) => c,
        };
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::PayloadTooLarge(max));
        }
        if head.len() < 4 {
            let take = (4 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() == 4 && platform == Platform::Wasm && head != b"\0asm" {
                return Err(not_wasm());
            }
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    if platform == Platform::Wasm && head.len() < 4 {
        return Err(not_wasm());
    }
    if size == 0 {
        return Err(ApiError::BadRequest {
            field: None,
            message: "the upload is empty".into(),
        });
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    Ok((crate::auth::hex(&hasher.finalize()), size))
}

fn not_wasm() -> ApiError {
    ApiError::Unprocessable(
        "not a WebAssembly module (it does not start with \\0asm); upload a .wasm file or choose \
         the source platform"
            .into(),
    )
}
