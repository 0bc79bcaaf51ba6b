//! Every HTTP error becomes a response here, and only here: one status per kind, one JSON shape
//! `{"error": {"code", "message"}}`, `Retry-After` where a retry helps. Internal errors are
//! logged with their causes; the client gets a generic message.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::v1::{ErrorBody, ErrorCode, ErrorDetail};
use shared::meta::OptionError;

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
    RateLimited { retry_after: Duration, limit: u32 },
    #[error("all job slots are busy and the queue is full; retry in {} s", retry_after.as_secs().max(1))]
    Busy { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
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
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        self.parts().0
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            AppError::Internal(err) => {
                tracing::error!(error = %format!("{err:#}"), "internal error");
                "internal error; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let mut response =
            (status, Json(ErrorBody { error: ErrorDetail { code, message } })).into_response();
        if let AppError::RateLimited { retry_after, .. } | AppError::Busy { retry_after } = &self {
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value.clone());
                if let AppError::RateLimited { limit, .. } = &self {
                    let headers = response.headers_mut();
                    headers.insert("ratelimit-reset", value);
                    headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
                    if let Ok(limit) = HeaderValue::from_str(&limit.to_string()) {
                        headers.insert("ratelimit-limit", limit);
                    }
                }
            }
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
