//! `pe serve`: build the state from the configuration, serve `app(state)`, shut down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use executor::JobLimits;
use executor::pool::{self, Pool};
use executor::warm::{WarmMicroVm, WarmPool, WarmStart};
use images::build::DebianSource;
use images::{ImageInfo, ImageStore};
use shared::error::chain;

use crate::builds::{BuildFn, Builds};
use crate::catalog::Catalog;
use crate::executor_config::ExecutorArgs;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// `pe serve` settings; every flag is also an environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the database and the result cache live [default: ~/.local/share/program-explorer].
    #[arg(long, env = "PE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep permalinks, usage and the result cache in this PostgreSQL database
    /// (`postgres://USER@HOST:PORT/DB`) instead of SQLite in the data directory: what the
    /// servers of a cluster share (docs/SCALING.md). Its schema is migrated at start.
    #[arg(long, env = "PE_DATABASE")]
    pub database: Option<String>,
    /// Cluster mode: run no VMs here, hand every job to `pe worker`s through this NATS server
    /// (with JetStream), `nats://HOST:PORT`. Use with `--database postgres://...` so that all
    /// servers share links and the result cache (docs/SCALING.md).
    #[arg(long, env = "PE_NATS")]
    pub nats: Option<String>,
    /// Job slots (VMs at once) [default: cores - 1, at least 1; with --nats: jobs this server
    /// waits for at once, default 64].
    #[arg(long, env = "PE_SLOTS")]
    pub slots: Option<usize>,
    /// Jobs that may wait for a slot; more are refused with 503.
    #[arg(long, env = "PE_QUEUE", default_value_t = 8)]
    pub queue: usize,
    /// Wall-clock limit of a run, seconds (at most 60).
    #[arg(long, env = "PE_TIMEOUT_SECS", default_value_t = 10)]
    pub timeout_secs: u64,
    /// Guest memory per job, MiB.
    #[arg(long, env = "PE_MEMORY_MIB", default_value_t = shared::limits::DEFAULT_MEMORY_MIB)]
    pub memory_mib: u32,
    /// Result cache budget, MiB.
    #[arg(long, env = "PE_CACHE_MIB", default_value_t = 1024)]
    pub cache_mib: u64,
    /// Runs and links per minute per client (0 turns rate limiting off).
    #[arg(long, env = "PE_RATE_PER_MINUTE", default_value_t = 60)]
    pub rate_per_minute: u32,
    /// Requests a client may make at once before the rate applies.
    #[arg(long, env = "PE_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client for rate limiting,
    /// `ADDR[/PREFIX]` comma-separated (e.g. `127.0.0.1,10.0.0.0/8`). None by default: every
    /// client is its connection's peer address.
    #[arg(long, env = "PE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: crate::client::TrustedProxies,
    /// MiB of request bodies all requests together may hold; a request beyond it is answered
    /// 503 busy before its body is read (at least one largest body always fits).
    #[arg(long, env = "PE_INFLIGHT_MIB", default_value_t = 64)]
    pub inflight_mib: u64,
    /// Seconds for a request's headers to arrive; also how long an idle keep-alive connection
    /// is kept.
    #[arg(long, env = "PE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Open connections per client (IPv6: per /64); more are closed at once. Trusted proxies
    /// are not capped.
    #[arg(long, env = "PE_CONNECTIONS_PER_CLIENT", default_value_t = 64)]
    pub connections_per_client: usize,
    /// Live runs (`GET /api/v1/run/live`) one client may have open at once.
    #[arg(long, env = "PE_LIVE_PER_CLIENT", default_value_t = 4)]
    pub live_per_client: usize,
    /// KiB of stdin one live run may receive while it runs.
    #[arg(long, env = "PE_LIVE_STDIN_KIB", default_value_t = 1024)]
    pub live_stdin_kib: usize,
    /// Seconds before a request is cut off.
    #[arg(long, env = "PE_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Warm VMs to keep ready: `auto` (one each for the containers run most on this server in
    /// the last 30 days, topped up from python, gcc and busybox, 3 in all), `ID=N` per container
    /// comma-separated, or `none` for cold boots only. Jobs of other containers boot a VM of
    /// their own.
    #[arg(long, env = "PE_WARM", default_value = "auto")]
    pub warm: String,
    /// Seconds between re-choosing the warm containers (usage changes; a rebuilt image has a
    /// new digest and gets a new template); 0 never re-chooses.
    #[arg(long, env = "PE_WARM_REFRESH_SECS", default_value_t = 600)]
    pub warm_refresh_secs: u64,
    /// How ready VMs are made: `snapshot` (boot one template per container, save it, restore
    /// each VM from it; a job finding none ready restores one on the spot) or `boot` (boot each
    /// VM ahead of its job).
    #[arg(long, env = "PE_WARM_START", value_enum, default_value_t = WarmStartChoice::Snapshot)]
    pub warm_start: WarmStartChoice,
    /// Where people reach this server, for the copy-paste `<iframe>` snippets on the tool pages
    /// [default: http://LISTEN].
    #[arg(long, env = "PE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The built frontend (trunk's dist/) to serve.
    #[arg(long, env = "PE_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Build the images that are missing (or were built from another recipe) in the
    /// background while serving, the most used first: until its image is ready, a container
    /// shows as queued or building in the catalog and its runs answer 503 `unavailable` with
    /// `Retry-After`. `scripts/run` turns this on, so a first start serves at once.
    #[arg(long, env = "PE_BUILD_MISSING")]
    pub build_missing: bool,
}

