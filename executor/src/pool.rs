//! A bounded pool of job slots in front of a backend, with a bounded queue: a job beyond
//! `slots + queue` is refused at once with [`ExecError::Busy`] rather than waiting without end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
// tokio's clock, so tests with paused time see queue times.
use tokio::time::Instant;

use crate::ExecError;
use crate::job::{Job, JobOutput};
use crate::live::{LiveEvent, LiveIo, Stream};

/// A boxed future, so backends can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that runs one job: the microVM, or a fake in tests.
pub trait Backend: Send + Sync + 'static {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>>;

    /// Runs `job` live: output reported as it is written, typed stdin fed to the program.
    /// The real backends stream; this default (for fakes in tests) runs the job and reports
    /// its output when it has ended, and never reads typed stdin.
    fn run_live<'a>(
        &'a self,
        job: &'a Job,
        live: LiveIo,
    ) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(async move {
            let output = self.run(job).await?;
            live.started(&output.ran_on).await;
            for (stream, data) in
                [(Stream::Stdout, &output.stdout), (Stream::Stderr, &output.stderr)]
            {
                if !data.is_empty() {
                    let event = LiveEvent::Output { stream, data: data.clone() };
                    let _ = live.events.send(event).await;
                }
            }
            Ok(output)
        })
    }
}

/// The microVM backend: one fresh VM per job.
#[derive(Debug, Clone)]
pub struct MicroVm {
    pub config: crate::vm::VmConfig,
}

impl Backend for MicroVm {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(crate::vm::cold::run_cold(&self.config, job, None))
    }

    fn run_live<'a>(
        &'a self,
        job: &'a Job,
        live: LiveIo,
    ) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(crate::vm::cold::run_cold(&self.config, job, Some(live)))
    }
}

/// Slots and queue.
pub struct Pool {
    backend: Arc<dyn Backend>,
    slots: Arc<Semaphore>,
    slot_count: usize,
    queue_max: usize,
    /// Jobs admitted: running plus waiting.
    admitted: AtomicUsize,
    /// A rough duration of one job, to suggest when to retry.
    typical_job: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slots", &self.slot_count)
            .field("queue_max", &self.queue_max)
            .field("admitted", &self.admitted.load(Ordering::Relaxed))
            .finish()
    }
}

/// Default slot count: one core is left to the server and the host.
pub fn default_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)).max(1)
}

impl Pool {
    pub fn new(
        backend: Arc<dyn Backend>,
        slots: usize,
        queue_max: usize,
        typical_job: Duration,
    ) -> Pool {
        let slots = slots.max(1);
        Pool {
            backend,
            slots: Arc::new(Semaphore::new(slots)),
            slot_count: slots,
            queue_max,
            admitted: AtomicUsize::new(0),
            typical_job,
        }
    }

    pub fn slots(&self) -> usize {
        self.slot_count
    }

    /// Jobs waiting for a slot.
    pub fn queued(&self) -> usize {
        self.admitted.load(Ordering::Relaxed).saturating_sub(self.running())
    }

    /// Jobs holding a slot.
    pub fn running(&self) -> usize {
        self.slot_count - self.slots.available_permits()
    }

    /// When a job submitted now would be refused (every slot busy and the queue full): how long
    /// to wait before retrying. Lets a server answer busy before it reads a request's body.
    pub fn would_refuse(&self) -> Option<Duration> {
        let admitted = self.admitted.load(Ordering::Acquire);
        (admitted >= self.slot_count + self.queue_max).then(|| self.retry_after(admitted))
    }

    fn retry_after(&self, admitted: usize) -> Duration {
        self.typical_job * ((admitted / self.slot_count) as u32 + 1)
    }

    /// Runs `job` when a slot is free, or answers [`ExecError::Busy`] at once if the queue is
    /// full. Dropping the future (a client that went away) gives the slot back and, through the
    /// backend, kills the VM.
    pub async fn try_submit(&self, job: &Job) -> Result<JobOutput, ExecError> {
        self.submit(job, None).await
    }

