//! Request bodies, read in bounded steps: a declared length over the cap is refused before a
//! byte is read, and each body holds its share of the server's budget of bytes in flight until
//! its request is answered (`POST /api/v1/run` and `POST /api/v1/links`).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use futures_util::StreamExt;
use shared::api::v1::RunRequest;
use shared::framing::{HeaderReader, Progress};
use shared::limits::MAX_HEADER_BYTES;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppError;

fn too_large(max: usize) -> AppError {
    AppError::TooLarge(format!("the request body is larger than {max} bytes"))
}

/// Reads a request body in bounded steps, holding its share of the server's budget of bytes in
/// flight until the request is answered.
pub struct BodyReader {
    stream: axum::body::BodyDataStream,
    /// `Content-Length`, when the client sent it.
    declared: Option<usize>,
    max: usize,
    read: usize,
    /// Bytes that arrived with the header (the archive's start).
    pub pending: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl BodyReader {
    /// Step 2: a declared length over `max` is refused at once; the body's bytes (declared, or
    /// `max` when undeclared) are reserved in `budget`, or the server is busy.
    pub fn new(req: Request, max: usize, budget: &Arc<Semaphore>) -> Result<BodyReader, AppError> {
        let declared: Option<usize> =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(too_large(max));
        }
        let reserve = declared.unwrap_or(max).max(1);
        // The only error besides "no room" is a closed semaphore, which is never closed.
        let Ok(permit) = budget.clone().try_acquire_many_owned(reserve as u32) else {
            return Err(AppError::Busy { retry_after: std::time::Duration::from_secs(1) });
        };
        Ok(BodyReader {
            stream: req.into_body().into_data_stream(),
            declared,
            max: declared.unwrap_or(max),
            read: 0,
            pending: Vec::new(),
            _budget: Some(permit),
        })
    }

    /// Everything after the header.
    pub async fn rest(&mut self) -> Result<Vec<u8>, AppError> {
        let mut out = std::mem::take(&mut self.pending);
        out.extend(self.all().await?);
        Ok(out)
    }

    async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, AppError> {
        match self.stream.next().await {
            None => Ok(None),
            Some(Ok(chunk)) => {
                self.read += chunk.len();
                if self.read > self.max {
                    return Err(too_large(self.max));
                }
                Ok(Some(chunk))
            }
            Some(Err(err)) => {
                Err(AppError::BadRequest(format!("the request body could not be read: {err}")))
            }
        }
    }

    /// The frame header, and the archive bytes that came with it.
    pub async fn header(&mut self) -> Result<(RunRequest, Vec<u8>), AppError> {
        let mut reader = HeaderReader::new(MAX_HEADER_BYTES);
        loop {
            let Some(chunk) = self.next_chunk().await? else { return Err(reader.finish().into()) };
            if let Progress::Header(header, rest) = reader.push(&chunk)? {
                return Ok((header, rest));
            }
        }
    }

    pub async fn all(&mut self) -> Result<Vec<u8>, AppError> {
        // One allocation of the declared size: growing by doubling would hold up to twice the
        // body at the peak.
        let mut out = Vec::with_capacity(self.declared.unwrap_or(0));
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("declared", &self.declared)
            .field("read", &self.read)
            .finish()
    }
}
