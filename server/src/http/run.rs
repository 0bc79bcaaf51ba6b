//! `POST /api/v1/run`, a short pipeline of named steps (the rate limit is route middleware):
//!
//! 1. [`Form::of`]: archive or JSON, from `Content-Type`.
//! 2. [`BodyReader::new`] (`body.rs`): refuses a declared length over the cap (413) and reserves the body's
//!    bytes in the server-wide budget of bytes in flight (503 `busy` beyond it).
//! 3. [`read_request`]: for the archive form only the frame's header; for JSON the whole body.
//! 4. [`Plan::new`]: checks the strings, finds the container and its image, renders the options
//!    once (404, 422, 503) into the job-to-be, before any input is read; a request's own `argv`
//!    replaces the rendered command line.
//! 5. With the header's inputs digest, a cache hit is answered before the archive is read.
//! 6. A full pool answers 503 before the archive (JSON form: before the body) is read.
//! 7. [`read_inputs`]: the input archive (400, 413), checked against the claimed digest.
//! 8. The cache by [`cache_key`], else the pool; the answer is cached if it is cacheable.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use executor::{Job, JobLimits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::api::v1::{self, RunJsonRequest, RunRequest};
use shared::cpio::{self, Entry, Limits};
use shared::error::chain;
use shared::limits::MAX_STDIN_BYTES;

use super::body::BodyReader;
use super::{AppError, SharedState, rate_limited};
use crate::convert::RunAnswer;
use crate::jobs;

/// The archive form's media type.
pub const ARCHIVE_TYPE: &str = "application/x-pe-archive";
/// What a client puts in `Accept` (or `?archive=squashfs`) for an answer whose archive is a
/// squashfs image; the answer's `Content-Type` then says `application/x-pe-archive;
/// archive=squashfs`.
pub const SQUASHFS_TYPE: &str = "application/vnd.squashfs";

pub fn router(state: &SharedState) -> Router<SharedState> {
    Router::new().route(
        "/api/v1/run",
        post(run).layer(middleware::from_fn_with_state(state.clone(), rate_limited)),
    )
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    /// `bypass` skips the cache.
    #[serde(default)]
    cache: Option<String>,
    /// `squashfs` (or `cpio`, the default): the archive of an archive-form answer.
    #[serde(default)]
    archive: Option<String>,
}

/// Input files and stdin.
type Inputs = (Vec<Entry>, Vec<u8>);

/// How the client wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The archive form, answered with a cpio archive.
    Archive,
    /// The archive form, answered with a squashfs image (trees read lazily).
    Squashfs,
    Json,
}

impl Form {
    /// From `Content-Type`, and for the archive form `Accept` or `?archive=`.
    fn of(headers: &HeaderMap, archive: Option<&str>) -> Result<Form, AppError> {
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if content_type.starts_with(ARCHIVE_TYPE) {
            match archive {
                Some("squashfs") => Ok(Form::Squashfs),
                None if accept.split(',').any(|t| t.trim().starts_with(SQUASHFS_TYPE)) => {
                    Ok(Form::Squashfs)
                }
                None | Some("cpio") => Ok(Form::Archive),
                Some(other) => Err(AppError::BadRequest(format!(
                    "archive={other:?}: use archive=cpio or archive=squashfs"
                ))),
            }
        } else if content_type.starts_with("application/json") {
            Ok(Form::Json)
        } else {
            Err(AppError::BadRequest(format!(
                "Content-Type must be {ARCHIVE_TYPE} or application/json, not {content_type:?}"
            )))
        }
    }

    /// The answer in this form; `frame` is the cpio frame when the caller has it already.
    fn respond(self, answer: &RunAnswer, frame: Option<Vec<u8>>) -> Result<Response, AppError> {
        Ok(match self {
            Form::Archive => {
                let frame = match frame {
                    Some(frame) => frame,
                    None => answer.to_frame().map_err(AppError::internal)?,
                };
                archive_response(frame, ARCHIVE_TYPE)
            }
            Form::Squashfs => archive_response(
                answer.to_squashfs_frame().map_err(AppError::internal)?,
                "application/x-pe-archive; archive=squashfs",
            ),
            Form::Json => axum::Json(answer.to_json()).into_response(),
        })
    }
}

