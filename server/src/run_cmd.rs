//! `pe run`: one job through the same executor the server uses, from the command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use executor::pool::Pool;
use executor::{Job, JobLimits, Outcome};
use shared::cpio::Entry;

use crate::catalog::Catalog;
use crate::cli::RunArgs;
use crate::convert;
use crate::executor_config::ExecutorArgs;
use crate::jobs::{self, Request};

pub async fn run(
    exec: &ExecutorArgs,
    catalog: &Catalog,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    if !(args.timeout > 0.0 && args.timeout <= shared::limits::MAX_TIMEOUT_MS as f64 / 1000.0) {
        bail!("--timeout must be between 0 and {} seconds", shared::limits::MAX_TIMEOUT_MS / 1000);
    }
    let limits = JobLimits {
        timeout: Duration::from_secs_f64(args.timeout),
        memory_mib: args.memory,
        ..JobLimits::default()
    };
    let entry = catalog.get(&args.image).filter(|_| args.argv.is_empty() || args.args);
    let job = match entry {
        // A catalog container's own command line: options are checked before anything starts.
        Some(entry) => {
            let meta = &entry.meta;
            let mut request = match &args.example {
                Some(name) => {
                    let example =
                        meta.examples.iter().find(|e| &e.name == name).with_context(|| {
                            let names: Vec<&str> =
                                meta.examples.iter().map(|e| e.name.as_str()).collect();
                            format!(
                                "{} has no example {name:?} (it has: {})",
                                meta.id,
                                names.join(", ")
                            )
                        })?;
                    Request::from_example(meta, example)
                }
                None => Request {
                    files: meta
                        .files
                        .iter()
                        .map(|f| Entry::file(f.path.clone(), f.content.clone()))
                        .collect(),
                    stdin: meta.stdin.clone().unwrap_or_default().into_bytes(),
                    ..Request::default()
                },
            };
            request.options.extend(parse_options(&args.options)?);
            request.args = args.argv.clone();
            request.env = parse_env(&args.env)?;
            if !args.files.is_empty() {
                request.files = read_files(&args.files)?;
            }
            if let Some(path) = &args.stdin {
                request.stdin = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
            } else if args.interactive {
                // The terminal is the program's stdin, not the metadata's default text.
                request.stdin.clear();
            }
            // Validate and render before looking for the image: a bad option never starts a VM.
            meta.render(&request.options, &request.args)?;
            let image = exec.images().resolve(&args.image)?;
            jobs::job_for(meta, image, request, limits)?
        }
        None => {
            if args.argv.is_empty() {
                bail!(
                    "{:?} is not a container of the catalog: give the command to run after --",
                    args.image
                );
            }
            if !args.options.is_empty() || args.example.is_some() {
                bail!("--option and --example need a container of the catalog");
            }
            let image = exec.images().resolve(&args.image)?;
            let mut job = Job::new(image, args.argv.clone());
            job.cwd = args.cwd.clone();
            job.env = parse_env(&args.env)?;
            job.files = read_files(&args.files)?;
            if let Some(path) = &args.stdin {
                job.stdin = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
            }
            job.limits = limits;
            job
        }
    };

    let chosen = exec.choose_backend().await.context("cannot create the work directory")?;
    let pool = Pool::new(chosen.backend.clone(), 1, 0, Duration::from_secs(2));
    let output = if args.interactive {
        match run_interactive(&pool, &job).await? {
            Some(output) => output,
            None => {
                eprintln!("pe: stopped (Ctrl-C): the VM was ended");
                return Ok(ExitCode::from(130));
            }
        }
    } else {
        pool.try_submit(&job).await?
    };

    if let Some(dir) = &args.out {
        write_outputs(dir, &output.files)?;
    }
    let timeout_ms = job.limits.timeout.as_millis() as u64;
    let outcome = output.outcome.clone();
    let output_files = output.files.len();
    let mut answer = convert::RunAnswer::from_job(output, &job.argv, &job.image, timeout_ms);
    if let Some(entry) = entry {
        answer.annotate(&entry.meta, &job.files);
    }
    let result = &answer.result;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer.to_json())?);
    } else {
        if !args.interactive {
            std::io::stdout().write_all(&answer.stdout)?;
            std::io::stdout().flush()?;
            std::io::stderr().write_all(&answer.stderr)?;
        }
        let t = &result.timings_ms;
        eprintln!(
            "pe: {status}{code} | {id} {digest} | {backend} on {accel}, {start} | boot {boot} ms, run {run} ms, total {total} ms",
            status = serde_json::to_value(result.status)?.as_str().unwrap_or("?"),
            code = result.exit_code.map(|c| format!(" {c}")).unwrap_or_default(),
            id = job.image.id,
            digest = &job.image.digest[..job.image.digest.len().min(19)],
            backend = result.backend.kind,
            accel = result.backend.accel.as_deref().unwrap_or("the host"),
            start = result.backend.start.as_deref().unwrap_or("cold"),
            boot = t.boot,
            run = t.run,
            total = t.total,
        );
        if let Some(message) = &result.message {
            eprintln!("pe: {message}");
        }
        if output_files > 0 && args.out.is_none() {
            let names: Vec<&str> = answer.files.iter().map(|f| f.path.as_str()).collect();
            eprintln!("pe: output files (use --out DIR to keep them): {}", names.join(", "));
        }
    }
    Ok(ExitCode::from(exit_code(&outcome)))
}

