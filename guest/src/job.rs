//! Runs the program with crun and turns what happened into the answer.
//!
//! crun runs with `--detach`: it creates the container, starts the program and exits, and the
//! program is re-parented to us (PID 1). So we wait for it directly (exact exit status) while
//! one poll loop reads its stdout and stderr up to their caps and watches the deadline. Every
//! limit kills the whole container through its cgroup (`cgroup.kill`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shared::api::v1::archive_paths;
use shared::cpio::{Encoder, EntryData, Limits};
use shared::guest::{
    ContainerStart, Exit, Finished, GuestRequest, GuestResponse, GuestTimings, GuestTruncation,
    GuestUsage,
};
use shared::stream::FrameKind;
use shared::{oci, outputs};

use crate::live::Live;
use crate::premade::Premade;
use crate::setup::paths;
use crate::sys::{self, WaitStatus};
use crate::{JOB_GID, JOB_UID, SetupError, Stage};

pub const CONTAINER_ID: &str = "job";
const CGROUP: &str = "/sys/fs/cgroup/pe-job";
pub const PID_FILE: &str = "/run/pe.pid";
/// How long to keep reading the pipes after the program exited (other processes of the
/// container may hold them for a moment while the kernel kills them).
const DRAIN: Duration = Duration::from_millis(500);
/// How long a live run's last output may take to go out before the answer is written.
const FLUSH: Duration = Duration::from_secs(1);
/// The note on the result of a run its user stopped (the executor's sandbox says the same).
const STOPPED_NOTE: &str = "stopped by the user";

/// A program that runs: its process, its pipes, and when it started.
pub struct Program {
    pub pid: libc::pid_t,
    pub pidfd: std::os::fd::OwnedFd,
    pub stdout: io::PipeReader,
    pub stderr: io::PipeReader,
    /// Its stdin when that is a pipe fed by us (a pre-made container's, or a live run's whose
    /// stdin stays open); `None` when it is the request's stdin file.
    pub stdin: Option<StdinFeed>,
    /// When crun was started (or the pre-made container's waiter released).
    pub started: Instant,
    /// When the program's `execve` happened, near enough: crun's `run --detach` returns once
    /// the container's process has exec'd it.
    pub exec_started: Instant,
    pub container: ContainerStart,
}

/// Runs the request's program in `premade` (a warm VM's container, if it fits) or in a
/// container created now, and answers.
pub fn run(
    request: &GuestRequest,
    stdin: std::path::PathBuf,
    boot_ms: u64,
    setup_ms: u64,
    premade: Option<Premade>,
) -> Result<(GuestResponse, Vec<u8>), SetupError> {
    // A live run streams its output over the control port, and may take its stdin from it.
    let live = request.live.as_ref().map(|_| Live::open()).transpose()?;
    let stdin_open = request.live.is_some_and(|l| l.stdin_open);
    let program = match premade {
        Some(premade) => {
            let data = fs::read(&stdin).stage("start program")?;
            premade.start(request, data, stdin_open)?
        }
        None => start_created(request, &stdin, stdin_open)?,
    };
    supervise(request, program, live, boot_ms, setup_ms)
}

/// Writes the bundle and has crun create and start the container with the program.
fn start_created(
    request: &GuestRequest,
    stdin_path: &Path,
    stdin_open: bool,
) -> Result<Program, SetupError> {
    write_bundle(request)?;
    let (feed, stdin) = if stdin_open {
        let (reader, writer) = io::pipe().stage("start program")?;
        let initial = fs::read(stdin_path).stage("start program")?;
        let feed = StdinFeed::new(writer, initial, false).stage("start program")?;
        (Some(feed), Stdio::from(reader))
    } else {
        (None, Stdio::from(File::open(stdin_path).stage("start program")?))
    };
    let (out_reader, out_writer) = io::pipe().stage("start program")?;
    let (err_reader, err_writer) = io::pipe().stage("start program")?;
    let started = Instant::now();
    let mut crun = Command::new("/usr/bin/crun")
        .args(["--root", "/run/crun", "--cgroup-manager", "cgroupfs", "run", "--no-pivot"])
        .args(["--detach", "--pid-file", PID_FILE, "--bundle", paths::BUNDLE, CONTAINER_ID])
        .stdin(stdin)
        .stdout(Stdio::from(out_writer))
        .stderr(Stdio::from(err_writer))
        .spawn()
        .stage("start program")?;
    let crun_status = crun.wait().stage("start program")?;
    let exec_started = Instant::now();
    if !crun_status.success() {
        // The container never started: what crun said is the reason.
        let mut stderr = Capture::new(err_reader, 64 * 1024);
        stderr.drain_for(Duration::from_millis(200));
        let said = String::from_utf8_lossy(&stderr.data).trim().to_owned();
        return Err(SetupError::new("start program", crun_message(&said)));
    }
    let pid: libc::pid_t = fs::read_to_string(PID_FILE)
        .stage("start program")?
        .trim()
        .parse()
        .stage("start program")?;
    let pidfd = sys::pidfd_open(pid).stage("wait for program")?;
    Ok(Program {
        pid,
        pidfd,
        stdout: out_reader,
        stderr: err_reader,
        stdin: feed,
        started,
        exec_started,
        container: ContainerStart::Created,
    })
}