async fn run(
    State(state): State<SharedState>,
    Query(query): Query<RunQuery>,
    req: Request,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let bypass = match query.cache.as_deref() {
        None | Some("use") => false,
        Some("bypass") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!("cache={other:?}: use cache=bypass")));
        }
    };
    let form = Form::of(req.headers(), query.archive.as_deref())?;
    let mut body = BodyReader::new(req, state.max_body, &state.body_budget)?;
    if form == Form::Json {
        // Its header is the whole body: a full pool answers before any of it is read.
        refuse_if_busy(&state)?;
    }
    let (request, inputs) = read_request(form, &mut body).await?;
    let plan = Plan::new(&state, &request)?;

    // Header-first: a hit is answered before the archive is read.
    if let (Some(digest), false) = (request.inputs_digest.as_deref(), bypass)
        && let Some(answer) = cached(&state, &plan.key(&state, digest), started).await
    {
        return form.respond(&answer, None);
    }
    refuse_if_busy(&state)?;
    let (files, stdin) = match inputs {
        Some(inputs) => inputs,
        None => read_inputs(&mut body, &request).await?,
    };
    let digest = v1::inputs_digest(&files, &stdin);
    if request.inputs_digest.as_ref().is_some_and(|claimed| *claimed != digest) {
        return Err(AppError::BadRequest("inputs_digest does not match the input archive".into()));
    }
    let key = plan.key(&state, &digest);
    if !bypass {
        if request.inputs_digest.is_none()
            && let Some(answer) = cached(&state, &key, started).await
        {
            return form.respond(&answer, None);
        }
        state.metrics.cache(false);
    }
    let answer = execute(&state, plan.job(files, stdin), started, None).await?;
    let frame = answer.to_frame().map_err(AppError::internal)?;
    store_if_cacheable(&state, &key, &answer, &frame).await;
    form.respond(&answer, Some(frame))
}

/// Puts an answer (as its cpio frame) in the cache, when it may be: a run that ended on its
/// own with nothing cut at a limit.
pub(super) async fn store_if_cacheable(
    state: &SharedState,
    key: &str,
    answer: &RunAnswer,
    frame: &[u8],
) {
    let t = &answer.result.truncated;
    if answer.result.status.is_cacheable()
        && !(t.stdout || t.stderr || t.files)
        && let Err(err) = state.store.cache_put(key, frame.to_vec()).await
    {
        tracing::warn!(error = %chain(&err), "cannot store a result in the cache");
    }
}

/// The same pipeline for a request already in memory (the Compiler Explorer API builds its
/// runs from its own request shapes): steps 4, 6 and 8, the cache included.
pub(crate) async fn run_in_memory(
    state: &SharedState,
    request: RunRequest,
    files: Vec<Entry>,
    stdin: Vec<u8>,
    bypass: bool,
) -> Result<RunAnswer, AppError> {
    let started = Instant::now();
    check_argv(request.argv.as_deref(), &request.args)?;
    let plan = Plan::new(state, &request)?;
    let key = plan.key(state, &v1::inputs_digest(&files, &stdin));
    if !bypass {
        if let Some(answer) = cached(state, &key, started).await {
            return Ok(answer);
        }
        state.metrics.cache(false);
    }
    refuse_if_busy(state)?;
    let answer = execute(state, plan.job(files, stdin), started, None).await?;
    let frame = answer.to_frame().map_err(AppError::internal)?;
    store_if_cacheable(state, &key, &answer, &frame).await;
    Ok(answer)
}

/// Steps 2 and 6: a full pool answers 503 before the body (or the archive) is read.
pub(super) fn refuse_if_busy(state: &SharedState) -> Result<(), AppError> {
    match state.pool.would_refuse() {
        Some(retry_after) => {
            state.metrics.refused(false);
            Err(AppError::Busy { retry_after })
        }
        None => Ok(()),
    }
}

