//! The test harness shared by the HTTP API tests: `app(state).oneshot(...)` with a fake
//! backend standing in for the VMs, and helpers to build requests and check answers.
#![allow(dead_code)] // each test file uses its own part of the harness

pub mod cluster;
pub mod real;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use executor::job::{JobTimings, RanOn, Truncated, Usage};
use executor::pool::{Backend, BoxFuture, Pool};
use executor::{ExecError, Job, JobLimits, JobOutput, Outcome};
use http_body_util::BodyExt;
use images::{ImageFormat, ImageStore, Ref};
use serde_json::{Value, json};
use server::catalog::Catalog;
use server::http::{AppState, app};
use server::metrics::Metrics;
use server::ratelimit::RateLimiter;
use server::store::Store;
use shared::api::v1::RunRequest;
use shared::cpio::{self, Entry, Limits};
use shared::framing;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Answers with the argv and the files it got (and its stdin as the output file named by
/// `FAKE_OUTPUT`, if set); can be held at a gate to fill the pool.
pub struct Fake {
    pub calls: AtomicUsize,
    pub gate: Option<Arc<Semaphore>>,
}

impl Backend for Fake {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if job.env.get("FAKE_FAIL").is_some_and(|v| v == "disk-full") {
                return Err(ExecError::WorkDir {
                    path: "/var/lib/pe/work".into(),
                    source: std::io::Error::from_raw_os_error(28),
                });
            }
            if let Some(gate) = &self.gate {
                let _permit = gate.acquire().await;
            }
            let mut stdout = format!("argv={:?}\n", job.argv);
            for file in &job.files {
                stdout.push_str(&format!(
                    "{}={}\n",
                    file.path,
                    String::from_utf8_lossy(file.content())
                ));
            }
            Ok(JobOutput {
                outcome: Outcome::Exited(0),
                stdout: stdout.into_bytes(),
                stderr: String::from_utf8_lossy(&job.stdin).into_owned().into_bytes(),
                files: match job.env.get("FAKE_OUTPUT") {
                    Some(name) => vec![Entry::file(name, job.stdin.clone())],
                    None => vec![Entry::file("out.txt", "made by the fake")],
                },
                truncated: Truncated::default(),
                timings: JobTimings { run_ms: 5, boot_ms: 1, ..JobTimings::default() },
                usage: Usage::default(),
                ran_on: RanOn { backend: "fake", accel: None, start: "cold", container: "created" },
                notes: Vec::new(),
            })
        })
    }
}

pub struct Harness {
    pub state: Arc<AppState>,
    pub fake: Arc<Fake>,
    pub _dirs: (tempfile::TempDir, tempfile::TempDir),
}

pub fn harness(
    slots: usize,
    queue: usize,
    rate_burst: u32,
    gate: Option<Arc<Semaphore>>,
) -> Harness {
    harness_with_static(slots, queue, rate_burst, gate, None)
}

pub fn harness_with_static(
    slots: usize,
    queue: usize,
    rate_burst: u32,
    gate: Option<Arc<Semaphore>>,
    static_dir: Option<std::path::PathBuf>,
) -> Harness {
    harness_full(slots, queue, rate_burst, gate, static_dir, Default::default())
}

/// A server whose images are being built in the background by `builds`.
pub fn harness_with_builds(builds: Arc<server::builds::Builds>) -> Harness {
    harness_full(1, 4, 0, None, None, builds)
}

fn harness_full(
    slots: usize,
    queue: usize,
    rate_burst: u32,
    gate: Option<Arc<Semaphore>>,
    static_dir: Option<std::path::PathBuf>,
    builds: Arc<server::builds::Builds>,
) -> Harness {
    let images_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let images = ImageStore::new(images_dir.path());
    // Only busybox is "built".
    std::fs::create_dir_all(images_dir.path().join("sha256")).unwrap();
    std::fs::write(images_dir.path().join("sha256/abc"), b"hsqs").unwrap();
    mark_built(&images, "busybox", "sha256:abc");
    let fake = Arc::new(Fake { calls: AtomicUsize::new(0), gate });
    let catalog = Catalog::embedded().unwrap();
    let site = server::http::pages::Site::generate(&catalog, &images, "http://pe.example");
    let state = Arc::new(AppState {
        catalog,
        images,
        pool: Pool::new(fake.clone(), slots, queue, Duration::from_secs(2)),
        store: Store::open(data_dir.path(), 1 << 20).unwrap(),
        metrics: Metrics::default(),
        limiter: RateLimiter::new(if rate_burst == 0 { 0 } else { 6 }, rate_burst),
        trusted_proxies: "127.0.0.1".parse().unwrap(),
        limits: JobLimits::default(),
        max_body: shared::limits::MAX_REQUEST_BYTES,
        request_timeout: Duration::from_secs(30),
        body_budget: Arc::new(Semaphore::new(64 << 20)),
        backend_identity: "fake:1".into(),
        static_dir,
        executor_ready: true,
        health: server::health::HealthChecks {
            parts: Vec::new(),
            disks: vec![data_dir.path().to_owned()],
            min_free_bytes: 0,
        },
        backend_name: "fake".into(),
        warm: None,
        site,
        live: server::http::live::LiveConfig {
            per_client: 2,
            stdin_max: 1024 * 1024,
            first_wait: Duration::from_millis(300),
            open: Arc::default(),
        },
        cluster: None,
        builds,
    });
    Harness { state, fake, _dirs: (images_dir, data_dir) }
}

/// Records `id` as built with the image file `digest` (a 4-byte stand-in in the store).
pub fn mark_built(images: &ImageStore, id: &str, digest: &str) {
    let reference = Ref {
        id: id.into(),
        digest: digest.into(),
        format: ImageFormat::Squashfs,
        size: 4,
        built_at: None,
        recipe: None,
        build_secs: None,
        env: Vec::new(),
    };
    images.write_ref(&reference).unwrap();
}

pub async fn send(h: &Harness, req: Request<Body>) -> Response<Body> {
    app(h.state.clone()).oneshot(req).await.unwrap()
}

pub async fn body_json(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
}

/// A JSON run request with its `Content-Length`, as a client on a connection sends it.
pub fn json_run(body: Value) -> Request<Body> {
    let body = body.to_string();
    Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

pub fn hello() -> Value {
    json!({"container": "busybox", "stdin": "in",
           "files": [{"path": "main.sh", "content": "echo hi"}]})
}

pub async fn assert_error(response: Response<Body>, status: StatusCode, code: &str, needle: &str) {
    assert_eq!(response.status(), status);
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

pub fn archive_request(request: &RunRequest, files: &[Entry]) -> Vec<u8> {
    framing::encode(request, &cpio::encode(files, &Limits::INPUT).unwrap()).unwrap()
}
