//! The namespace sandbox: an opt-in backend that runs a job with crun directly on the host, in
//! fresh namespaces, without a VM. It is for self-hosters who trust their users and want speed
//! on a host without hardware KVM. The isolation is weaker than a microVM's: the program shares
//! the host's kernel, so every job's result carries a note saying so.
//! (Over 600 lines with its tests: staging, supervising and collecting a job are one backend.)
//!
//! The container is the same as in the guest (`shared::oci::runtime_config`: read-only root,
//! writable /input, /output and /tmp, no network, no capabilities), and the semantics follow
//! `guest/src/job.rs`: stdout and stderr capped (the program is killed when one overflows), a
//! wall-clock limit, /output collected up to the output caps.
//!
//! 1. A job directory in `work_dir` (a [`tempfile::TempDir`]) gets `bundle/config.json`, the
//!    input files staged in `input/` (owned by the job's user) and the program's `stdin`.
//! 2. `unshare --mount --pid --kill-child /bin/sh -c SCRIPT` starts a shell as PID 1 of a new
//!    pid namespace, in a private mount namespace. The shell mounts cgroup2 on /sys/fs/cgroup
//!    (crun refuses hybrid v1/v2 hosts otherwise), the image read-only through a loop device,
//!    a size-capped tmpfs as scratch (overlay upper dir, /input, /output, /tmp), the overlay
//!    root, and runs `crun run` in the foreground with the job's pipes as stdout and stderr.
//! 3. The shell's stdin is one end of a socket pair. The shell says `start` before crun and
//!    `times` output plus `done <status> <created>` after it. The host says `kill` (wall-clock
//!    limit, or stdout or stderr over its cap), and the shell SIGKILLs the container's init,
//!    which ends the container's pid namespace and so crun.
//! 4. After `done` the container is gone but the shell waits: the host reads /output through
//!    `/proc/<unshare pid>/root/...` (the scratch tmpfs exists only in that mount namespace),
//!    up to the output caps, then shuts the socket and the shell exits.
//! 5. Cleanup is the kernel's, on every path. Dropping the future kills unshare
//!    (`kill_on_drop`); its child gets SIGKILL (`--kill-child`), which kills its whole pid
//!    namespace, crun and the container (nested in it) included. The mount namespace goes with
//!    its last process, taking the tmpfs, overlay and image mounts with it, and the loop device
//!    is auto-cleared when its mount goes. The job directory is removed at the end, or, after a
//!    drop, by a thread once crun has exited (it holds the job's pipes until then). As a second
//!    line, the shell treats the socket's end of file (the host is done, or gone, even killed)
//!    as "kill the container and exit".
//!
//! Why a tmpfs for scratch rather than the job directory on the host's disk: its size cap bounds
//! what a job can write (the host's disk has no per-job quota), and nothing of it can outlive the
//! job. Reading /output through `/proc/<pid>/root` instead of having the shell copy it out means
//! only what fits the output caps is ever read. Links are never followed there, and the
//! container's processes are all dead by then, so nothing can swap a file for a link meanwhile.
//!
//! Limits without cgroups (a hybrid host has no usable cgroup v2 tree for crun): memory is
//! `RLIMIT_AS` (programs that reserve large address spaces, such as Go or JVM runtimes, may fail
//! to start), processes are `RLIMIT_NPROC` under a user id of its own per job (see
//! [`FIRST_UID`]), file sizes are `RLIMIT_FSIZE`, and the wall-clock limit is enforced here.
//!
//! Differences from the microVM a user could notice: crun reports a program killed by signal
//! `n` as exit status `128 + n`, so an exit status of 129 to 192 reads as that signal; there is
//! no OOM kill to report (allocations fail at the limit); usage has user and system time (from
//! the shell's `times`) but no peak memory.
//!
//! Needs root (it mounts), util-linux `unshare`, `/bin/sh`, and crun.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use images::ImageFormat;
use shared::cpio::{self, EntryData, Limits};
use shared::{oci, outputs};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ExecError;
use crate::job::{Job, JobLimits, JobOutput, JobTimings, Outcome, RanOn, Truncated, Usage};
use crate::live::{LiveEvent, LiveInput, LiveIo, STOPPED_NOTE, Stream as LiveStream};
use crate::pool::{Backend, BoxFuture};

