//! One job in one fresh microVM: write the I/O disk, start QEMU, wait (with a host-side
//! deadline), read the answer. The job's directory is a temporary directory and QEMU is killed
//! when its handle drops, so every path (success, error, timeout, cancellation) cleans up.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use shared::error::chain;
use shared::guest::{self, LiveRequest, ProtocolError};
use tokio::io::AsyncReadExt;

use super::VmConfig;
use crate::ExecError;
use crate::convert;
use crate::job::{Job, JobOutput, Outcome, RanOn};
use crate::live::LiveIo;
use crate::warm::qmp::connect_unix;

/// How long QEMU may take to create its control socket.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `job` in a VM booted for it; `live` streams its output and typed stdin over a control
/// port.
pub async fn run_cold(
    config: &VmConfig,
    job: &Job,
    mut live: Option<LiveIo>,
) -> Result<JobOutput, ExecError> {
    let dir = crate::workdir::create(&config.work_dir, "job")
        .map_err(|source| ExecError::WorkDir { path: config.work_dir.clone(), source })?;
    let io_path = dir.path().join("io");
    let live_request = live.as_ref().map(|live| LiveRequest { stdin_open: live.stdin_open });
    let request = convert::request_bytes(job, live_request)?;
    write_io_disk(&io_path, &request, convert::io_disk_size(&job.limits, request.len()))?;
    let console = config.console_log.then(|| {
        let name = dir.path().file_name().unwrap_or_default().to_string_lossy().into_owned();
        config.work_dir.join(format!("console-{name}.log"))
    });

    let ran_on = RanOn {
        backend: "microvm",
        accel: Some(config.accel.name()),
        start: "cold",
        container: "created",
    };
    let (mut cmd, confinement) = config
        .command(job.limits.memory_mib, &job.image.path, true, &io_path, "", console.as_deref())
        .map_err(|source| ExecError::WorkDir { path: io_path.clone(), source })?;
    let socket = dir.path().join("ctl.sock");
    if live.is_some() {
        crate::vm::add_control_port(&mut cmd, &socket, console.is_none());
    }
    let started = Instant::now();
    let mut child =
        cmd.spawn().map_err(|source| ExecError::Spawn { program: config.qemu.clone(), source })?;
    confinement
        .attach(child.id())
        .map_err(|source| ExecError::Spawn { program: config.qemu.clone(), source })?;
    let mut stderr = child.stderr.take();
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(64 * 1024).read_to_end(&mut buf).await;
        }
        buf
    });
    let port = match live.as_mut() {
        Some(live) => {
            live.started(&ran_on).await;
            match connect_unix(&socket, CONNECT_WAIT).await {
                Ok(port) => Some((port, live)),
                // The guest then finds nobody listening and the job runs without its stream.
                Err(err) => {
                    tracing::warn!(error = %chain(&err), "cannot connect to a live VM's port");
                    None
                }
            }
        }
        None => None,
    };
    let pump = port.map(|(port, live)| crate::live::pump(port, live, &job.limits));
    let deadline = job.limits.timeout + config.margin;
    let waited =
        crate::live::wait_while_pumping(tokio::time::timeout(deadline, child.wait()), pump);
    let status = match waited.await {
        Ok(status) => Some(
            status.map_err(|source| ExecError::Spawn { program: config.qemu.clone(), source })?,
        ),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let vm_ms = started.elapsed().as_millis() as u64;
    let qemu_stderr =
        String::from_utf8_lossy(&stderr_task.await.unwrap_or_default()).trim().to_owned();

    output_from_io_file(&io_path, status, &qemu_stderr, vm_ms, job, config, ran_on)
}

/// Reads the guest's answer from a finished VM's I/O disk; a VM that stopped without a valid
/// answer is a `FailedToStart` (or a `Timeout` when the host had to kill it).
pub fn output_from_io_file(
    io_path: &Path,
    status: Option<std::process::ExitStatus>,
    qemu_stderr: &str,
    vm_ms: u64,
    job: &Job,
    config: &VmConfig,
    ran_on: RanOn,
) -> Result<JobOutput, ExecError> {
    match read_answer(io_path) {
        Ok((response, archive)) => convert::output_from_guest(response, &archive, vm_ms, ran_on),
        Err(err) => {
            let (outcome, notes) = match status {
                None => (
                    Outcome::Timeout,
                    vec![format!(
                        "the VM did not finish within the limit of {} ms plus {} ms for boot; it was killed",
                        job.limits.timeout.as_millis(),
                        config.margin.as_millis()
                    )],
                ),
                Some(status) => {
                    let mut why = format!(
                        "the VM stopped without a valid answer ({}; QEMU {status})",
                        chain(&err)
                    );
                    if !qemu_stderr.is_empty() {
                        why.push_str(&format!(": {qemu_stderr}"));
                    }
                    (Outcome::FailedToStart(why), Vec::new())
                }
            };
            Ok(JobOutput { notes, ..JobOutput::empty(outcome, ran_on, vm_ms) })
        }
    }
}

fn write_io_disk(path: &Path, request: &[u8], size: u64) -> Result<(), ExecError> {
    let io_err = |source| ExecError::WorkDir { path: path.to_owned(), source };
    let file = File::create(path).map_err(io_err)?;
    file.write_all_at(request, 0).map_err(io_err)?;
    // Sparse: the answer's room costs no disk until the guest writes it.
    file.set_len(size).map_err(io_err)?;
    Ok(())
}

/// Reads and parses the guest's answer from the I/O disk file.
pub fn read_answer(path: &Path) -> Result<(guest::GuestResponse, Vec<u8>), ExecError> {
    let io_err = |source| ExecError::WorkDir { path: path.to_owned(), source };
    let file = File::open(path).map_err(io_err)?;
    let mut prefix = [0u8; guest::RESPONSE_PREFIX_LEN];
    file.read_exact_at(&mut prefix, 0).map_err(io_err)?;
    let total = guest::decode_response_prefix(&prefix)?.total_len();
    let file_len = fs::metadata(path).map_err(io_err)?.len();
    if total > file_len {
        return Err(ProtocolError::Truncated("the answer is longer than the I/O disk").into());
    }
    let mut bytes = vec![0u8; total as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io_err)?;
    let (response, archive) = guest::decode_response(&bytes)?;
    Ok((response, archive.to_vec()))
}
