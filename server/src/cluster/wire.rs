//! The two messages of the work queue, in the archive framing the rest of the project uses:
//! `<u32 header_len><header JSON><cpio archive>`.
//!
//! - A job (server -> `pe.jobs` -> worker): [`JobHeader`] and the cpio of the input files.
//! - A result (worker -> the job's reply subject -> server): [`ResultHeader`] and the cpio of
//!   `stdout`, `stderr` and `output/<path>`. It carries the executor's output, not the API's
//!   RunResult: the server turns it into the API answer in `convert`, the one place that does.
//!
//! Either frame, when larger than [`INLINE_MAX`], travels through the object store: the
//! message then holds the header with `archive_object` naming the object, and no archive.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use executor::job::{JobTimings, RanOn, Truncated, Usage};
use executor::live::{LiveEvent, LiveInput, Stream as LiveStream};
use executor::{Job, JobLimits, JobOutput, Outcome};
use images::{ImageFormat, ImageInfo, ImageStore};
use serde::{Deserialize, Serialize};
use shared::api::v1::archive_paths;
use shared::cpio::{self, Encoder, Entry, EntryData, Limits};
use shared::framing;

/// Frames up to this size travel in the message itself (NATS' default `max_payload` is 1 MiB).
pub const INLINE_MAX: usize = 768 * 1024;
/// The version of both messages.
pub const VERSION: u32 = 1;

/// Why a message cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad frame")]
    Frame(#[from] framing::FrameError),
    #[error("bad archive")]
    Cpio(#[from] cpio::CpioError),
    #[error("cannot encode the header")]
    Json(#[from] serde_json::Error),
    #[error("stdin is not base64")]
    Base64(#[from] base64::DecodeError),
    #[error("message version {0}, this build reads {VERSION}")]
    Version(u32),
    #[error("unknown image format {0:?}")]
    Format(String),
}

/// The image a job runs in, named by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireImage {
    pub id: String,
    /// `sha256:<hex>`: the worker uses the file with this digest and no other.
    pub digest: String,
    pub format: String,
    pub size: u64,
    pub env: Vec<String>,
}

/// A job's limits, in plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLimits {
    pub timeout_ms: u64,
    pub memory_mib: u32,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub output_bytes: u64,
    pub output_entries: usize,
    pub scratch_mib: u32,
    pub pids_max: u32,
}

/// The header of a job message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHeader {
    pub v: u32,
    /// Unique per submission; results and cancels are keyed by it.
    pub id: String,
    /// Where the worker publishes the result.
    pub reply: String,
    /// Unix milliseconds after which nobody waits for the result: a worker that gets the job
    /// later drops it.
    pub deadline_ms: u64,
    pub image: WireImage,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub stdin_base64: String,
    pub limits: WireLimits,
    /// The archive is in the object store under this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_object: Option<String>,
    /// A live run: where its events go and its input comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveSubjects>,
}

/// The subjects of a live run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSubjects {
    /// Worker -> server: [`LiveMessage`]s, `started` first, `end` last.
    pub events: String,
    /// Server -> worker: [`LiveMessage`]s of input (stdin, close, kill).
    pub input: String,
    /// Whether typed stdin may follow.
    pub stdin_open: bool,
}

/// One message of a live run, either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "t")]
pub enum LiveMessage {
    /// The program started (the worker listens for input from now on).
    Started {
        backend: String,
        accel: Option<String>,
        start: String,
        #[serde(default)]
        container: String,
        queue_ms: u64,
    },
    Output {
        stderr: bool,
        data_base64: String,
    },
    /// No more events: the result follows.
    End,
    Stdin {
        data_base64: String,
    },
    StdinClose,
    Kill,
}