/// Runs `job` live: its output goes to this process's stdout and stderr as it comes, and this
/// process's stdin is fed to it (end of file closes it). `None` when Ctrl-C stopped it (the
/// job's future is dropped, which ends the VM).
async fn run_interactive(pool: &Pool, job: &Job) -> anyhow::Result<Option<executor::JobOutput>> {
    use executor::live::{LiveEvent, LiveInput, LiveIo, Stream};
    let (events, mut event_rx) = tokio::sync::mpsc::channel(16);
    let (input, input_rx) = tokio::sync::mpsc::channel(64);
    // A thread, not a task: a read of the terminal cannot be cancelled, and the process exits
    // without waiting for it.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            let message = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => LiveInput::StdinClose,
                Ok(n) => LiveInput::Stdin(buf[..n].to_vec()),
            };
            let last = message == LiveInput::StdinClose;
            if input.blocking_send(message).is_err() || last {
                return;
            }
        }
    });
    let live = LiveIo { events, input: input_rx, stdin_open: true, queue_ms: 0 };
    let run = pool.try_submit_live(job, live);
    tokio::pin!(run);
    let mut written = [0usize; 2];
    let mut events_open = true;
    let output = loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => return Ok(None),
            event = event_rx.recv(), if events_open => match event {
                Some(LiveEvent::Output { stream, data }) => {
                    written[stream as usize] += data.len();
                    write_stream(stream, &data)?;
                }
                Some(LiveEvent::Started { .. }) => {}
                None => events_open = false,
            },
            output = &mut run => break output?,
        }
    };
    while let Ok(event) = event_rx.try_recv() {
        if let LiveEvent::Output { stream, data } = event {
            written[stream as usize] += data.len();
            write_stream(stream, &data)?;
        }
    }
    // What the stream did not carry, from the answer.
    for (stream, all) in [(Stream::Stdout, &output.stdout), (Stream::Stderr, &output.stderr)] {
        if let Some(rest) = all.get(written[stream as usize]..) {
            write_stream(stream, rest)?;
        }
    }
    Ok(Some(output))
}

fn write_stream(stream: executor::live::Stream, data: &[u8]) -> std::io::Result<()> {
    match stream {
        executor::live::Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(data)?;
            out.flush()
        }
        executor::live::Stream::Stderr => std::io::stderr().write_all(data),
    }
}

fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Exited(code) => (*code & 0xff) as u8,
        Outcome::Signaled(sig) => 128u8.saturating_add(*sig as u8),
        Outcome::Timeout => 124,
        Outcome::Oom(_) => 137,
        Outcome::FailedToStart(_) => 125,
    }
}

fn parse_options(pairs: &[String]) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(v));
                Ok((k.to_owned(), value))
            }
            _ => bail!("--option {pair:?} is not ID=VALUE"),
        })
        .collect()
}

fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--env {pair:?} is not KEY=VALUE"),
        })
        .collect()
}

fn read_files(specs: &[String]) -> anyhow::Result<Vec<Entry>> {
    specs
        .iter()
        .map(|spec| {
            let (path, name) = match spec.split_once('=') {
                Some((path, name)) => (PathBuf::from(path), name.to_owned()),
                None => {
                    let path = PathBuf::from(spec);
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .with_context(|| format!("--file {spec}: no usable file name"))?
                        .to_owned();
                    (path, name)
                }
            };
            let data =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
            Ok(Entry { mode: mode & 0o777, ..Entry::file(name, data) })
        })
        .collect()
}

/// Unpacks output entries under `dir` with the same safe unpacker as `pe archive unpack`.
fn write_outputs(dir: &Path, files: &[Entry]) -> anyhow::Result<()> {
    let mut encoder = shared::cpio::Encoder::new(Vec::new(), shared::cpio::Limits::MAX);
    for entry in files {
        encoder.append(entry)?;
    }
    let archive = encoder.finish()?;
    crate::archive::unpack(&archive[..], dir)?;
    Ok(())
}
