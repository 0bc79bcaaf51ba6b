//! Pre-booted ("warm") VMs: boot is taken off the job's critical path.
//!
//! For each configured image the pool keeps a few VMs booted ahead of demand. Each has its I/O
//! disk already attached (an empty file) and a control port: a virtio-serial port backed by a
//! Unix socket. The guest boots, mounts the image, says `ready` on the port, and waits. A job
//! takes a ready VM, writes its request into the VM's I/O disk file, and sends `go <seed>`; the
//! guest drops its cached view of the disk, reads the request and runs it exactly like a cold VM
//! would, then powers off. A VM runs exactly one job and is thrown away; a replacement boots in
//! the background. Jobs whose image has no warm VM ready (or whose limits differ from the ones
//! warm VMs were booted with) boot a cold VM instead.
//!
//! Warm VMs hold no job slot while they wait, and their number is bounded by the configuration,
//! so they never starve cold jobs of slots; each idle VM holds its guest memory on the host.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use shared::error::chain;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Child;

use crate::image::{ImageFormat, ImageInfo};
use crate::job::{Job, JobLimits, JobOutput, RanOn};
use crate::pool::{Backend, BoxFuture};
use crate::snapshot::Template;
use crate::vm::{self, VmConfig};
use crate::{ExecError, convert};

/// How long a warm VM may take to boot and say `ready` before it is given up.
const BOOT_DEADLINE: Duration = Duration::from_secs(30);

