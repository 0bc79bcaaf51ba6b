//! Permalinks: `POST /api/v1/links` stores a playground state and answers its id, derived from
//! the state itself (the same state always gets the same link); `GET /api/v1/links/{id}`.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use shared::api::v1::{LinkCreated, PlaygroundState};

use super::body::BodyReader;
use super::run::{check_strings, checked_stdin, json_files};
use super::{AppError, SharedState, rate_limited};

/// Largest stored state.
pub const MAX_LINK_BYTES: usize = 1024 * 1024;

pub fn router(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route(
            "/api/v1/links",
            post(create).layer(middleware::from_fn_with_state(state.clone(), rate_limited)),
        )
        .route("/api/v1/links/{id}", get(fetch))
}

/// The id of a state: 16 characters of base64url of the sha256 of its canonical JSON.
pub fn link_id(canonical_json: &str) -> String {
    let digest = Sha256::digest(canonical_json.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

async fn create(State(state): State<SharedState>, req: Request) -> Result<Response, AppError> {
    let body = BodyReader::new(req, MAX_LINK_BYTES, &state.body_budget)?.all().await?;
    let playground = parse(&body)?;
    let id = store(&state, &playground).await?;
    let url = format!("/l/{id}");
    Ok((StatusCode::CREATED, Json(LinkCreated { id, url })).into_response())
}

/// Checks and stores a state; answers its id. (The Compiler Explorer API's short links are
/// stored this way too.)
pub(super) async fn store(
    state: &SharedState,
    playground: &PlaygroundState,
) -> Result<String, AppError> {
    check(state, playground)?;
    // Canonical: serde_json writes struct fields in order and maps sorted (BTreeMap).
    let canonical = serde_json::to_string(playground).map_err(AppError::internal)?;
    let id = link_id(&canonical);
    state.store.put_link(id.clone(), canonical).await.map_err(store_error)?;
    Ok(id)
}

/// The stored state behind a link id; `None` for an id that is not one.
pub(super) async fn load(
    state: &SharedState,
    id: &str,
) -> Result<Option<PlaygroundState>, AppError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Ok(None);
    }
    let Some(stored) = state.store.get_link(id.to_owned()).await.map_err(store_error)? else {
        return Ok(None);
    };
    serde_json::from_str(&stored).map(Some).map_err(AppError::internal)
}

/// A state is checked by the same rules as a run of it: the container exists, the option
/// values are accepted (422), the strings, file paths and contents and stdin pass the run's
/// checks. A link that opens on a state every run refuses would be a broken link.
fn check(state: &SharedState, playground: &PlaygroundState) -> Result<(), AppError> {
    let setups = std::iter::once((
        &playground.container,
        &playground.options,
        &playground.args,
        &playground.env,
    ))
    .chain(playground.compare.iter().map(|c| (&c.container, &c.options, &c.args, &c.env)));
    // The compare view's second setup runs on the same files: it is checked the same way.
    for (container, options, args, env) in setups {
        let entry = state
            .catalog
            .get(container)
            .ok_or_else(|| AppError::NotFound(format!("no container {container:?}")))?;
        entry.meta.render(options, args)?;
        check_strings(env, args)?;
    }
    checked_stdin(playground.stdin.as_deref())?;
    json_files(playground.files.clone())?;
    Ok(())
}

fn parse(body: &[u8]) -> Result<PlaygroundState, AppError> {
    let state: PlaygroundState = serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("invalid playground state: {e}")))?;
    state.validate().map_err(|e| AppError::BadRequest(format!("invalid playground state: {e}")))?;
    Ok(state)
}

async fn fetch(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let not_found = || AppError::NotFound(format!("no link {id:?}"));
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(not_found());
    }
    let stored =
        state.store.get_link(id.clone()).await.map_err(store_error)?.ok_or_else(not_found)?;
    let playground: PlaygroundState = serde_json::from_str(&stored).map_err(AppError::internal)?;
    Ok(Json(playground).into_response())
}

/// A database that is down is a 503 the client may retry (runs keep working meanwhile); any
/// other store failure is internal.
fn store_error(err: crate::store::StoreError) -> AppError {
    if err.is_unavailable() {
        tracing::warn!(error = %shared::error::chain(&err), "the link database is unavailable");
        AppError::Unavailable("permalinks are unavailable for now (the database does not answer); runs still work, retry the link later".into())
    } else {
        AppError::internal(err)
    }
}
