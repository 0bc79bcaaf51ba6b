//! The pre-made container of a warm VM: everything that does not depend on the job, done once
//! before the VM waits (and so saved in its snapshot) instead of in every job.
//!
//! 1. [`prepare`] (before `ready`): the scratch tmpfs and the overlay root, and a container
//!    created by crun (namespaces, mounts, cgroup, seccomp filter, the job user) whose process
//!    is this same binary, bound read-only at [`oci::WAITER_PATH`]: the waiter. Its stdin,
//!    stdout and stderr are pipes to init; fd 3 is the job to come, fd 4 says whether its exec
//!    worked.
//! 2. The waiter ([`wait_and_exec`]) blocks reading fd 3.
//! 3. On `go`, a job that fits ([`Premade::fits`]: the same scratch size) has its inputs
//!    unpacked into the scratch tmpfs (the container's /input is a bind of it, made before the
//!    snapshot), its memory and pids limits written to the cgroup, and its argv, environment
//!    and working directory written to fd 3 ([`Premade::start`]). The waiter enters the
//!    directory and execs the program: the job's process is the one that waited, and holds
//!    nothing of it but its pipes (fd 3 is closed, fd 4 closes on exec).
//! 4. A job that does not fit discards the container ([`Premade::discard`]) and takes the
//!    usual path.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shared::guest::{ContainerStart, GuestRequest};
use shared::{limits, oci};

use crate::job::{self, Program, StdinFeed};
use crate::setup::{self, paths};
use crate::{JOB_GID, JOB_UID, SetupError, Stage, sys};

/// What the waiter is told on fd 3.
#[derive(Debug, Serialize, Deserialize)]
struct WaiterJob {
    argv: Vec<String>,
    env: Vec<String>,
    cwd: String,
}

/// The waiter's descriptors: the job, and the exec status.
const JOB_FD: i32 = 3;
const STATUS_FD: i32 = 4;

/// A container waiting for its job.
#[derive(Debug)]
pub struct Premade {
    pid: libc::pid_t,
    scratch_mib: u32,
    job: File,
    status: File,
    stdin: io::PipeWriter,
    stdout: io::PipeReader,
    stderr: io::PipeReader,
}

/// The scratch size a warm VM's container is made for, from the kernel command line
/// (`pe.premade=MIB`); none without it.
pub fn wanted(cmdline: &str) -> Option<u32> {
    cmdline.split_whitespace().find_map(|arg| arg.strip_prefix("pe.premade=")?.parse().ok())
}

/// Step 1: the root filesystem and the container, its process waiting.
pub fn prepare(scratch_mib: u32) -> Result<Premade, SetupError> {
    const STAGE: &str = "pre-make the container";
    setup::mount_root(scratch_mib)?;
    let argv = [oci::WAITER_PATH.to_owned()];
    // The job's own limits are written to the cgroup on `go`; these hold until then.
    let spec = oci::Spec {
        argv: &argv,
        env: &[],
        cwd: "/",
        root: paths::ROOT,
        scratch: paths::SCRATCH,
        uid: JOB_UID,
        gid: JOB_GID,
        cgroup: Some(oci::CgroupLimits {
            path: "/pe-job",
            pids_max: limits::DEFAULT_PIDS_MAX,
            memory_bytes: u64::from(limits::DEFAULT_MEMORY_MIB) << 20,
        }),
        rlimits: &[],
        seccomp: oci::Seccomp::Denylist,
        waiter: Some("/init"),
    };
    job::write_spec(&spec)?;

    let (stdin_r, stdin_w) = io::pipe().stage(STAGE)?;
    let (stdout_r, stdout_w) = io::pipe().stage(STAGE)?;
    let (stderr_r, stderr_w) = io::pipe().stage(STAGE)?;
    let (job_r, job_w) = io::pipe().stage(STAGE)?;
    let (status_r, status_w) = io::pipe().stage(STAGE)?;
    // crun hands its fds 0-2 to the container, and fds 3 and 4 too (`--preserve-fds 2`).
    let (job_fd, status_fd): (OwnedFd, OwnedFd) = (job_r.into(), status_w.into());
    let mut cmd = Command::new("/usr/bin/crun");
    cmd.args(["--root", "/run/crun", "--cgroup-manager", "cgroupfs", "run", "--no-pivot"])
        .args(["--detach", "--preserve-fds", "2", "--pid-file", job::PID_FILE])
        .args(["--bundle", paths::BUNDLE, job::CONTAINER_ID])
        .stdin(Stdio::from(stdin_r))
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::from(stderr_w));
    sys::map_fds(&mut cmd, vec![(job_fd.as_raw_fd(), JOB_FD), (status_fd.as_raw_fd(), STATUS_FD)]);
    let crun = cmd.status().stage(STAGE)?;
    // Only the container may hold these ends now: end of file must mean it is gone.
    drop((job_fd, status_fd, cmd));
    let mut stderr_r = stderr_r;
    if !crun.success() {
        let mut said = Vec::new();
        let _ = sys::set_nonblocking(&stderr_r);
        let _ = stderr_r.read_to_end(&mut said);
        let said = String::from_utf8_lossy(&said);
        return Err(SetupError::new(STAGE, format!("crun failed ({crun}): {}", said.trim())));
    }
    let pid = fs::read_to_string(job::PID_FILE).stage(STAGE)?.trim().parse().stage(STAGE)?;
    Ok(Premade {
        pid,
        scratch_mib,
        job: File::from(OwnedFd::from(job_w)),
        status: File::from(OwnedFd::from(status_r)),
        stdin: stdin_w,
        stdout: stdout_r,
        stderr: stderr_r,
    })
}