/// The note on every result of this backend.
pub const NOTE: &str =
    "ran in the namespace sandbox: weaker isolation than a microVM (shared host kernel)";

/// Jobs run as user and group `FIRST_UID + n` for `n` in `0..UID_COUNT`, one after another, so
/// `RLIMIT_NPROC` (counted per user) counts one job's processes only. No other process on the
/// host may use these ids. 65534 (`nobody`) is outside the range.
pub const FIRST_UID: u32 = 65_000;
/// How many user ids [`FIRST_UID`] starts; more than any host runs jobs at once.
pub const UID_COUNT: u32 = 512;

/// Longest time from start to the program starting (mounts, copying inputs, crun's setup).
const SETUP_LIMIT: Duration = Duration::from_secs(10);
/// How long the container may take to die after being asked, before everything is killed.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the shell to exit and the pipes to close at the end.
const EXIT_GRACE: Duration = Duration::from_secs(2);

static NEXT_UID: AtomicU32 = AtomicU32::new(0);

/// The shell that runs as PID 1 of the job's pid namespace, in its private mount namespace,
/// with the job directory as working directory. Arguments: image filesystem type, image path,
/// scratch size in MiB, job uid, job gid, crun. Its stdin is the control socket (above); its
/// stdout and stderr are the job's, so a setup failure's message ends up in stderr.
const SCRIPT: &str = r#"set -eu
exec 3<&0
trap 'exit 1' TERM
mount -t cgroup2 -o nosuid,nodev,noexec none /sys/fs/cgroup
mount -t "$1" -o loop,ro,nosuid,nodev "$2" image
mount -t tmpfs -o "size=$3m,mode=0755,nosuid,nodev" scratch scratch
mkdir scratch/upper scratch/work scratch/output scratch/tmp
cp -a input scratch/input
chown "$4:$5" scratch/output
chmod 1777 scratch/tmp
mount -t overlay -o lowerdir=image,upperdir=scratch/upper,workdir=scratch/work,nosuid,nodev \
  overlay rootfs
# A line from the host kills the container's init, and so the container's whole pid
# namespace. End of file (the host is done, or gone) also ends this shell, at the latest once
# crun returns; that is what the host waits for.
(
  set +e
  while read -r _; do [ -e pid ] && kill -KILL "$(cat pid)"; done
  while :; do
    [ -e pid ] && kill -KILL "$(cat pid)"
    kill -TERM 1
    sleep 0.1
  done
) <&3 >/dev/null 2>&1 &
echo start >&3
set +e
"$6" --root "$PWD/crun" --cgroup-manager=disabled run --pid-file "$PWD/pid" --bundle bundle \
  job <stdin 3<&-
status=$?
created=0
if [ -e pid ]; then created=1; rm -f pid; fi
times >&3
echo "done $status $created" >&3
wait
"#;

/// Where crun and the job directories are.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub crun: PathBuf,
    /// Where job directories are created.
    pub work_dir: PathBuf,
}

/// The namespace sandbox backend.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub config: SandboxConfig,
}

impl Backend for Sandbox {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(run(&self.config, job, None))
    }

    fn run_live<'a>(
        &'a self,
        job: &'a Job,
        live: LiveIo,
    ) -> BoxFuture<'a, Result<JobOutput, ExecError>> {
        Box::pin(run(&self.config, job, Some(live)))
    }
}