impl LiveMessage {
    pub fn from_event(event: &LiveEvent) -> LiveMessage {
        match event {
            LiveEvent::Started { ran_on, queue_ms } => LiveMessage::Started {
                backend: ran_on.backend.to_owned(),
                accel: ran_on.accel.map(str::to_owned),
                start: ran_on.start.to_owned(),
                container: ran_on.container.to_owned(),
                queue_ms: *queue_ms,
            },
            LiveEvent::Output { stream, data } => LiveMessage::Output {
                stderr: *stream == LiveStream::Stderr,
                data_base64: BASE64.encode(data),
            },
        }
    }

    pub fn from_input(input: &LiveInput) -> LiveMessage {
        match input {
            LiveInput::Stdin(data) => LiveMessage::Stdin { data_base64: BASE64.encode(data) },
            LiveInput::StdinClose => LiveMessage::StdinClose,
            LiveInput::Kill => LiveMessage::Kill,
        }
    }

    /// The executor's event, for an event message.
    pub fn to_event(&self) -> Option<LiveEvent> {
        match self {
            LiveMessage::Started { backend, accel, start, container, queue_ms } => {
                Some(LiveEvent::Started {
                    ran_on: RanOn {
                        backend: known(backend),
                        accel: accel.as_deref().map(known),
                        start: known(start),
                        container: known(container),
                    },
                    queue_ms: *queue_ms,
                })
            }
            LiveMessage::Output { stderr, data_base64 } => Some(LiveEvent::Output {
                stream: if *stderr { LiveStream::Stderr } else { LiveStream::Stdout },
                data: BASE64.decode(data_base64.as_bytes()).ok()?,
            }),
            _ => None,
        }
    }

    /// The executor's input, for an input message.
    pub fn to_input(&self) -> Option<LiveInput> {
        match self {
            LiveMessage::Stdin { data_base64 } => {
                Some(LiveInput::Stdin(BASE64.decode(data_base64.as_bytes()).ok()?))
            }
            LiveMessage::StdinClose => Some(LiveInput::StdinClose),
            LiveMessage::Kill => Some(LiveInput::Kill),
            _ => None,
        }
    }
}

/// How a job ended, as the executor says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum WireOutcome {
    Exited(i32),
    Signaled(i32),
    Timeout,
    Oom(i32),
    FailedToStart(String),
}

/// The header of a result message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultHeader {
    pub v: u32,
    pub id: String,
    /// The job ran (or was refused) on this worker.
    pub worker: String,
    pub outcome: WireOutcome,
    pub truncated: [bool; 3],
    /// queue, boot, run, exec, total (ms).
    pub timings_ms: [u64; 5],
    /// user, sys (ms), max RSS (KiB).
    pub usage: [u64; 3],
    pub backend: String,
    pub accel: Option<String>,
    pub start: String,
    /// `premade` or `created`.
    #[serde(default)]
    pub container: String,
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_object: Option<String>,
}

impl From<JobLimits> for WireLimits {
    fn from(l: JobLimits) -> WireLimits {
        WireLimits {
            timeout_ms: l.timeout.as_millis() as u64,
            memory_mib: l.memory_mib,
            stdout_bytes: l.stdout_bytes,
            stderr_bytes: l.stderr_bytes,
            output_bytes: l.output_bytes,
            output_entries: l.output_entries,
            scratch_mib: l.scratch_mib,
            pids_max: l.pids_max,
        }
    }
}

impl From<WireLimits> for JobLimits {
    fn from(l: WireLimits) -> JobLimits {
        JobLimits {
            timeout: Duration::from_millis(l.timeout_ms.min(shared::limits::MAX_TIMEOUT_MS)),
            memory_mib: l.memory_mib,
            stdout_bytes: l.stdout_bytes,
            stderr_bytes: l.stderr_bytes,
            output_bytes: l.output_bytes,
            output_entries: l.output_entries,
            scratch_mib: l.scratch_mib,
            pids_max: l.pids_max,
        }
    }
}