/// Reads the program's output up to its caps, feeds its stdin, streams a live run, enforces
/// the wall clock, then packs the answer.
fn supervise(
    request: &GuestRequest,
    program: Program,
    mut live: Option<Live>,
    boot_ms: u64,
    setup_ms: u64,
) -> Result<(GuestResponse, Vec<u8>), SetupError> {
    let Program { pid, pidfd, stdout, stderr, stdin: mut feed, started, exec_started, container } =
        program;
    let limits = &request.limits;
    let mut stdout = Capture::new(stdout, limits.stdout_bytes);
    let mut stderr = Capture::new(stderr, limits.stderr_bytes);
    let deadline = started + Duration::from_millis(limits.timeout_ms);
    let mut timed_out = false;
    let mut stopped = false;
    let mut status = None;
    while status.is_none() {
        let now = Instant::now();
        if now >= deadline && !timed_out {
            timed_out = true;
            kill_container();
        }
        let wait = if timed_out { None } else { Some(deadline - now) };
        // Backpressure: while the stream has a backlog, the program's pipes are left unread.
        let room = live.as_ref().is_none_or(Live::has_room);
        let pipe = |capture: &Capture| if room { capture.fd() } else { -1 };
        let port = live.as_ref().map_or((-1, 0), Live::interest);
        let fds = [
            (pidfd.as_raw_fd(), libc::POLLIN),
            (pipe(&stdout), libc::POLLIN),
            (pipe(&stderr), libc::POLLIN),
            port,
            feed.as_ref().map_or((-1, 0), StdinFeed::interest),
        ];
        let ready = sys::poll(&fds, wait).stage("wait for program")?;
        let streams = [
            (&mut stdout, ready[1], FrameKind::Stdout),
            (&mut stderr, ready[2], FrameKind::Stderr),
        ];
        for (capture, revents, kind) in streams {
            if revents != 0 {
                if capture.read_once() {
                    kill_container(); // over its cap: stop the program
                }
                if let Some(live) = live.as_mut() {
                    live.send(kind, capture.unstreamed());
                    capture.streamed = capture.data.len();
                }
            }
        }
        if let Some(live) = live.as_mut() {
            live.on_ready(ready[3], feed.as_mut());
            if live.kill_requested && !stopped {
                stopped = true;
                kill_container();
            }
        }
        if ready[4] != 0
            && let Some(feed) = feed.as_mut()
        {
            feed.feed();
        }
        if ready[0] != 0 {
            status = sys::try_wait(pid).stage("wait for program")?;
        }
    }
    let ended = Instant::now();
    let run_ms = ended.duration_since(started).as_millis() as u64;
    let exec_ms = ended.duration_since(exec_started).as_millis() as u64;
    drop(feed);
    stdout.drain_for(DRAIN);
    stderr.drain_for(DRAIN);
    sys::reap_zombies();
    if let Some(live) = live.as_mut() {
        for (capture, kind) in [(&mut stdout, FrameKind::Stdout), (&mut stderr, FrameKind::Stderr)]
        {
            live.send(kind, capture.unstreamed());
            capture.streamed = capture.data.len();
        }
        // The answer holds every byte; the stream only gets what goes out promptly.
        live.flush(FLUSH);
    }

    let collect_start = Instant::now();
    let (exit, usage) = classify(status, timed_out);
    let mut notes = Vec::new();
    if stopped {
        notes.push(STOPPED_NOTE.to_owned());
    }
    let mut encoder = Encoder::new(Vec::new(), Limits::MAX);
    encoder.add_file(archive_paths::STDOUT, 0o644, 0, &stdout.data).stage("collect outputs")?;
    encoder.add_file(archive_paths::STDERR, 0o644, 0, &stderr.data).stage("collect outputs")?;
    let output_truncated = collect_outputs(request, &mut encoder, &mut notes)?;
    let archive = encoder.finish().stage("collect outputs")?;
    let finished = Finished {
        exit,
        usage,
        truncated: GuestTruncation {
            stdout: stdout.truncated,
            stderr: stderr.truncated,
            output: output_truncated,
        },
        timings: GuestTimings {
            boot_ms,
            setup_ms,
            run_ms,
            exec_ms,
            collect_ms: collect_start.elapsed().as_millis() as u64,
        },
        notes,
        container,
    };
    Ok((GuestResponse::Finished(finished), archive))
}

