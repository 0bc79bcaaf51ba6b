//! Compiler Explorer's REST API over our run pipeline (the translation is `crate::ce`):
//!
//! | route | what it answers |
//! | --- | --- |
//! | `GET /api/languages` | the languages of the containers with a `[compiler_explorer]` table |
//! | `GET /api/compilers`, `GET /api/compilers/{lang}` | those containers as compilers |
//! | `POST /api/compiler/{id}/compile` | a compile (and execute) as `CompilationResult` |
//! | `POST /api/shortener` | stores a Compiler Explorer state as our permalink: `{url}` |
//! | `GET /api/shortlinkinfo/{id}` | a permalink as a Compiler Explorer `ClientState` |
//! | `GET /z/{id}` | the app on that permalink (a redirect to `/l/{id}`) |
//! | `GET /clientstate/{base64}` | the app on a state given in the URL (plain or zlib) |
//!
//! Lists and compile results are JSON when `Accept` names JSON, Compiler Explorer's plain-text
//! layout otherwise. Errors keep this server's one JSON shape (and Compiler Explorer's
//! statuses: 404 for an unknown compiler, 400 for a request without source or options).

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::api::v1::RunStatus;
use shared::meta::{CompilerExplorer, ContainerMeta};

use super::body::BodyReader;
use super::links::{self, MAX_LINK_BYTES};
use super::run::{checked_stdin, json_files, run_in_memory};
use super::{AppError, SharedState, rate_limited};
use crate::ce::{self, ClientState, CompileRequest, TextQuery};
use crate::convert::RunAnswer;

pub fn router(state: &SharedState) -> Router<SharedState> {
    let limited = || middleware::from_fn_with_state(state.clone(), rate_limited);
    Router::new()
        .route("/api/languages", get(languages))
        .route("/api/compilers", get(compilers))
        .route("/api/compilers/{lang}", get(compilers_of))
        .route("/api/compiler/{id}/compile", post(compile).layer(limited()))
        .route("/api/shortener", post(shortener).layer(limited()))
        .route("/api/shortlinkinfo/{id}", get(shortlinkinfo))
}

/// The routes outside `/api/`: short links and states open the app.
pub fn site_router() -> Router<SharedState> {
    Router::new().route("/z/{id}", get(short_link)).route("/clientstate/{state}", get(client_state))
}

/// The containers that are Compiler Explorer compilers, in catalog order.
fn compilers_in(state: &SharedState) -> impl Iterator<Item = (&ContainerMeta, &CompilerExplorer)> {
    state.catalog.iter().filter_map(|e| e.meta.compiler_explorer.as_ref().map(|ce| (&e.meta, ce)))
}

fn find_compiler<'a>(
    state: &'a SharedState,
    id: &str,
) -> Option<(&'a ContainerMeta, &'a CompilerExplorer)> {
    compilers_in(state).find(|(meta, ce)| ce.compiler_id(meta) == id)
}

/// Whether the client asked for JSON (Compiler Explorer answers text to `*/*`).
fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("json"))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], body)
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    fields: Option<String>,
}

fn list(headers: &HeaderMap, items: Vec<Value>, fields: Option<&str>, title: &str) -> Response {
    if wants_json(headers) {
        axum::Json(ce::pick_fields(items, fields)).into_response()
    } else {
        text(ce::text_table(&items, title))
    }
}

async fn languages(
    State(state): State<SharedState>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let mut items: Vec<Value> = Vec::new();
    for (meta, ce) in compilers_in(&state) {
        if items.iter().any(|i| i["id"] == ce.language) {
            continue;
        }
        let mut extensions: Vec<String> = Vec::new();
        for (m, _) in compilers_in(&state).filter(|(_, c)| c.language == ce.language) {
            for e in &m.inputs.extensions {
                if !extensions.contains(e) {
                    extensions.push(e.clone());
                }
            }
        }
        items.push(ce::language_info(ce, &extensions, ce.compiler_id(meta)));
    }
    list(&headers, items, q.fields.as_deref(), "Id")
}

async fn compilers(
    State(state): State<SharedState>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let items = compilers_in(&state).map(|(m, c)| ce::compiler_info(m, c)).collect();
    list(&headers, items, q.fields.as_deref(), "Compiler Name")
}

