//! A VM waiting for its job, and the control port it waits on.
//!
//! 1. [`launch`] starts QEMU with an empty I/O disk and a control port: a virtio-serial port
//!    backed by a Unix socket in the VM's own directory.
//! 2. The guest boots, mounts the image, says `ready` on the port ([`wait_ready`]) and waits;
//!    `warm` asks it to run through the paths every job takes first ([`warm_up`]).
//! 3. A job writes its request into the I/O disk and sends `go` (`WaitingVm::go`); the guest
//!    runs it like a cold VM would and powers off.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use images::{ImageFormat, ImageInfo};
use rand::RngCore;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Child;

use super::qmp::QmpError;
use crate::vm::VmConfig;

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
    Qmp(#[from] QmpError),
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
    /// Why its warm-up command failed, if it ran and did (see [`warm_up`]).
    pub warm_up_failed: Option<String>,
    /// `warm` (booted ahead) or `snapshot` (restored from a template).
    pub(super) start: &'static str,
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

impl WaitingVm {
    /// Tells the waiting guest to run the job now in its I/O disk: `go <seed> <wall clock>`, a
    /// fresh random seed and the time (a restored clone wakes with its template's).
    pub(super) async fn go(&mut self) -> io::Result<()> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let go = format!("go {} {now}\n", hex::encode(seed));
        match self.control.as_mut() {
            Some(control) => control.get_mut().write_all(go.as_bytes()).await,
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The control port, for a live run's stream after `go` (the guest has sent nothing since
    /// its `ready`, so no read-ahead is lost).
    pub(super) fn take_control(&mut self) -> Option<UnixStream> {
        self.control.take().map(BufReader::into_inner)
    }

    /// What QEMU wrote on stderr, once it has exited.
    pub(super) async fn stderr(&mut self) -> String {
        self.stderr.collect().await
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
/// What a warm VM is made for: fixed at boot (and so in a snapshot).
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub memory_mib: u32,
    /// The scratch size of its pre-made container.
    pub scratch_mib: u32,
    /// The container's warm-up command (`shared::meta::RunRecipe::warm_up`).
    pub warm_up: &'a [String],
    /// The I/O disk's size.
    pub io_size: u64,
}

pub async fn launch(
    config: &VmConfig,
    image: &ImageInfo,
    shape: Shape<'_>,
    kind: &str,
    extra: impl FnOnce(&mut tokio::process::Command, &std::path::Path),
) -> Result<WaitingVm, WarmError> {
    let started = Instant::now();
    let dir = crate::workdir::create(&config.work_dir, kind).map_err(WarmError::WorkDir)?;
    let io_path = dir.path().join("io");
    let file = std::fs::File::create(&io_path).map_err(WarmError::IoDisk)?;
    file.set_len(shape.io_size).map_err(WarmError::IoDisk)?;
    let format = match image.format {
        ImageFormat::Squashfs => "squashfs",
        ImageFormat::Erofs => "erofs",
    };
    let (mut cmd, confinement) = config
        .command(
            shape.memory_mib,
            &image.path,
            true,
            &io_path,
            // The guest makes the container too (for jobs with this scratch size), before it
            // waits: a job then only has its program exec'd (guest/src/premade.rs).
            &format!(
                "pe.warm={format} pe.premade={}{}",
                shape.scratch_mib,
                warm_up_arg(shape.warm_up)
            ),
            None,
        )
        .map_err(WarmError::Prepare)?;
    crate::vm::add_control_port(&mut cmd, &dir.path().join("ctl.sock"), true);
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
        warm_up_failed: None,
        start: "warm",
        stderr,
    })
}

/// The kernel argument that gives the guest its warm-up command (hex of its JSON), or nothing
/// when there is none or it is too long for a kernel command line.
fn warm_up_arg(warm_up: &[String]) -> String {
    if warm_up.is_empty() {
        return String::new();
    }
    let json = serde_json::to_vec(warm_up).unwrap_or_default();
    if json.len() > 512 {
        tracing::warn!(len = json.len(), "the warm-up command is too long: left out");
        return String::new();
    }
    format!(" pe.warmup={}", hex::encode(json))
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

/// Asks a waiting guest to warm up and waits for its `ready`. The VM is ready either way; `Some`
/// says why the container's warm-up command failed (one that fails early warms little).
pub async fn warm_up(vm: &mut WaitingVm) -> Result<Option<String>, WarmError> {
    let control = vm.control.as_mut().ok_or(WarmError::NoControl)?;
    control.get_mut().write_all(b"warm\n").await.map_err(WarmError::Control)?;
    let mut line = String::new();
    control.read_line(&mut line).await.map_err(WarmError::Control)?;
    let line = line.trim();
    if line == "ready" {
        return Ok(None);
    }
    // The VM is as ready as ever; only its warm-up command did not run through.
    match line.strip_prefix("ready warm-up failed: ") {
        Some(failed) => Ok(Some(failed.to_owned())),
        None => Err(WarmError::NotWarm(line.to_owned())),
    }
}

/// `err`, with what QEMU said if it has exited.
pub async fn with_qemu_stderr(vm: &mut WaitingVm, err: WarmError) -> WarmError {
    if !matches!(vm.child.try_wait(), Ok(Some(_))) {
        return err;
    }
    let stderr = vm.stderr.collect().await;
    if stderr.is_empty() { err } else { WarmError::QemuExited { stderr, source: Box::new(err) } }
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
