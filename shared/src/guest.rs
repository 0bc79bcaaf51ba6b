//! The host <-> guest protocol: one I/O file per job, attached to the VM as a virtio-blk disk
//! with serial [`IO_DISK_SERIAL`].
//!
//! The host writes the request at offset 0:
//!
//! ```text
//! <u32 header_len> <GuestRequest JSON> <u32 archive_len> <cpio archive>
//! ```
//!
//! The archive holds the input files under `input/` and, if any, the program's standard input as
//! the file `stdin`.
//!
//! The guest overwrites the file with its answer:
//!
//! ```text
//! "PEGR" <u32 version> <u32 archive_len> <u32 header_len> <GuestResponse JSON> <cpio archive>
//! ```
//!
//! The archive holds `stdout`, `stderr` and `output/<path>` for each output file. The guest
//! writes everything after the first 16 bytes, syncs, then writes the 16-byte prefix and syncs
//! again, so the magic is only there when the whole answer is. The host's request can never look
//! like an answer: its first four bytes are a header length, far below `"PEGR"` read as a u32.
//! "The guest wrote nothing" (a crash, a kill) is therefore told apart from a partial answer.
//!
//! These types are not the HTTP API's: the executor converts between them in one place.

use serde::{Deserialize, Serialize};

use crate::limits::MAX_HEADER_BYTES;

/// First four bytes of a complete guest answer.
pub const RESPONSE_MAGIC: [u8; 4] = *b"PEGR";
/// Version of this protocol; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
/// Length of the fixed prefix of an answer.
pub const RESPONSE_PREFIX_LEN: usize = 16;

/// virtio-blk serial of the job's I/O disk.
pub const IO_DISK_SERIAL: &str = "pe-io";
/// virtio-blk serial of the container image disk (read-only).
pub const IMAGE_DISK_SERIAL: &str = "pe-image";

/// Paths inside the request archive.
pub mod request_paths {
    pub const INPUT_DIR: &str = "input";
    pub const STDIN: &str = "stdin";
}

/// Root filesystem formats the guest can mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Squashfs,
    Erofs,
}

/// Limits the guest enforces on the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLimits {
    /// Wall-clock limit of the program, from its start.
    pub timeout_ms: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Total bytes of files returned from /output.
    pub output_bytes: u64,
    /// Number of entries returned from /output.
    pub output_entries: usize,
    /// Size of the tmpfs that holds the overlay's upper dir, /tmp and /output.
    pub scratch_mib: u32,
    /// cgroup `pids.max`.
    pub pids_max: u32,
    /// cgroup `memory.max` for the program, MiB (the guest keeps some memory for itself).
    pub memory_mib: u32,
}

/// What the guest is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRequest {
    pub version: u32,
    /// The program and its arguments, as run inside the container.
    pub argv: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory inside the container (an absolute path, usually `/input`).
    pub cwd: String,
    pub image_format: ImageFormat,
    pub limits: GuestLimits,
    /// 32 random bytes, hex, mixed into the guest's RNG so no two jobs share random state.
    pub seed: String,
    /// A live run: stream stdout and stderr over the control port as they are written (see
    /// [`crate::stream`]), and, when `stdin_open`, feed the program's stdin from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveRequest>,
}

/// How a live run talks to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRequest {
    /// The program's stdin is a pipe fed by `stdin` frames until a `stdin_close` frame (after
    /// the request's own stdin, if any); otherwise stdin is the request's stdin file, as in a
    /// run that is not live.
    pub stdin_open: bool,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exit {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    /// Killed at the wall-clock limit.
    Timeout,
    /// Killed by the OOM killer (the cgroup's `memory.events` counted an oom_kill).
    Oom {
        signal: i32,
    },
}

/// Milliseconds since the guest's init started, at each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestTimings {
    /// Kernel boot until init started (from `/proc/uptime`).
    pub boot_ms: u64,
    /// Init start until the program was about to start (mounts, unpacking, config).
    pub setup_ms: u64,
    /// The program, from crun's start (or, in a pre-made container, from the job's release)
    /// to its exit.
    pub run_ms: u64,
    /// The program's own time, from its `execve` to its exit: `run_ms` less creating the
    /// container.
    #[serde(default)]
    pub exec_ms: u64,
    /// Packing the outputs.
    pub collect_ms: u64,
}

