//! `pe worker`: takes jobs from the work queue and runs them in the local executor.
//!
//! 1. Connect to NATS and find (or create) the stream, the consumer and the bucket.
//! 2. Loop: wait for a free slot, then pull one message (a pull request that expires after a
//!    few seconds, so an idle worker asks again). A worker with no free slot pulls nothing:
//!    the job waits in the stream for whichever worker frees a slot first.
//! 3. Each job: a job past its deadline, or unreadable, is terminated (never redelivered).
//!    Otherwise it runs in the pool while an in-progress ack goes out every second (the ack
//!    wait is a few seconds, so a worker killed mid-job lets its job go to another worker
//!    quickly), and while `pe.cancel.<job>` is listened to (a cancel drops the run, which ends
//!    the VM). The result goes to the job's reply subject, then the message is acked.
//! 4. SIGTERM or Ctrl-C: no more pulls; running jobs finish and answer, then it exits.
//! 5. `--warm ID=N` keeps VMs ready (booted, or restored from a snapshot) as `pe serve` does.
//! 6. `--listen` serves `/metrics`, `/healthz` and `/readyz` (ready while NATS is connected).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use clap::Args;
use executor::pool::{self, Pool};
use executor::{Job, JobOutput, Outcome};
use futures_util::StreamExt;
use images::ImageStore;
use shared::error::chain;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::remote::{get_blob, put_blob};
use super::wire::{self, INLINE_MAX};
use super::{CANCEL_PREFIX, PROGRESS_EVERY, QueueBounds, Shared, WORKERS};
use crate::catalog::Catalog;
use crate::executor_config::ExecutorArgs;
use crate::serve::WarmStartChoice;

/// How long a stopping worker waits for its running jobs (the longest time limit, plus margin).
const DRAIN: Duration = Duration::from_secs(shared::limits::MAX_TIMEOUT_MS / 1000 + 30);

/// `pe worker` settings; every flag is also an environment variable.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The NATS server (with JetStream) the jobs come from: `nats://HOST:PORT`.
    #[arg(long, env = "PE_NATS")]
    pub nats: String,
    /// Jobs run at once [default: cores - 1, at least 1].
    #[arg(long, env = "PE_SLOTS")]
    pub slots: Option<usize>,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this address.
    #[arg(long, env = "PE_WORKER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Jobs the stream holds at most, if this worker creates it (waiting plus running; a
    /// server's publish beyond it is answered 503 busy).
    #[arg(long, env = "PE_QUEUE_MAX", default_value_t = QueueBounds::default().max_jobs)]
    pub queue_max: i64,
    /// Warm VMs to keep ready on this worker (microVM backend): `ID=N` per container,
    /// comma-separated, or `none`. Jobs of other containers boot a VM of their own.
    #[arg(long, env = "PE_WARM", default_value = "none")]
    pub warm: String,
    /// How warm VMs are made: `snapshot` (restored from a saved template) or `boot`.
    #[arg(long, env = "PE_WARM_START", value_enum, default_value_t = WarmStartChoice::Snapshot)]
    pub warm_start: WarmStartChoice,
    /// Guest memory of the warm VMs, MiB: a job asking for other memory boots a VM of its own.
    #[arg(long, env = "PE_MEMORY_MIB", default_value_t = shared::limits::DEFAULT_MEMORY_MIB)]
    pub memory_mib: u32,
}

/// What a worker counts, for /metrics.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub in_flight: AtomicU64,
    pub redeliveries: AtomicU64,
    pub cancelled: AtomicU64,
    pub expired: AtomicU64,
    /// Images fetched from the object store, and refused (digest mismatch, missing).
    pub images_fetched: AtomicU64,
    pub images_refused: AtomicU64,
    /// Results by status (`exited`, `timeout`, ...).
    pub by_status: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// One worker process.
pub struct Worker {
    pub id: String,
    client: async_nats::Client,
    shared: Shared,
    pool: Pool,
    warm: Option<Arc<executor::warm::WarmPool>>,
    images: ImageStore,
    image_bucket: async_nats::jetstream::object_store::ObjectStore,
    pub stats: WorkerStats,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).field("pool", &self.pool).finish()
    }
}

