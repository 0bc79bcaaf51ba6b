//! `POST /api/v1/run`.
//!
//! 1. Take a rate-limit token for the client.
//! 2. Read the request: for `application/x-pe-archive` only the frame's header at first; for
//!    `application/json` the whole (bounded) body.
//! 3. Check the container and render its options (404, 422) before any input is read.
//! 4. If the header names the inputs' digest, look in the cache and answer a hit at once,
//!    without reading the archive.
//! 5. Read and check the input archive (400, 413), look in the cache, else run the job in the
//!    pool (503 when the queue is full), and cache the answer if it is cacheable.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shared::api::v1::{self, RunJsonRequest, RunRequest};
use shared::cpio::{self, Entry, Limits};
use shared::framing::{HeaderReader, Progress};
use shared::limits::{MAX_HEADER_BYTES, MAX_STDIN_BYTES};

use super::{AppError, SharedState, add_rate_headers, rate_limit};
use crate::convert::RunAnswer;
use crate::jobs::{self, Request as JobRequest};

/// The archive form's media type.
pub const ARCHIVE_TYPE: &str = "application/x-pe-archive";

pub fn router() -> Router<SharedState> {
    Router::new().route("/api/v1/run", post(run))
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    /// `bypass` skips the cache.
    #[serde(default)]
    cache: Option<String>,
}

/// Input files and stdin.
type Inputs = (Vec<Entry>, Vec<u8>);

/// How the client wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Archive,
    Json,
}