/// Step 3: the request header, and for the JSON form the inputs too.
async fn read_request(
    form: Form,
    body: &mut BodyReader,
) -> Result<(RunRequest, Option<Inputs>), AppError> {
    match form {
        Form::Archive | Form::Squashfs => {
            let (request, rest) = body.header().await?;
            body.pending = rest;
            Ok((request, None))
        }
        Form::Json => {
            let bytes = body.all().await?;
            let json: RunJsonRequest = serde_json::from_slice(&bytes)
                .map_err(|e| AppError::BadRequest(format!("invalid JSON request: {e}")))?;
            drop(bytes);
            let (run, files) = json.split();
            let stdin = checked_stdin(run.stdin.as_deref())?;
            let files = json_files(files)?;
            Ok((run, Some((files, stdin))))
        }
    }
}

/// Step 7: the input archive that follows the header.
async fn read_inputs(body: &mut BodyReader, request: &RunRequest) -> Result<Inputs, AppError> {
    let stdin = checked_stdin(request.stdin.as_deref())?;
    let archive = body.rest().await?;
    let files =
        if archive.is_empty() { Vec::new() } else { cpio::decode(&archive, &Limits::INPUT)? };
    Ok((files, stdin))
}

/// A request checked against the catalog: the job it becomes, without its inputs.
pub(super) struct Plan {
    container: String,
    job: Job,
}

impl Plan {
    /// Step 4: strings, container, options (rendered once), image, executor.
    pub(super) fn new(state: &SharedState, request: &RunRequest) -> Result<Plan, AppError> {
        check_strings(&request.env, &request.args)?;
        check_argv(request.argv.as_deref(), &request.args)?;
        let entry = state
            .catalog
            .get(&request.container)
            .ok_or_else(|| AppError::NotFound(format!("no container {:?}", request.container)))?;
        let meta = &entry.meta;
        let mut rendered = meta.render(&request.options, &request.args)?;
        if let Some(argv) = &request.argv {
            // The cache key hashes the job's argv, so it covers this command line.
            rendered.argv = argv.clone();
        }
        let image = match &state.cluster {
            // Workers hold (or fetch) the file; the server needs the ref.
            Some(_) => crate::cluster::images::resolve_ref(&state.images, &meta.id),
            None => state.images.resolve(&meta.id),
        };
        let image = image.map_err(|err| match err {
            images::ImageError::NotBuilt { .. } => match state.builds.state(&meta.id) {
                Some(build) => match build.retry_after() {
                    Some(retry_after) => {
                        AppError::Building { message: build.describe(&meta.id), retry_after }
                    }
                    None => AppError::Unavailable(build.describe(&meta.id)),
                },
                None => AppError::Unavailable(format!(
                    "the image of {:?} is not built on this server yet",
                    meta.id
                )),
            },
            images::ImageError::MissingFile { .. } => {
                tracing::warn!(error = %chain(&err), "an image file is missing");
                AppError::Unavailable(format!(
                    "the image of {:?} is missing on this server; the operator must rebuild it",
                    meta.id
                ))
            }
            other => AppError::CannotRun(other.into()),
        })?;
        if !state.executor_ready {
            return Err(AppError::Unavailable(
                "the executor is not ready (kernel or initramfs missing)".into(),
            ));
        }
        let request = jobs::Request { env: request.env.clone(), ..jobs::Request::default() };
        let job = jobs::job_rendered(meta, image, rendered, request, state.limits);
        Ok(Plan { container: meta.id.clone(), job })
    }

    pub(super) fn key(&self, state: &SharedState, inputs_digest: &str) -> String {
        let job = &self.job;
        cache_key(&KeyParts {
            // 3: answers carry `diagnostics`; 4: and `demangled` (older cached answers lack them).
            v: 4,
            backend: &state.backend_identity,
            image: &job.image.digest,
            argv: &job.argv,
            env: &job.env,
            cwd: &job.cwd,
            inputs: inputs_digest,
            limits: limit_values(&job.limits),
        })
    }

