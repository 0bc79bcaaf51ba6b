//! The server's executor backend in cluster mode: a job goes to the work queue and its result
//! comes back on this server's subject.
//!
//! 1. At start, [`Remote::start`] subscribes to `pe.result.<server>.*` and dispatches each
//!    result to the request waiting for that job id; a result nobody waits for (a duplicate
//!    from a redelivery, or one that came after its deadline) is dropped: results are
//!    idempotent by job id.
//! 2. [`Remote::run`] publishes the job (`Nats-Msg-Id` = job id, so a retried publish is not
//!    a second job) and waits for its result until the job's deadline. A full stream (discard
//!    new) is [`ExecError::Busy`]; NATS unreachable is [`ExecError::Unavailable`].
//! 3. A job whose last delivery is never acked (each worker that had it died) is answered
//!    with a `failed_to_start` result that says so, as soon as JetStream's max-deliveries
//!    advisory names it, rather than at the deadline.
//! 4. A request that ends first (the client went away, the deadline passed) drops the wait:
//!    the job is deleted from the stream if no worker has it yet, and `pe.cancel.<job>` tells
//!    the worker that has it to end the VM.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, ErrorCode};
use executor::pool::{Backend, BoxFuture};
use executor::{ExecError, Job, JobOutput};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::wire::{self, INLINE_MAX, LiveMessage, LiveSubjects};
use super::{CANCEL_PREFIX, INPUT_PREFIX, JOBS_SUBJECT, LIVE_PREFIX, RESULT_PREFIX, Shared};
use executor::live::LiveIo;

/// Time a job may take beyond its own limit (waiting in the queue, booting, a redelivery).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub published: AtomicU64,
    pub refused_full: AtomicU64,
    pub results: AtomicU64,
    pub duplicate_results: AtomicU64,
    pub cancelled: AtomicU64,
    pub deadline_passed: AtomicU64,
    /// Jobs JetStream stopped delivering (their last delivery was never acked).
    pub gave_up: AtomicU64,
}