fn format_name(format: ImageFormat) -> String {
    serde_json::to_value(format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{format:?}").to_lowercase())
}

/// A job as a message: the header and the frame (header + cpio of the inputs).
pub fn encode_job(
    id: &str,
    reply: &str,
    deadline_ms: u64,
    job: &Job,
    live: Option<LiveSubjects>,
) -> Result<(JobHeader, Vec<u8>), WireError> {
    let header = JobHeader {
        v: VERSION,
        id: id.to_owned(),
        reply: reply.to_owned(),
        deadline_ms,
        image: WireImage {
            id: job.image.id.clone(),
            digest: job.image.digest.clone(),
            format: format_name(job.image.format),
            size: job.image.size,
            env: job.image.env.clone(),
        },
        argv: job.argv.clone(),
        env: job.env.clone(),
        cwd: job.cwd.clone(),
        stdin_base64: BASE64.encode(&job.stdin),
        limits: job.limits.into(),
        archive_object: None,
        live,
    };
    let mut encoder = Encoder::new(Vec::new(), Limits::INPUT);
    for entry in &job.files {
        encoder.append(entry)?;
    }
    let frame = framing::encode(&header, &encoder.finish()?)?;
    Ok((header, frame))
}

/// Reads a job frame: its header and the input archive (not yet decoded).
pub fn decode_job_header(bytes: &[u8]) -> Result<(JobHeader, &[u8]), WireError> {
    let (header, archive): (JobHeader, &[u8]) = framing::decode(
        bytes,
        shared::limits::MAX_HEADER_BYTES + shared::limits::MAX_STDIN_BYTES * 2,
    )?;
    if header.v != VERSION {
        return Err(WireError::Version(header.v));
    }
    Ok((header, archive))
}

/// The executor job of a header and its input archive. The image is the file with the
/// header's digest in `images` (which may not exist: the caller checks).
pub fn job_from(header: &JobHeader, archive: &[u8], images: &ImageStore) -> Result<Job, WireError> {
    let format: ImageFormat =
        serde_json::from_value(serde_json::Value::String(header.image.format.clone()))
            .map_err(|_unknown| WireError::Format(header.image.format.clone()))?;
    let hex = header.image.digest.strip_prefix("sha256:").unwrap_or(&header.image.digest);
    let image = ImageInfo {
        id: header.image.id.clone(),
        digest: header.image.digest.clone(),
        path: images.root().join("sha256").join(hex),
        format,
        size: header.image.size,
        built_at: None,
        recipe: None,
        build_secs: None,
        env: header.image.env.clone(),
    };
    let files =
        if archive.is_empty() { Vec::new() } else { cpio::decode(archive, &Limits::INPUT)? };
    Ok(Job {
        image,
        argv: header.argv.clone(),
        env: header.env.clone(),
        cwd: header.cwd.clone(),
        files,
        stdin: BASE64.decode(header.stdin_base64.as_bytes())?,
        limits: header.limits.into(),
    })
}

/// A job's output as a result frame.
pub fn encode_result(id: &str, worker: &str, output: &JobOutput) -> Result<Vec<u8>, WireError> {
    let outcome = match &output.outcome {
        Outcome::Exited(c) => WireOutcome::Exited(*c),
        Outcome::Signaled(s) => WireOutcome::Signaled(*s),
        Outcome::Timeout => WireOutcome::Timeout,
        Outcome::Oom(s) => WireOutcome::Oom(*s),
        Outcome::FailedToStart(why) => WireOutcome::FailedToStart(why.clone()),
    };
    let t = &output.timings;
    let header = ResultHeader {
        v: VERSION,
        id: id.to_owned(),
        worker: worker.to_owned(),
        outcome,
        truncated: [output.truncated.stdout, output.truncated.stderr, output.truncated.files],
        timings_ms: [t.queue_ms, t.boot_ms, t.run_ms, t.exec_ms, t.total_ms],
        usage: [output.usage.user_ms, output.usage.sys_ms, output.usage.max_rss_kib],
        backend: output.ran_on.backend.to_owned(),
        accel: output.ran_on.accel.map(str::to_owned),
        start: output.ran_on.start.to_owned(),
        container: output.ran_on.container.to_owned(),
        notes: output.notes.clone(),
        archive_object: None,
    };
    let mut encoder = Encoder::new(Vec::new(), Limits::MAX);
    encoder.add_file(archive_paths::STDOUT, 0o644, 0, &output.stdout)?;
    encoder.add_file(archive_paths::STDERR, 0o644, 0, &output.stderr)?;
    if !output.files.is_empty() {
        encoder.add_dir(archive_paths::OUTPUT_DIR, 0o755, 0)?;
    }
    for entry in &output.files {
        let path = format!("{}/{}", archive_paths::OUTPUT_DIR, entry.path);
        encoder.append(&Entry { path, ..entry.clone() })?;
    }
    Ok(framing::encode(&header, &encoder.finish()?)?)
}

/// Reads a result frame's header.
pub fn decode_result_header(bytes: &[u8]) -> Result<(ResultHeader, &[u8]), WireError> {
    let (header, archive): (ResultHeader, &[u8]) =
        framing::decode(bytes, shared::limits::MAX_HEADER_BYTES)?;
    if header.v != VERSION {
        return Err(WireError::Version(header.v));
    }
    Ok((header, archive))
}

/// The strings a worker may name, as the `'static` ones the executor uses; anything else is
/// `remote`.
fn known(name: &str) -> &'static str {
    match name {
        "microvm" => "microvm",
        "sandbox" => "sandbox",
        "kvm" => "kvm",
        "tcg" => "tcg",
        "cold" => "cold",
        "warm" => "warm",
        "snapshot" => "snapshot",
        "premade" => "premade",
        "created" => "created",
        "fake" => "fake",
        _ => "remote",
    }
}