/// `--warm-start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmStartChoice {
    Snapshot,
    Boot,
}

impl ServeArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

pub fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/lib"), PathBuf::from);
    home.join(".local/share/program-explorer")
}

pub async fn run(exec: &ExecutorArgs, catalog: Catalog, args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let store = Store::from_url(args.database.as_deref(), &data_dir, args.cache_mib * 1024 * 1024)
        .await
        .context("cannot open the database")?;
    let cluster = match &args.nats {
        Some(url) => Some(crate::cluster::remote::start_for_server(url).await?),
        None => None,
    };
    if cluster.is_some() && store.kind() != "postgres" {
        tracing::warn!(
            "--nats without --database postgres://...: links and the result cache stay on this server"
        );
    }
    let chosen = match &cluster {
        Some(remote) => crate::cluster::remote::chosen(remote),
        None => exec.choose_backend().await.context("cannot create the work directory")?,
    };
    tracing::info!(backend = %chosen.name, reason = %chosen.reason, ready = chosen.ready, "backend chosen");
    let slots = match (&cluster, args.slots) {
        (_, Some(slots)) => slots,
        (Some(_), None) => crate::cluster::remote::DEFAULT_WAITING,
        (None, None) => pool::default_slots(),
    };
    let typical = if chosen.name == "tcg" { 3 } else { 1 };
    let limits = JobLimits {
        timeout: Duration::from_secs(
            args.timeout_secs.clamp(1, shared::limits::MAX_TIMEOUT_MS / 1000),
        ),
        memory_mib: args.memory_mib,
        ..JobLimits::default()
    };
    if let Some(vm) = &chosen.vm {
        // What a server killed earlier left behind: job directories, and snapshot RAM files
        // holding host memory on tmpfs.
        let swept = executor::workdir::sweep_stale(&vm.work_dir, executor::workdir::WORK_KINDS)
            + executor::workdir::sweep_stale(
                &executor::warm::snapshot::ram_dir_base(&vm.work_dir),
                &[executor::warm::snapshot::RAM_DIR_KIND],
            )
            + executor::workdir::sweep_stale(
                &std::env::temp_dir(),
                &[executor::warm::snapshot::SAVE_DIR_KIND],
            );
        let swept = swept + vm.cgroups.as_ref().map_or(0, |c| c.sweep_stale());
        if swept > 0 {
            tracing::info!(swept, "removed directories left by servers that are gone");
        }
    }
    let mut backend = chosen.backend.clone();
    let mut warm_pool = None;
    let warm_wanted = !matches!(args.warm.trim(), "" | "none");
    if let Some(vm) = chosen.vm.clone().filter(|_| warm_wanted) {
        let images = choose_warm(&args.warm, &store, &catalog, &exec.images()).await?;
        let start = match args.warm_start {
            WarmStartChoice::Snapshot => WarmStart::Snapshot,
            WarmStartChoice::Boot => WarmStart::Boot,
        };
        let warm_up = catalog
            .iter()
            .filter(|entry| !entry.meta.run.warm_up.is_empty())
            .map(|entry| (entry.meta.id.clone(), entry.meta.run.warm_up.clone()))
            .collect();
        let warm = WarmPool::new(vm, limits, images, start, warm_up);
        tracing::info!(containers = ?warm.warm_ids(), ?start, "warm VMs");
        warm.fill();
        backend = Arc::new(WarmMicroVm { warm: warm.clone() });
        warm_pool = Some(warm);
    }
    let pool = Pool::new(backend, slots, args.queue, Duration::from_secs(typical));
    let limits = JobLimits {
        timeout: Duration::from_secs(
            args.timeout_secs.clamp(1, shared::limits::MAX_TIMEOUT_MS / 1000),
        ),
        memory_mib: args.memory_mib,
        ..JobLimits::default()
    };
    let builds = if args.build_missing {
        start_builds(&catalog, &store, &exec.images()).await
    } else {
        Arc::default()
    };
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen));
    let site = crate::http::pages::Site::generate(&catalog, &exec.images(), &public_url);
    let state = Arc::new(AppState {
        catalog,
        images: exec.images(),
        pool,
        store,
        metrics: Metrics::default(),
        limiter: RateLimiter::new(args.rate_per_minute, args.rate_burst),
        trusted_proxies: args.trusted_proxies.clone(),
        limits,
        max_body: shared::limits::MAX_REQUEST_BYTES,
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            (args.inflight_mib as usize * 1024 * 1024).max(shared::limits::MAX_REQUEST_BYTES),
        )),
        backend_identity: chosen.identity.clone(),
        static_dir: args.static_dir.clone(),
        executor_ready: chosen.ready,
        health: crate::health::HealthChecks {
            parts: chosen.parts.clone(),
            disks: [Some(data_dir.clone()), chosen.vm.as_ref().map(|vm| vm.work_dir.clone())]
                .into_iter()
                .flatten()
                .collect(),
            min_free_bytes: crate::health::MIN_FREE_BYTES,
        },
        backend_name: chosen.name.clone(),
        warm: warm_pool,
        site,
        live: crate::http::live::LiveConfig {
            per_client: args.live_per_client,
            stdin_max: args.live_stdin_kib * 1024,
            first_wait: crate::http::live::FIRST_WAIT,
            open: Arc::default(),
        },
        cluster,
        builds,
    });
    if let (Some(warm), true) = (state.warm.clone(), args.warm_refresh_secs > 0) {
        // Usage changes and images get rebuilt (a new digest): follow both.
        let (state, spec) = (state.clone(), args.warm.clone());
        let every = Duration::from_secs(args.warm_refresh_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match choose_warm(&spec, &state.store, &state.catalog, &state.images).await {
                    Ok(images) => warm.retarget(images),
                    Err(err) => {
                        tracing::warn!(error = %chain(err.as_ref()), "cannot choose warm containers")
                    }
                }
            }
        });
    }
    let app = http::app(state.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "pe: serving on http://{} ({} containers, {slots} slot(s) on {}, data in {})",
        args.listen,
        state.catalog.len(),
        chosen.name,
        data_dir.display()
    );
    let conn_limits = crate::listener::ConnLimits {
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        per_client: args.connections_per_client.max(1),
        trusted_proxies: args.trusted_proxies.clone(),
    };
    crate::listener::serve(listener, app, conn_limits, shutdown_signal())
        .await
        .context("the server failed")?;
    // Stop admitting jobs; the VMs of requests that were cut off died with their futures.
    state.pool.close();
    if state.builds.pending() > 0 {
        eprintln!("pe: stopping the image builds");
        let builds = state.builds.clone();
        // mmdebstrap stops at the end of its current step and unmounts what it mounted.
        let ended = tokio::task::spawn_blocking(move || builds.stop(Duration::from_secs(60)))
            .await
            .unwrap_or(false);
        if !ended {
            eprintln!("pe: an image build did not stop in 60 s");
        }
    }
    eprintln!("pe: stopped");
    Ok(())
}

