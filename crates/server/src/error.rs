//! Errors as the API answers them: one JSON shape, `{message, code, type, link}`, with
//! the status of the service's error code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crossdex_service::{ErrorCode, ServiceError};

/// An error answer.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// A bad request of the API itself (a parameter, a body).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError(ServiceError::new(ErrorCode::InvalidParameter, message))
    }

    /// A body axum could not read: too large (413), or not what was expected (400).
    pub fn body(status: axum::http::StatusCode, text: String) -> ApiError {
        if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError(ServiceError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is over the server's limit",
            ));
        }
        ApiError::bad_request(text)
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and, where possible, what to do.
    pub message: String,
    /// Stable snake_case code (docs/errors.md).
    pub code: String,
    /// The kind of failure: user_input, auth, not_found, conflict, unavailable,
    /// internal.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where the code is documented.
    pub link: String,
    /// 1-based character of the query where the parser stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// For internal errors: the id the server's log has the cause under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error_id = e.detail.as_ref().map(|detail| {
            let id = format!(
                "{:016x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default()
                    ^ u64::from(std::process::id()).rotate_left(48)
            );
            tracing::error!(error_id = %id, code = e.code.as_str(), "{}: {detail}", e.message);
            id
        });
        let message = match &error_id {
            Some(id) => format!("{} (error id {id})", e.message),
            None => e.message.clone(),
        };
        let body = ErrorBody {
            message,
            code: e.code.as_str().to_owned(),
            kind: serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            link: e.link.clone(),
            position: e.position,
            error_id,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