/// The program's stdin pipe, fed without blocking: the request's stdin first, then (in a live
/// run) what the host sends, until closed.
pub struct StdinFeed {
    /// `None` once closed (fed and closed, or the program closed its end).
    writer: Option<io::PipeWriter>,
    pending: Vec<u8>,
    close_when_fed: bool,
}

impl StdinFeed {
    /// `close_when_fed`: end of file once `initial` is read (stdin given whole).
    pub fn new(writer: io::PipeWriter, initial: Vec<u8>, close_when_fed: bool) -> io::Result<Self> {
        sys::set_nonblocking(&writer)?;
        let mut feed = StdinFeed { writer: Some(writer), pending: initial, close_when_fed };
        feed.feed();
        Ok(feed)
    }

    /// What to poll for: writable, while there is something to write.
    pub fn interest(&self) -> (i32, libc::c_short) {
        match &self.writer {
            Some(writer) if !self.pending.is_empty() => (writer.as_raw_fd(), libc::POLLOUT),
            _ => (-1, 0),
        }
    }

    /// More bytes (ignored once closing).
    pub fn push(&mut self, data: &[u8]) {
        if !self.close_when_fed {
            self.pending.extend_from_slice(data);
            self.feed();
        }
    }

    /// End of file once what is pending is read.
    pub fn close(&mut self) {
        self.close_when_fed = true;
        self.feed();
    }

    /// Writes what the pipe takes now.
    pub fn feed(&mut self) {
        if let Some(writer) = self.writer.as_mut() {
            while !self.pending.is_empty() {
                match io::Write::write(writer, &self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // The program closed its stdin: what is left has no reader.
                        self.pending.clear();
                        self.writer = None;
                        break;
                    }
                }
            }
        }
        if self.pending.is_empty() && self.close_when_fed {
            self.writer = None;
        }
    }
}

/// crun's error, shortened to what a person needs ("executable file `x` not found").
fn crun_message(said: &str) -> String {
    let line = said.lines().last().unwrap_or("").trim();
    let line = line.strip_prefix("crun: ").unwrap_or(line);
    if line.is_empty() { "crun failed without saying why".to_owned() } else { line.to_owned() }
}

/// Kills every process of the container at once.
pub fn kill_container() {
    let _ = fs::write(format!("{CGROUP}/cgroup.kill"), "1");
}

