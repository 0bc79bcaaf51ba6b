//! The HTTP app: `app(state)` is the whole router, which `pe serve` serves and tests call with
//! `oneshot`. Each route module exposes its own `router()`.
//!
//! 1. [`run`]: `POST /api/v1/run`, archive or JSON, with the result cache in front of the pool.
//! 2. [`containers`]: the catalog. 3. [`links`]: permalinks. 4. [`ops`]: health, readiness,
//!    metrics, OpenAPI. 5. [`site`]: the built frontend; [`pages`]: the tool pages and docs
//!    generated from the catalog.
//!
//! Cross-cutting layers: request ids and structured request logs, a request timeout, security
//! headers, per-client rate limits on the costly routes (in [`run`] and [`links`]).

pub mod containers;
pub mod error;
pub mod links;
pub mod ops;
pub mod pages;
pub mod run;
pub mod site;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use executor::JobLimits;
use executor::image::ImageStore;
use executor::pool::Pool;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
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
    /// The built frontend (trunk's `dist/`), if any.
    pub static_dir: Option<PathBuf>,
    /// Whether the executor can run jobs (kernel, initramfs and QEMU are there).
    pub executor_ready: bool,
    /// `kvm`, `tcg` or `sandbox`, for /readyz and /metrics.
    pub backend_name: String,
    /// The pre-booted VMs, when there are any.
    pub warm: Option<Arc<executor::warm::WarmPool>>,
    /// The generated static site (tool pages, docs).
    pub site: pages::Site,
}

pub type SharedState = Arc<AppState>;

/// The whole app.
pub fn app(state: SharedState) -> Router {
    let api = Router::new()
        .merge(run::router())
        .merge(containers::router())
        .merge(links::router())
        .merge(ops::api_router());
    Router::new()
        .merge(api)
        .merge(ops::router())
        .merge(pages::router())
        .merge(site::router(&state))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
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

/// Takes a token for this client, or refuses with 429.
pub fn rate_limit<B>(
    state: &AppState,
    req: &axum::http::Request<B>,
) -> Result<Option<Decision>, AppError> {
    if !state.limiter.enabled() {
        return Ok(None);
    }
    let decision = state.limiter.check(client_ip(state, req), Instant::now());
    if !decision.allowed {
        state.metrics.refused(true);
        return Err(AppError::RateLimited { retry_after: decision.reset, limit: decision.limit });
    }
    Ok(Some(decision))
}

/// Adds the RateLimit headers (IETF draft names) to a response.
pub fn add_rate_headers(response: &mut Response, decision: Option<Decision>) {
    let Some(d) = decision else { return };
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", d.reset.as_secs().to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Seconds as a `Duration`, for configuration.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
