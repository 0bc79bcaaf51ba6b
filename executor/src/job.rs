//! The executor's own view of a job and its outcome. Not the HTTP types and not the guest's:
//! [`crate::convert`] maps between this and the guest protocol, the server maps this to the API.

use std::collections::BTreeMap;
use std::time::Duration;

use images::ImageInfo;
use shared::cpio::Entry;
use shared::limits;

/// Limits one job runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    pub timeout: Duration,
    pub memory_mib: u32,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub output_bytes: u64,
    pub output_entries: usize,
    pub scratch_mib: u32,
    pub pids_max: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            timeout: Duration::from_millis(limits::DEFAULT_TIMEOUT_MS),
            memory_mib: limits::DEFAULT_MEMORY_MIB,
            stdout_bytes: limits::DEFAULT_STDOUT_BYTES,
            stderr_bytes: limits::DEFAULT_STDERR_BYTES,
            output_bytes: limits::DEFAULT_OUTPUT_BYTES,
            output_entries: limits::DEFAULT_OUTPUT_ENTRIES,
            scratch_mib: limits::DEFAULT_SCRATCH_MIB,
            pids_max: limits::DEFAULT_PIDS_MAX,
        }
    }
}

/// "Run this argv in this image on these files."
#[derive(Debug, Clone)]
pub struct Job {
    pub image: ImageInfo,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Input files, paths relative to /input.
    pub files: Vec<Entry>,
    pub stdin: Vec<u8>,
    pub limits: JobLimits,
}

impl Job {
    /// A job with default limits, cwd /input and the usual PATH.
    pub fn new(image: ImageInfo, argv: Vec<String>) -> Job {
        Job {
            image,
            argv,
            env: BTreeMap::new(),
            cwd: "/input".into(),
            files: Vec::new(),
            stdin: Vec::new(),
            limits: JobLimits::default(),
        }
    }
}

impl Job {
    /// The environment the program sees, `KEY=value`, sorted: the usual PATH and HOME=/tmp,
    /// overridden by the image's own environment (an imported OCI image's `Env`), overridden by
    /// the job's variables.
    pub fn container_env(&self) -> Vec<String> {
        // Later layers win: defaults, then the image's own environment, then the job's.
        let mut env: BTreeMap<&str, &str> = BTreeMap::new();
        env.insert("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        env.insert("HOME", "/tmp");
        for entry in &self.image.env {
            if let Some((k, v)) = entry.split_once('=').filter(|(k, _)| !k.is_empty()) {
                env.insert(k, v);
            }
        }
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// How the program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    /// Killed at the wall-clock limit (by the guest, or by the host if the guest overran).
    Timeout,
    /// Killed by the OOM killer with this signal.
    Oom(i32),
    /// The program never ran: a bad command, a broken image, or a VM that failed.
    FailedToStart(String),
}

/// Which outputs were cut at a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Truncated {
    pub stdout: bool,
    pub stderr: bool,
    pub files: bool,
}

impl Truncated {
    pub fn any(&self) -> bool {
        self.stdout || self.stderr || self.files
    }
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTimings {
    /// Waiting for a slot.
    pub queue_ms: u64,
    /// VM start to program start, plus collecting and powering off: everything but the program.
    pub boot_ms: u64,
    /// The program, measured inside the guest.
    pub run_ms: u64,
    /// The program's own time, from its `execve` to its exit (`run_ms` less creating its
    /// container, when that was done for the job).
    pub exec_ms: u64,
    /// Submission to result.
    pub total_ms: u64,
}

/// What the program used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub user_ms: u64,
    pub sys_ms: u64,
    pub max_rss_kib: u64,
}

/// What ran a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RanOn {
    /// `microvm` or `sandbox`.
    pub backend: &'static str,
    /// `kvm` or `tcg` for a microVM.
    pub accel: Option<&'static str>,
    /// `cold`, `warm` or `snapshot`.
    pub start: &'static str,
    /// `premade` (the warm VM's container, made before the job) or `created` for the job.
    pub container: &'static str,
}

impl JobOutput {
    /// An output with nothing in it yet: the outcome, where it ran and how long the VM took.
    pub fn empty(outcome: Outcome, ran_on: RanOn, vm_ms: u64) -> JobOutput {
        JobOutput {
            outcome,
            stdout: Vec::new(),
            stderr: Vec::new(),
            files: Vec::new(),
            truncated: Truncated::default(),
            timings: JobTimings { boot_ms: vm_ms, ..JobTimings::default() },
            usage: Usage::default(),
            ran_on,
            notes: Vec::new(),
        }
    }
}

/// Everything a finished job produced.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output files and directories, paths relative to /output.
    pub files: Vec<Entry>,
    pub truncated: Truncated,
    pub timings: JobTimings,
    pub usage: Usage,
    pub ran_on: RanOn,
    /// Remarks for people (files left out, why a VM failed).
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::ImageFormat;

    #[test]
    fn the_environment_layers_defaults_image_and_job() {
        let image = ImageInfo {
            id: "tool".into(),
            digest: "sha256:0".into(),
            path: "/nonexistent".into(),
            format: ImageFormat::Squashfs,
            size: 0,
            built_at: None,
            recipe: None,
            build_secs: None,
            env: vec!["PATH=/opt/tool/bin:/usr/bin".into(), "LANG=C.UTF-8".into(), "=x".into()],
        };
        let mut job = Job::new(image, vec!["tool".into()]);
        job.env.insert("LANG".into(), "en_GB.UTF-8".into());
        job.env.insert("FOO".into(), "bar".into());
        assert_eq!(
            job.container_env(),
            ["FOO=bar", "HOME=/tmp", "LANG=en_GB.UTF-8", "PATH=/opt/tool/bin:/usr/bin"]
        );

        // An imported image's environment, as images/tests/oci_import.rs builds it.
        job.image.env = vec!["PATH=/usr/bin:/bin".into(), "GREETING=hi".into()];
        job.env.clear();
        assert_eq!(job.container_env(), ["GREETING=hi", "HOME=/tmp", "PATH=/usr/bin:/bin"]);
    }
}