impl Premade {
    /// Whether this container can run `request`: its scratch tmpfs was sized at boot.
    pub fn fits(&self, request: &GuestRequest) -> bool {
        request.limits.scratch_mib == self.scratch_mib
    }

    /// Step 3 (the inputs are unpacked): the job's limits, then its program.
    pub fn start(
        self,
        request: &GuestRequest,
        stdin: Vec<u8>,
        stdin_open: bool,
    ) -> Result<Program, SetupError> {
        const STAGE: &str = "start program";
        let cgroup = format!("{}/pe-job", paths::CGROUP);
        let memory = u64::from(request.limits.memory_mib) << 20;
        fs::write(format!("{cgroup}/memory.max"), memory.to_string()).stage(STAGE)?;
        fs::write(format!("{cgroup}/pids.max"), request.limits.pids_max.to_string())
            .stage(STAGE)?;
        let job = WaiterJob {
            argv: request.argv.clone(),
            env: request.env.clone(),
            cwd: request.cwd.clone(),
        };
        let job = serde_json::to_vec(&job).stage(STAGE)?;
        let started = Instant::now();
        let Premade { pid, job: mut job_w, mut status, stdin: stdin_w, stdout, stderr, .. } = self;
        job_w.write_all(&job).stage(STAGE)?;
        drop(job_w);
        // End of file: the exec worked (fd 4 closes on exec). Anything else is why it did not.
        let mut said = String::new();
        status.read_to_string(&mut said).stage(STAGE)?;
        if !said.is_empty() {
            return Err(SetupError::new(STAGE, said));
        }
        let pidfd = sys::pidfd_open(pid).stage("wait for program")?;
        let feed = StdinFeed::new(stdin_w, stdin, !stdin_open).stage(STAGE)?;
        Ok(Program {
            pid,
            pidfd,
            stdout,
            stderr,
            stdin: Some(feed),
            started,
            exec_started: started,
            container: ContainerStart::Premade,
        })
    }

    /// Step 4: the container goes, and the root filesystem with it.
    pub fn discard(self) {
        job::kill_container();
        let _ = sys::try_wait(self.pid);
        drop(self);
        let _ = Command::new("/usr/bin/crun")
            .args(["--root", "/run/crun", "delete", "--force", job::CONTAINER_ID])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        sys::reap_zombies();
        setup::unmount_root();
    }
}

/// Step 2, in the container as the job user: waits for the job on fd 3, enters its working
/// directory and execs its program. On failure, says why on fd 4 and exits 127.
pub fn wait_and_exec() -> ! {
    let status = sys::inherited_fd(STATUS_FD);
    let message = match read_job().and_then(|job| exec(&job, status.as_ref())) {
        Ok(never) => match never {},
        Err(message) => message,
    };
    if let Some(status) = status {
        let _ = File::from(status).write_all(message.as_bytes());
    }
    std::process::exit(127)
}

fn read_job() -> Result<WaiterJob, String> {
    let job_fd = sys::inherited_fd(JOB_FD).ok_or("the waiter has no job descriptor")?;
    let mut bytes = Vec::new();
    File::from(job_fd).read_to_end(&mut bytes).map_err(|e| format!("cannot read the job: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the job is not valid: {e}"))
}

/// Execs the job's program; returns only why it could not.
fn exec(job: &WaiterJob, status: Option<&OwnedFd>) -> Result<std::convert::Infallible, String> {
    if let Some(status) = status {
        sys::set_cloexec(status).map_err(|e| format!("cannot set up the exec status: {e}"))?;
    }
    let (program, args) = job.argv.split_first().ok_or("the command line is empty")?;
    std::env::set_current_dir(&job.cwd)
        .map_err(|e| format!("cannot enter the working directory {}: {e}", job.cwd))?;
    let path = job.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/bin:/bin");
    let resolved = resolve(program, path)
        .ok_or_else(|| format!("executable file `{program}` not found in $PATH"))?;
    let mut cmd = Command::new(&resolved);
    std::os::unix::process::CommandExt::arg0(&mut cmd, program);
    cmd.args(args).env_clear();
    for entry in &job.env {
        if let Some((key, value)) = entry.split_once('=') {
            cmd.env(key, value);
        }
    }
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    Err(format!("cannot run `{program}`: {err}"))
}

/// `program` as a path: itself if it names one, else the first executable file of that name
/// in `path`'s directories.
fn resolve(program: &str, path: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(program.into());
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
