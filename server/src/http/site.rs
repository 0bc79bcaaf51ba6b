//! The browser app and static files. The built frontend (trunk's `dist/`) is served with its
//! precompressed `.gz`/`.br` siblings and long cache lifetimes for hashed assets; the app's
//! own routes (`/`, `/l/{id}`) get `index.html`; a missing asset is a plain 404, never the app.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

use super::SharedState;

pub fn router(state: &SharedState) -> Router<SharedState> {
    // The app's own routes: the playground, a permalink, the embeddable view.
    let app_routes = Router::new()
        .route("/", get(index))
        .route("/l/{id}", get(index))
        .route("/embed/{id}", get(index))
        .route("/embed/l/{id}", get(index));
    match &state.static_dir {
        Some(dir) => {
            let assets = ServeDir::new(dir).precompressed_gzip().precompressed_br();
            app_routes.fallback_service(
                tower::ServiceBuilder::new()
                    .layer(axum::middleware::from_fn(cache_lifetime))
                    .map_response(IntoResponse::into_response)
                    .service(assets),
            )
        }
        None => app_routes,
    }
}

/// Hashed assets (trunk names them `name-<16 hex>.ext`) never change: cache them for a year.
/// Others (Monaco's files, the boot script) for an hour.
/// A name longer than any file system allows is no file: 404 (the file service would fail to
/// open it and answer 500).
async fn cache_lifetime(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req
        .uri()
        .path()
        .split('/')
        .any(|segment| decoded_len(segment) > shared::limits::MAX_NAME_BYTES)
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let hashed = req.uri().path().rsplit('/').next().is_some_and(|name| {
        let stem = name.split('.').next().unwrap_or("");
        stem.rsplit_once('-')
            .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    let mut response = next.run(req).await;
    if response.status().is_success() {
        let value =
            if hashed { "public, max-age=31536000, immutable" } else { "public, max-age=3600" };
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

async fn index(State(state): State<SharedState>) -> Response {
    let page = state
        .static_dir
        .as_ref()
        .and_then(|dir| std::fs::read_to_string(dir.join("index.html")).ok());
    match page {
        Some(page) => ([(header::CACHE_CONTROL, "no-cache")], Html(page)).into_response(),
        None => (
            StatusCode::OK,
            Html(
                "<!doctype html><title>Program Explorer</title><h1>Program Explorer</h1>\
                 <p>The web app is not built on this server. The API is at \
                 <a href=\"/api/v1/containers\">/api/v1/containers</a>; see docs/API.md.</p>",
            ),
        )
            .into_response(),
    }
}

/// The length of a URL path segment once percent-decoded.
fn decoded_len(segment: &str) -> usize {
    segment.len() - 2 * segment.matches('%').count().min(segment.len() / 3)
}
