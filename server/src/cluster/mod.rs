//! Cluster mode: servers that run no VMs hand jobs to `pe worker`s through NATS JetStream
//! (docs/SCALING.md has the topology, the subjects and the guarantees).
//!
//! 1. [`setup`] creates (or finds) what every process shares: the work-queue stream
//!    [`JOBS_STREAM`] on [`JOBS_SUBJECT`] (bounded, discard new), its durable pull consumer
//!    [`WORKERS`] (explicit ack, short ack wait, bounded deliveries) and the object store
//!    bucket [`BLOBS`] for frames too large for a message.
//! 2. [`remote::Remote`] is the server's executor backend: it publishes a job ([`wire`]),
//!    waits for its result on the server's own subject, and cancels the job when the caller
//!    goes away or the deadline passes.
//! 3. [`images`]: images by digest in the object store (`pe image push`); a worker fetches
//!    the image a job names when it lacks it, and refuses one whose sha256 differs.
//! 4. [`worker`] is `pe worker`: it pulls a job only when one of its slots is free, keeps the
//!    message alive with in-progress acks while the job runs in the local executor, publishes
//!    the result to the job's reply subject, then acks.
//!
//! Nothing outside this module knows NATS exists.

pub mod health;
pub mod images;
pub mod remote;
pub mod wire;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};

/// The work-queue stream.
pub const JOBS_STREAM: &str = "PE_JOBS";
/// Where jobs are published.
pub const JOBS_SUBJECT: &str = "pe.jobs";
/// The workers' shared durable pull consumer.
pub const WORKERS: &str = "workers";
/// Results: `pe.result.<server>.<job>`.
pub const RESULT_PREFIX: &str = "pe.result";
/// Live runs' events: `pe.live.<server>.<job>`.
pub const LIVE_PREFIX: &str = "pe.live";
/// Live runs' input: `pe.input.<job>`.
pub const INPUT_PREFIX: &str = "pe.input";
/// Cancels: `pe.cancel.<job>`.
pub const CANCEL_PREFIX: &str = "pe.cancel";
/// The object store bucket for large frames (and images: `image.<digest>`).
pub const BLOBS: &str = "pe-blobs";

/// How long a job message may go without an ack (or in-progress ack) before JetStream gives
/// it to another worker: a dead worker's job moves on within this.
pub const ACK_WAIT: Duration = Duration::from_secs(4);
/// How often a worker says "still working" while a job runs.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Deliveries of one job at most (the first and two redeliveries).
pub const MAX_DELIVER: i64 = 3;

/// The queue's bounds.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    /// Jobs waiting or running at most; more are refused (503 busy).
    pub max_jobs: i64,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds { max_jobs: 256 }
    }
}

/// Why the cluster's shared parts cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot create the job stream {JOBS_STREAM}")]
    Stream(#[source] async_nats::Error),
    #[error("cannot create the consumer {WORKERS}")]
    Consumer(#[source] async_nats::Error),
    #[error("cannot create the object store bucket {BLOBS}")]
    Blobs(#[source] async_nats::Error),
}

/// Connects to NATS (retrying in the background while it is down, so a process started
/// before NATS still comes up).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, SetupError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(Duration::from_secs(3)))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .map_err(|source| SetupError::Connect { url: url.to_owned(), source })
}

/// What every process shares.
#[derive(Clone)]
pub struct Shared {
    pub js: jetstream::Context,
    pub stream: stream::Stream,
    pub blobs: object_store::ObjectStore,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("stream", &JOBS_STREAM).field("blobs", &BLOBS).finish()
    }
}

/// Creates or finds the stream, the consumer and the bucket.
pub async fn setup(js: &jetstream::Context, bounds: QueueBounds) -> Result<Shared, SetupError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: JOBS_STREAM.into(),
            subjects: vec![JOBS_SUBJECT.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: bounds.max_jobs,
            discard: stream::DiscardPolicy::New,
            // Nobody waits longer than the longest request.
            max_age: Duration::from_secs(300),
            // Deduplicates a job published twice (Nats-Msg-Id is the job id).
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| SetupError::Stream(e.into()))?;
    stream
        .get_or_create_consumer(
            WORKERS,
            consumer::pull::Config {
                durable_name: Some(WORKERS.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: MAX_DELIVER,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| SetupError::Consumer(e.into()))?;
    let blobs = match js.get_object_store(BLOBS).await {
        Ok(blobs) => blobs,
        Err(_absent) => js
            .create_object_store(object_store::Config {
                bucket: BLOBS.into(),
                description: Some("Program Explorer: large job and result frames, images".into()),
                // Frames are picked up within a request's lifetime; images are pushed again.
                max_age: Duration::from_secs(24 * 3600),
                ..Default::default()
            })
            .await
            .map_err(|e| SetupError::Blobs(e.into()))?,
    };
    Ok(Shared { js: js.clone(), stream, blobs })
}

/// A random id (128 bits, hex): job ids, server and worker names.
pub fn random_id() -> String {
    hex::encode(rand_bytes())
}

fn rand_bytes() -> [u8; 16] {
    use sha2::{Digest, Sha256};
    // No rand dependency in the server: hash the time, the pid and a counter.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::new()
        .chain_update(now.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(n.to_le_bytes())
        .chain_update(format!("{:p}", &n))
        .finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