fn classify(status: Option<WaitStatus>, timed_out: bool) -> (Exit, GuestUsage) {
    let stat = fs::read_to_string(format!("{CGROUP}/cpu.stat")).unwrap_or_default();
    let field = |text: &str, name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0)
    };
    let events = fs::read_to_string(format!("{CGROUP}/memory.events")).unwrap_or_default();
    let peak: u64 = fs::read_to_string(format!("{CGROUP}/memory.peak"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let usage = GuestUsage {
        user_ms: field(&stat, "user_usec ") / 1000,
        sys_ms: field(&stat, "system_usec ") / 1000,
        max_rss_kib: peak / 1024,
    };
    let oom_kills = field(&events, "oom_kill ");
    let exit = match status {
        _ if timed_out => Exit::Timeout,
        Some(WaitStatus::Signaled(signal)) if oom_kills > 0 => Exit::Oom { signal },
        Some(WaitStatus::Signaled(signal)) => Exit::Signaled { signal },
        Some(WaitStatus::Exited(code)) => Exit::Exited { code },
        None => Exit::Signaled { signal: libc::SIGKILL },
    };
    (exit, usage)
}

/// One output pipe, read up to `cap` bytes; the rest is counted and dropped.
struct Capture {
    reader: io::PipeReader,
    data: Vec<u8>,
    cap: u64,
    truncated: bool,
    eof: bool,
    /// How much of `data` a live run has sent.
    streamed: usize,
}

impl Capture {
    fn new(reader: io::PipeReader, cap: u64) -> Self {
        Capture { reader, data: Vec::new(), cap, truncated: false, eof: false, streamed: 0 }
    }

    /// What was read and not yet streamed.
    fn unstreamed(&self) -> &[u8] {
        &self.data[self.streamed..]
    }

    /// The fd to poll; -1 (ignored by poll) once at end of file.
    fn fd(&self) -> i32 {
        if self.eof { -1 } else { self.reader.as_raw_fd() }
    }

    /// Reads what is available (call only when poll said readable). Returns true the first
    /// time the cap is exceeded.
    fn read_once(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        match self.reader.read(&mut buf) {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                let room = (self.cap as usize).saturating_sub(self.data.len());
                self.data.extend_from_slice(&buf[..n.min(room)]);
                if n > room && !self.truncated {
                    self.truncated = true;
                    return true;
                }
                false
            }
        }
    }

    /// Reads until end of file or until `limit` has passed.
    fn drain_for(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.eof {
            let now = Instant::now();
            if now >= until {
                break;
            }
            match sys::poll_readable(&[self.fd()], Some(until - now)) {
                Ok(ready) if ready[0] => {
                    self.read_once();
                }
                _ => break,
            }
        }
    }
}

/// Writes the OCI runtime config (see `shared::oci`) with cgroup limits.
fn write_bundle(request: &GuestRequest) -> Result<(), SetupError> {
    let limits = &request.limits;
    let spec = oci::Spec {
        argv: &request.argv,
        env: &request.env,
        cwd: &request.cwd,
        root: paths::ROOT,
        scratch: paths::SCRATCH,
        uid: JOB_UID,
        gid: JOB_GID,
        cgroup: Some(oci::CgroupLimits {
            path: "/pe-job",
            pids_max: limits.pids_max,
            memory_bytes: u64::from(limits.memory_mib) * 1024 * 1024,
        }),
        rlimits: &[],
        seccomp: oci::Seccomp::Denylist,
        waiter: None,
    };
    write_spec(&spec)
}

/// Writes the bundle's `config.json` for `spec`.
pub fn write_spec(spec: &oci::Spec<'_>) -> Result<(), SetupError> {
    let config = serde_json::to_vec(&oci::runtime_config(spec)).stage("write OCI config")?;
    fs::write(format!("{}/config.json", paths::BUNDLE), config).stage("write OCI config")
}

/// Adds `output/<path>` for each file and directory under the scratch output directory, as
/// [`outputs::collect`] finds them (sorted, depth first, capped). Returns whether anything was
/// left out.
fn collect_outputs(
    request: &GuestRequest,
    encoder: &mut Encoder<Vec<u8>>,
    notes: &mut Vec<String>,
) -> Result<bool, SetupError> {
    let limits = &request.limits;
    let caps = outputs::Caps { entries: limits.output_entries, bytes: limits.output_bytes };
    let found = outputs::collect(&Path::new(paths::SCRATCH).join("output"), caps);
    notes.extend(found.notes);
    let mut truncated = found.truncated;
    for entry in found.entries {
        let path = format!("{}/{}", archive_paths::OUTPUT_DIR, entry.path);
        let added = match &entry.data {
            EntryData::Dir => encoder.add_dir(&path, entry.mode, 0),
            EntryData::File(data) => encoder.add_file(&path, entry.mode, 0, data),
        };
        if let Err(err) = added {
            notes.push(format!("output/{} was left out: {err}", entry.path));
            truncated = true;
        }
    }
    Ok(truncated)
}