async fn run(
    State(state): State<SharedState>,
    Query(query): Query<RunQuery>,
    req: Request,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let decision = rate_limit(&state, &req)?;
    let bypass = match query.cache.as_deref() {
        None | Some("use") => false,
        Some("bypass") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!("cache={other:?}: use cache=bypass")));
        }
    };
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let form = if content_type.starts_with(ARCHIVE_TYPE) {
        Form::Archive
    } else if content_type.starts_with("application/json") {
        Form::Json
    } else {
        return Err(AppError::BadRequest(format!(
            "Content-Type must be {ARCHIVE_TYPE} or application/json, not {content_type:?}"
        )));
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|len: usize| len > state.max_body) {
        return Err(too_large(state.max_body));
    }
    let mut body = BodyReader {
        stream: req.into_body().into_data_stream(),
        max: state.max_body,
        read: 0,
        pending: Vec::new(),
    };

    // The request header, and (JSON form) the inputs.
    let (request, mut inputs): (RunRequest, Option<Inputs>) = match form {
        Form::Archive => {
            let (request, rest) = body.header().await?;
            body.pending = rest;
            (request, None)
        }
        Form::Json => {
            let bytes = body.all().await?;
            let json: RunJsonRequest = serde_json::from_slice(&bytes)
                .map_err(|e| AppError::BadRequest(format!("invalid JSON request: {e}")))?;
            let (run, files) = json.split();
            let files = json_files(files)?;
            let stdin = run.stdin.clone().unwrap_or_default().into_bytes();
            (run, Some((files, stdin)))
        }
    };

    check_strings(&request)?;
    let entry = state
        .catalog
        .get(&request.container)
        .ok_or_else(|| AppError::NotFound(format!("no container {:?}", request.container)))?;
    let meta = &entry.meta;
    let rendered = meta.render(&request.options, &request.args)?;
    let image =
        state.images.resolve(&meta.id).map_err(|e| AppError::Unavailable(format!("{e}")))?;
    if !state.executor_ready {
        return Err(AppError::Unavailable(
            "the executor is not ready (kernel or initramfs missing)".into(),
        ));
    }
    let key_for = |digest: &str| {
        let mut hasher = Sha256::new();
        let limits = &state.limits;
        let parts = serde_json::json!({
            "v": 1, "image": image.digest, "argv": rendered.argv, "env": rendered.env,
            "extra_env": request.env, "inputs": digest, "cwd": meta.run.cwd,
            "limits": [limits.timeout.as_millis() as u64, limits.memory_mib as u64, limits.stdout_bytes,
                       limits.stderr_bytes, limits.output_bytes, limits.output_entries as u64,
                       meta.run.timeout_secs.unwrap_or(0) as u64],
        });
        hasher.update(parts.to_string());
        hex::encode(hasher.finalize())
    };

    // Header-first: a hit is answered before the archive is read.
    if let (Some(digest), false) = (request.inputs_digest.as_deref(), bypass)
        && let Some(response) = cached(&state, &key_for(digest), form, started).await?
    {
        return Ok(with_rate(response, decision));
    }

    let (files, stdin) = match inputs.take() {
        Some(inputs) => inputs,
        None => {
            let archive = body.rest().await?;
            archive_inputs(&archive, request.stdin.as_deref())?
        }
    };
    let digest = v1::inputs_digest(&files, &stdin);
    if request.inputs_digest.as_ref().is_some_and(|claimed| *claimed != digest) {
        return Err(AppError::BadRequest("inputs_digest does not match the input archive".into()));
    }
    let key = key_for(&digest);
    if !bypass
        && request.inputs_digest.is_none()
        && let Some(response) = cached(&state, &key, form, started).await?
    {
        return Ok(with_rate(response, decision));
    }
    if !bypass {
        state.metrics.cache(false);
    }

    let job_request = JobRequest {
        options: request.options.clone(),
        args: request.args.clone(),
        env: request.env.clone(),
        files,
        stdin,
    };
    let job = jobs::job_for(meta, image.clone(), job_request, state.limits)?;
    let output = match state.pool.try_submit(&job).await {
        Ok(output) => output,
        Err(executor::ExecError::Busy { retry_after }) => {
            state.metrics.refused(false);
            return Err(AppError::Busy { retry_after });
        }
        Err(err) => return Err(exec_error(err)),
    };
    let timeout_ms = job.limits.timeout.as_millis() as u64;
    let mut answer = RunAnswer::from_job(output, &job.argv, &image, timeout_ms);
    answer.result.timings_ms.total = started.elapsed().as_millis() as u64;
    let status = serde_json::to_value(answer.result.status).ok();
    state.metrics.run(
        &meta.id,
        status.as_ref().and_then(|s| s.as_str()).unwrap_or("?"),
        answer.result.backend.start.as_deref(),
        started.elapsed(),
    );

    {
        let store = state.store.clone();
        let container = meta.id.clone();
        tokio::spawn(async move {
            if let Err(err) = store.record_run(container).await {
                tracing::warn!(error = %anyhow::Error::from(err), "cannot count the run");
            }
        });
    }
    let frame = answer.to_frame().map_err(AppError::internal)?;
    let t = &answer.result.truncated;
    if answer.result.status.is_cacheable()
        && !(t.stdout || t.stderr || t.files)
        && let Err(err) = state.store.cache_put(&key, frame.clone()).await
    {
        tracing::warn!(error = %format!("{err:#}"), "cannot store a result in the cache");
    }
    let response = match form {
        Form::Archive => archive_response(frame),
        Form::Json => axum::Json(answer.to_json()).into_response(),
    };
    Ok(with_rate(response, decision))
}

/// A job the executor could not run at all. Trouble on the server's side that may pass (a full
/// disk, QEMU missing, shutting down) is a 503 with its cause; anything else is internal.
fn exec_error(err: executor::ExecError) -> AppError {
    use executor::ExecError;
    let cause = |err: &dyn std::error::Error| {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    match &err {
        ExecError::WorkDir { .. }
        | ExecError::Spawn { .. }
        | ExecError::ShuttingDown(_)
        | ExecError::Image(_) => {
            tracing::warn!(error = %cause(&err), "a job could not be started");
            AppError::Unavailable(format!("the server cannot run jobs right now: {}", cause(&err)))
        }
        _ => AppError::internal(err),
    }
}

fn with_rate(mut response: Response, decision: Option<crate::ratelimit::Decision>) -> Response {
    add_rate_headers(&mut response, decision);
    response
}

fn archive_response(frame: Vec<u8>) -> Response {
    let mut response = Body::from(frame).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ARCHIVE_TYPE));
    response
}