/// Runs `job` in the namespace sandbox; `live` gets its output as it is written and feeds its
/// stdin (a FIFO then, instead of a file).
pub async fn run(
    config: &SandboxConfig,
    job: &Job,
    live: Option<LiveIo>,
) -> Result<JobOutput, ExecError> {
    check_root()?;
    if !config.crun.is_file() {
        let source = io::Error::new(io::ErrorKind::NotFound, "no such file");
        return Err(ExecError::Spawn { program: config.crun.clone(), source });
    }
    let temp = crate::workdir::create(&config.work_dir, "sandbox")
        .map_err(|source| ExecError::WorkDir { path: config.work_dir.clone(), source })?;
    let dir = fs::canonicalize(temp.path())
        .map_err(|source| ExecError::WorkDir { path: temp.path().to_owned(), source })?;
    let id = FIRST_UID + NEXT_UID.fetch_add(1, Ordering::Relaxed) % UID_COUNT;
    let stdin_open = live.as_ref().is_some_and(|live| live.stdin_open);
    prepare(&dir, job, id, stdin_open)?;

    let started = Instant::now();
    let ran_on = RanOn { backend: "sandbox", accel: None, start: "cold", container: "created" };
    let kill = Arc::new(tokio::sync::Notify::new());
    let (live, _feeder) = match live {
        Some(live) => {
            live.started(&ran_on).await;
            let stdin = stdin_open.then(|| dir.join("stdin"));
            let feeder = feed_input(stdin.as_deref(), job.stdin.clone(), live.input, kill.clone())?;
            let forward = Forward { events: live.events, pending: VecDeque::new() };
            (Some(forward), Some(feeder))
        }
        None => (None, None),
    };
    let mut session = Session::start(config, job, &dir, id, temp)?;
    session.live = live;
    session.kill = Some(kill);
    session.watch(&job.limits, started).await;
    let run_end = Instant::now();
    let mut notes = Vec::new();
    let mut files = Vec::new();
    let mut files_truncated = false;
    if session.done.as_ref().is_some_and(|d| d.created) {
        // The scratch tmpfs, as the shell (still waiting) sees it.
        let output = Path::new("/proc")
            .join(session.pid.to_string())
            .join("root")
            .join(dir.strip_prefix("/").unwrap_or(&dir))
            .join("scratch/output");
        let caps =
            outputs::Caps { entries: job.limits.output_entries, bytes: job.limits.output_bytes };
        let found = outputs::collect(&output, caps);
        (files, files_truncated) = (found.entries, found.truncated);
        notes.extend(found.notes);
    }
    session.finish().await;
    if let Some(mut live) = session.live.take() {
        // What is still pending goes out if the caller takes it promptly; the result has it all.
        while let Some(event) = live.pending.pop_front() {
            match tokio::time::timeout(Duration::from_millis(200), live.events.send(event)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
    }

    let run_ms = session
        .program_started
        .map_or(0, |at| run_end.saturating_duration_since(at).as_millis() as u64);
    let total_ms = started.elapsed().as_millis() as u64;
    let mut outcome = session.outcome();
    if session.hard_killed && !matches!(outcome, Outcome::FailedToStart(_)) {
        notes.push("the container did not stop when asked: the sandbox was killed".into());
    }
    let mut stdout = std::mem::take(&mut session.stdout.data);
    let mut stderr = std::mem::take(&mut session.stderr.data);
    if let Outcome::FailedToStart(why) = &mut outcome {
        // As the guest does: the reason is what crun (or the setup) said, not program output.
        if why.is_empty() {
            *why = failure_reason(&stderr, session.program_started.is_some());
        }
        stdout.clear();
        stderr.clear();
    }
    if session.stopped_by_user {
        notes.push(STOPPED_NOTE.to_owned());
    }
    notes.push(NOTE.to_owned());
    Ok(JobOutput {
        outcome,
        stdout,
        stderr,
        files,
        truncated: Truncated {
            stdout: session.stdout.truncated,
            stderr: session.stderr.truncated,
            files: files_truncated,
        },
        timings: JobTimings {
            boot_ms: total_ms.saturating_sub(run_ms),
            run_ms,
            ..JobTimings::default()
        },
        usage: children_usage(&session.times),
        ran_on,
        notes,
    })
}

/// Fails unless the process runs as root.
fn check_root() -> Result<(), ExecError> {
    if crate::running_as_root() { Ok(()) } else { Err(ExecError::SandboxNeedsRoot) }
}

/// Writes the bundle, the staged inputs and stdin into the job directory `dir`; stdin is a FIFO
/// when it stays open for typing (fed by [`feed_stdin`]).
fn prepare(dir: &Path, job: &Job, id: u32, stdin_open: bool) -> Result<(), ExecError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ExecError::WorkDir { path, source }
    };
    let Some(dir_str) = dir.to_str() else {
        let source = io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8");
        return Err(ExecError::WorkDir { path: dir.to_owned(), source });
    };
    for sub in ["bundle", "crun", "image", "rootfs", "scratch", "input"] {
        fs::create_dir(dir.join(sub)).map_err(io_err(&dir.join(sub)))?;
    }

    let env = job.container_env();
    let limits = &job.limits;
    let rlimits = [
        ("RLIMIT_AS", u64::from(limits.memory_mib) * 1024 * 1024),
        ("RLIMIT_NPROC", u64::from(limits.pids_max)),
        ("RLIMIT_FSIZE", u64::from(limits.scratch_mib) * 1024 * 1024),
    ];
    let spec = oci::Spec {
        argv: &job.argv,
        env: &env,
        cwd: &job.cwd,
        root: &format!("{dir_str}/rootfs"),
        scratch: &format!("{dir_str}/scratch"),
        uid: id,
        gid: id,
        cgroup: None,
        rlimits: &rlimits,
        seccomp: oci::Seccomp::Allowlist,
        waiter: None,
    };
    let config = serde_json::to_vec(&oci::runtime_config(&spec))?;
    let config_path = dir.join("bundle/config.json");
    fs::write(&config_path, config).map_err(io_err(&config_path))?;

    // The same checks the guest's decoder makes on the inputs.
    cpio::encode(&job.files, &Limits::INPUT)?;
    let input = dir.join("input");
    for entry in &job.files {
        let Some(rel) = cpio::normalize_path(&entry.path, &Limits::INPUT)? else { continue };
        let target = input.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        match &entry.data {
            EntryData::Dir => fs::create_dir_all(&target).map_err(io_err(&target))?,
            EntryData::File(data) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode((entry.mode & 0o777) | 0o600)
                    .open(&target)
                    .map_err(io_err(&target))?;
                file.write_all(data).map_err(io_err(&target))?;
            }
        }
    }
    chown_tree(&input, id).map_err(io_err(&input))?;

    let stdin = dir.join("stdin");
    if stdin_open {
        return rustix::fs::mknodat(
            rustix::fs::CWD,
            &stdin,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|errno| io_err(&stdin)(errno.into()));
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&stdin)
        .and_then(|mut f| f.write_all(&job.stdin))
        .map_err(io_err(&stdin))
}

