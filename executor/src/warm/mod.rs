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
//!
//! Dependencies point one way: this pool uses [`snapshot`] (templates and their clones), which
//! uses [`waiting`] (a VM waiting for `go`, its control port) and [`qmp`] (saving and loading).

pub mod qmp;
pub mod snapshot;
pub mod waiting;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use images::ImageInfo;
use shared::error::chain;
use shared::guest::LiveRequest;

use crate::job::{Job, JobLimits, JobOutput, RanOn};
use crate::live::LiveIo;
use crate::pool::{Backend, BoxFuture};
use crate::vm::{VmConfig, cold};
use crate::{ExecError, convert};

use snapshot::Template;
use waiting::{Shape, WaitingVm, WarmError, launch, wait_ready};

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
    /// Container id -> the command its warm VMs run before their job.
    warm_up: HashMap<String, Vec<String>>,
    /// Image digest -> (image, how many to keep ready).
    targets: Mutex<HashMap<String, (ImageInfo, usize)>>,
    ready: Mutex<HashMap<String, VecDeque<WaitingVm>>>,
    /// VMs booting, per image digest.
    booting: Mutex<HashMap<String, usize>>,
    templates: Mutex<HashMap<String, TemplateSlot>>,
    restore_failures: Mutex<HashMap<String, u32>>,
    /// Failed warm-up commands: how many, and each reason once (it is logged once).
    warm_up_failures: Mutex<(u64, HashSet<String>)>,
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
    /// Clones whose container warm-up command failed, since the pool started.
    pub warm_up_failures: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WarmPool {
    /// A pool keeping `count` VMs ready for each image. Call [`WarmPool::fill`] to start them.
    /// `warm_up`: per container id, a command its warm VMs run before their job (see
    /// `shared::meta::RunRecipe::warm_up`).
    pub fn new(
        config: VmConfig,
        limits: JobLimits,
        images: Vec<(ImageInfo, usize)>,
        start: WarmStart,
        warm_up: HashMap<String, Vec<String>>,
    ) -> Arc<WarmPool> {
        let targets =
            images.into_iter().map(|(image, n)| (image.digest.clone(), (image, n))).collect();
        Arc::new(WarmPool {
            config,
            limits,
            start,
            warm_up,
            targets: Mutex::new(targets),
            ready: Mutex::new(HashMap::new()),
            booting: Mutex::new(HashMap::new()),
            templates: Mutex::new(HashMap::new()),
            restore_failures: Mutex::new(HashMap::new()),
            warm_up_failures: Mutex::new((0, HashSet::new())),
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
            warm_up_failures: lock(&self.warm_up_failures).0,
        }
    }

    /// What `image`'s warm VMs are made for.
    fn shape(&self, image: &ImageInfo) -> Shape<'_> {
        Shape {
            memory_mib: self.limits.memory_mib,
            scratch_mib: self.limits.scratch_mib,
            warm_up: self.warm_up.get(&image.id).map_or(&[], Vec::as_slice),
            io_size: self.io_size(),
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
        let made = Template::create(&self.config, &image, self.shape(&image)).await;
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
        let shape = self.shape(image);
        let mut vm = launch(&self.config, image, shape, "warm", |_, _| {}).await?;
        wait_ready(&mut vm).await?;
        Ok(vm)
    }

    /// A clone of `template`; repeated failures retire the template (the image boots instead).
    async fn restore(&self, template: &Template, warm_up: bool) -> Result<WaitingVm, WarmError> {
        let digest = &template.image.digest;
        match template.restore(&self.config, warm_up).await {
            Ok(mut vm) => {
                lock(&self.restore_failures).remove(digest);
                if let Some(failed) = vm.warm_up_failed.take() {
                    let mut failures = lock(&self.warm_up_failures);
                    failures.0 += 1;
                    if failures.1.insert(failed.clone()) {
                        tracing::warn!(
                            container = %template.image.id,
                            "the warm-up command failed (the clone serves, less warm): {failed}"
                        );
                    }
                }
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
    /// A live run (`live`) hands its channels back when no VM fits, for a cold boot.
    pub async fn run(
        self: &Arc<Self>,
        job: &Job,
        live: Option<LiveIo>,
    ) -> Result<Result<JobOutput, ExecError>, Option<LiveIo>> {
        if !self.fits(job) {
            return Err(live);
        }
        let vm = match self.take(job) {
            Some(vm) => {
                // Keep the pool full: the replacement starts while this job runs.
                self.fill();
                vm
            }
            None => {
                let Some(template) = self.template(&job.image.digest) else { return Err(live) };
                // The job is waiting: no warm-up (the job would pay for it either way).
                match self.restore(&template, false).await {
                    Ok(vm) => vm,
                    Err(err) => {
                        tracing::warn!(
                            container = %job.image.id,
                            error = %chain(&err),
                            "booting cold"
                        );
                        return Err(live);
                    }
                }
            }
        };
        Ok(self.run_on(vm, job, live).await)
    }

    async fn run_on(
        &self,
        mut vm: WaitingVm,
        job: &Job,
        mut live: Option<LiveIo>,
    ) -> Result<JobOutput, ExecError> {
        let ran_on = RanOn {
            backend: "microvm",
            accel: Some(self.config.accel.name()),
            start: vm.start,
            container: "created",
        };
        let live_request = live.as_ref().map(|live| LiveRequest { stdin_open: live.stdin_open });
        let request = convert::request_bytes(job, live_request)?;
        let io_err = |source| ExecError::WorkDir { path: vm.io_path.clone(), source };
        {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(&vm.io_path).map_err(io_err)?;
            file.write_all_at(&request, 0).map_err(io_err)?;
        }
        if let Some(live) = live.as_ref() {
            live.started(&ran_on).await;
        }
        let started = Instant::now();
        let sent = vm.go().await;
        let deadline = job.limits.timeout + self.config.margin;
        let pump = match (live.as_mut(), vm.take_control()) {
            (Some(live), Some(port)) => Some(crate::live::pump(port, live, &job.limits)),
            _ => None,
        };
        let status = match sent {
            // The guest went away before its job: kill what is left, report it as failed.
            Err(_) => {
                let _ = vm.child.kill().await;
                vm.child.wait().await.ok()
            }
            Ok(()) => {
                let wait = tokio::time::timeout(deadline, vm.child.wait());
                match crate::live::wait_while_pumping(wait, pump).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        let _ = vm.child.kill().await;
                        None
                    }
                }
            }
        };
        let vm_ms = started.elapsed().as_millis() as u64;
        let stderr = vm.stderr().await;
        let output = cold::output_from_io_file(
            &vm.io_path,
            status,
            &stderr,
            vm_ms,
            job,
            &self.config,
            ran_on,
        );
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
            match self.warm.run(job, None).await {
                Ok(result) => result,
                Err(_) => cold::run_cold(&self.warm.config, job, None).await,
            }
        })
    }

    fn run_live<'a>(
        &'a self,
        job: &'a Job,
        live: LiveIo,
    ) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(async move {
            self.warm.active.fetch_add(1, Ordering::Relaxed);
            let _active = ActiveGuard(&self.warm.active);
            match self.warm.run(job, Some(live)).await {
                Ok(result) => result,
                Err(live) => cold::run_cold(&self.warm.config, job, live).await,
            }
        })
    }
}