    pub(super) fn image(&self) -> &images::ImageInfo {
        &self.job.image
    }

    pub(super) fn job(self, files: Vec<Entry>, stdin: Vec<u8>) -> (String, Job) {
        (self.container, Job { files, stdin, ..self.job })
    }
}

/// Everything a run's answer depends on, hashed into its cache key: who runs it (the backend
/// kind and its guest side: kernel, guest init and crun, or the host's crun), the image, the
/// command line, environment and working directory, the inputs and the limits.
#[derive(Debug, Serialize)]
struct KeyParts<'a> {
    v: u32,
    backend: &'a str,
    image: &'a str,
    argv: &'a [String],
    env: &'a BTreeMap<String, String>,
    cwd: &'a str,
    inputs: &'a str,
    limits: [u64; 8],
}

fn limit_values(l: &JobLimits) -> [u64; 8] {
    [
        l.timeout.as_millis() as u64,
        u64::from(l.memory_mib),
        l.stdout_bytes,
        l.stderr_bytes,
        l.output_bytes,
        l.output_entries as u64,
        u64::from(l.scratch_mib),
        u64::from(l.pids_max),
    ]
}

/// The cache key: sha256 of the parts' JSON, hex.
fn cache_key(parts: &KeyParts) -> String {
    let json = serde_json::to_vec(parts).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// Step 8: runs the job in the pool (live, with `live`) and counts it.
pub(super) async fn execute(
    state: &SharedState,
    (container, job): (String, Job),
    started: Instant,
    live: Option<executor::live::LiveIo>,
) -> Result<RunAnswer, AppError> {
    let submitted = match live {
        Some(live) => state.pool.try_submit_live(&job, live).await,
        None => state.pool.try_submit(&job).await,
    };
    let output = match submitted {
        Ok(output) => output,
        Err(executor::ExecError::Busy { retry_after }) => {
            state.metrics.refused(false);
            return Err(AppError::Busy { retry_after });
        }
        Err(err) => return Err(exec_error(err)),
    };
    let timeout_ms = job.limits.timeout.as_millis() as u64;
    let mut answer = RunAnswer::from_job(output, &job.argv, &job.image, timeout_ms);
    if let Some(entry) = state.catalog.get(&container) {
        answer.annotate(&entry.meta, &job.files);
    }
    answer.result.timings_ms.total = started.elapsed().as_millis() as u64;
    let status = serde_json::to_value(answer.result.status).ok();
    state.metrics.run(
        &container,
        status.as_ref().and_then(|s| s.as_str()).unwrap_or("?"),
        answer.result.backend.start.as_deref(),
        started.elapsed(),
    );
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(err) = store.record_run(container).await {
            tracing::warn!(error = %chain(&err), "cannot count the run");
        }
    });
    Ok(answer)
}

/// A job the executor could not run at all. Trouble on the server's side that may pass (a full
/// disk, QEMU missing, shutting down) is a 503; anything else is internal. Either way the cause
/// goes to the log, never to the client (it names host paths).
fn exec_error(err: executor::ExecError) -> AppError {
    use executor::ExecError;
    match &err {
        ExecError::WorkDir { .. }
        | ExecError::Spawn { .. }
        | ExecError::ShuttingDown(_)
        | ExecError::Unavailable(_)
        | ExecError::Image(_) => AppError::CannotRun(err.into()),
        _ => AppError::internal(err),
    }
}