/// Takes a live job's input: feeds the stdin FIFO at `stdin` (when stdin is open) with
/// `initial`, then what the user types, until they close it (the program then reads end of
/// file); a `kill` wakes `kill`. The task ends when the returned guard drops with the job.
fn feed_input(
    stdin: Option<&Path>,
    initial: Vec<u8>,
    mut input: mpsc::Receiver<LiveInput>,
    kill: Arc<tokio::sync::Notify>,
) -> Result<AbortOnDrop, ExecError> {
    use tokio::io::AsyncWriteExt;
    // Read-write: opening never waits for the reader (the shell opens it when it starts crun).
    let mut fifo = match stdin {
        Some(path) => Some(
            tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(path)
                .map_err(|source| ExecError::WorkDir { path: path.to_owned(), source })?,
        ),
        None => None,
    };
    let task = tokio::spawn(async move {
        if let Some(pipe) = fifo.as_mut()
            && pipe.write_all(&initial).await.is_err()
        {
            fifo = None;
        }
        while let Some(message) = input.recv().await {
            match message {
                LiveInput::Stdin(data) => {
                    if let Some(pipe) = fifo.as_mut()
                        && pipe.write_all(&data).await.is_err()
                    {
                        fifo = None;
                    }
                }
                LiveInput::StdinClose => fifo = None,
                LiveInput::Kill => kill.notify_one(),
            }
        }
    });
    Ok(AbortOnDrop(task))
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The container's environment: the job's, with PATH and HOME defaulted as for the microVM.
/// Gives `path` and everything under it to `id` (links are not followed).
fn chown_tree(path: &Path, id: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(id), Some(id))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for child in fs::read_dir(path)? {
            chown_tree(&child?.path(), id)?;
        }
    }
    Ok(())
}