/// `--build-missing`: queues the images to build, most used on this server first, and starts
/// the builders.
async fn start_builds(catalog: &Catalog, store: &Store, images: &ImageStore) -> Arc<Builds> {
    let used = store.most_used(catalog.len(), 30 * 24 * 3600).await.unwrap_or_else(|err| {
        tracing::warn!(error = %chain(&err), "cannot read usage");
        Vec::new()
    });
    let order = crate::builds::build_order(catalog, images, &used);
    let jobs = crate::image_cmd::default_build_jobs();
    if !order.is_empty() {
        eprintln!(
            "pe: building {} image(s) in the background, {jobs} at a time: {}",
            order.len(),
            order.join(" ")
        );
    }
    let (catalog, images) = (catalog.clone(), images.clone());
    let source = DebianSource::default();
    let build: Arc<BuildFn> = Arc::new(move |id: &str, progress: &mut dyn FnMut(&str)| {
        let meta = &catalog.get(id).ok_or("not in the catalog")?.meta;
        images::build::build(&images, id, &crate::catalog::recipe(meta), &source, progress)
            .map(|_| ())
            .map_err(|err| chain(&err))
    });
    Builds::start(order, jobs, build)
}

/// The images `--warm` asks for now: for `auto`, by this server's usage.
async fn choose_warm(
    spec: &str,
    store: &Store,
    catalog: &Catalog,
    images: &ImageStore,
) -> anyhow::Result<Vec<(ImageInfo, usize)>> {
    let spec = match spec.trim() {
        "auto" => {
            let used = store.most_used(AUTO_WARM, 30 * 24 * 3600).await.unwrap_or_else(|err| {
                tracing::warn!(error = %chain(&err), "cannot read usage");
                Vec::new()
            });
            let spec = auto_warm_spec(&used, catalog, images);
            tracing::debug!(warm = %spec, "warm containers chosen by use");
            spec
        }
        spec => spec.to_owned(),
    };
    warm_images(&spec, catalog, images)
}