/// The executor output of a result header and its archive.
pub fn output_from(header: &ResultHeader, archive: &[u8]) -> Result<JobOutput, WireError> {
    let outcome = match &header.outcome {
        WireOutcome::Exited(c) => Outcome::Exited(*c),
        WireOutcome::Signaled(s) => Outcome::Signaled(*s),
        WireOutcome::Timeout => Outcome::Timeout,
        WireOutcome::Oom(s) => Outcome::Oom(*s),
        WireOutcome::FailedToStart(why) => Outcome::FailedToStart(why.clone()),
    };
    let [queue_ms, boot_ms, run_ms, exec_ms, total_ms] = header.timings_ms;
    let [user_ms, sys_ms, max_rss_kib] = header.usage;
    let [stdout, stderr, files] = header.truncated;
    let mut output = JobOutput {
        outcome,
        stdout: Vec::new(),
        stderr: Vec::new(),
        files: Vec::new(),
        truncated: Truncated { stdout, stderr, files },
        timings: JobTimings { queue_ms, boot_ms, run_ms, exec_ms, total_ms },
        usage: Usage { user_ms, sys_ms, max_rss_kib },
        ran_on: RanOn {
            backend: known(&header.backend),
            accel: header.accel.as_deref().map(known),
            start: known(&header.start),
            container: known(&header.container),
        },
        notes: header.notes.clone(),
    };
    if !archive.is_empty() {
        for entry in cpio::decode(archive, &Limits::MAX)? {
            match (entry.path.as_str(), &entry.data) {
                (archive_paths::STDOUT, EntryData::File(data)) => output.stdout = data.clone(),
                (archive_paths::STDERR, EntryData::File(data)) => output.stderr = data.clone(),
                (path, _) => {
                    if let Some(rel) = path.strip_prefix("output/") {
                        output.files.push(Entry { path: rel.to_owned(), ..entry.clone() });
                    }
                }
            }
        }
    }
    Ok(output)
}