/// Reads the shell's lines from the control socket on a blocking thread. The thread ends when
/// the shell and unshare are gone (end of file), which every path ensures.
fn read_lines(control: &UnixStream) -> io::Result<mpsc::UnboundedReceiver<String>> {
    let reader = control.try_clone()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// What the shell said when crun returned.
#[derive(Debug)]
struct Done {
    /// crun's exit status: the program's, or 128 + the signal that killed it.
    status: i32,
    /// Whether crun created the container (it writes its pid file then). If not, crun failed
    /// before the program could run, and stderr says why.
    created: bool,
}

/// One job's processes and what has been seen of them.
struct Session {
    child: Child,
    /// unshare's pid: `/proc/<pid>/root` is the job's mount namespace.
    pid: u32,
    control: UnixStream,
    lines: mpsc::UnboundedReceiver<String>,
    stdout: Stream<ChildStdout>,
    stderr: Stream<ChildStderr>,
    /// The job directory; removed when the session ends (see `Drop`).
    dir: Option<TempDir>,
    /// Whether every process of the job has been seen to end.
    ended: bool,
    program_started: Option<Instant>,
    done: Option<Done>,
    kill_asked: Option<Instant>,
    timed_out: bool,
    /// Whether everything was killed from outside (unshare with SIGKILL).
    hard_killed: bool,
    /// Whether the user of a live run stopped it.
    stopped_by_user: bool,
    /// The shell's `times` lines.
    times: Vec<String>,
    /// A live run's output on its way to the caller.
    live: Option<Forward>,
    /// Woken when the user of a live run stops it.
    kill: Option<Arc<tokio::sync::Notify>>,
}

/// Output of a live run not yet taken by the caller. While it holds more than
/// [`Forward::HIGH_WATER`] bytes the pipes are not read, so the program blocks on write.
struct Forward {
    events: mpsc::Sender<LiveEvent>,
    pending: VecDeque<LiveEvent>,
}

impl Forward {
    const HIGH_WATER: usize = 64 * 1024;

    fn has_room(&self) -> bool {
        let bytes: usize = self
            .pending
            .iter()
            .map(|event| match event {
                LiveEvent::Output { data, .. } => data.len(),
                LiveEvent::Started { .. } => 0,
            })
            .sum();
        bytes < Self::HIGH_WATER
    }

    fn push(&mut self, stream: LiveStream, data: &[u8]) {
        if !data.is_empty() {
            self.pending.push_back(LiveEvent::Output { stream, data: data.to_vec() });
        }
    }
}

/// Resolves when the user stops the run (never, for a run that is not live).
async fn stopped(kill: Option<Arc<tokio::sync::Notify>>) {
    match kill {
        Some(kill) => kill.notified().await,
        None => std::future::pending().await,
    }
}

/// Room in the caller's channel for the next pending event (never, when nothing is pending).
async fn reserve(
    sender: Option<mpsc::Sender<LiveEvent>>,
) -> Result<mpsc::OwnedPermit<LiveEvent>, mpsc::error::SendError<()>> {
    match sender {
        Some(sender) => sender.reserve_owned().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Starts unshare and the shell in the job directory `dir`.
    fn start(
        config: &SandboxConfig,
        job: &Job,
        dir: &Path,
        id: u32,
        temp: TempDir,
    ) -> Result<Session, ExecError> {
        let spawn_err = |source| ExecError::Spawn { program: "unshare".into(), source };
        let (control, theirs) = UnixStream::pair().map_err(spawn_err)?;
        let fstype = match job.image.format {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Erofs => "erofs",
        };
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--pid", "--kill-child", "--", "/bin/sh", "-c", SCRIPT, "pe-sandbox"])
            .arg(fstype)
            .arg(&job.image.path)
            .arg(job.limits.scratch_mib.to_string())
            .args([id.to_string(), id.to_string()])
            .arg(&config.crun)
            .current_dir(dir)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // The Command holds the shell's end of the socket: drop it, so the socket's end of
        // file means the shell (and unshare) are gone.
        drop(cmd);
        let (Some(stdout), Some(stderr), Some(pid)) =
            (child.stdout.take(), child.stderr.take(), child.id())
        else {
            return Err(spawn_err(io::Error::other("unshare has no pipes or no pid")));
        };
        let lines = read_lines(&control).map_err(spawn_err)?;
        Ok(Session {
            child,
            pid,
            control,
            lines,
            stdout: Stream::new(stdout, job.limits.stdout_bytes),
            stderr: Stream::new(stderr, job.limits.stderr_bytes),
            dir: Some(temp),
            ended: false,
            program_started: None,
            done: None,
            kill_asked: None,
            timed_out: false,
            hard_killed: false,
            stopped_by_user: false,
            times: Vec::new(),
            live: None,
            kill: None,
        })
    }

    /// Reads the pipes and the control socket until crun has returned or the shell is gone,
    /// enforcing the limits.
    async fn watch(&mut self, limits: &JobLimits, started: Instant) {
        let mut out_buf = vec![0u8; 64 * 1024];
        let mut err_buf = vec![0u8; 64 * 1024];
        while self.done.is_none() {
            let deadline = match (self.kill_asked, self.program_started) {
                (Some(asked), _) => asked + KILL_GRACE,
                (None, Some(at)) => at + limits.timeout,
                (None, None) => started + SETUP_LIMIT,
            };
            let room = self.live.as_ref().is_none_or(Forward::has_room);
            let sender = self
                .live
                .as_ref()
                .filter(|live| !live.pending.is_empty())
                .map(|live| live.events.clone());
            tokio::select! {
                n = read_some(&mut self.stdout, &mut out_buf), if room && !self.stdout.eof => {
                    let kept = self.stdout.data.len();
                    if self.stdout.take(&out_buf[..n]) {
                        self.ask_kill();
                    }
                    if let Some(live) = self.live.as_mut() {
                        live.push(LiveStream::Stdout, &self.stdout.data[kept..]);
                    }
                }
                n = read_some(&mut self.stderr, &mut err_buf), if room && !self.stderr.eof => {
                    let kept = self.stderr.data.len();
                    if self.stderr.take(&err_buf[..n]) {
                        self.ask_kill();
                    }
                    if let Some(live) = self.live.as_mut() {
                        live.push(LiveStream::Stderr, &self.stderr.data[kept..]);
                    }
                }
                () = stopped(self.kill.clone()) => {
                    self.stopped_by_user = true;
                    self.ask_kill();
                }
                Ok(permit) = reserve(sender) => {
                    if let Some(event) = self.live.as_mut().and_then(|l| l.pending.pop_front()) {
                        permit.send(event);
                    }
                }
                line = self.lines.recv() => match line {
                    Some(line) => self.heard(&line),
                    // The shell is gone without saying `done`: a setup failure, or killed.
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => {
                    if self.kill_asked.is_none() && self.program_started.is_some() {
                        self.timed_out = true;
                        self.ask_kill();
                    } else {
                        self.hard_kill();
                        return;
                    }
                }
            }
        }
    }

    /// Lets the shell exit (shutting the socket), reads the pipes to their end and reaps
    /// unshare, killing it if it lingers.
    async fn finish(&mut self) {
        let _ = self.control.shutdown(std::net::Shutdown::Write);
        let mut out_buf = vec![0u8; 64 * 1024];
        let mut err_buf = vec![0u8; 64 * 1024];
        let until = Instant::now() + EXIT_GRACE;
        while !(self.stdout.eof && self.stderr.eof) {
            tokio::select! {
                n = read_some(&mut self.stdout, &mut out_buf), if !self.stdout.eof => {
                    self.stdout.take(&out_buf[..n]);
                }
                n = read_some(&mut self.stderr, &mut err_buf), if !self.stderr.eof => {
                    self.stderr.take(&err_buf[..n]);
                }
                () = tokio::time::sleep_until(until), if !self.hard_killed => self.hard_kill(),
            }
        }
        if tokio::time::timeout(EXIT_GRACE, self.child.wait()).await.is_err() {
            self.hard_kill();
            let _ = self.child.wait().await;
        }
        self.ended = true;
    }

    fn heard(&mut self, line: &str) {
        if line == "start" {
            self.program_started = Some(Instant::now());
        } else if let Some(rest) = line.strip_prefix("done ") {
            let mut words = rest.split_whitespace();
            let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
            let created = words.next() == Some("1");
            self.done = Some(Done { status, created });
        } else {
            self.times.push(line.to_owned());
        }
    }

    /// Asks the shell to kill the container (once).
    fn ask_kill(&mut self) {
        if self.kill_asked.is_none() {
            self.kill_asked = Some(Instant::now());
            // A few bytes into an empty socket buffer: this does not block.
            let _ = (&self.control).write_all(b"kill\n");
        }
    }

    /// Kills unshare, and so (through `--kill-child`) every process of the job.
    fn hard_kill(&mut self) {
        self.hard_killed = true;
        let _ = self.child.start_kill();
    }

    /// How the program ended; `FailedToStart("")` means "take the reason from stderr".
    fn outcome(&self) -> Outcome {
        if self.timed_out {
            return Outcome::Timeout;
        }
        match &self.done {
            Some(Done { status, created: true }) if (129..=128 + 64).contains(status) => {
                Outcome::Signaled(status - 128)
            }
            Some(Done { status, created: true }) => Outcome::Exited(*status),
            Some(Done { created: false, .. }) => Outcome::FailedToStart(String::new()),
            // Killed after an overflow that the container ignored: as good as SIGKILL.
            None if self.kill_asked.is_some() => Outcome::Signaled(9),
            None if self.hard_killed => Outcome::FailedToStart(format!(
                "set up the sandbox: the program did not start within {} s",
                SETUP_LIMIT.as_secs()
            )),
            None => Outcome::FailedToStart(String::new()),
        }
    }
}

impl Drop for Session {
    /// On an early end (the future was dropped), kills everything and removes the job
    /// directory once crun is gone. crun holds the job's pipes until it exits, so their end of
    /// file says when: a thread waits for it, so the caller does not.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let _ = self.child.start_kill();
        let pipes: Vec<OwnedFd> = [self.stdout.reader.as_fd(), self.stderr.reader.as_fd()]
            .into_iter()
            .filter_map(|fd| fd.try_clone_to_owned().ok())
            .collect();
        let dir = self.dir.take();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + KILL_GRACE + EXIT_GRACE;
            for pipe in pipes {
                wait_for_eof(fs::File::from(pipe), until);
            }
            drop(dir);
        });
    }
}

