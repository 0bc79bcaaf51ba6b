//! `pe-init`: PID 1 of a Program Explorer microVM. One VM runs one job, then powers off.
//!
//! 1. Install a panic hook that writes a `Panic` answer and powers off: the guest never hangs
//!    silently.
//! 2. Mount /proc, /sys, /dev, cgroup2 and a /run tmpfs ([`setup`]).
//! 3. Find the I/O disk and the image disk by their virtio serials, read the `GuestRequest` and
//!    the input archive from the I/O disk ([`disk`]).
//!    A pre-booted ("warm") VM mounts its image first and waits on its control port
//!    ([`control`]) until the host has written the request and says "go".
//! 4. Mount the image read-only under an overlay whose upper layer is a size-capped tmpfs; that
//!    tmpfs also holds /input (the unpacked inputs, owned by the job user), /output and /tmp.
//! 5. Write an OCI bundle and start the program with `crun run --detach` as an unprivileged
//!    user in fresh namespaces with cgroup limits; capture stdout/stderr up to their caps and
//!    enforce the wall-clock limit ([`job`]).
//! 6. Pack stdout, stderr and /output into the answer, write it to the I/O disk, power off.

#![deny(clippy::print_stderr, clippy::print_stdout)]

mod control;
mod disk;
mod job;
mod live;
mod premade;
mod setup;
mod sys;

use std::time::Instant;

use shared::guest::{GuestResponse, ImageFormat, PROTOCOL_VERSION};

/// The user the program runs as, and owns its inputs.
pub const JOB_UID: u32 = 1000;
pub const JOB_GID: u32 = 1000;

/// A step that failed before the program could run: which step, and why.
#[derive(Debug)]
pub struct SetupError {
    pub stage: &'static str,
    pub message: String,
}

impl SetupError {
    pub fn new(stage: &'static str, err: impl std::fmt::Display) -> Self {
        SetupError { stage, message: err.to_string() }
    }
}

/// Attaches a stage name to any error, for `?`.
pub trait Stage<T> {
    fn stage(self, stage: &'static str) -> Result<T, SetupError>;
}

impl<T, E: std::fmt::Display> Stage<T> for Result<T, E> {
    fn stage(self, stage: &'static str) -> Result<T, SetupError> {
        self.map_err(|e| SetupError::new(stage, e))
    }
}

/// Writes a line to the console, if there is one. Never panics: `eprintln!` panics when the
/// write fails (as it does on a VM without a console), and a panic in PID 1 is a kernel panic.
pub fn log(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "pe-init: {args}");
}

fn main() {
    // The same binary is a pre-made container's waiting process (see `premade`).
    if std::env::args_os().next().is_some_and(|arg0| arg0 == shared::oci::WAITER_PATH) {
        premade::wait_and_exec();
    }
    let started = Instant::now();
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => info.payload().downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        log(format_args!("panic: {message} at {location:?}"));
        let _ = disk::write_answer(&GuestResponse::Panic { message, location }, &[]);
        sys::power_off(0);
    }));

    let (response, archive) = match run(started) {
        Ok(done) => done,
        Err(err) => {
            log(format_args!("{} failed: {}", err.stage, err.message));
            (
                GuestResponse::SetupFailed { stage: err.stage.into(), message: err.message },
                Vec::new(),
            )
        }
    };
    if let Err(err) = disk::write_answer(&response, &archive) {
        log(format_args!("cannot write the answer: {err}"));
    }
    sys::power_off(0);
}

fn run(started: Instant) -> Result<(GuestResponse, Vec<u8>), SetupError> {
    setup::mount_system()?;
    let boot_ms = setup::uptime_ms();
    if std::fs::read_to_string("/proc/cmdline").unwrap_or_default().contains("pe.probe") {
        // The host only wants to know that the guest reaches init on this accelerator.
        sys::power_off(sys::PROBE_EXIT);
    }
    let disks = disk::find_disks()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    // A warm VM mounts its image, then waits for the host's "go" (the request is written to the
    // I/O disk only then); a cold VM reads its request at once.
    let warm_format = cmdline.split_whitespace().find_map(|arg| arg.strip_prefix("pe.warm="));
    let (mut started, mut boot_ms) = (started, boot_ms);
    let mut premade = None;
    let mounted = match warm_format {
        Some(format) => {
            let format = match format {
                "erofs" => ImageFormat::Erofs,
                _ => ImageFormat::Squashfs,
            };
            setup::mount_image(&disks.image, format)?;
            // The container too, when the host asks: jobs that fit it only say "go".
            if let Some(scratch_mib) = premade::wanted(&cmdline) {
                match premade::prepare(scratch_mib) {
                    Ok(made) => premade = Some(made),
                    // Jobs then create their container, as in a cold VM.
                    Err(err) => {
                        log(format_args!("{} failed: {}", err.stage, err.message));
                        setup::unmount_root();
                    }
                }
            }
            let go = control::wait_for_go()?;
            setup::seed_rng(&go.seed)?;
            if let Some(now) = go.now {
                sys::set_realtime(now).stage("set the clock")?;
            }
            // The job starts now: the time before it was spent waiting, not working.
            started = Instant::now();
            boot_ms = 0;
            Some(format)
        }
        None => None,
    };
    let (request, inputs) = disk::read_request(&disks.io)?;
    if request.version != PROTOCOL_VERSION {
        return Err(SetupError::new(
            "read request",
            format!("protocol version {} (this guest speaks {PROTOCOL_VERSION})", request.version),
        ));
    }
    setup::seed_rng(&request.seed)?;
    match mounted {
        Some(format) if format != request.image_format => {
            return Err(SetupError::new(
                "read request",
                "the image format differs from the one mounted",
            ));
        }
        Some(_) => {}
        None => setup::mount_image(&disks.image, request.image_format)?,
    }
    let premade = match premade {
        Some(made) if made.fits(&request) => Some(made),
        Some(other) => {
            other.discard();
            None
        }
        None => None,
    };
    let stdin = match premade {
        Some(_) => setup::unpack_inputs(&inputs)?,
        None => setup::prepare_root(&request, &inputs)?,
    };
    let setup_ms = started.elapsed().as_millis() as u64;
    job::run(&request, stdin, boot_ms, setup_ms, premade)
}