/// What the program used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestUsage {
    pub user_ms: u64,
    pub sys_ms: u64,
    pub max_rss_kib: u64,
}

/// Which outputs hit a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestTruncation {
    pub stdout: bool,
    pub stderr: bool,
    pub output: bool,
}

/// A run that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub exit: Exit,
    pub usage: GuestUsage,
    pub truncated: GuestTruncation,
    pub timings: GuestTimings,
    /// Notes for people, e.g. which output files were dropped.
    #[serde(default)]
    pub notes: Vec<String>,
    /// How the program's container came to be: made before the job (a warm VM's, waiting in
    /// the snapshot) or created for it.
    #[serde(default)]
    pub container: ContainerStart,
}

/// How a job's container came to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStart {
    /// Created for the job by crun.
    #[default]
    Created,
    /// Made in the warm VM before the job (saved in its snapshot); the job's program was
    /// exec'd by the process waiting in it.
    Premade,
}

/// The guest's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestResponse {
    /// The program ran (whatever its outcome).
    Finished(Finished),
    /// The program could not be started; `stage` names the step that failed.
    SetupFailed { stage: String, message: String },
    /// The init itself panicked; a bug in the guest.
    Panic { message: String, location: Option<String> },
}

/// Why a request or answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the guest wrote no answer (no magic at the start of the I/O file)")]
    NoAnswer,
    #[error("the guest's answer is protocol version {0}, expected {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("the guest's answer is truncated: {0}")]
    Truncated(&'static str),
    #[error("the header is {len} bytes, over the limit of {max}")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("the header is not valid JSON")]
    Json(#[from] serde_json::Error),
}

/// Builds the request bytes the host writes to the I/O file.
pub fn encode_request(
    request: &GuestRequest,
    archive: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(request)?;
    let mut out = Vec::with_capacity(8 + json.len() + archive.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(archive.len() as u32).to_le_bytes());
    out.extend_from_slice(archive);
    Ok(out)
}

/// Parses the request at the start of the I/O file (which may be longer: the disk is padded).
pub fn decode_request(bytes: &[u8]) -> Result<(GuestRequest, &[u8]), ProtocolError> {
    let (json, rest) = take_len_prefixed(bytes, MAX_HEADER_BYTES, "request header")?;
    let request = serde_json::from_slice(json)?;
    let (archive, _) = take_len_prefixed(rest, usize::MAX, "request archive")?;
    Ok((request, archive))
}

fn take_len_prefixed<'a>(
    bytes: &'a [u8],
    max: usize,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), ProtocolError> {
    let len = bytes
        .get(..4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize)
        .ok_or(ProtocolError::Truncated(what))?;
    if len > max {
        return Err(ProtocolError::HeaderTooLarge { len, max });
    }
    let body = bytes.get(4..4 + len).ok_or(ProtocolError::Truncated(what))?;
    Ok((body, &bytes[4 + len..]))
}

/// The 16-byte prefix of an answer whose body (header JSON + archive) has these lengths.
pub fn response_prefix(header_len: usize, archive_len: usize) -> [u8; RESPONSE_PREFIX_LEN] {
    let mut prefix = [0u8; RESPONSE_PREFIX_LEN];
    prefix[..4].copy_from_slice(&RESPONSE_MAGIC);
    prefix[4..8].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    prefix[8..12].copy_from_slice(&(archive_len as u32).to_le_bytes());
    prefix[12..16].copy_from_slice(&(header_len as u32).to_le_bytes());
    prefix
}

/// Builds a whole answer in memory (prefix + JSON + archive).
pub fn encode_response(
    response: &GuestResponse,
    archive: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(response)?;
    let mut out = Vec::with_capacity(RESPONSE_PREFIX_LEN + json.len() + archive.len());
    out.extend_from_slice(&response_prefix(json.len(), archive.len()));
    out.extend_from_slice(&json);
    out.extend_from_slice(archive);
    Ok(out)
}

/// The lengths an answer's prefix announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePrefix {
    pub header_len: usize,
    pub archive_len: usize,
}

impl ResponsePrefix {
    /// Bytes of the whole answer, the prefix included.
    pub fn total_len(&self) -> u64 {
        (RESPONSE_PREFIX_LEN + self.header_len) as u64 + self.archive_len as u64
    }
}

