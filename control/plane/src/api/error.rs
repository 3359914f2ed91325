//! The API's errors: each becomes a status a client can act on and a JSON body
//! `{"error": "...", "field": "..."}` (`field` for validation errors only). Internal failures
//! are logged with their cause and answered with a generic 500.

use crate::artifacts::ArtifactStoreError;
use crate::model::ValidationError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 400: a field (or the body) is wrong.
    BadRequest {
        /// The field, if one is at fault.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 401: no token, or one the server does not know.
    Unauthorized,
    /// 403: a signed URL that is not (or no longer) valid.
    Forbidden(String),
    /// 404: nothing of that kind here (or not for this caller).
    NotFound(&'static str),
    /// 409: the resource is not in a state that allows this.
    Conflict(String),
    /// 413: the upload is larger than the server accepts.
    PayloadTooLarge(u64),
    /// 415: the body is not of a kind this route takes.
    UnsupportedMediaType(String),
    /// 422: the upload is not what its platform says (not a WebAssembly module).
    Unprocessable(String),
    /// 500: the server failed; the cause is logged.
    Internal(String),
}

impl ApiError {
    /// A 400 about `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::BadRequest {
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Internal(format!("metadata store: {e}"))
    }
}

impl From<ArtifactStoreError> for ApiError {
    fn from(e: ArtifactStoreError) -> ApiError {
        ApiError::Internal(format!("artifact store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, field) = match self {
            ApiError::BadRequest { field, message } => (StatusCode::BAD_REQUEST, message, field),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required".to_string(),
                None,
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m, None),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found"), None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m, None),
            ApiError::PayloadTooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is larger than {max} bytes"),
                None,
            ),
            ApiError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m, None),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m, None),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "api: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                    None,
                )
            }
        };
        let mut body = serde_json::json!({ "error": message });
        if let Some(f) = field {
            body["field"] = serde_json::Value::String(f);
        }
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// A JSON body, with the API's own errors for a missing or wrong content type (415) and a body
/// that does not parse or has a wrong field (400 naming it).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
                "expected a JSON body (Content-Type: application/json)".into(),
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::BadRequest {
                field: None,
                message: format!("invalid body: {}", e.body_text()),
            }),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::BadRequest {
                field: None,
                message: format!("body is not valid JSON: {}", e.body_text()),
            }),
            Err(e) => Err(ApiError::BadRequest {
                field: None,
                message: e.body_text(),
            }),
        }
    }
}