/// How many containers `--warm auto` keeps a VM ready for.
const AUTO_WARM: usize = 3;
/// What `--warm auto` tops up with when the server has little history.
const AUTO_WARM_DEFAULTS: [&str; 3] = ["python", "gcc", "busybox"];

/// `--warm auto`: one VM each for the most used containers whose image is built, then the
/// defaults, `AUTO_WARM` in all.
fn auto_warm_spec(used: &[String], catalog: &Catalog, images: &ImageStore) -> String {
    let mut chosen: Vec<&str> = Vec::new();
    for id in used.iter().map(String::as_str).chain(AUTO_WARM_DEFAULTS) {
        if chosen.len() == AUTO_WARM {
            break;
        }
        if !chosen.contains(&id) && catalog.get(id).is_some() && images.resolve(id).is_ok() {
            chosen.push(id);
        }
    }
    if chosen.is_empty() {
        return "none".into();
    }
    chosen.iter().map(|id| format!("{id}=1")).collect::<Vec<_>>().join(",")
}

/// Parses `ID=N,ID=N` (or `none`) into the images to keep warm. Containers whose image is not
/// built are skipped with a warning.
pub(crate) fn warm_images(
    spec: &str,
    catalog: &Catalog,
    store: &ImageStore,
) -> anyhow::Result<Vec<(ImageInfo, usize)>> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "none" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in spec.split(',') {
        let (id, n) = item.split_once('=').unwrap_or((item, "1"));
        let n: usize =
            n.trim().parse().with_context(|| format!("--warm {item:?}: N is not a number"))?;
        if catalog.get(id.trim()).is_none() {
            anyhow::bail!("--warm {item:?}: no container {id:?} in the catalog");
        }
        match store.resolve(id.trim()) {
            Ok(image) => out.push((image, n)),
            Err(err) => tracing::warn!(container = id, error = %chain(&err), "not kept warm"),
        }
    }
    Ok(out)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    eprintln!("pe: shutting down: finishing running requests");
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::{ImageFormat, Ref};

    /// An image store where `built` have an image file.
    fn store_with(dir: &std::path::Path, built: &[&str]) -> ImageStore {
        let store = ImageStore::new(dir.to_owned());
        for (i, id) in built.iter().enumerate() {
            let hex = format!("{i:064x}");
            std::fs::create_dir_all(dir.join("sha256")).unwrap();
            std::fs::write(dir.join("sha256").join(&hex), b"image").unwrap();
            let r = Ref {
                id: (*id).into(),
                digest: format!("sha256:{hex}"),
                format: ImageFormat::Squashfs,
                size: 5,
                built_at: None,
                recipe: None,
                build_secs: None,
                env: Vec::new(),
            };
            store.write_ref(&r).unwrap();
        }
        store
    }

    #[test]
    fn auto_warm_prefers_the_most_used_built_containers_then_the_defaults() {
        let catalog = Catalog::embedded().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let images = store_with(dir.path(), &["jq", "gcc", "busybox", "python"]);
        let used = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Most used first; a container that is gone from the catalog or not built is skipped.
        assert_eq!(
            auto_warm_spec(&used(&["jq", "no-such", "rust", "gcc"]), &catalog, &images),
            "jq=1,gcc=1,python=1"
        );
        // No history: the defaults.
        assert_eq!(auto_warm_spec(&[], &catalog, &images), "python=1,gcc=1,busybox=1");
        // Nothing built: no warm VMs.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            auto_warm_spec(&[], &catalog, &ImageStore::new(empty.path().to_path_buf())),
            "none"
        );
    }
}
