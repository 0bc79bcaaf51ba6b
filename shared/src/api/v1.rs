//! API v1: what `POST /api/v1/run` takes and returns, and the JSON error body of every endpoint.
//!
//! Two encodings carry the same information:
//! - `application/x-pe-archive`: a [`crate::framing`] frame with a [`RunRequest`] header and a
//!   cpio archive of the input files; the answer is a frame with a [`RunResult`] header and a
//!   cpio archive holding `stdout`, `stderr` and `output/<path>` for each output file.
//! - `application/json`: [`RunJsonRequest`] (files inline) answered by [`RunJsonResult`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A run: which container, its option values, extra arguments (or a command line of its own)
/// and environment, and stdin. The input files travel beside it (the archive, or `files` in the
/// JSON form).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Container id from the catalog (`gcc`, `python`, ...).
    pub container: String,
    /// Option values by option id, checked against the container's metadata.
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
    /// Extra arguments appended to the rendered command line.
    #[serde(default)]
    pub args: Vec<String>,
    /// A command line that replaces the one rendered from the container's metadata, as
    /// `pe run CONTAINER -- ARGV` does: the program and its arguments, run in the container's
    /// image and working directory with its environment. Option values are still checked; `args`
    /// cannot go with it. Not empty, no NUL bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Text fed to the program's standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// [`inputs_digest`] of the input files and stdin. Optional; when the header carries it,
    /// the server can answer a cached result before the archive has arrived (and checks it
    /// against the archive otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_digest: Option<String>,
}

/// A digest of the input files and stdin that does not depend on how the archive was written
/// (order, inode numbers, times): sha256 over each entry sorted by path (path, kind, mode,
/// length, content), then stdin. Hex.
pub fn inputs_digest(files: &[crate::cpio::Entry], stdin: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&crate::cpio::Entry> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    for entry in sorted {
        hasher.update(entry.path.as_bytes());
        hasher.update([0, u8::from(entry.is_dir())]);
        hasher.update(entry.mode.to_le_bytes());
        hasher.update((entry.content().len() as u64).to_le_bytes());
        hasher.update(entry.content());
    }
    hasher.update(b"\0stdin");
    hasher.update((stdin.len() as u64).to_le_bytes());
    hasher.update(stdin);
    hex::encode(hasher.finalize())
}

/// One input file of the JSON form: `content` (UTF-8) or `content_base64`, exactly one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

/// The JSON form of a run request: the [`RunRequest`] fields plus the files inline. (Written
/// out rather than flattened so that unknown fields are refused here too.)
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunJsonRequest {
    pub container: String,
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_digest: Option<String>,
    #[serde(default)]
    pub files: Vec<JsonFile>,
}

impl RunJsonRequest {
    /// The request header and the inline files.
    pub fn split(self) -> (RunRequest, Vec<JsonFile>) {
        let run = RunRequest {
            container: self.container,
            options: self.options,
            args: self.args,
            argv: self.argv,
            env: self.env,
            stdin: self.stdin,
            inputs_digest: self.inputs_digest,
        };
        (run, self.files)
    }
}

/// How a run ended. A run that ended badly is still a successful HTTP response.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The program exited by itself; see `exit_code`.
    Exited,
    /// The program was killed by a signal; see `signal`.
    Signaled,
    /// The program ran past its wall-clock limit and was killed.
    Timeout,
    /// The program ran out of memory and was killed.
    Oom,
    /// The program wrote more than the output limits allow; what fitted is returned.
    OutputLimit,
    /// The program could not be started (no such command, bad image, VM failure).
    FailedToStart,
}

impl RunStatus {
    /// Whether a result with this status may be served from the cache: only runs that ended on
    /// their own, with nothing cut off and no infrastructure failure.
    pub fn is_cacheable(self) -> bool {
        matches!(self, RunStatus::Exited | RunStatus::Signaled)
    }
}

/// Which image ran.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub id: String,
    /// `sha256:<hex>` of the image file.
    pub digest: String,
}