    /// [`Pool::try_submit`] for a live run: `live` learns of the start and the output as it
    /// comes, and feeds typed stdin.
    pub async fn try_submit_live(&self, job: &Job, live: LiveIo) -> Result<JobOutput, ExecError> {
        self.submit(job, Some(live)).await
    }

    async fn submit(&self, job: &Job, live: Option<LiveIo>) -> Result<JobOutput, ExecError> {
        let limit = self.slot_count + self.queue_max;
        let admitted = self.admitted.fetch_add(1, Ordering::AcqRel);
        let _admission = Admission(&self.admitted);
        if admitted >= limit {
            return Err(ExecError::Busy { retry_after: self.retry_after(admitted) });
        }
        let submitted = Instant::now();
        let _permit = self.slots.acquire().await?;
        let queue_ms = submitted.elapsed().as_millis() as u64;
        let mut output = match live {
            Some(mut live) => {
                live.queue_ms = queue_ms;
                self.backend.run_live(job, live).await?
            }
            None => self.backend.run(job).await?,
        };
        output.timings.queue_ms = queue_ms;
        output.timings.total_ms = submitted.elapsed().as_millis() as u64;
        Ok(output)
    }

    /// Stops admitting jobs; waiting ones get [`ExecError::ShuttingDown`].
    pub fn close(&self) {
        self.slots.close();
    }
}

/// Gives an admission back when the job ends, however it ends.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobTimings, Outcome, RanOn, Truncated, Usage};
    use images::{ImageFormat, ImageInfo};

    /// Sleeps for the job's "duration" (its first argument, in ms) and exits 0.
    struct Sleeper;

    impl Backend for Sleeper {
        fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
            Box::pin(async move {
                let ms: u64 = job.argv[0].parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(JobOutput {
                    outcome: Outcome::Exited(0),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    files: Vec::new(),
                    truncated: Truncated::default(),
                    timings: JobTimings::default(),
                    usage: Usage::default(),
                    ran_on: RanOn {
                        backend: "fake",
                        accel: None,
                        start: "cold",
                        container: "created",
                    },
                    notes: Vec::new(),
                })
            })
        }
    }

    fn job(ms: u64) -> Job {
        let image = ImageInfo {
            id: "x".into(),
            digest: "sha256:0".into(),
            path: "/nonexistent".into(),
            format: ImageFormat::Squashfs,
            size: 0,
            built_at: None,
            recipe: None,
            build_secs: None,
            env: Vec::new(),
        };
        Job::new(image, vec![ms.to_string()])
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_answers_busy_at_once_and_frees_on_completion() {
        let pool = Arc::new(Pool::new(Arc::new(Sleeper), 1, 1, Duration::from_secs(2)));
        let a = tokio::spawn({
            let pool = pool.clone();
            async move { pool.try_submit(&job(1000)).await }
        });
        let b = tokio::spawn({
            let pool = pool.clone();
            async move { pool.try_submit(&job(1000)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!((pool.running(), pool.queued()), (1, 1));
        match pool.try_submit(&job(1)).await {
            Err(ExecError::Busy { retry_after }) => assert!(retry_after >= Duration::from_secs(2)),
            other => panic!("expected Busy, got {other:?}"),
        }
        let a = a.await.unwrap().unwrap();
        let b = b.await.unwrap().unwrap();
        // Whichever got the slot first ran at once; the other waited for it.
        let (first, second) =
            if a.timings.queue_ms <= b.timings.queue_ms { (a, b) } else { (b, a) };
        assert_eq!(first.timings.queue_ms, 0);
        assert!(second.timings.queue_ms >= 990, "waited {} ms", second.timings.queue_ms);
        assert_eq!((pool.running(), pool.queued()), (0, 0));
        assert!(pool.try_submit(&job(1)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_job_gives_its_slot_back() {
        let pool = Arc::new(Pool::new(Arc::new(Sleeper), 1, 0, Duration::from_secs(1)));
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.try_submit(&job(60_000)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(matches!(pool.try_submit(&job(1)).await, Err(ExecError::Busy { .. })));
        running.abort();
        let _ = running.await;
        assert_eq!(pool.running(), 0);
        assert!(pool.try_submit(&job(1)).await.is_ok());
    }
}