async fn compilers_of(
    State(state): State<SharedState>,
    Path(lang): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let items = compilers_in(&state)
        .filter(|(_, c)| c.language == lang)
        .map(|(m, c)| ce::compiler_info(m, c))
        .collect();
    list(&headers, items, q.fields.as_deref(), "Compiler Name")
}

async fn compile(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(query): Query<TextQuery>,
    req: Request,
) -> Result<Response, AppError> {
    let (meta, ce_spec) = find_compiler(&state, &id)
        .ok_or_else(|| AppError::NotFound(format!("no compiler {id:?}")))?;
    let headers = req.headers().clone();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let body = BodyReader::new(req, state.max_body, &state.body_budget)?.all().await?;
    let request = if is_json {
        CompileRequest::from_json(&body).map_err(|e| AppError::BadRequest(e.to_string()))?
    } else {
        let source = String::from_utf8(body.to_vec())
            .map_err(|e| AppError::BadRequest(format!("the source is not UTF-8: {e}")))?;
        CompileRequest::from_text(source, &query)
    };
    let plan = request.runs(meta, ce_spec).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let compiled = match &plan.compile {
        Some(run) => {
            let files = json_files(plan.files.clone())?;
            Some(run_in_memory(&state, run.clone(), files, Vec::new(), request.bypass_cache).await?)
        }
        None => None,
    };
    let built = compiled
        .as_ref()
        .is_none_or(|c| c.result.status == RunStatus::Exited && c.result.exit_code == Some(0));
    let executed: Option<RunAnswer> = match &plan.execute {
        Some(run) if built => {
            let files = json_files(plan.execute_files.clone())?;
            let stdin = checked_stdin(run.stdin.as_deref())?;
            Some(run_in_memory(&state, run.clone(), files, stdin, request.bypass_cache).await?)
        }
        _ => None,
    };
    let result = ce::compilation_result(meta, &request, compiled.as_ref(), executed.as_ref());
    Ok(if wants_json(&headers) {
        axum::Json(result).into_response()
    } else {
        text(ce::text_result(&result))
    })
}

/// The state a Compiler Explorer client sends, as the playground it opens.
fn playground_of(
    state: &SharedState,
    value: &Value,
) -> Result<shared::api::v1::PlaygroundState, AppError> {
    let client = ClientState::parse(value).map_err(|e| AppError::BadRequest(e.to_string()))?;
    client
        .to_playground(|id| find_compiler(state, id).map(|(m, _)| m))
        .map_err(|e| AppError::BadRequest(e.to_string()))
}

async fn shortener(State(state): State<SharedState>, req: Request) -> Result<Response, AppError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let body = BodyReader::new(req, MAX_LINK_BYTES, &state.body_budget)?.all().await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("invalid state: {e}")))?;
    let playground = playground_of(&state, &value)?;
    let id = links::store(&state, &playground).await?;
    Ok(axum::Json(json!({"url": format!("http://{host}/z/{id}")})).into_response())
}

async fn shortlinkinfo(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let playground = links::load(&state, &id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("ID {id:?} could not be found")))?;
    let meta = state.catalog.get(&playground.container).map(|e| &e.meta);
    Ok(axum::Json(ClientState::from_playground(&playground, meta).to_json()).into_response())
}

async fn short_link(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    links::load(&state, &id).await?.ok_or_else(|| AppError::NotFound(format!("no link {id:?}")))?;
    Ok(Redirect::to(&format!("/l/{id}")).into_response())
}

/// Largest decoded (and inflated) state.
const MAX_STATE_BYTES: usize = 1 << 20;

/// `/clientstate/{base64}`: a state in the URL, base64 (standard or URL-safe) of its JSON, or of
/// its zlib-deflated JSON. It is stored like a short link (the same state, the same id) and
/// the app opens on it.
async fn client_state(
    State(state): State<SharedState>,
    Path(encoded): Path<String>,
) -> Result<Response, AppError> {
    let bad = |why: String| AppError::BadRequest(format!("invalid client state: {why}"));
    let trimmed = encoded.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let json = if bytes.first() == Some(&b'{') {
        bytes
    } else {
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&bytes, MAX_STATE_BYTES)
            .map_err(|e| bad(format!("neither JSON nor zlib: {e:?}")))?
    };
    let value: Value = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    let playground = playground_of(&state, &value)?;
    let id = links::store(&state, &playground).await?;
    Ok(Redirect::to(&format!("/l/{id}")).into_response())
}