/// What ran the job and how strongly it was isolated.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `microvm` (the default) or `sandbox` (namespaces on the host: weaker isolation).
    pub kind: String,
    /// For `microvm`: `kvm` or `tcg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// How the job's VM started: restored from a snapshot (`snapshot`), booted ahead of the job
    /// (`warm`), or booted for it (`cold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The program's container: `premade` (a warm VM's, made before the job and waiting in its
    /// snapshot: the job only had its program exec'd) or `created` for the job (cold VMs, the
    /// sandbox, and jobs a pre-made container does not fit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// Milliseconds spent in each phase.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for a free slot.
    pub queue: u64,
    /// Everything the VM spent outside the program: starting (or, for a warm VM, handing it the
    /// job), setting up, collecting outputs, powering off. Tens of milliseconds on a warm VM.
    pub boot: u64,
    /// The program itself, measured inside the guest, from the start of its container.
    pub run: u64,
    /// The program's own time, from its `execve` to its exit, as the guest measures it: `run`
    /// less creating the container (nothing, in a warm VM's pre-made container).
    #[serde(default)]
    pub exec: u64,
    /// Whole request, as seen by the server.
    pub total: u64,
}

/// Resources the program used, measured inside the guest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub user_ms: u64,
    pub sys_ms: u64,
    /// Peak resident memory, KiB.
    pub max_rss_kib: u64,
}

/// Which outputs were cut short by a limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    pub stdout: bool,
    pub stderr: bool,
    /// Some output files were dropped or the output directory was over its limit.
    pub files: bool,
}

/// The header of a run's answer (archive form), and the core of the JSON form.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// A sentence for people: why the run ended the way it did, when it is not obvious.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The command line that ran: rendered from the options and args, or the request's `argv`.
    pub argv: Vec<String>,
    pub image: ImageRef,
    pub backend: BackendInfo,
    pub cached: bool,
    /// Why this result was not put in the cache, when it could not be (a live run whose stdin
    /// was typed while it ran: another run of the same request could read other input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_cached: Option<String>,
    pub timings_ms: Timings,
    pub usage: ResourceUsage,
    pub truncated: Truncation,
    /// The errors and warnings in the output, read as the container's `[diagnostics]` says
    /// (none when it has no such table). See [`crate::diagnostics`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<crate::diagnostics::Diagnostic>,
    /// The C++ names in the assembly file, mangled to readable (`_Z3addii` to `add(int, int)`),
    /// when the container's metadata has an `[assembly]` table: the browser's demangle filter
    /// reads them here. See [`crate::asm::demangled_names`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub demangled: std::collections::BTreeMap<String, String>,
}

/// One output file of the JSON form.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonOutputFile {
    /// Path relative to the output directory.
    pub path: String,
    pub size: u64,
    pub content_base64: String,
}

/// The JSON form of a run's answer: stdout and stderr as text when they are valid UTF-8,
/// otherwise as base64 in `stdout_base64` / `stderr_base64`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJsonResult {
    #[serde(flatten)]
    pub result: RunResult,
    pub stdout: String,
    pub stderr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_base64: Option<String>,
    pub files: Vec<JsonOutputFile>,
}

/// Everything a playground shows, as stored behind a permalink (`POST /api/v1/links`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaygroundState {
    pub container: String,
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<JsonFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Which of `files` is standard input (its content is `stdin`); absent when standard input
    /// is a text of its own. Without it, two files with the same content could not be told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_file: Option<String>,
    /// A second setup run on the same files and stdin, shown beside the first with a diff of
    /// their outputs (the app's compare view). Absent for a single run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSetup>,
}

/// The other side of a comparison: a container and its options, arguments and environment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSetup {
    pub container: String,
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl PlaygroundState {
    /// Checks what serde cannot: `stdin_file` names one of `files`, whose content is `stdin`.
    pub fn validate(&self) -> Result<(), String> {
        let Some(name) = &self.stdin_file else { return Ok(()) };
        let file = self
            .files
            .iter()
            .find(|f| &f.path == name)
            .ok_or_else(|| format!("stdin_file {name:?} is not one of the files"))?;
        if file.content.is_some() && file.content != self.stdin {
            return Err(format!("stdin_file {name:?}: its content is not `stdin`"));
        }
        Ok(())
    }
}