/// Reads and drops what `pipe` (non-blocking) holds until end of file or `until`.
fn wait_for_eof(mut pipe: fs::File, until: std::time::Instant) {
    let mut buf = [0u8; 16 * 1024];
    while std::time::Instant::now() < until {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The reason a job failed to start, from what the setup or crun wrote to stderr: the first
/// line from the setup (the command that failed; mount adds a hint about dmesg after it), the
/// last line from crun (which may warn first).
fn failure_reason(stderr: &[u8], program_started: bool) -> String {
    let said = String::from_utf8_lossy(stderr);
    let mut lines = said.lines().map(str::trim).filter(|l| !l.is_empty());
    let (stage, line) = if program_started {
        ("start program", lines.next_back())
    } else {
        ("set up the sandbox", lines.next())
    };
    match line.map(|l| l.strip_prefix("crun: ").unwrap_or(l)) {
        Some(line) => format!("{stage}: {line}"),
        None => format!("{stage}: failed without saying why"),
    }
}

/// User and system time of the shell's children (crun and the program), from the second line
/// of the shell's `times` (`0m0.004000s 0m0.008000s`).
fn children_usage(times: &[String]) -> Usage {
    let ms = |field: &str| -> Option<u64> {
        let (min, sec) = field.strip_suffix('s')?.split_once('m')?;
        let secs = min.parse::<f64>().ok()? * 60.0 + sec.parse::<f64>().ok()?;
        Some((secs * 1000.0).round() as u64)
    };
    let mut fields = times.get(1).map(|l| l.split_whitespace()).into_iter().flatten();
    let user_ms = fields.next().and_then(ms).unwrap_or(0);
    let sys_ms = fields.next().and_then(ms).unwrap_or(0);
    Usage { user_ms, sys_ms, max_rss_kib: 0 }
}

/// One output pipe, kept up to `cap` bytes; the rest is read and dropped.
struct Stream<R> {
    reader: R,
    data: Vec<u8>,
    cap: u64,
    truncated: bool,
    eof: bool,
}

impl<R> Stream<R> {
    fn new(reader: R, cap: u64) -> Self {
        Stream { reader, data: Vec::new(), cap, truncated: false, eof: false }
    }

    /// Keeps what fits of `chunk` (empty means end of file). Returns true the first time the
    /// cap is exceeded.
    fn take(&mut self, chunk: &[u8]) -> bool {
        if chunk.is_empty() {
            self.eof = true;
            return false;
        }
        let room = usize::try_from(self.cap).unwrap_or(usize::MAX).saturating_sub(self.data.len());
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room && !self.truncated {
            self.truncated = true;
            return true;
        }
        false
    }
}

/// Reads what is available; 0 at end of file or on an error.
async fn read_some<R: AsyncRead + Unpin>(stream: &mut Stream<R>, buf: &mut [u8]) -> usize {
    stream.reader.read(buf).await.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_its_cap_and_flags_the_first_overflow() {
        let mut s = Stream::new((), 5);
        assert!(!s.take(b"abc"));
        assert!(s.take(b"defg"));
        assert!(!s.take(b"h"));
        assert_eq!((s.data.as_slice(), s.truncated, s.eof), (&b"abcde"[..], true, false));
        assert!(!s.take(b""));
        assert!(s.eof);
    }

    #[test]
    fn times_lines_give_the_childrens_usage() {
        let times = ["0m0.000000s 0m0.001000s".to_owned(), "1m2.500000s 0m0.040000s".to_owned()];
        let usage = children_usage(&times);
        assert_eq!((usage.user_ms, usage.sys_ms), (62_500, 40));
        assert_eq!(children_usage(&[]), Usage::default());
    }

    #[test]
    fn failure_reasons_come_from_the_last_line_of_stderr() {
        let said = b"noise\ncrun: executable file `x` not found in $PATH\n\n";
        assert_eq!(
            failure_reason(said, true),
            "start program: executable file `x` not found in $PATH"
        );
        let said = b"mount: /x: wrong fs type\n       dmesg(1) may have more information\n";
        assert_eq!(failure_reason(said, false), "set up the sandbox: mount: /x: wrong fs type");
        assert_eq!(failure_reason(b"", false), "set up the sandbox: failed without saying why");
    }
}
