//! The one place where executor types become API types.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use executor::image::ImageInfo;
use executor::{JobOutput, Outcome};
use shared::api::v1::{
    BackendInfo, ImageRef, JsonOutputFile, ResourceUsage, RunJsonResult, RunResult, RunStatus,
    Timings, Truncation,
};
use shared::cpio::EntryData;

/// The API status of a job. A limit that cut the program short wins over how it then exited.
pub fn status(output: &JobOutput) -> RunStatus {
    match output.outcome {
        Outcome::FailedToStart(_) => RunStatus::FailedToStart,
        Outcome::Timeout => RunStatus::Timeout,
        Outcome::Oom(_) => RunStatus::Oom,
        _ if output.truncated.any() => RunStatus::OutputLimit,
        Outcome::Signaled(_) => RunStatus::Signaled,
        Outcome::Exited(_) => RunStatus::Exited,
    }
}

/// A sentence explaining the status, when it needs one.
fn message(output: &JobOutput, timeout_ms: u64) -> Option<String> {
    let mut parts = Vec::new();
    match &output.outcome {
        Outcome::FailedToStart(why) => {
            parts.push(format!("the program could not be started: {why}"))
        }
        Outcome::Timeout => parts.push(format!(
            "the program was killed when it reached the time limit of {} s",
            timeout_ms as f64 / 1000.0
        )),
        Outcome::Oom(_) => parts.push("the program was killed: it ran out of memory".to_owned()),
        Outcome::Signaled(sig) => parts.push(format!("the program was killed by signal {sig}")),
        Outcome::Exited(_) => {}
    }
    let t = &output.truncated;
    for (cut, what) in [(t.stdout, "stdout"), (t.stderr, "stderr")] {
        if cut {
            parts.push(format!(
                "{what} reached its size limit: the start is kept, the rest was dropped"
            ));
        }
    }
    if t.files {
        parts.push("the output files reached their limit: some were left out".to_owned());
    }
    parts.extend(output.notes.iter().cloned());
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn run_result(
    output: &JobOutput,
    argv: &[String],
    image: &ImageInfo,
    timeout_ms: u64,
) -> RunResult {
    let (exit_code, signal) = match output.outcome {
        Outcome::Exited(code) => (Some(code), None),
        Outcome::Signaled(sig) | Outcome::Oom(sig) => (None, Some(sig)),
        _ => (None, None),
    };
    RunResult {
        status: status(output),
        exit_code,
        signal,
        message: message(output, timeout_ms),
        argv: argv.to_vec(),
        image: ImageRef { id: image.id.clone(), digest: image.digest.clone() },
        backend: BackendInfo {
            kind: output.ran_on.backend.to_owned(),
            accel: output.ran_on.accel.map(str::to_owned),
            start: Some(output.ran_on.start.to_owned()),
        },
        cached: false,
        timings_ms: Timings {
            queue: output.timings.queue_ms,
            boot: output.timings.boot_ms,
            run: output.timings.run_ms,
            total: output.timings.total_ms,
        },
        usage: ResourceUsage {
            user_ms: output.usage.user_ms,
            sys_ms: output.usage.sys_ms,
            max_rss_kib: output.usage.max_rss_kib,
        },
        truncated: Truncation {
            stdout: output.truncated.stdout,
            stderr: output.truncated.stderr,
            files: output.truncated.files,
        },
    }
}

/// Text when it is valid UTF-8, else an empty string plus the base64 form.
fn text_or_base64(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (String::new(), Some(BASE64.encode(bytes))),
    }
}

pub fn json_result(output: &JobOutput, result: RunResult) -> RunJsonResult {
    let (stdout, stdout_base64) = text_or_base64(&output.stdout);
    let (stderr, stderr_base64) = text_or_base64(&output.stderr);
    let files = output
        .files
        .iter()
        .filter_map(|entry| match &entry.data {
            EntryData::File(data) => Some(JsonOutputFile {
                path: entry.path.clone(),
                size: data.len() as u64,
                content_base64: BASE64.encode(data),
            }),
            EntryData::Dir => None,
        })
        .collect();
    RunJsonResult { result, stdout, stderr, stdout_base64, stderr_base64, files }
}