/// Reads and checks the prefix at the start of `bytes` (magic, version, header size): the one
/// parser of it, for [`decode_response`] and for a host that reads the answer off a disk and
/// must know how many bytes to read.
pub fn decode_response_prefix(bytes: &[u8]) -> Result<ResponsePrefix, ProtocolError> {
    if bytes.get(..4) != Some(&RESPONSE_MAGIC[..]) {
        return Err(ProtocolError::NoAnswer);
    }
    let prefix = bytes.get(..RESPONSE_PREFIX_LEN).ok_or(ProtocolError::Truncated("prefix"))?;
    let u32_at =
        |i: usize| u32::from_le_bytes([prefix[i], prefix[i + 1], prefix[i + 2], prefix[i + 3]]);
    let version = u32_at(4);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(version));
    }
    let archive_len = u32_at(8) as usize;
    let header_len = u32_at(12) as usize;
    if header_len > MAX_HEADER_BYTES {
        return Err(ProtocolError::HeaderTooLarge { len: header_len, max: MAX_HEADER_BYTES });
    }
    Ok(ResponsePrefix { header_len, archive_len })
}

/// Parses an answer read back from the I/O file.
pub fn decode_response(bytes: &[u8]) -> Result<(GuestResponse, &[u8]), ProtocolError> {
    let ResponsePrefix { header_len, archive_len } = decode_response_prefix(bytes)?;
    let body = &bytes[RESPONSE_PREFIX_LEN..];
    let json = body.get(..header_len).ok_or(ProtocolError::Truncated("response header"))?;
    let archive = body
        .get(header_len..header_len + archive_len)
        .ok_or(ProtocolError::Truncated("response archive"))?;
    Ok((serde_json::from_slice(json)?, archive))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> GuestRequest {
        GuestRequest {
            version: PROTOCOL_VERSION,
            argv: vec!["echo".into(), "hi".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/input".into(),
            image_format: ImageFormat::Squashfs,
            limits: GuestLimits {
                timeout_ms: 10_000,
                stdout_bytes: 1 << 20,
                stderr_bytes: 1 << 20,
                output_bytes: 1 << 24,
                output_entries: 256,
                scratch_mib: 256,
                pids_max: 256,
                memory_mib: 900,
            },
            seed: "00".repeat(32),
            live: Some(LiveRequest { stdin_open: true }),
        }
    }

    #[test]
    fn request_round_trips_with_disk_padding() {
        let mut bytes = encode_request(&request(), b"ARCHIVE").unwrap();
        bytes.resize(4096, 0);
        let (req, archive) = decode_request(&bytes).unwrap();
        assert_eq!(req, request());
        assert_eq!(archive, b"ARCHIVE");
    }

    #[test]
    fn response_round_trips_and_missing_answers_are_recognised() {
        let resp = GuestResponse::Panic { message: "boom".into(), location: Some("x.rs:1".into()) };
        let mut bytes = encode_response(&resp, b"CPIO").unwrap();
        bytes.resize(4096, 0);
        // The prefix alone says how much to read.
        let answer_len = encode_response(&resp, b"CPIO").unwrap().len() as u64;
        assert_eq!(
            decode_response_prefix(&bytes[..RESPONSE_PREFIX_LEN]).unwrap().total_len(),
            answer_len
        );
        let (back, archive) = decode_response(&bytes).unwrap();
        assert_eq!((back, archive), (resp, &b"CPIO"[..]));

        // The untouched request is not an answer.
        let req = encode_request(&request(), b"").unwrap();
        assert!(matches!(decode_response(&req), Err(ProtocolError::NoAnswer)));
        // A prefix that promises more than is there.
        let short = &encode_response(
            &GuestResponse::Panic { message: "x".into(), location: None },
            b"CPIO",
        )
        .unwrap();
        assert!(matches!(
            decode_response(&short[..short.len() - 1]),
            Err(ProtocolError::Truncated("response archive"))
        ));
    }

    #[test]
    fn exit_reasons_are_tagged() {
        let json = serde_json::to_string(&Exit::Oom { signal: 9 }).unwrap();
        assert_eq!(json, r#"{"kind":"oom","signal":9}"#);
    }
}