/// A cached answer, marked `cached: true` with this request's timings.
async fn cached(
    state: &SharedState,
    key: &str,
    form: Form,
    started: Instant,
) -> Result<Option<Response>, AppError> {
    let bytes = match state.store.cache_get(key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "cache read failed");
            return Ok(None);
        }
    };
    let Ok(mut answer) = RunAnswer::from_frame(&bytes) else { return Ok(None) };
    state.metrics.cache(true);
    answer.result.cached = true;
    answer.result.timings_ms = v1::Timings {
        queue: 0,
        boot: 0,
        run: answer.result.timings_ms.run,
        total: started.elapsed().as_millis() as u64,
    };
    Ok(Some(match form {
        Form::Archive => archive_response(answer.to_frame().map_err(AppError::internal)?),
        Form::Json => axum::Json(answer.to_json()).into_response(),
    }))
}

/// Environment names must be plain identifiers, and no string may hold a NUL byte (the
/// program's argv and environment are C strings).
fn check_strings(request: &RunRequest) -> Result<(), AppError> {
    for (key, value) in &request.env {
        let mut chars = key.chars();
        let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident || key.len() > 128 {
            return Err(AppError::BadRequest(format!(
                "environment variable name {key:?} is not allowed"
            )));
        }
        if value.contains('\0') {
            return Err(AppError::BadRequest(format!(
                "environment variable {key}: the value holds a NUL byte"
            )));
        }
    }
    if let Some(arg) = request.args.iter().find(|a| a.contains('\0')) {
        return Err(AppError::BadRequest(format!("argument {arg:?} holds a NUL byte")));
    }
    Ok(())
}

/// Splits the request archive into input files and stdin. The archive holds the files at its
/// root; stdin comes from the header.
fn archive_inputs(archive: &[u8], stdin: Option<&str>) -> Result<(Vec<Entry>, Vec<u8>), AppError> {
    let files =
        if archive.is_empty() { Vec::new() } else { cpio::decode(archive, &Limits::INPUT)? };
    let stdin = stdin.unwrap_or_default().as_bytes().to_vec();
    if stdin.len() > MAX_STDIN_BYTES {
        return Err(AppError::TooLarge(format!("stdin is larger than {MAX_STDIN_BYTES} bytes")));
    }
    Ok((files, stdin))
}

/// The JSON form's inline files, checked by the same rules as an archive.
fn json_files(files: Vec<v1::JsonFile>) -> Result<Vec<Entry>, AppError> {
    let mut encoder = cpio::Encoder::new(std::io::sink(), Limits::INPUT);
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let data = match (file.content, file.content_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => BASE64.decode(b64.as_bytes()).map_err(|e| {
                AppError::BadRequest(format!(
                    "file {:?}: content_base64 is not base64: {e}",
                    file.path
                ))
            })?,
            _ => {
                return Err(AppError::BadRequest(format!(
                    "file {:?}: give exactly one of content and content_base64",
                    file.path
                )));
            }
        };
        encoder.add_file(&file.path, 0o644, 0, &data)?;
        let path = cpio::normalize_path(&file.path, &Limits::INPUT)?.unwrap_or_default();
        out.push(Entry::file(path, data));
    }
    Ok(out)
}

fn too_large(max: usize) -> AppError {
    AppError::TooLarge(format!("the request body is larger than {max} bytes"))
}

/// Reads a request body in bounded steps.
struct BodyReader {
    stream: axum::body::BodyDataStream,
    max: usize,
    read: usize,
    /// Bytes that arrived with the header (the archive's start).
    pending: Vec<u8>,
}

impl BodyReader {
    /// Everything after the header.
    async fn rest(&mut self) -> Result<Vec<u8>, AppError> {
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
    async fn header(&mut self) -> Result<(RunRequest, Vec<u8>), AppError> {
        let mut reader = HeaderReader::new(MAX_HEADER_BYTES);
        loop {
            let Some(chunk) = self.next_chunk().await? else { return Err(reader.finish().into()) };
            if let Progress::Header(header, rest) = reader.push(&chunk)? {
                return Ok((header, rest));
            }
        }
    }

    async fn all(&mut self) -> Result<Vec<u8>, AppError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
