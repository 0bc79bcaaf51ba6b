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
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Child;

use crate::image::{ImageFormat, ImageInfo};
use crate::job::{Job, JobLimits, JobOutput, RanOn};
use crate::pool::{Backend, BoxFuture};
use crate::vm::{self, VmConfig};
use crate::{ExecError, convert};

/// How long a warm VM may take to boot and say `ready` before it is given up.
const BOOT_DEADLINE: Duration = Duration::from_secs(30);

/// One booted VM, waiting for its job.
struct WarmVm {
    child: Child,
    dir: tempfile::TempDir,
    io_path: PathBuf,
    control: BufReader<UnixStream>,
    booted_in: Duration,
}

impl std::fmt::Debug for WarmVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmVm").field("dir", &self.dir.path()).finish()
    }
}

/// Warm VMs per image, and the cold path for everything else.
#[derive(Debug)]
pub struct WarmPool {
    config: VmConfig,
    /// Limits the warm VMs are booted for (memory and I/O disk size are fixed at boot).
    limits: JobLimits,
    /// Image digest -> (image, how many to keep ready).
    targets: HashMap<String, (ImageInfo, usize)>,
    ready: Mutex<HashMap<String, VecDeque<WarmVm>>>,
    /// VMs booting, per image digest.
    booting: Mutex<HashMap<String, usize>>,
}

/// Counts for /metrics and `pe doctor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmStats {
    pub ready: usize,
    pub booting: usize,
}

impl WarmPool {
    /// A pool keeping `count` VMs ready for each image. Call [`WarmPool::fill`] to boot them.
    pub fn new(
        config: VmConfig,
        limits: JobLimits,
        images: Vec<(ImageInfo, usize)>,
    ) -> Arc<WarmPool> {
        let targets =
            images.into_iter().map(|(image, n)| (image.digest.clone(), (image, n))).collect();
        Arc::new(WarmPool {
            config,
            limits,
            targets,
            ready: Mutex::new(HashMap::new()),
            booting: Mutex::new(HashMap::new()),
        })
    }

    pub fn stats(&self) -> WarmStats {
        let ready = self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let booting = self.booting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        WarmStats {
            ready: ready.values().map(VecDeque::len).sum(),
            booting: booting.values().sum(),
        }
    }

    /// Boots VMs until every image has its target count ready or booting.
    pub fn fill(self: &Arc<Self>) {
        for (digest, (image, target)) in &self.targets {
            loop {
                let have = {
                    let ready =
                        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut booting =
                        self.booting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
                    let result = pool.boot(&image).await;
                    {
                        let mut booting =
                            pool.booting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if let Some(n) = booting.get_mut(&image.digest) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    match result {
                        Ok(vm) => {
                            tracing_note(&format!(
                                "warm VM for {} ready in {} ms",
                                image.id,
                                vm.booted_in.as_millis()
                            ));
                            let mut ready = pool
                                .ready
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            ready.entry(image.digest.clone()).or_default().push_back(vm);
                        }
                        Err(err) => {
                            tracing_note(&format!("warm VM for {} failed to boot: {err}", image.id))
                        }
                    }
                });
            }
        }
    }