pub async fn run(exec: &ExecutorArgs, catalog: &Catalog, args: WorkerArgs) -> anyhow::Result<()> {
    let chosen = exec.choose_backend().await.context("cannot create the work directory")?;
    let slots = args.slots.unwrap_or_else(pool::default_slots).max(1);
    let mut backend = chosen.backend.clone();
    let mut warm = None;
    if let Some(vm) = chosen.vm.clone().filter(|_| !matches!(args.warm.trim(), "" | "none")) {
        let images = crate::serve::warm_images(&args.warm, catalog, &exec.images())?;
        let start = match args.warm_start {
            WarmStartChoice::Snapshot => executor::warm::WarmStart::Snapshot,
            WarmStartChoice::Boot => executor::warm::WarmStart::Boot,
        };
        let limits = executor::JobLimits { memory_mib: args.memory_mib, ..Default::default() };
        let warm_up = catalog
            .iter()
            .filter(|entry| !entry.meta.run.warm_up.is_empty())
            .map(|entry| (entry.meta.id.clone(), entry.meta.run.warm_up.clone()))
            .collect();
        let pool = executor::warm::WarmPool::new(vm, limits, images, start, warm_up);
        tracing::info!(containers = ?pool.warm_ids(), ?start, "warm VMs");
        pool.fill();
        backend = Arc::new(executor::warm::WarmMicroVm { warm: pool.clone() });
        warm = Some(pool);
    }
    let pool = Pool::new(backend, slots, 0, Duration::from_secs(1));
    let client = super::connect(&args.nats, "pe worker").await?;
    let js = jetstream::new(client.clone());
    let shared = loop {
        match super::setup(&js, QueueBounds { max_jobs: args.queue_max }).await {
            Ok(shared) => break shared,
            Err(err) => {
                tracing::warn!(error = %chain(&err), "NATS is not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let consumer: PullConsumer = shared
        .stream
        .get_consumer(WORKERS)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot find the consumer")?;
    let image_bucket = super::images::bucket(&js)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot open the images bucket")?;
    let worker = Arc::new(Worker {
        id: format!("{}-{}", hostname(), &super::random_id()[..8]),
        client,
        shared,
        pool,
        warm,
        images: exec.images(),
        image_bucket,
        stats: WorkerStats::default(),
    });
    if let Some(listen) = args.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let app = ops_router(worker.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    eprintln!(
        "pe: worker {} taking jobs from {} ({slots} slot(s) on {})",
        worker.id, args.nats, chosen.name
    );
    let free = Arc::new(Semaphore::new(slots));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = free.clone().acquire_owned() => permit.context("slots closed")?,
            () = &mut shutdown => break,
        };
        let next = async {
            let mut batch =
                consumer.fetch().max_messages(1).expires(Duration::from_secs(2)).messages().await?;
            batch.next().await.transpose()
        };
        let next: Result<_, async_nats::Error> = tokio::select! {
            next = next => next,
            () = &mut shutdown => break,
        };
        match next {
            Ok(Some(msg)) => {
                tokio::spawn(worker.clone().handle(msg, permit));
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %chain(err.as_ref()), "cannot pull a job; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    // Pull nothing more; let the running jobs finish and answer (a rolling restart loses no
    // work). A job that outlives the wait is not acked: JetStream gives it to another worker.
    eprintln!("pe: worker stopping: finishing {} running job(s)", slots - free.available_permits());
    let drained = free.acquire_many(slots as u32);
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        eprintln!("pe: worker stopped with jobs running; they go to other workers");
    }
    eprintln!("pe: worker stopped");
    Ok(())
}

impl Worker {
    /// Runs one job message to its end (result published and acked, or terminated).
    async fn handle(self: Arc<Self>, msg: jetstream::Message, _slot: OwnedSemaphorePermit) {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let _gauge = Decrement(&self.stats.in_flight);
        if msg.info().is_ok_and(|i| i.delivered > 1) {
            self.stats.redeliveries.fetch_add(1, Ordering::Relaxed);
        }
        let msg = Arc::new(msg);
        let (header, job) = match self.read_job(&msg.payload).await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(error = %chain(err.as_ref()), "an unreadable job; dropped");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let id = header.id.clone();
        if super::now_ms() > header.deadline_ms {
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(job = %id, "a job past its deadline; dropped");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        let cancel = self.client.subscribe(format!("{CANCEL_PREFIX}.{id}")).await;
        let progress = {
            let msg = msg.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    if let Err(err) = msg.ack_with(AckKind::Progress).await {
                        tracing::debug!(error = %chain(err.as_ref()), "in-progress ack failed");
                    }
                }
            })
        };
        let _stop_progress = AbortOnDrop(progress);
        let cancelled = async {
            match cancel {
                Ok(mut sub) => {
                    sub.next().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let output = tokio::select! {
            output = self.execute(&job, header.live.clone()) => output,
            () = cancelled => {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %id, "cancelled by its server; the VM is ended");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let status = serde_json::to_value(crate::convert::status(&output))
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *self
            .stats
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        if let Err(err) = self.publish(&header, &output).await {
            // Not acked: after the ack wait the job goes to a worker that can answer.
            tracing::warn!(job = %id, error = %chain(err.as_ref()), "cannot publish a result");
            return;
        }
        if let Err(err) = msg.ack().await {
            tracing::warn!(job = %id, error = %chain(err.as_ref()), "cannot ack a job");
        }
    }

    /// The job of a message (its archive fetched from the object store if it is there).
    async fn read_job(
        &self,
        payload: &[u8],
    ) -> Result<(wire::JobHeader, Job), Box<dyn std::error::Error + Send + Sync>> {
        let (header, archive) = wire::decode_job_header(payload)?;
        let job = match &header.archive_object {
            Some(name) => {
                let frame = get_blob(&self.shared, name).await?;
                let (full, archive) = wire::decode_job_header(&frame)?;
                wire::job_from(&full, archive, &self.images)?
            }
            None => wire::job_from(&header, archive, &self.images)?,
        };
        Ok((header, job))
    }

    /// Runs a job in the pool; trouble on this worker's side becomes a result that says so.
    async fn execute(&self, job: &Job, live: Option<wire::LiveSubjects>) -> JobOutput {
        let ran_on = executor::job::RanOn {
            backend: "remote",
            accel: None,
            start: "cold",
            container: "created",
        };
        if !job.image.path.is_file() {
            match super::images::fetch(&self.image_bucket, &self.images, &job.image.digest).await {
                Ok(path) => {
                    self.stats.images_fetched.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(image = %job.image.id, digest = %job.image.digest, path = %path.display(), "image fetched and verified");
                }
                Err(err) => {
                    self.stats.images_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(image = %job.image.id, error = %chain(&err), "image refused");
                    let why = format!("worker {}: {err}", self.id);
                    return JobOutput::empty(Outcome::FailedToStart(why), ran_on, 0);
                }
            }
        }
        let submitted = match live {
            Some(subjects) => self.run_live(job, subjects).await,
            None => self.pool.try_submit(job).await,
        };
        match submitted {
            Ok(output) => output,
            Err(err) => {
                tracing::warn!(error = %chain(&err), "a job could not be run");
                let why =
                    format!("worker {} could not run the job (its log has the cause)", self.id);
                JobOutput::empty(Outcome::FailedToStart(why), ran_on, 0)
            }
        }
    }

    /// Runs a live job: its events go to `subjects.events` as they come (then `end`), and
    /// input from `subjects.input` is fed to it (the server sends input after `started`, by
    /// which time this listens).
    async fn run_live(
        &self,
        job: &Job,
        subjects: wire::LiveSubjects,
    ) -> Result<JobOutput, executor::ExecError> {
        use wire::LiveMessage;
        let (events, mut events_out) = tokio::sync::mpsc::channel(64);
        let (input_in, input) = tokio::sync::mpsc::channel(16);
        let io =
            executor::live::LiveIo { events, input, stdin_open: subjects.stdin_open, queue_ms: 0 };
        let input_sub = self.client.subscribe(subjects.input.clone()).await;
        let _input = AbortOnDrop(tokio::spawn(async move {
            let Ok(mut sub) = input_sub else { return };
            while let Some(msg) = sub.next().await {
                let message = serde_json::from_slice::<LiveMessage>(&msg.payload).ok();
                let Some(input) = message.and_then(|m| m.to_input()) else { continue };
                if input_in.send(input).await.is_err() {
                    break;
                }
            }
        }));
        let (client, subject) = (self.client.clone(), subjects.events);
        let forward = tokio::spawn(async move {
            while let Some(event) = events_out.recv().await {
                if let Ok(bytes) = serde_json::to_vec(&LiveMessage::from_event(&event)) {
                    let _ = client.publish(subject.clone(), bytes.into()).await;
                }
            }
            if let Ok(bytes) = serde_json::to_vec(&LiveMessage::End) {
                let _ = client.publish(subject, bytes.into()).await;
            }
        });
        let output = self.pool.try_submit_live(job, io).await;
        // Every event goes out before the result.
        let _ = tokio::time::timeout(Duration::from_secs(2), forward).await;
        output
    }

    /// Publishes a result to the job's reply subject (through the object store when large).
    async fn publish(
        &self,
        job: &wire::JobHeader,
        output: &JobOutput,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let frame = wire::encode_result(&job.id, &self.id, output)?;
        let payload = if frame.len() > INLINE_MAX {
            let name = format!("result.{}", job.id);
            put_blob(&self.shared, &name, &frame).await?;
            let (mut header, _) = wire::decode_result_header(&frame)?;
            header.archive_object = Some(name);
            wire::header_only(&header)?
        } else {
            frame
        };
        self.client.publish(job.reply.clone(), payload.into()).await?;
        self.client.flush().await?;
        Ok(())
    }

    /// OpenMetrics text.
    pub async fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let mut out = String::new();
        let depth =
            self.shared.stream.get_info().await.map(|i| i.state.messages as i64).unwrap_or(-1);
        let _ =
            writeln!(out, "# TYPE pe_worker_slots gauge\npe_worker_slots {}", self.pool.slots());
        let _ = writeln!(
            out,
            "# TYPE pe_worker_in_flight gauge\npe_worker_in_flight {}",
            s.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP pe_cluster_queue_depth Jobs in the work-queue stream (waiting or running), -1 when NATS does not answer.\n# TYPE pe_cluster_queue_depth gauge\npe_cluster_queue_depth {depth}"
        );
        for (name, counter) in [
            ("redeliveries", &s.redeliveries),
            ("cancelled", &s.cancelled),
            ("expired", &s.expired),
            ("images_fetched", &s.images_fetched),
            ("images_refused", &s.images_refused),
        ] {
            let _ = writeln!(
                out,
                "# TYPE pe_worker_{name} counter\npe_worker_{name}_total {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# TYPE pe_worker_results counter");
        for (status, n) in s.by_status.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "pe_worker_results_total{{status=\"{status}\"}} {n}");
        }
        out.push_str("# EOF\n");
        out
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

fn ops_router(worker: Arc<Worker>) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|axum::extract::State(w): axum::extract::State<Arc<Worker>>| async move {
                let ready = w.connected();
                let body = serde_json::json!({
                    "ready": ready, "worker": w.id, "nats": ready,
                    "slots": w.pool.slots(), "in_flight": w.stats.in_flight.load(Ordering::Relaxed),
                    "warm_ready": w.warm.as_ref().map_or(0, |p| p.stats().ready),
                });
                (
                    if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
                    axum::Json(body),
                )
            }),
        )
        .route(
            "/metrics",
            get(|axum::extract::State(w): axum::extract::State<Arc<Worker>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    w.metrics_text().await,
                )
                    .into_response()
            }),
        )
        .with_state(worker)
}

struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {} }
}
