//! Operations: `/healthz` (the process answers), `/readyz` (the executor can run jobs),
//! `/metrics` (OpenMetrics) and `/api/v1/openapi.json` (generated: [`super::openapi`]).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::SharedState;
use crate::metrics::Gauges;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

pub fn api_router() -> Router<SharedState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when no fatal problem is found now (`crate::health`); the problems are listed.
async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    let check = state.clone();
    let (built, problems) = tokio::task::spawn_blocking(move || {
        let built = check.catalog.iter().filter(|e| resolves(&check, &e.meta.id)).count();
        let failed = check.warm.as_ref().map(|w| w.failed_templates()).unwrap_or_default();
        (built, check.health.run(&check.images, built, &failed))
    })
    .await
    .unwrap_or_default();
    let mut problems = problems;
    problems.extend(crate::cluster::health::problems(&state).await);
    let ready = !problems.iter().any(|p| p.fatal);
    let warm = state.warm.as_ref().map(|w| w.stats()).unwrap_or_default();
    let body = json!({
        "ready": ready,
        "problems": problems,
        "backend": state.backend_name,
        "executor": state.executor_ready,
        "images_built": built,
        "containers": state.catalog.len(),
        "slots": state.pool.slots(),
        "running": state.pool.running(),
        "queued": state.pool.queued(),
        "warm_ready": warm.ready,
        "warm": state.warm.as_ref().map(|w| w.warm_ids()).unwrap_or_default(),
        "snapshot_templates": warm.templates,
        "warm_up_failures": warm.warm_up_failures,
    });
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Whether a container's image is usable here: built, or in cluster mode its ref known.
fn resolves(state: &SharedState, id: &str) -> bool {
    match &state.cluster {
        Some(_) => crate::cluster::images::resolve_ref(&state.images, id).is_ok(),
        None => state.images.resolve(id).is_ok(),
    }
}

async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let cache_bytes = state.store.cache_size().await.unwrap_or(0);
    let warm = state.warm.as_ref().map(|w| w.stats()).unwrap_or_default();
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let text = state.metrics.render(Gauges {
        queue_depth: gauge(state.pool.queued()),
        running_jobs: gauge(state.pool.running()),
        slots: gauge(state.pool.slots()),
        cache_bytes: i64::try_from(cache_bytes).unwrap_or(i64::MAX),
        warm_vms_ready: gauge(warm.ready),
        warm_vms_booting: gauge(warm.booting),
        snapshot_templates: gauge(warm.templates),
        snapshot_template_bytes: i64::try_from(warm.template_bytes).unwrap_or(i64::MAX),
    });
    let text = crate::cluster::health::with_metrics(&state, text).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

/// Generated from the code once, on first request (`super::openapi`).
async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(super::openapi::document);
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}