/// The answer to `POST /api/v1/links`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCreated {
    pub id: String,
    /// Path of the playground opened on this state: `/l/{id}`.
    pub url: String,
}

/// Names of the entries in a result archive.
pub mod archive_paths {
    pub const STDOUT: &str = "stdout";
    pub const STDERR: &str = "stderr";
    /// Output files live under this directory: `output/<path>`.
    pub const OUTPUT_DIR: &str = "output";
}

/// Machine-readable error codes; each maps to one HTTP status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body or a parameter is malformed.
    BadRequest,
    /// 404: no such container, link or route.
    NotFound,
    /// 405: the route exists, the method does not (the `Allow` header lists those that do).
    MethodNotAllowed,
    /// 408: the request took longer than the server's request timeout.
    Timeout,
    /// 413: the request is larger than allowed.
    TooLarge,
    /// 422: an option value is not accepted by the container's metadata.
    InvalidOption,
    /// 429: this client sent too many requests; retry after `Retry-After` seconds.
    RateLimited,
    /// 503: every slot is busy and the queue is full; retry after `Retry-After` seconds.
    Busy,
    /// 503: the container's image is not built on this server, or the executor is not ready.
    Unavailable,
    /// 500: something broke on the server.
    Internal,
}

/// The body of every HTTP error: `{"error": {"code": "...", "message": "..."}}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The request's `x-request-id`: the server's log has the details under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_flattens_and_refuses_nothing_it_knows() {
        let req: RunJsonRequest = serde_json::from_str(
            r#"{"container":"python","options":{"opt":"-O"},"stdin":"x",
                "files":[{"path":"main.py","content":"print(1)"}]}"#,
        )
        .unwrap();
        let (run, files) = req.split();
        assert_eq!(run.container, "python");
        assert_eq!(run.stdin.as_deref(), Some("x"));
        assert_eq!(files[0].content.as_deref(), Some("print(1)"));
        let err = serde_json::from_str::<RunJsonRequest>(r#"{"container":"x","fils":[]}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field `fils`"));
    }

    #[test]
    fn inputs_digest_ignores_order_and_times_but_not_content() {
        use crate::cpio::Entry;
        let a = [Entry::file("a", "1"), Entry { mtime: 99, ..Entry::file("b", "2") }];
        let b = [Entry::file("b", "2"), Entry::file("a", "1")];
        assert_eq!(inputs_digest(&a, b""), inputs_digest(&b, b""));
        assert_ne!(inputs_digest(&a, b""), inputs_digest(&a, b"x"));
        assert_ne!(inputs_digest(&a, b""), inputs_digest(&[Entry::file("a", "1")], b""));
        let exec = [Entry { mode: 0o755, ..Entry::file("a", "1") }, Entry::file("b", "2")];
        assert_ne!(inputs_digest(&a, b""), inputs_digest(&exec, b""));
    }

    #[test]
    fn archive_header_refuses_unknown_fields() {
        let err = serde_json::from_str::<RunRequest>(r#"{"container":"x","optoins":{}}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field `optoins`"));
    }

    #[test]
    fn status_and_error_codes_use_the_documented_names() {
        let names: Vec<String> = [
            RunStatus::Exited,
            RunStatus::Signaled,
            RunStatus::Timeout,
            RunStatus::Oom,
            RunStatus::OutputLimit,
            RunStatus::FailedToStart,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"exited\"",
                "\"signaled\"",
                "\"timeout\"",
                "\"oom\"",
                "\"output_limit\"",
                "\"failed_to_start\""
            ]
        );
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::InvalidOption,
                message: "m".into(),
                request_id: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"invalid_option","message":"m"}}"#
        );
    }
}
