//! The one place where executor types meet the guest protocol.

use images::ImageFormat;
use rand::RngCore;
use shared::api::v1::archive_paths;
use shared::cpio::{self, Entry, EntryData, Limits};
use shared::guest::{
    self, ContainerStart, Exit, GuestLimits, GuestRequest, GuestResponse, LiveRequest,
    PROTOCOL_VERSION, request_paths,
};

use crate::ExecError;
use crate::job::{Job, JobLimits, JobOutput, Outcome, RanOn, Truncated, Usage};

/// Memory the guest keeps for its kernel, init and crun; the program's cgroup gets the rest.
const GUEST_RESERVED_MIB: u32 = 96;

/// The bytes written to a job's I/O disk; `live` for a live run.
pub fn request_bytes(job: &Job, live: Option<LiveRequest>) -> Result<Vec<u8>, ExecError> {
    let env = job.container_env();
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let l = &job.limits;
    let request = GuestRequest {
        version: PROTOCOL_VERSION,
        argv: job.argv.clone(),
        env,
        cwd: job.cwd.clone(),
        image_format: match job.image.format {
            ImageFormat::Squashfs => guest::ImageFormat::Squashfs,
            ImageFormat::Erofs => guest::ImageFormat::Erofs,
        },
        limits: GuestLimits {
            timeout_ms: l.timeout.as_millis() as u64,
            stdout_bytes: l.stdout_bytes,
            stderr_bytes: l.stderr_bytes,
            output_bytes: l.output_bytes,
            output_entries: l.output_entries,
            scratch_mib: l.scratch_mib,
            pids_max: l.pids_max,
            memory_mib: l.memory_mib.saturating_sub(GUEST_RESERVED_MIB).max(64),
        },
        seed: hex::encode(seed),
        live,
    };
    let mut encoder = cpio::Encoder::new(Vec::new(), Limits::MAX);
    encoder.add_dir(request_paths::INPUT_DIR, 0o755, 0)?;
    for entry in &job.files {
        let path = format!("{}/{}", request_paths::INPUT_DIR, entry.path);
        encoder.append(&Entry { path, ..entry.clone() })?;
    }
    if !job.stdin.is_empty() {
        encoder.add_file(request_paths::STDIN, 0o600, 0, &job.stdin)?;
    }
    let archive = encoder.finish()?;
    Ok(guest::encode_request(&request, &archive)?)
}

/// Size of the I/O disk: room for the request and for the largest answer the limits allow.
pub fn io_disk_size(l: &JobLimits, request_len: usize) -> u64 {
    // Per entry: a 110-byte header, a path of at most MAX_PATH_LEN, padding.
    let per_entry = 110 + shared::limits::MAX_PATH_LEN as u64 + 8;
    let answer = guest::RESPONSE_PREFIX_LEN as u64
        + shared::limits::MAX_HEADER_BYTES as u64
        + l.stdout_bytes
        + l.stderr_bytes
        + l.output_bytes
        + (l.output_entries as u64 + 4) * per_entry;
    let size = answer.max(request_len as u64) + 4096;
    size.div_ceil(4096) * 4096
}

/// Turns the guest's answer into a job output. `vm_ms` is how long the VM ran, as seen by the
/// host.
pub fn output_from_guest(
    response: GuestResponse,
    archive: &[u8],
    vm_ms: u64,
    ran_on: RanOn,
) -> Result<JobOutput, ExecError> {
    let mut output = JobOutput::empty(Outcome::FailedToStart(String::new()), ran_on, vm_ms);
    match response {
        GuestResponse::Finished(done) => {
            for entry in cpio::decode(archive, &Limits::MAX)? {
                match (entry.path.as_str(), entry.data) {
                    (archive_paths::STDOUT, EntryData::File(data)) => output.stdout = data,
                    (archive_paths::STDERR, EntryData::File(data)) => output.stderr = data,
                    (_, data) => {
                        if let Some(rel) = entry.path.strip_prefix("output/") {
                            output.files.push(Entry { path: rel.to_owned(), data, ..entry });
                        }
                    }
                }
            }
            output.outcome = match done.exit {
                Exit::Exited { code } => Outcome::Exited(code),
                Exit::Signaled { signal } => Outcome::Signaled(signal),
                Exit::Timeout => Outcome::Timeout,
                Exit::Oom { signal } => Outcome::Oom(signal),
            };
            output.truncated = Truncated {
                stdout: done.truncated.stdout,
                stderr: done.truncated.stderr,
                files: done.truncated.output,
            };
            output.usage = Usage {
                user_ms: done.usage.user_ms,
                sys_ms: done.usage.sys_ms,
                max_rss_kib: done.usage.max_rss_kib,
            };
            output.timings.run_ms = done.timings.run_ms;
            output.timings.exec_ms = done.timings.exec_ms;
            output.ran_on.container = match done.container {
                ContainerStart::Premade => "premade",
                ContainerStart::Created => "created",
            };
            output.timings.boot_ms = vm_ms.saturating_sub(done.timings.run_ms);
            output.notes = done.notes;
        }
        GuestResponse::SetupFailed { stage, message } => {
            output.outcome = Outcome::FailedToStart(format!("{stage}: {message}"));
        }
        GuestResponse::Panic { message, location } => {
            let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
            output.outcome =
                Outcome::FailedToStart(format!("the guest init panicked{at}: {message}"));
        }
    }
    Ok(output)
}