/// A frame whose archive moved to the object store: the header alone, naming the object.
pub fn header_only<H: Serialize>(header: &H) -> Result<Vec<u8>, WireError> {
    Ok(framing::encode(header, &[])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageInfo {
        ImageInfo {
            id: "busybox".into(),
            digest: "sha256:abcd".into(),
            path: "/x".into(),
            format: ImageFormat::Squashfs,
            size: 9,
            built_at: None,
            recipe: None,
            build_secs: None,
            env: vec!["A=1".into()],
        }
    }

    #[test]
    fn a_job_round_trips_with_its_image_named_by_digest() {
        let mut job = Job::new(image(), vec!["sh".into(), "main.sh".into()]);
        job.files = vec![Entry::file("main.sh", "echo hi"), Entry::dir("d")];
        job.stdin = vec![0, 159, 146, 150];
        job.env.insert("K".into(), "v".into());
        let (header, frame) = encode_job("j1", "pe.result.s.j1", 42, &job, None).unwrap();
        let (read, archive) = decode_job_header(&frame).unwrap();
        assert_eq!(read, header);
        let store = ImageStore::new("/images");
        let back = job_from(&read, archive, &store).unwrap();
        assert_eq!(back.argv, job.argv);
        assert_eq!(back.files, job.files);
        assert_eq!(back.stdin, job.stdin);
        assert_eq!(back.env, job.env);
        assert_eq!(back.limits, job.limits);
        assert_eq!(back.image.path, std::path::Path::new("/images/sha256/abcd"));
        assert_eq!(back.image.format, ImageFormat::Squashfs);
    }

    #[test]
    fn a_result_round_trips() {
        let output = JobOutput {
            outcome: Outcome::Oom(9),
            stdout: b"out".to_vec(),
            stderr: vec![0xff, 0],
            files: vec![Entry::dir("d"), Entry::file("d/a.txt", "A")],
            truncated: Truncated { stdout: true, stderr: false, files: true },
            timings: JobTimings { queue_ms: 1, boot_ms: 2, run_ms: 3, exec_ms: 8, total_ms: 4 },
            usage: Usage { user_ms: 5, sys_ms: 6, max_rss_kib: 7 },
            ran_on: RanOn {
                backend: "microvm",
                accel: Some("kvm"),
                start: "snapshot",
                container: "premade",
            },
            notes: vec!["a note".into()],
        };
        let frame = encode_result("j1", "w1", &output).unwrap();
        let (header, archive) = decode_result_header(&frame).unwrap();
        assert_eq!(header.id, "j1");
        assert_eq!(header.worker, "w1");
        let back = output_from(&header, archive).unwrap();
        assert_eq!(back.outcome, output.outcome);
        assert_eq!((back.stdout, back.stderr), (output.stdout, output.stderr));
        assert_eq!(back.files, output.files);
        assert_eq!(back.truncated, output.truncated);
        assert_eq!(back.timings, output.timings);
        assert_eq!(back.usage, output.usage);
        assert_eq!(back.ran_on, output.ran_on);
        assert_eq!(back.notes, output.notes);
    }

    #[test]
    fn live_messages_round_trip() {
        let ran_on = RanOn { backend: "sandbox", accel: None, start: "cold", container: "created" };
        let events = [
            LiveEvent::Started { ran_on, queue_ms: 3 },
            LiveEvent::Output { stream: LiveStream::Stderr, data: vec![0, 1, 255] },
        ];
        for event in events {
            let json = serde_json::to_string(&LiveMessage::from_event(&event)).unwrap();
            let back: LiveMessage = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_event(), Some(event));
        }
        for input in [LiveInput::Stdin(b"typed\n".to_vec()), LiveInput::StdinClose, LiveInput::Kill]
        {
            let json = serde_json::to_string(&LiveMessage::from_input(&input)).unwrap();
            let back: LiveMessage = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_input(), Some(input));
        }
        assert_eq!(LiveMessage::End.to_event(), None);
    }

    #[test]
    fn another_version_is_refused() {
        let job = Job::new(image(), vec!["sh".into()]);
        let (mut header, _) = encode_job("j", "r", 0, &job, None).unwrap();
        header.v = 99;
        let frame = framing::encode(&header, &[]).unwrap();
        assert!(matches!(decode_job_header(&frame), Err(WireError::Version(99))));
    }
}
