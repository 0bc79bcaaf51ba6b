//! The host side of a job: "run this input in this image with these limits". Knows nothing of
//! HTTP, and nothing of how images are made (the `images` crate makes and finds them).
//!
//! 1. The caller resolves the container's image ([`images::ImageStore::resolve`]) and puts it
//!    in the [`job::Job`].
//! 2. [`vm::probe::probe`] picks KVM or TCG once at start-up.
//! 3. [`pool::Pool::try_submit`] admits the [`job::Job`] into a bounded queue, waits for a slot.
//! 4. [`vm::cold::run_cold`] writes the job's I/O disk ([`convert::request_bytes`]), starts QEMU's
//!    microvm machine ([`vm::VmConfig::command`]) with no network device, the image and the I/O
//!    disk as virtio-blk devices, and a host-side deadline; each QEMU runs under a uid and
//!    cgroup of its own ([`confine`]) in a directory of its own ([`workdir`]); the guest init
//!    runs the program and writes its answer back. [`warm::WarmPool`] keeps VMs booted (or
//!    restored from a snapshot) ahead of demand so a job only says "go".
//! 5. [`convert::output_from_guest`] turns the answer into a [`job::JobOutput`].
//! 6. Or, opt-in and without a VM, [`sandbox::run`] runs the job with crun on the host in fresh
//!    namespaces (weaker isolation, for hosts without KVM) and returns the same output.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

pub mod confine;
pub mod convert;
pub mod job;
pub mod live;
pub mod pool;
pub mod sandbox;
pub mod vm;
pub mod warm;
pub mod workdir;

pub use job::{Job, JobLimits, JobOutput, Outcome};

/// Whether this process's effective uid is 0 (from /proc/self/status).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .is_some_and(|euid| euid == "0")
    })
}

/// Why a job could not be run at all (as opposed to a job that ran and failed, which is an
/// [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("all job slots are busy and the queue is full; retry in {} s", retry_after.as_secs().max(1))]
    Busy { retry_after: Duration },
    #[error("the executor is shutting down")]
    ShuttingDown(#[from] tokio::sync::AcquireError),
    #[error(transparent)]
    Image(#[from] images::ImageError),
    #[error("the job's files are not a valid archive")]
    Archive(#[from] shared::cpio::CpioError),
    #[error("cannot use the work directory {path}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the guest request")]
    Encode(#[from] serde_json::Error),
    #[error("the guest's answer is unreadable")]
    Protocol(#[from] shared::guest::ProtocolError),
    #[error(
        "the namespace sandbox must run as root (it mounts the image and creates namespaces); \
         run as root or use the microVM backend"
    )]
    SandboxNeedsRoot,
}