/// Why a VM could not be made ready for a job: booted, restored from a snapshot, or saved as a
/// template. The job then boots a cold VM instead, so these are logged, never shown to a client.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("cannot create a work directory")]
    WorkDir(#[source] io::Error),
    #[error("cannot create the I/O disk")]
    IoDisk(#[source] io::Error),
    #[error("cannot prepare QEMU")]
    Prepare(#[source] io::Error),
    #[error("cannot start QEMU")]
    Spawn(#[source] io::Error),
    #[error("cannot confine QEMU")]
    Confine(#[source] io::Error),
    #[error("QEMU exited as it started ({0})")]
    ExitedAtStart(std::process::ExitStatus),
    #[error("the VM has no control port")]
    NoControl,
    #[error("cannot talk to the guest over the control port")]
    Control(#[source] io::Error),
    #[error("the guest said {0:?} instead of ready")]
    NotReady(String),
    #[error("not ready within {} s", BOOT_DEADLINE.as_secs())]
    BootDeadline,
    #[error("the guest said {0:?} after warming up")]
    NotWarm(String),
    /// QEMU ended while the VM was being made ready; what it wrote on stderr says why.
    #[error("QEMU exited, saying: {stderr}")]
    QemuExited {
        stderr: String,
        #[source]
        source: Box<WarmError>,
    },
    #[error(transparent)]
    Qmp(#[from] crate::qmp::QmpError),
    #[error("cannot create the directory for {what}")]
    SnapshotDir {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {}", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot hand {} to QEMU's user", path.display())]
    Chown {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} the snapshot's device state")]
    Migration {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed: {why}")]
    MigrationFailed { what: &'static str, why: String },
    #[error("the saved state is over {max} bytes")]
    StateTooLarge { max: usize },
    #[error("not {what} within {} s", within.as_secs())]
    MigrationDeadline { what: &'static str, within: Duration },
    #[error("cannot restore the snapshot")]
    Restore(#[source] Box<WarmError>),
}

/// A VM waiting for its job: booted to the waiting point, or restored from a snapshot.
pub struct WaitingVm {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub io_path: PathBuf,
    control: Option<BufReader<UnixStream>>,
    /// How long it took to boot or restore.
    pub started_in: Duration,
    /// `warm` (booted ahead) or `snapshot` (restored from a template).
    start: &'static str,
    /// QEMU's stderr, drained while the VM waits.
    stderr: StderrTail,
    /// Its uid and cgroup (released when the VM is dropped, after QEMU).
    pub confinement: crate::confine::Confinement,
}

/// QEMU's stderr, read as it is written: a VM may wait long for its job, and a pipe nobody
/// reads would fill and block QEMU. The last [`TAIL_BYTES`] are kept for error messages, and the
/// first [`LOG_LINES`] lines go to the log.
#[derive(Debug)]
struct StderrTail(Option<tokio::task::JoinHandle<Vec<u8>>>);

/// Bytes of QEMU's stderr kept for an error message.
const TAIL_BYTES: usize = 16 * 1024;
/// Lines of QEMU's stderr logged per VM.
const LOG_LINES: usize = 20;

impl StderrTail {
    fn spawn(pipe: Option<tokio::process::ChildStderr>, kind: &str) -> StderrTail {
        let Some(mut pipe) = pipe else { return StderrTail(None) };
        let kind = kind.to_owned();
        StderrTail(Some(tokio::spawn(async move {
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            let mut logged = 0;
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                for line in String::from_utf8_lossy(&buf[..n]).lines().filter(|l| !l.is_empty()) {
                    if logged < LOG_LINES {
                        tracing::warn!(vm = %kind, line, "QEMU said");
                        logged += 1;
                    }
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > TAIL_BYTES {
                    tail.drain(..tail.len() - TAIL_BYTES);
                }
            }
            tail
        })))
    }

    /// What QEMU wrote, once it has exited (the pipe is closed, so the drain ends).
    async fn collect(&mut self) -> String {
        let Some(task) = self.0.take() else { return String::new() };
        match tokio::time::timeout(Duration::from_secs(2), task).await {
            Ok(Ok(tail)) => String::from_utf8_lossy(&tail).trim().to_owned(),
            _ => String::new(),
        }
    }
}

impl std::fmt::Debug for WaitingVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingVm")
            .field("dir", &self.dir.path())
            .field("start", &self.start)
            .finish()
    }
}

/// Starts QEMU for a VM that will wait for `go`: its own directory with an empty I/O disk of
/// `io_size` bytes and a control port, in a work directory of `kind` (see [`crate::workdir`]). `extra` adds arguments (memory backend, QMP, incoming).
pub async fn launch(
    config: &VmConfig,
    image: &ImageInfo,
    memory_mib: u32,
    io_size: u64,
    kind: &str,
    extra: impl FnOnce(&mut tokio::process::Command, &std::path::Path),
) -> Result<WaitingVm, WarmError> {
    let started = Instant::now();
    let dir = crate::workdir::create(&config.work_dir, kind).map_err(WarmError::WorkDir)?;
    let io_path = dir.path().join("io");
    let file = std::fs::File::create(&io_path).map_err(WarmError::IoDisk)?;
    file.set_len(io_size).map_err(WarmError::IoDisk)?;
    let format = match image.format {
        ImageFormat::Squashfs => "squashfs",
        ImageFormat::Erofs => "erofs",
    };
    let (mut cmd, confinement) = config
        .command(memory_mib, &image.path, true, &io_path, &format!("pe.warm={format}"), None)
        .map_err(WarmError::Prepare)?;
    cmd.args(["-device", "virtio-serial-device"]);
    cmd.arg("-chardev").arg(format!(
        "socket,id=ctl,path={},server=on,wait=off",
        dir.path().join("ctl.sock").display()
    ));
    cmd.args(["-device", "virtserialport,chardev=ctl,name=pe.ctl"]);
    extra(&mut cmd, dir.path());
    let mut child = cmd.spawn().map_err(WarmError::Spawn)?;
    confinement.attach(child.id()).map_err(WarmError::Confine)?;
    let stderr = StderrTail::spawn(child.stderr.take(), kind);
    Ok(WaitingVm {
        confinement,
        child,
        dir,
        io_path,
        control: None,
        started_in: started.elapsed(),
        start: "warm",
        stderr,
    })
}

/// Connects to the VM's control port (QEMU creates the socket as it starts).
pub async fn connect_control(vm: &mut WaitingVm) -> Result<(), WarmError> {
    let socket = vm.dir.path().join("ctl.sock");
    let stream = loop {
        match UnixStream::connect(&socket).await {
            Ok(stream) => break stream,
            Err(_) => {
                if let Ok(Some(status)) = vm.child.try_wait() {
                    return Err(WarmError::ExitedAtStart(status));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    vm.control = Some(BufReader::new(stream));
    Ok(())
}

/// Waits for a booting VM's `ready`.
pub async fn wait_ready(vm: &mut WaitingVm) -> Result<(), WarmError> {
    let started = Instant::now();
    let ready = async {
        connect_control(vm).await?;
        let control = vm.control.as_mut().ok_or(WarmError::NoControl)?;
        let mut line = String::new();
        control.read_line(&mut line).await.map_err(WarmError::Control)?;
        if line.trim() != "ready" {
            return Err(WarmError::NotReady(line.trim().to_owned()));
        }
        Ok(())
    };
    let result = match tokio::time::timeout(BOOT_DEADLINE, ready).await {
        Ok(result) => result,
        Err(_) => Err(WarmError::BootDeadline),
    };
    match result {
        Ok(()) => {
            vm.started_in += started.elapsed();
            Ok(())
        }
        Err(err) => Err(with_qemu_stderr(vm, err).await),
    }
}

/// Asks a waiting guest to warm up and waits for its `ready`.
pub async fn warm_up(vm: &mut WaitingVm) -> Result<(), WarmError> {
    let control = vm.control.as_mut().ok_or(WarmError::NoControl)?;
    control.get_mut().write_all(b"warm\n").await.map_err(WarmError::Control)?;
    let mut line = String::new();
    control.read_line(&mut line).await.map_err(WarmError::Control)?;
    if line.trim() != "ready" {
        return Err(WarmError::NotWarm(line.trim().to_owned()));
    }
    Ok(())
}

/// `err`, with what QEMU said if it has exited.
pub async fn with_qemu_stderr(vm: &mut WaitingVm, err: WarmError) -> WarmError {
    if !matches!(vm.child.try_wait(), Ok(Some(_))) {
        return err;
    }
    let stderr = vm.stderr.collect().await;
    if stderr.is_empty() { err } else { WarmError::QemuExited { stderr, source: Box::new(err) } }
}

/// Where ready VMs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarmStart {
    /// Each VM boots (in the background) to its waiting point.
    Boot,
    /// One template per image boots and is saved; each VM is restored from it, and a job that
    /// finds no VM ready restores one on the spot rather than booting cold.
    #[default]
    Snapshot,
}

/// An image's template, while it is made and after.
#[derive(Debug)]
enum TemplateSlot {
    Making,
    Ready(Arc<Template>),
    /// Boot instead (the reason was logged).
    Failed,
}

/// Restores that fail in a row before a template is given up for booting.
const MAX_RESTORE_FAILURES: u32 = 3;

/// Warm VMs per image, and the cold path for everything else.
#[derive(Debug)]
pub struct WarmPool {
    config: VmConfig,
    /// Limits the warm VMs are booted for (memory and I/O disk size are fixed at boot).
    limits: JobLimits,
    start: WarmStart,
    /// Image digest -> (image, how many to keep ready).
    targets: Mutex<HashMap<String, (ImageInfo, usize)>>,
    ready: Mutex<HashMap<String, VecDeque<WaitingVm>>>,
    /// VMs booting, per image digest.
    booting: Mutex<HashMap<String, usize>>,
    templates: Mutex<HashMap<String, TemplateSlot>>,
    restore_failures: Mutex<HashMap<String, u32>>,
    /// Jobs running (warm or cold) through [`WarmMicroVm`], and the host's cores.
    active: AtomicUsize,
    cores: usize,
}

/// Counts for /metrics and `pe doctor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmStats {
    pub ready: usize,
    pub booting: usize,
    /// Snapshot templates saved, and the host memory their RAM files hold.
    pub templates: usize,
    pub template_bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WarmPool {
    /// A pool keeping `count` VMs ready for each image. Call [`WarmPool::fill`] to start them.
    pub fn new(
        config: VmConfig,
        limits: JobLimits,
        images: Vec<(ImageInfo, usize)>,
        start: WarmStart,
    ) -> Arc<WarmPool> {
        let targets =
            images.into_iter().map(|(image, n)| (image.digest.clone(), (image, n))).collect();
        Arc::new(WarmPool {
            config,
            limits,
            start,
            targets: Mutex::new(targets),
            ready: Mutex::new(HashMap::new()),
            booting: Mutex::new(HashMap::new()),
            templates: Mutex::new(HashMap::new()),
            restore_failures: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// Containers whose snapshot template failed (their jobs boot instead).
    pub fn failed_templates(&self) -> Vec<String> {
        let targets = lock(&self.targets);
        let mut ids: Vec<String> = lock(&self.templates)
            .iter()
            .filter(|(_, slot)| matches!(slot, TemplateSlot::Failed))
            .map(|(digest, _)| {
                targets.get(digest).map_or_else(|| digest.clone(), |t| t.0.id.clone())
            })
            .collect();
        ids.sort();
        ids
    }

    pub fn stats(&self) -> WarmStats {
        let templates: Vec<Arc<Template>> = lock(&self.templates)
            .values()
            .filter_map(|t| match t {
                TemplateSlot::Ready(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        WarmStats {
            ready: lock(&self.ready).values().map(VecDeque::len).sum(),
            booting: lock(&self.booting).values().sum(),
            templates: templates.len(),
            template_bytes: templates.iter().map(|t| t.ram_bytes()).sum(),
        }
    }

    fn io_size(&self) -> u64 {
        convert::io_disk_size(&self.limits, shared::limits::MAX_REQUEST_BYTES + (1 << 20))
    }

    fn template(&self, digest: &str) -> Option<Arc<Template>> {
        match lock(&self.templates).get(digest) {
            Some(TemplateSlot::Ready(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// Starts VMs until every image has its target count ready or starting; in snapshot mode,
    /// makes each image's template first.
    pub fn fill(self: &Arc<Self>) {
        let targets = lock(&self.targets).clone();
        for (digest, (image, target)) in &targets {
            if self.start == WarmStart::Snapshot {
                let mut templates = lock(&self.templates);
                match templates.get(digest) {
                    None => {
                        templates.insert(digest.clone(), TemplateSlot::Making);
                        let pool = self.clone();
                        let image = image.clone();
                        tokio::spawn(async move { pool.make_template(image).await });
                        continue;
                    }
                    Some(TemplateSlot::Making) => continue,
                    Some(TemplateSlot::Ready(_) | TemplateSlot::Failed) => {}
                }
            }
            loop {
                let have = {
                    let ready = lock(&self.ready);
                    let mut booting = lock(&self.booting);
                    let have = ready.get(digest).map_or(0, VecDeque::len)
                        + booting.get(digest).copied().unwrap_or(0);
                    if have < *target {
                        *booting.entry(digest.clone()).or_default() += 1;
                    }
                    have
                };
                if have >= *target {
                    break;
                }
                let pool = self.clone();
                let image = image.clone();
                tokio::spawn(async move {
                    let result = pool.start_vm(&image).await;
                    if let Some(n) = lock(&pool.booting).get_mut(&image.digest) {
                        *n = n.saturating_sub(1);
                    }
                    match result {
                        Ok(vm) if !pool.is_target(&image.digest) => drop(vm),
                        Ok(vm) => {
                            tracing::debug!(
                                container = %image.id,
                                start = vm.start,
                                ms = vm.started_in.as_millis() as u64,
                                "warm VM ready"
                            );
                            lock(&pool.ready)
                                .entry(image.digest.clone())
                                .or_default()
                                .push_back(vm);
                        }
                        Err(err) => tracing::warn!(
                            container = %image.id,
                            error = %chain(&err),
                            "warm VM failed to start"
                        ),
                    }
                });
            }
        }
    }

    async fn make_template(self: Arc<Self>, image: ImageInfo) {
        let made =
            Template::create(&self.config, &image, self.limits.memory_mib, self.io_size()).await;
        let slot = match made {
            Ok(template) => {
                tracing::info!(
                    container = %image.id,
                    ms = template.made_in.as_millis() as u64,
                    ram_kib = template.ram_bytes() / 1024,
                    "snapshot template saved"
                );
                TemplateSlot::Ready(Arc::new(template))
            }
            Err(err) => {
                tracing::warn!(
                    container = %image.id,
                    error = %chain(&err),
                    "no snapshot: booting instead"
                );
                TemplateSlot::Failed
            }
        };
        if self.is_target(&image.digest) {
            lock(&self.templates).insert(image.digest.clone(), slot);
            self.fill();
        }
    }

    fn is_target(&self, digest: &str) -> bool {
        lock(&self.targets).contains_key(digest)
    }

    /// The containers kept warm, by image id.
    pub fn warm_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            lock(&self.targets).values().map(|(i, _)| i.id.clone()).collect();
        ids.sort();
        ids
    }

    /// Keeps `images` warm from now on: waiting VMs and templates of images no longer wanted
    /// are dropped (their QEMUs killed, their RAM files removed once no clone maps them), and
    /// new images get theirs.
    pub fn retarget(self: &Arc<Self>, images: Vec<(ImageInfo, usize)>) {
        let targets: HashMap<String, (ImageInfo, usize)> =
            images.into_iter().map(|(image, n)| (image.digest.clone(), (image, n))).collect();
        lock(&self.ready).retain(|digest, _| targets.contains_key(digest));
        lock(&self.templates).retain(|digest, _| targets.contains_key(digest));
        lock(&self.restore_failures).retain(|digest, _| targets.contains_key(digest));
        *lock(&self.targets) = targets;
        self.fill();
    }

    /// One VM for `image`: restored from its template if there is one, else booted.
    async fn start_vm(&self, image: &ImageInfo) -> Result<WaitingVm, WarmError> {
        if let Some(template) = self.template(&image.digest) {
            // A warm-up costs CPU that running jobs need when every core is busy: then the job
            // pays for the cold paths itself (bench/server.py, throughput with 2 slots).
            let warm_up = self.active.load(Ordering::Relaxed) < self.cores;
            return self.restore(&template, warm_up).await;
        }
        let mut vm =
            launch(&self.config, image, self.limits.memory_mib, self.io_size(), "warm", |_, _| {})
                .await?;
        wait_ready(&mut vm).await?;
        Ok(vm)
    }

    /// A clone of `template`; repeated failures retire the template (the image boots instead).
    async fn restore(&self, template: &Template, warm_up: bool) -> Result<WaitingVm, WarmError> {
        let digest = &template.image.digest;
        match template.restore(&self.config, warm_up).await {
            Ok(mut vm) => {
                lock(&self.restore_failures).remove(digest);
                vm.start = "snapshot";
                Ok(vm)
            }
            Err(err) => {
                let mut failures = lock(&self.restore_failures);
                let n = failures.entry(digest.clone()).or_default();
                *n += 1;
                if *n >= MAX_RESTORE_FAILURES {
                    tracing::warn!(
                        container = %template.image.id,
                        failures = *n,
                        "restoring the snapshot keeps failing: booting instead"
                    );
                    lock(&self.templates).insert(digest.clone(), TemplateSlot::Failed);
                }
                Err(WarmError::Restore(Box::new(err)))
            }
        }
    }

    fn fits(&self, job: &Job) -> bool {
        job.limits.memory_mib == self.limits.memory_mib
            && job.limits.output_bytes <= self.limits.output_bytes
            && job.limits.stdout_bytes <= self.limits.stdout_bytes
            && job.limits.stderr_bytes <= self.limits.stderr_bytes
            && job.limits.output_entries <= self.limits.output_entries
    }

    /// A ready VM for this job, if there is one that fits.
    fn take(&self, job: &Job) -> Option<WaitingVm> {
        let mut ready = lock(&self.ready);
        let queue = ready.get_mut(&job.image.digest)?;
        while let Some(mut vm) = queue.pop_front() {
            // One that died while waiting is dropped (its QEMU is killed with it).
            if matches!(vm.child.try_wait(), Ok(None)) {
                return Some(vm);
            }
        }
        None
    }

    /// Runs the job on a ready VM (or one restored for it), or `None` when none fits.
    pub async fn run(self: &Arc<Self>, job: &Job) -> Option<Result<JobOutput, ExecError>> {
        if !self.fits(job) {
            return None;
        }
        let vm = match self.take(job) {
            Some(vm) => {
                // Keep the pool full: the replacement starts while this job runs.
                self.fill();
                vm
            }
            None => {
                let template = self.template(&job.image.digest)?;
                // The job is waiting: no warm-up (the job would pay for it either way).
                match self.restore(&template, false).await {
                    Ok(vm) => vm,
                    Err(err) => {
                        tracing::warn!(
                            container = %job.image.id,
                            error = %chain(&err),
                            "booting cold"
                        );
                        return None;
                    }
                }
            }
        };
        Some(self.run_on(vm, job).await)
    }

    async fn run_on(&self, mut vm: WaitingVm, job: &Job) -> Result<JobOutput, ExecError> {
        let ran_on =
            RanOn { backend: "microvm", accel: Some(self.config.accel.name()), start: vm.start };
        let request = convert::request_bytes(job)?;
        let io_err = |source| ExecError::WorkDir { path: vm.io_path.clone(), source };
        {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(&vm.io_path).map_err(io_err)?;
            file.write_all_at(&request, 0).map_err(io_err)?;
        }
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let started = Instant::now();
        let go = format!("go {} {now}\n", hex::encode(seed));
        let sent = match vm.control.as_mut() {
            Some(control) => control.get_mut().write_all(go.as_bytes()).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        };
        let deadline = job.limits.timeout + self.config.margin;
        let status = match sent {
            // The guest went away before its job: kill what is left, report it as failed.
            Err(_) => {
                let _ = vm.child.kill().await;
                vm.child.wait().await.ok()
            }
            Ok(()) => match tokio::time::timeout(deadline, vm.child.wait()).await {
                Ok(status) => status.ok(),
                Err(_) => {
                    let _ = vm.child.kill().await;
                    None
                }
            },
        };
        let vm_ms = started.elapsed().as_millis() as u64;
        let stderr = vm.stderr.collect().await;
        let output =
            vm::output_from_io_file(&vm.io_path, status, &stderr, vm_ms, job, &self.config, ran_on);
        drop(vm.dir);
        output
    }
}

/// Counts a job as running until dropped (whichever way the job's future ends).
struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The microVM backend with warm VMs in front of cold boots.
#[derive(Debug, Clone)]
pub struct WarmMicroVm {
    pub warm: Arc<WarmPool>,
}

impl Backend for WarmMicroVm {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(async move {
            self.warm.active.fetch_add(1, Ordering::Relaxed);
            let _active = ActiveGuard(&self.warm.active);
            match self.warm.run(job).await {
                Some(result) => result,
                None => vm::run_cold(&self.warm.config, job).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that writes far more to stderr than a pipe holds ends, because the tail drains
    /// it; the last bytes are kept.
    #[tokio::test]
    async fn stderr_is_drained_while_the_process_runs_and_its_tail_is_kept() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "head -c 300000 /dev/zero | tr '\\0' x >&2; echo end >&2"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut tail = StderrTail::spawn(child.stderr.take(), "test");
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the writer was not blocked on a full pipe")
            .unwrap();
        assert!(status.success());
        let kept = tail.collect().await;
        assert!(kept.ends_with("xxxend"), "{:?}", &kept[kept.len().saturating_sub(20)..]);
        assert!(kept.len() <= TAIL_BYTES);
    }
}
