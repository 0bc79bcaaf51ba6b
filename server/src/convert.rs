//! The one place where executor types become API types.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use executor::{JobOutput, Outcome};
use images::ImageInfo;
use shared::api::v1::archive_paths;
use shared::api::v1::{
    BackendInfo, ImageRef, JsonOutputFile, ResourceUsage, RunJsonResult, RunResult, RunStatus,
    Timings, Truncation,
};
use shared::cpio::{self, Encoder, Entry, EntryData, Limits};
use shared::diagnostics;
use shared::error::chain;
use shared::framing;
use shared::meta::ContainerMeta;

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
            container: Some(output.ran_on.container.to_owned()),
        },
        cached: false,
        not_cached: None,
        timings_ms: Timings {
            queue: output.timings.queue_ms,
            boot: output.timings.boot_ms,
            run: output.timings.run_ms,
            exec: output.timings.exec_ms,
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
        diagnostics: Vec::new(),
        demangled: Default::default(),
    }
}

/// Text when it is valid UTF-8, else an empty string plus the base64 form.
fn text_or_base64(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (String::new(), Some(BASE64.encode(bytes))),
    }
}

/// A finished run as the API hands it out (and the cache keeps it): the result header and
/// what the program produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAnswer {
    pub result: RunResult,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output files and directories, paths relative to the output directory.
    pub files: Vec<Entry>,
}

impl RunAnswer {
    pub fn from_job(
        output: JobOutput,
        argv: &[String],
        image: &ImageInfo,
        timeout_ms: u64,
    ) -> RunAnswer {
        let result = run_result(&output, argv, image, timeout_ms);
        RunAnswer { result, stdout: output.stdout, stderr: output.stderr, files: output.files }
    }

    /// What the container's metadata says to read from the output, before the answer is
    /// cached (so cached answers carry it too): its diagnostics, and the C++ names of its
    /// assembly file, demangled.
    pub fn annotate(&mut self, meta: &ContainerMeta, inputs: &[Entry]) {
        self.add_diagnostics(meta, inputs);
        self.add_demangled(meta);
    }

    /// The readable form of each C++ name in the assembly file named by the container's
    /// `[assembly]` table, for the browser's demangle filter (the browser carries no
    /// demangler).
    fn add_demangled(&mut self, meta: &ContainerMeta) {
        let Some(spec) = &meta.assembly else { return };
        let Some(file) = self.files.iter().find(|e| e.path == spec.file) else { return };
        self.result.demangled =
            shared::asm::demangled_names(&String::from_utf8_lossy(file.content()));
    }

    /// Reads the errors and warnings in stdout and stderr as the container's `[diagnostics]`
    /// table says (`inputs` give Python's carets their columns). A spec that cannot be used
    /// (the catalog checks every spec when it loads, so it never happens) is logged and
    /// yields none.
    fn add_diagnostics(&mut self, meta: &ContainerMeta, inputs: &[Entry]) {
        let Some(spec) = &meta.diagnostics else { return };
        let sources = |path: &str| {
            inputs
                .iter()
                .find(|e| e.path == path)
                .and_then(|e| std::str::from_utf8(e.content()).ok())
        };
        let stdout = String::from_utf8_lossy(&self.stdout);
        let stderr = String::from_utf8_lossy(&self.stderr);
        match diagnostics::parse(spec, &meta.run.cwd, &stdout, &stderr, &sources) {
            Ok(list) => self.result.diagnostics = list,
            Err(err) => {
                tracing::warn!(container = %meta.id, error = %chain(&err), "cannot read diagnostics")
            }
        }
    }

    /// The archive form: `<u32 len><RunResult JSON><cpio of stdout, stderr, output/...>`.
    pub fn to_frame(&self) -> Result<Vec<u8>, AnswerError> {
        let mut encoder = Encoder::new(Vec::new(), Limits::MAX);
        encoder.add_file(archive_paths::STDOUT, 0o644, 0, &self.stdout)?;
        encoder.add_file(archive_paths::STDERR, 0o644, 0, &self.stderr)?;
        if !self.files.is_empty() {
            encoder.add_dir(archive_paths::OUTPUT_DIR, 0o755, 0)?;
        }
        for entry in &self.files {
            let path = format!("{}/{}", archive_paths::OUTPUT_DIR, entry.path);
            encoder.append(&Entry { path, ..entry.clone() })?;
        }
        Ok(framing::encode(&self.result, &encoder.finish()?)?)
    }

    /// The archive form with a squashfs image instead of cpio: the same entries (`stdout`,
    /// `stderr`, `output/...`), built here from entries already validated.
    pub fn to_squashfs_frame(&self) -> Result<Vec<u8>, AnswerError> {
        let mut entries = vec![
            Entry::file(archive_paths::STDOUT, self.stdout.clone()),
            Entry::file(archive_paths::STDERR, self.stderr.clone()),
        ];
        if !self.files.is_empty() {
            entries.push(Entry::dir(archive_paths::OUTPUT_DIR));
        }
        for entry in &self.files {
            let path = format!("{}/{}", archive_paths::OUTPUT_DIR, entry.path);
            entries.push(Entry { path, ..entry.clone() });
        }
        Ok(framing::encode(&self.result, &shared::squashfs::write(&entries)?)?)
    }

    /// Reads back what [`Self::to_frame`] wrote.
    pub fn from_frame(bytes: &[u8]) -> Result<RunAnswer, AnswerError> {
        let (result, archive): (RunResult, _) =
            framing::decode(bytes, shared::limits::MAX_HEADER_BYTES)?;
        let mut answer =
            RunAnswer { result, stdout: Vec::new(), stderr: Vec::new(), files: Vec::new() };
        for entry in cpio::decode(archive, &Limits::MAX)? {
            match (entry.path.as_str(), &entry.data) {
                (archive_paths::STDOUT, EntryData::File(data)) => answer.stdout = data.clone(),
                (archive_paths::STDERR, EntryData::File(data)) => answer.stderr = data.clone(),
                (path, _) => {
                    if let Some(rel) = path.strip_prefix("output/") {
                        answer.files.push(Entry { path: rel.to_owned(), ..entry.clone() });
                    }
                }
            }
        }
        Ok(answer)
    }

    /// The JSON form.
    pub fn to_json(&self) -> RunJsonResult {
        let (stdout, stdout_base64) = text_or_base64(&self.stdout);
        let (stderr, stderr_base64) = text_or_base64(&self.stderr);
        let files = self
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
        RunJsonResult {
            result: self.result.clone(),
            stdout,
            stderr,
            stdout_base64,
            stderr_base64,
            files,
        }
    }
}

/// A stored answer that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("bad result archive")]
    Cpio(#[from] shared::cpio::CpioError),
    #[error("bad result frame")]
    Frame(#[from] shared::framing::FrameError),
    #[error("cannot encode the result")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the squashfs answer")]
    Squashfs(#[from] shared::squashfs::SquashfsError),
}
