//! The HTTP app: `app(state)` is the whole router, which `pe serve` serves and tests call with
//! `oneshot`. Each route module exposes its own `router()`.
//!
//! 1. [`run`]: `POST /api/v1/run`, archive or JSON, with the result cache in front of the pool.
//! 2. [`containers`]: the catalog. 3. [`links`]: permalinks. 4. [`ops`]: health, readiness,
//!    metrics, OpenAPI. 5. [`site`]: the built frontend; [`pages`]: the tool pages and docs
//!    generated from the catalog. 6. [`ce`]: Compiler Explorer's REST API (`/api/languages`,
//!    `/api/compilers`, `/api/compiler/{id}/compile`, `/api/shortener`, ...) over [`run`]'s
//!    pipeline, and its short links `/z/{id}` and `/clientstate/{base64}`.
//!
//! Cross-cutting layers: request ids and structured request logs, a request timeout, security
//! headers, per-client rate limits on the costly routes (in [`run`], [`links`] and [`ce`]).

pub mod body;
pub mod ce;
pub mod containers;
pub mod error;
pub mod links;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod run;
pub mod site;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::any;
use executor::JobLimits;
use executor::pool::Pool;
use images::ImageStore;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::catalog::Catalog;
use crate::client::TrustedProxies;
use crate::metrics::Metrics;
use crate::ratelimit::{Decision, RateLimiter};
use crate::store::Store;
pub use error::AppError;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub catalog: Catalog,
    pub images: ImageStore,
    pub pool: Pool,
    pub store: Store,
    pub metrics: Metrics,
    pub limiter: RateLimiter,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Limits every job runs under.
    pub limits: JobLimits,
    /// Largest request body.
    pub max_body: usize,
    /// A request still unanswered after this is cut off with 408.
    pub request_timeout: Duration,
    /// Bytes of request bodies all requests together may hold (a permit per byte); a request
    /// that does not fit is answered 503 `busy` before its body is read.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// What runs jobs, down to the guest's parts (kernel, initramfs with the guest init and
    /// crun) or the host's crun: part of every cache key.
    pub backend_identity: String,
    /// The built frontend (trunk's `dist/`), if any.
    pub static_dir: Option<PathBuf>,
    /// Whether the executor could run jobs at start (kernel, initramfs and QEMU were there).
    pub executor_ready: bool,
    /// What `/readyz` checks each time.
    pub health: crate::health::HealthChecks,
    /// `kvm`, `tcg` or `sandbox`, for /readyz and /metrics.
    pub backend_name: String,
    /// The pre-booted VMs, when there are any.
    pub warm: Option<Arc<executor::warm::WarmPool>>,
    /// The generated static site (tool pages, docs).
    pub site: pages::Site,
    /// Live runs' limits and open sockets.
    pub live: live::LiveConfig,
    /// Cluster mode: the work queue the pool's jobs go to (`pe serve --nats`).
    pub cluster: Option<crate::cluster::remote::Remote>,
    /// Images being built in the background (`pe serve --build-missing`); empty otherwise.
    pub builds: Arc<crate::builds::Builds>,
}

pub type SharedState = Arc<AppState>;

/// The whole app.
pub fn app(state: SharedState) -> Router {
    let api = Router::new()
        .merge(run::router(&state))
        .merge(live::router())
        .merge(containers::router())
        .merge(links::router(&state))
        .merge(ce::router(&state))
        .merge(ops::api_router())
        .route("/api/{*rest}", any(error::no_such_route));
    Router::new()
        .merge(api)
        .merge(ops::router())
        .merge(ce::site_router())
        .merge(pages::router())
        .merge(site::router(&state))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.request_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(middleware::from_fn(error::one_error_shape))
        .layer(middleware::from_fn(close_after_unread_body))
        .layer(middleware::from_fn(security_headers))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), id = id.unwrap_or("-"))
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), Counter::default()))
        .with_state(state)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a per-process prefix and a counter.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:x}-{n}", std::process::id())).ok().map(RequestId::new)
    }
}

async fn count_requests(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("other", |p| p.as_str()).to_owned();
    let response = next.run(req).await;
    state.metrics.request(&route, response.status().as_u16());
    response
}

/// An error answered to a request whose body may not have been read (a refusal before the body,
/// such as 429, 503 or 413) says `Connection: close`: the server will not read the rest, so the
/// connection cannot carry another request, and a client must not try.
async fn close_after_unread_body(req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|len| len.trim() != "0");
    let mut response = next.run(req).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Content Security Policy and friends. Frames are refused except on the embed routes.
async fn security_headers(req: Request, next: Next) -> Response {
    let embeddable = req.uri().path().starts_with("/embed/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let frame_ancestors = if embeddable { "*" } else { "'none'" };
    let csp = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; \
         frame-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; \
         frame-ancestors {frame_ancestors}"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    if !embeddable {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// The client's address: the connection's peer, or the client a trusted proxy names.
pub fn client_ip<B>(state: &AppState, req: &axum::http::Request<B>) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |ConnectInfo(addr)| addr.ip());
    let forwarded = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    state.trusted_proxies.client(peer, forwarded)
}

/// Route middleware for the costly routes: takes a token for this client, or refuses with 429.
/// Every answer of a limited route carries the RateLimit headers, refusals included: a request
/// refused as malformed (400, 404, 413, 422) has cost the server its parsing, so it costs a token
/// too (docs/API.md says so).
pub async fn rate_limited(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    if !state.limiter.enabled() {
        return next.run(req).await;
    }
    let decision = state.limiter.check(client_ip(&state, &req));
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
        state.metrics.refused(true);
        AppError::RateLimited { retry_after: decision.reset }.into_response()
    };
    add_rate_headers(&mut response, decision);
    response
}

/// Adds the RateLimit headers (IETF draft names) to a response.
pub(super) fn add_rate_headers(response: &mut Response, d: Decision) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", d.limit),
        ("ratelimit-remaining", d.remaining),
        ("ratelimit-reset", d.reset.as_secs().max(u64::from(!d.allowed)) as u32),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// Seconds as a `Duration`, for configuration.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