/// What a waiting request gets.
#[derive(Debug)]
enum Answer {
    /// A result frame.
    Result(bytes::Bytes),
    /// JetStream gave up: the job was delivered this many times and never acked.
    GaveUp { deliveries: i64 },
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;
/// The stream sequence of each job this server waits for, to job id.
type Sequences = Arc<Mutex<HashMap<u64, String>>>;

/// The advisory JetStream publishes when a message reached its last delivery unacked.
#[derive(Debug, serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Publishes jobs, awaits results.
#[derive(Debug, Clone)]
pub struct Remote {
    client: async_nats::Client,
    shared: Shared,
    server_id: String,
    waiting: Waiting,
    sequences: Sequences,
    pub stats: Arc<RemoteStats>,
}

/// Why a remote job failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot subscribe to the result subject")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("cannot publish the job")]
    Publish(#[source] jetstream::context::PublishError),
    #[error("cannot encode or decode a message")]
    Wire(#[from] wire::WireError),
    #[error("cannot move a frame through the object store")]
    Blob(#[source] async_nats::Error),
    #[error("no worker answered within {0:?}")]
    Deadline(Duration),
}

impl Remote {
    /// Subscribes to this server's results and starts dispatching them.
    pub async fn start(client: async_nats::Client, shared: Shared) -> Result<Remote, RemoteError> {
        let server_id = super::random_id();
        let mut results = client
            .subscribe(format!("{RESULT_PREFIX}.{server_id}.*"))
            .await
            .map_err(RemoteError::Subscribe)?;
        let mut gave_up = client
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
                super::JOBS_STREAM,
                super::WORKERS
            ))
            .await
            .map_err(RemoteError::Subscribe)?;
        let remote = Remote {
            client,
            shared,
            server_id,
            waiting: Arc::default(),
            sequences: Arc::default(),
            stats: Arc::default(),
        };
        let (waiting, sequences, stream, stats) = (
            remote.waiting.clone(),
            remote.sequences.clone(),
            remote.shared.stream.clone(),
            remote.stats.clone(),
        );
        tokio::spawn(async move {
            while let Some(msg) = gave_up.next().await {
                let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&msg.payload) else {
                    continue;
                };
                // Only the server that published the job knows it.
                let Some(id) = lock(&sequences).remove(&advisory.stream_seq) else { continue };
                let _ = stream.delete_message(advisory.stream_seq).await;
                stats.gave_up.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = lock(&waiting).remove(&id) {
                    let _ = tx.send(Answer::GaveUp { deliveries: advisory.deliveries });
                }
            }
        });
        let (waiting, stats) = (remote.waiting.clone(), remote.stats.clone());
        tokio::spawn(async move {
            while let Some(msg) = results.next().await {
                let Some(id) = msg.subject.rsplit('.').next() else { continue };
                let waiter = waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                match waiter {
                    Some(tx) => {
                        stats.results.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Answer::Result(msg.payload));
                    }
                    None => {
                        stats.duplicate_results.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(remote)
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Jobs in the stream now (waiting or running, all servers), when NATS answers.
    pub async fn queue_depth(&self) -> Option<u64> {
        self.shared.stream.get_info().await.ok().map(|info| info.state.messages)
    }

    /// Jobs this server waits for now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn submit(&self, job: &Job, live: Option<LiveIo>) -> Result<JobOutput, ExecError> {
        let id = super::random_id();
        let reply = format!("{RESULT_PREFIX}.{}.{id}", self.server_id);
        let wait = job.limits.timeout + DEADLINE_MARGIN;
        let deadline_ms = super::now_ms() + wait.as_millis() as u64;
        let (subjects, mut live_events) = match live {
            Some(live) => {
                let (subjects, events) = self.relay(&id, live).await.map_err(unavailable)?;
                (Some(subjects), Some(events))
            }
            None => (None, None),
        };
        let (mut header, frame) =
            wire::encode_job(&id, &reply, deadline_ms, job, subjects).map_err(unavailable)?;
        let payload = if frame.len() > INLINE_MAX {
            let name = format!("job.{id}");
            put_blob(&self.shared, &name, &frame).await.map_err(unavailable)?;
            header.archive_object = Some(name);
            wire::header_only(&header).map_err(unavailable)?
        } else {
            frame
        };
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
        let mut guard = Pending { remote: self, id: id.clone(), seq: None, done: false };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = async {
            self.shared.js.publish_with_headers(JOBS_SUBJECT, headers, payload.into()).await?.await
        };
        let ack = match ack.await {
            Ok(ack) => ack,
            Err(err) if stream_full(&err) => {
                self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
                guard.done = true;
                return Err(ExecError::Busy { retry_after: Duration::from_secs(2) });
            }
            Err(err) => {
                guard.done = true;
                return Err(unavailable(RemoteError::Publish(err)));
            }
        };
        guard.seq = Some(ack.sequence);
        lock(&self.sequences).insert(ack.sequence, id.clone());
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        let bytes = match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Answer::Result(bytes))) => bytes,
            Ok(Ok(Answer::GaveUp { deliveries })) => {
                guard.done = true;
                let why = format!(
                    "the job was given to a worker {deliveries} times and none finished it \
                     (the workers stopped or died); retry later"
                );
                let ran_on = executor::job::RanOn {
                    backend: "remote",
                    accel: None,
                    start: "cold",
                    container: "created",
                };
                return Ok(JobOutput::empty(executor::Outcome::FailedToStart(why), ran_on, 0));
            }
            Ok(Err(_)) | Err(_) => {
                self.stats.deadline_passed.fetch_add(1, Ordering::Relaxed);
                return Err(unavailable(RemoteError::Deadline(wait)));
            }
        };
        guard.done = true;
        if let Some(events) = live_events.as_mut() {
            // The worker sent every event, then `end`, then the result: wait for the events.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut events.0).await;
        }
        let (header, archive) = wire::decode_result_header(&bytes).map_err(unavailable)?;
        let output = match &header.archive_object {
            Some(name) => {
                let frame = get_blob(&self.shared, name).await.map_err(unavailable)?;
                let _ = self.shared.blobs.delete(name).await;
                let (header, archive) = wire::decode_result_header(&frame).map_err(unavailable)?;
                wire::output_from(&header, archive)
            }
            None => wire::output_from(&header, archive),
        };
        output.map_err(unavailable)
    }
}

/// A job this server still waits for; dropped early (the request went away), it cancels it.
struct Pending<'a> {
    remote: &'a Remote,
    id: String,
    seq: Option<u64>,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.remote.waiting).remove(&self.id);
        if let Some(seq) = self.seq {
            lock(&self.remote.sequences).remove(&seq);
        }
        if self.done {
            return;
        }
        self.remote.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        let (client, stream, id, seq) = (
            self.remote.client.clone(),
            self.remote.shared.stream.clone(),
            self.id.clone(),
            self.seq,
        );
        tokio::spawn(async move {
            // Not taken yet: gone from the queue. Taken: the worker hears the cancel.
            if let Some(seq) = seq {
                let _ = stream.delete_message(seq).await;
            }
            if let Err(err) = client.publish(format!("{CANCEL_PREFIX}.{id}"), "cancel".into()).await
            {
                tracing::warn!(job = %id, error = %shared::error::chain(&err), "cannot publish a cancel");
            }
        });
    }
}