fn archive_response(frame: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = Body::from(frame).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A cached answer, marked `cached: true` with this request's timings. A cache that cannot be
/// read is a miss (logged).
pub(super) async fn cached(state: &SharedState, key: &str, started: Instant) -> Option<RunAnswer> {
    let bytes = match state.store.cache_get(key).await {
        Ok(bytes) => bytes?,
        Err(err) => {
            tracing::warn!(error = %chain(&err), "cache read failed");
            return None;
        }
    };
    let mut answer = RunAnswer::from_frame(&bytes).ok()?;
    state.metrics.cache(true);
    answer.result.cached = true;
    answer.result.timings_ms = v1::Timings {
        queue: 0,
        boot: 0,
        run: answer.result.timings_ms.run,
        exec: answer.result.timings_ms.exec,
        total: started.elapsed().as_millis() as u64,
    };
    Some(answer)
}

/// Environment names must be plain identifiers, and no string may hold a NUL byte (the
/// program's argv and environment are C strings). Runs and permalinks share these rules.
pub fn check_strings(env: &BTreeMap<String, String>, args: &[String]) -> Result<(), AppError> {
    for (key, value) in env {
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
    if let Some(arg) = args.iter().find(|a| a.contains('\0')) {
        return Err(AppError::BadRequest(format!("argument {arg:?} holds a NUL byte")));
    }
    Ok(())
}

/// A command line given in place of the rendered one: a program, no NUL bytes, and no `args`
/// (they extend the rendered command line, which `argv` replaces).
fn check_argv(argv: Option<&[String]>, args: &[String]) -> Result<(), AppError> {
    let Some(argv) = argv else { return Ok(()) };
    let bad = |why: &str| Err(AppError::BadRequest(format!("argv: {why}")));
    match argv.first() {
        None => return bad("the list is empty; give the program to run and its arguments"),
        Some(program) if program.is_empty() => return bad("the program (argv[0]) is empty"),
        Some(_) => {}
    }
    if let Some(arg) = argv.iter().find(|a| a.contains('\0')) {
        return bad(&format!("{arg:?} holds a NUL byte"));
    }
    if !args.is_empty() {
        return bad("args cannot go with it (args extend the rendered command line)");
    }
    Ok(())
}

/// Standard input, within its cap.
pub fn checked_stdin(stdin: Option<&str>) -> Result<Vec<u8>, AppError> {
    let stdin = stdin.unwrap_or_default();
    if stdin.len() > MAX_STDIN_BYTES {
        return Err(AppError::TooLarge(format!("stdin is larger than {MAX_STDIN_BYTES} bytes")));
    }
    Ok(stdin.as_bytes().to_vec())
}

/// The JSON form's inline files, checked by the same rules as an archive. Runs and permalinks
/// share them.
pub fn json_files(files: Vec<v1::JsonFile>) -> Result<Vec<Entry>, AppError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> (BTreeMap<String, String>, Vec<String>) {
        (BTreeMap::from([("A".into(), "1".into())]), vec!["sh".into(), "main.sh".into()])
    }

    /// Each part of the key, changed alone, changes the key.
    #[test]
    fn every_part_of_the_cache_key_counts() {
        let (env, argv) = parts();
        let base = KeyParts {
            v: 2,
            backend: "microvm:guest-1",
            image: "sha256:aa",
            argv: &argv,
            env: &env,
            cwd: "/input",
            inputs: "d1",
            limits: limit_values(&JobLimits::default()),
        };
        let key = cache_key(&base);
        let other_env = BTreeMap::from([("A".into(), "2".into())]);
        let other_argv = vec!["sh".to_owned()];
        let mut longer = JobLimits::default();
        longer.timeout *= 2;
        let mut more_pids = JobLimits::default();
        more_pids.pids_max += 1;
        let variants = [
            ("guest side", KeyParts { backend: "microvm:guest-2", ..base }),
            ("backend kind", KeyParts { backend: "sandbox:crun-1", ..base }),
            ("image", KeyParts { image: "sha256:bb", ..base }),
            ("argv", KeyParts { argv: &other_argv, ..base }),
            ("env", KeyParts { env: &other_env, ..base }),
            ("cwd", KeyParts { cwd: "/", ..base }),
            ("inputs", KeyParts { inputs: "d2", ..base }),
            ("time limit", KeyParts { limits: limit_values(&longer), ..base }),
            ("pids limit", KeyParts { limits: limit_values(&more_pids), ..base }),
        ];
        for (what, parts) in variants {
            assert_ne!(cache_key(&parts), key, "{what} is not in the key");
        }
        assert_eq!(cache_key(&KeyParts { ..base }), key, "the key is deterministic");
    }
}