    /// Boots one VM for `image` and waits for its `ready`.
    async fn boot(&self, image: &ImageInfo) -> Result<WarmVm, String> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("warm-")
            .tempdir_in(&self.config.work_dir)
            .map_err(|e| format!("cannot create a work directory: {e}"))?;
        let io_path = dir.path().join("io");
        let probe_job = Job { limits: self.limits, ..Job::new(image.clone(), Vec::new()) };
        let size = convert::io_disk_size(&probe_job, shared::limits::MAX_REQUEST_BYTES + (1 << 20));
        let file = std::fs::File::create(&io_path).map_err(|e| e.to_string())?;
        file.set_len(size).map_err(|e| e.to_string())?;
        let socket = dir.path().join("ctl.sock");
        let format = match image.format {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Erofs => "erofs",
        };
        let mut cmd = self.config.command(
            self.limits.memory_mib,
            &image.path,
            true,
            &io_path,
            &format!("pe.warm={format}"),
            None,
        );
        cmd.args(["-device", "virtio-serial-device"]);
        cmd.arg("-chardev")
            .arg(format!("socket,id=ctl,path={},server=on,wait=off", socket.display()));
        cmd.args(["-device", "virtserialport,chardev=ctl,name=pe.ctl"]);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
        let ready = async {
            // QEMU creates the socket as it starts.
            let stream = loop {
                match UnixStream::connect(&socket).await {
                    Ok(stream) => break stream,
                    Err(_) => {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Err(format!("QEMU exited during boot ({status})"));
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            let mut control = BufReader::new(stream);
            let mut line = String::new();
            control.read_line(&mut line).await.map_err(|e| e.to_string())?;
            if line.trim() != "ready" {
                return Err(format!("the guest said {:?} instead of ready", line.trim()));
            }
            Ok(control)
        };
        let control = match tokio::time::timeout(BOOT_DEADLINE, ready).await {
            Ok(Ok(control)) => control,
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(format!("not ready within {} s", BOOT_DEADLINE.as_secs())),
        };
        Ok(WarmVm { child, dir, io_path, control, booted_in: started.elapsed() })
    }

    /// A ready VM for this job, if there is one that fits.
    fn take(&self, job: &Job) -> Option<WarmVm> {
        if job.limits.memory_mib != self.limits.memory_mib
            || job.limits.output_bytes > self.limits.output_bytes
            || job.limits.stdout_bytes > self.limits.stdout_bytes
            || job.limits.stderr_bytes > self.limits.stderr_bytes
            || job.limits.output_entries > self.limits.output_entries
        {
            return None;
        }
        let mut ready = self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let queue = ready.get_mut(&job.image.digest)?;
        while let Some(mut vm) = queue.pop_front() {
            // One that died while waiting is dropped (its QEMU is killed with it).
            if matches!(vm.child.try_wait(), Ok(None)) {
                return Some(vm);
            }
        }
        None
    }

    /// Runs the job on a warm VM, or `None` when none fits.
    pub async fn run(self: &Arc<Self>, job: &Job) -> Option<Result<JobOutput, ExecError>> {
        let vm = self.take(job)?;
        // Keep the pool full: the replacement boots while this job runs.
        self.fill();
        Some(self.run_on(vm, job).await)
    }

    async fn run_on(&self, mut vm: WarmVm, job: &Job) -> Result<JobOutput, ExecError> {
        let ran_on =
            RanOn { backend: "microvm", accel: Some(self.config.accel.name()), start: "warm" };
        let request = convert::request_bytes(job)?;
        let io_err = |source| ExecError::WorkDir { path: vm.io_path.clone(), source };
        {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(&vm.io_path).map_err(io_err)?;
            file.write_all_at(&request, 0).map_err(io_err)?;
        }
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let started = Instant::now();
        let go = format!("go {}\n", hex::encode(seed));
        let sent = vm.control.get_mut().write_all(go.as_bytes()).await;
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
        let mut stderr = String::new();
        if let Some(mut pipe) = vm.child.stderr.take() {
            let _ = (&mut pipe).take(64 * 1024).read_to_string(&mut stderr).await;
        }
        let output = vm::output_from_io_file(
            &vm.io_path,
            status,
            stderr.trim(),
            vm_ms,
            job,
            &self.config,
            ran_on,
        );
        drop(vm.dir);
        output
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
            match self.warm.run(job).await {
                Some(result) => result,
                None => vm::run_cold(&self.warm.config, job).await,
            }
        })
    }
}

/// Warm-pool events go to stderr; the executor has no logger of its own.
fn tracing_note(message: &str) {
    if std::env::var_os("PE_WARM_LOG").is_some() {
        eprintln!("pe: {message}");
    }
}