/// Whether a publish was refused because the stream is full (discard new).
fn stream_full(err: &jetstream::context::PublishError) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(js) = cause.downcast_ref::<jetstream::Error>() {
            return js.error_code() == ErrorCode::STREAM_STORE_FAILED
                || js.to_string().contains("maximum messages");
        }
        source = cause.source();
    }
    err.to_string().contains("maximum messages")
}

fn unavailable(err: impl Into<RemoteError>) -> ExecError {
    ExecError::Unavailable(Box::new(err.into()))
}

impl From<jetstream::context::PublishError> for RemoteError {
    fn from(err: jetstream::context::PublishError) -> Self {
        RemoteError::Publish(err)
    }
}

/// Stores a frame in the object store.
pub async fn put_blob(shared: &Shared, name: &str, bytes: &[u8]) -> Result<(), RemoteError> {
    let mut reader = bytes;
    shared.blobs.put(name, &mut reader).await.map_err(|e| RemoteError::Blob(e.into()))?;
    Ok(())
}

/// Reads a frame from the object store.
pub async fn get_blob(shared: &Shared, name: &str) -> Result<Vec<u8>, RemoteError> {
    let mut object = shared.blobs.get(name).await.map_err(|e| RemoteError::Blob(e.into()))?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.map_err(|e| RemoteError::Blob(e.into()))?;
    Ok(bytes)
}

impl Backend for Remote {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(self.submit(job, None))
    }

    fn run_live<'a>(
        &'a self,
        job: &'a Job,
        live: LiveIo,
    ) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(self.submit(job, Some(live)))
    }
}

impl Remote {
    /// Relays a live run: the worker's events (`pe.live.<server>.<job>`) to `live.events`, and
    /// `live.input` to the worker (`pe.input.<job>`) once it has said `started` (it listens from
    /// then on). Returns the subjects for the job, and the events task (done at `end`).
    async fn relay(
        &self,
        id: &str,
        live: LiveIo,
    ) -> Result<(LiveSubjects, AbortOnDrop), RemoteError> {
        let subjects = LiveSubjects {
            events: format!("{LIVE_PREFIX}.{}.{id}", self.server_id),
            input: format!("{INPUT_PREFIX}.{id}"),
            stdin_open: live.stdin_open,
        };
        let mut events_in =
            self.client.subscribe(subjects.events.clone()).await.map_err(RemoteError::Subscribe)?;
        let LiveIo { events, mut input, .. } = live;
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let events_task = tokio::spawn(async move {
            let mut started = Some(started_tx);
            while let Some(msg) = events_in.next().await {
                let Ok(message) = serde_json::from_slice::<LiveMessage>(&msg.payload) else {
                    continue;
                };
                if message == LiveMessage::End {
                    break;
                }
                if matches!(message, LiveMessage::Started { .. })
                    && let Some(tx) = started.take()
                {
                    let _ = tx.send(());
                }
                if let Some(event) = message.to_event()
                    && events.send(event).await.is_err()
                {
                    break;
                }
            }
        });
        let (client, subject) = (self.client.clone(), subjects.input.clone());
        tokio::spawn(async move {
            // Typed input waits until the worker listens; it ends when the run does (the
            // sender is the live socket's, dropped with it).
            if started_rx.await.is_err() {
                return;
            }
            while let Some(input) = input.recv().await {
                let Ok(bytes) = serde_json::to_vec(&LiveMessage::from_input(&input)) else {
                    continue;
                };
                if client.publish(subject.clone(), bytes.into()).await.is_err() {
                    break;
                }
            }
        });
        Ok((subjects, AbortOnDrop(events_task)))
    }
}

/// A task aborted when its handle is dropped (a request that went away).
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Jobs one server waits for at once in cluster mode, unless `--slots` says otherwise.
pub const DEFAULT_WAITING: usize = 64;

/// `pe serve --nats URL`: connects, sets up the shared parts (retrying while NATS is down)
/// and starts the dispatcher.
pub async fn start_for_server(url: &str) -> anyhow::Result<Remote> {
    let client = super::connect(url, "pe serve").await?;
    let js = jetstream::new(client.clone());
    let shared = loop {
        match super::setup(&js, super::QueueBounds::default()).await {
            Ok(shared) => break shared,
            Err(err) => {
                tracing::warn!(error = %shared::error::chain(&err), "NATS is not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    Ok(Remote::start(client, shared).await?)
}

/// The pool's backend in cluster mode. Its identity (part of every cache key) is the same on
/// every server, so that they share cached results.
pub fn chosen(remote: &Remote) -> crate::executor_config::ChosenBackend {
    crate::executor_config::ChosenBackend {
        backend: Arc::new(remote.clone()),
        name: "cluster".into(),
        reason: "--nats: jobs go to pe workers through the JetStream work queue".into(),
        ready: true,
        vm: None,
        identity: format!("cluster:v{}", wire::VERSION),
        parts: Vec::new(),
    }
}
