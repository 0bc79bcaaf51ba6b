//! Every HTTP error becomes a response here, and only here: one status per kind, one JSON shape
//! `{"error": {"code", "message", "request_id"}}`, `Retry-After` where a retry helps. Internal
//! errors and trouble on the server's side are logged with their causes; the client gets a
//! generic message and the request id to quote (never a host path or an error chain).
//!
//! [`one_error_shape`] also gives that shape to the answers the HTTP layer makes under `/api/`
//! (extractor rejections, 405, the request timeout's 408, an unknown route). What hyper answers
//! before a request reaches the app (431 oversized headers, 414 on an over-long request line,
//! 400 on unparseable HTTP) has no body; docs/API.md lists them.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::api::v1::{ErrorBody, ErrorCode, ErrorDetail};
use shared::error::chain;
use shared::meta::OptionError;
use tower_http::request_id::RequestId;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    InvalidOption(#[from] OptionError),
    #[error("too many requests; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("all job slots are busy and the queue is full; retry in {} s", retry_after.as_secs().max(1))]
    Busy { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    /// The container's image is being built (or waits for its turn): 503 `unavailable` with
    /// `Retry-After` when it should be ready.
    #[error("{message}")]
    Building { message: String, retry_after: Duration },
    /// Trouble on the server's side that may pass (a full disk, QEMU missing, shutting down):
    /// 503 with a generic message; the cause goes to the log.
    #[error("the server cannot run jobs right now; retry later")]
    CannotRun(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn internal(err: impl Into<anyhow::Error>) -> AppError {
        AppError::Internal(err.into())
    }

    fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            AppError::InvalidOption(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidOption)
            }
            AppError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            AppError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy),
            AppError::Unavailable(_) | AppError::Building { .. } | AppError::CannotRun(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        self.parts().0
    }
}

impl AppError {
    /// The code and the message a client sees; trouble on the server's side goes to the log
    /// (under the request's span) and the client gets a generic sentence.
    pub fn detail(&self) -> ErrorDetail {
        let (_, code) = self.parts();
        let message = match self {
            AppError::Internal(err) => {
                tracing::error!(error = %chain(err.as_ref()), "internal error");
                "internal error; it has been logged under the request id".to_owned()
            }
            AppError::CannotRun(err) => {
                tracing::warn!(error = %chain(err.as_ref()), "a job could not be started");
                format!("{self}; the cause has been logged under the request id")
            }
            other => other.to_string(),
        };
        ErrorDetail { code, message, request_id: None }
    }

    /// When to try again, for `rate_limited` and `busy`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AppError::RateLimited { retry_after } | AppError::Busy { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, _) = self.parts();
        let detail = self.detail();
        let mut response = (status, Json(ErrorBody { error: detail.clone() })).into_response();
        // For `one_error_shape`, which adds the request id.
        response.extensions_mut().insert(detail);
        // The RateLimit headers come from the rate-limit middleware, on every answer.
        if let AppError::RateLimited { retry_after }
        | AppError::Busy { retry_after }
        | AppError::Building { retry_after, .. } = &self
        {
            let secs = retry_after.as_secs().max(1);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<shared::framing::FrameError> for AppError {
    fn from(err: shared::framing::FrameError) -> Self {
        use shared::framing::FrameError;
        match err {
            FrameError::HeaderTooLarge { .. } => AppError::TooLarge(err.to_string()),
            FrameError::InvalidHeader(ref json) => AppError::BadRequest(format!("{err}: {json}")),
            other => AppError::BadRequest(other.to_string()),
        }
    }
}

impl From<shared::cpio::CpioError> for AppError {
    fn from(err: shared::cpio::CpioError) -> Self {
        use shared::cpio::CpioError;
        match err {
            CpioError::TooLarge { .. } | CpioError::TooManyEntries { .. } => {
                AppError::TooLarge(format!("input archive: {err}"))
            }
            other => AppError::BadRequest(format!("input archive: {other}")),
        }
    }
}

/// Unknown routes under `/api/`.
pub async fn no_such_route(req: Request) -> AppError {
    AppError::NotFound(format!("no API route {} {}", req.method(), req.uri().path()))
}

/// Longest text of a rejection kept as the message.
const MAX_REJECTION_TEXT: usize = 1024;

/// One error shape for every error answer: an [`AppError`]'s own, or under `/api/` the plain-text
/// or empty answers the HTTP layer makes (extractor rejections, 405, 408). Each gets the
/// request id.
pub async fn one_error_shape(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let known = response.extensions().get::<ErrorDetail>().cloned();
    if known.is_none() && !api {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut detail = match known {
        Some(detail) => detail,
        None => {
            let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            let code = code_for(status);
            let message = if text.is_empty() || code == ErrorCode::Internal {
                status.canonical_reason().unwrap_or("error").to_lowercase()
            } else {
                text
            };
            ErrorDetail { code, message, request_id: None }
        }
    };
    detail.request_id = request_id;
    let json = serde_json::to_vec(&ErrorBody { error: detail }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

/// The error code of an answer the HTTP layer made.
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}
