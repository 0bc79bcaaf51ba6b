//! From a request (container, option values, args, env, files, stdin) to an executor job: the
//! options are checked and rendered by `shared::meta`, the only place that does so.

use std::collections::BTreeMap;
use std::time::Duration;

use executor::{Job, JobLimits};
use images::ImageInfo;
use serde_json::Value;
use shared::cpio::Entry;
use shared::limits::MAX_TIMEOUT_MS;
use shared::meta::{ContainerMeta, Example, OptionError, Rendered};

/// What a person asked to run.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub options: BTreeMap<String, Value>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub files: Vec<Entry>,
    pub stdin: Vec<u8>,
}

impl Request {
    /// An example of the container, with the default files when the example has none.
    pub fn from_example(meta: &ContainerMeta, example: &Example) -> Request {
        let files = if example.files.is_empty() { &meta.files } else { &example.files };
        Request {
            options: example.options.clone(),
            args: example.args.clone(),
            env: BTreeMap::new(),
            files: files.iter().map(|f| Entry::file(f.path.clone(), f.content.clone())).collect(),
            stdin: example
                .stdin
                .as_deref()
                .or(meta.stdin.as_deref())
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
        }
    }
}

/// Checks the options and builds the job. `limits` are the server's; the container may ask
/// for a different time limit, never above the maximum.
pub fn job_for(
    meta: &ContainerMeta,
    image: ImageInfo,
    request: Request,
    limits: JobLimits,
) -> Result<Job, OptionError> {
    let rendered = meta.render(&request.options, &request.args)?;
    Ok(job_rendered(meta, image, rendered, request, limits))
}

/// The limits a job of `meta` runs under: the server's, with the container's own time limit
/// where it has one (never above the maximum).
pub fn limits_for(meta: &ContainerMeta, mut limits: JobLimits) -> JobLimits {
    if let Some(secs) = meta.run.timeout_secs {
        limits.timeout = Duration::from_millis((u64::from(secs) * 1000).min(MAX_TIMEOUT_MS));
    }
    limits
}

/// The job, from options already rendered (`request.options` and `request.args` are not
/// looked at again).
pub fn job_rendered(
    meta: &ContainerMeta,
    image: ImageInfo,
    rendered: Rendered,
    request: Request,
    limits: JobLimits,
) -> Job {
    let limits = limits_for(meta, limits);
    let mut env = rendered.env;
    env.extend(request.env);
    Job {
        image,
        argv: rendered.argv,
        env,
        cwd: meta.run.cwd.clone(),
        files: request.files,
        stdin: request.stdin,
        limits,
    }
}
