//! `pe image`: build, list, inspect, test and remove the catalog's container images.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use executor::pool::Pool;
use executor::{JobLimits, Outcome};
use images::build::{self, DebianSource};
use shared::cpio::EntryData;
use shared::error::chain;
use shared::meta::{ContainerMeta, OptionKind};

use crate::catalog::{self, Catalog};
use crate::cli::ImageCommand;
use crate::executor_config::ExecutorArgs;
use crate::jobs::{self, Request};

pub async fn run(
    exec: &ExecutorArgs,
    catalog: &Catalog,
    cmd: ImageCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Build { ids, all, force, jobs } => {
            let jobs = jobs.unwrap_or_else(default_build_jobs).max(1);
            build_images(exec, &select(catalog, ids, all)?, force, jobs)
        }
        ImageCommand::List => {
            list(exec, catalog);
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Info { id } => info(exec, catalog, &id),
        ImageCommand::Test { ids, all } => test(exec, &select(catalog, ids, all)?).await,
        ImageCommand::Push { id, nats } => crate::cluster::images::push(exec, &id, &nats).await,
        ImageCommand::Rm { id } => {
            if exec.images().remove(&id)? {
                println!("removed {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("no image {id:?} is built");
            }
        }
    }
}

fn select(catalog: &Catalog, ids: Vec<String>, all: bool) -> anyhow::Result<Vec<&ContainerMeta>> {
    if all {
        return Ok(catalog.iter().map(|e| &e.meta).collect());
    }
    if ids.is_empty() {
        bail!("name one or more containers, or --all");
    }
    ids.iter()
        .map(|id| {
            catalog.get(id).map(|e| &e.meta).with_context(|| {
                let known: Vec<&str> = catalog.iter().map(|e| e.meta.id.as_str()).collect();
                format!("no container {id:?} in the catalog (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// How many images build at once by default: two when the machine has two cores or more, else
/// one. A build mostly waits (downloads, dpkg's writes), so two builds share even two cores
/// well: on the 2-core development machine, busy with other work, two images took 169 s two at
/// a time against 301 s one after the other (container-meta/README.md).
pub fn default_build_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 2 { 2 } else { 1 }
}

fn build_images(
    exec: &ExecutorArgs,
    metas: &[&ContainerMeta],
    force: bool,
    jobs: usize,
) -> anyhow::Result<ExitCode> {
    let store = exec.images();
    let source = DebianSource::default();
    if jobs > 1 && metas.len() > 1 {
        eprintln!("building {} images, {jobs} at a time", metas.len());
    }
    let results = for_each_parallel(metas, jobs, |i, meta| {
        let recipe = catalog::recipe(meta);
        let prefix = format!("[{}/{}] {}", i + 1, metas.len(), meta.id);
        if !force
            && let Ok(existing) = store.resolve(&meta.id)
            && existing.recipe.as_deref() == Some(recipe.fingerprint().as_str())
        {
            eprintln!("{prefix}: up to date ({})", short(&existing.digest));
            return true;
        }
        eprintln!("{prefix}: building");
        let result = build::build(&store, &meta.id, &recipe, &source, &mut |step| {
            eprintln!("{prefix}: {step}")
        });
        if let Err(err) = &result {
            eprintln!("{prefix}: FAILED: {}", chain(err));
        }
        result.is_ok()
    });
    let failed: Vec<&str> =
        metas.iter().zip(results).filter(|(_, ok)| !ok).map(|(m, _)| m.id.as_str()).collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{} image(s) failed to build: {}", failed.len(), failed.join(", "));
    }
}

/// Calls `work(index, item)` for every item, at most `jobs` at a time, starting them in the
/// items' order; the results come back in that order.
fn for_each_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let result = work(i, item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was worked on"))
        .collect()
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

fn list(exec: &ExecutorArgs, catalog: &Catalog) {
    let store = exec.images();
    println!("{:<14} {:>9} {:<20} {:<21} {:>8}", "ID", "SIZE", "DIGEST", "BUILT", "BUILD");
    let mut ids: Vec<String> = catalog.iter().map(|e| e.meta.id.clone()).collect();
    ids.extend(store.list().into_iter().map(|i| i.id).filter(|id| catalog.get(id).is_none()));
    for id in ids {
        match store.resolve(&id) {
            Ok(image) => println!(
                "{:<14} {:>6} MiB {:<20} {:<21} {:>7}",
                id,
                image.size.div_ceil(1024 * 1024),
                short(&image.digest),
                image.built_at.as_deref().unwrap_or("-"),
                image.build_secs.map_or("-".to_owned(), |s| format!("{s:.0} s")),
            ),
            Err(_) => println!("{id:<14} {:>9} {:<20}", "-", "(not built)"),
        }
    }
}

fn info(exec: &ExecutorArgs, catalog: &Catalog, id: &str) -> anyhow::Result<ExitCode> {
    let meta = &select(catalog, vec![id.to_owned()], false)?[0];
    println!("{} {} — {}", meta.name, meta.version, meta.description);
    if let Some(home) = &meta.homepage {
        println!("homepage:   {home}");
    }
    println!("categories: {}", meta.categories.join(", "));
    match exec.images().resolve(id) {
        Ok(image) => {
            println!("image:      {} ({} MiB)", image.digest, image.size.div_ceil(1 << 20))
        }
        Err(_) => println!("image:      not built (pe image build {id})"),
    }
    println!(
        "inputs:     {}",
        meta.inputs.extensions.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(" ")
    );
    println!("command:    {}", shell_words(&meta.render(&meta.defaults(), &[])?.argv));
    println!("\noptions:");
    for option in &meta.options {
        let kind = match &option.kind {
            OptionKind::Select { choices, default } => format!(
                "one of {} (default {default})",
                choices.iter().map(|c| c.value.as_str()).collect::<Vec<_>>().join(", ")
            ),
            OptionKind::MultiSelect { choices, default } => format!(
                "any of {} (default [{}])",
                choices.iter().map(|c| c.value.as_str()).collect::<Vec<_>>().join(", "),
                default.join(", ")
            ),
            OptionKind::Bool { default, .. } => format!("true or false (default {default})"),
            OptionKind::Number { min, max, step, default, .. } => {
                format!("number {min}..={max} step {step} (default {default})")
            }
            OptionKind::Text { default, pattern, .. } => format!(
                "text{} (default {default:?})",
                pattern.as_ref().map(|p| format!(" matching {p}")).unwrap_or_default()
            ),
        };
        println!("  {:<14} {}: {kind}", option.id, option.label);
        if let Some(help) = &option.help {
            println!("  {:<14} {help}", "");
        }
    }
    println!("\nexamples:");
    for example in &meta.examples {
        let argv = meta.render(&example.options, &example.args)?.argv;
        println!("  {}: {}", example.name, shell_words(&argv));
    }
    Ok(ExitCode::SUCCESS)
}

/// A command line as a person would type it.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=./:+%,".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn test(exec: &ExecutorArgs, metas: &[&ContainerMeta]) -> anyhow::Result<ExitCode> {
    let chosen = exec.choose_backend().await.context("cannot create the work directory")?;
    eprintln!("running examples on {} ({})", chosen.name, chosen.reason);
    let pool = Pool::new(chosen.backend.clone(), 1, 0, Duration::from_secs(2));
    let store = exec.images();
    let mut failures = 0;
    for meta in metas {
        let image = match store.resolve(&meta.id) {
            Ok(image) => image,
            Err(err) => {
                println!("FAIL {}: {}", meta.id, chain(&err));
                failures += 1;
                continue;
            }
        };
        for example in &meta.examples {
            let request = Request::from_example(meta, example);
            let job = jobs::job_for(meta, image.clone(), request, JobLimits::default())?;
            let started = Instant::now();
            let output = pool.try_submit(&job).await?;
            let took = started.elapsed().as_millis();
            let problems = check(example, &output);
            if problems.is_empty() {
                println!(
                    "ok   {} / {} ({took} ms, program {} ms)",
                    meta.id, example.name, output.timings.run_ms
                );
            } else {
                failures += 1;
                println!(
                    "FAIL {} / {} ({took} ms): {}",
                    meta.id,
                    example.name,
                    problems.join("; ")
                );
                let stderr = String::from_utf8_lossy(&output.stderr);
                for line in stderr.lines().take(10) {
                    println!("     | {line}");
                }
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What an example's result gets wrong, if anything.
fn check(example: &shared::meta::Example, output: &executor::JobOutput) -> Vec<String> {
    let expect = &example.expect;
    let mut problems = Vec::new();
    let want = expect.exit_code.unwrap_or(0);
    match &output.outcome {
        Outcome::Exited(code) if *code == want => {}
        other => problems.push(format!("expected exit code {want}, got {other:?}")),
    }
    if output.truncated.any() {
        problems.push("output was truncated".into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(text) = &expect.stdout_contains
        && !stdout.contains(text.as_str())
    {
        problems.push(format!(
            "stdout lacks {text:?}: {:?}",
            stdout.chars().take(200).collect::<String>()
        ));
    }
    if let Some(text) = &expect.stderr_contains
        && !stderr.contains(text.as_str())
    {
        problems.push(format!("stderr lacks {text:?}"));
    }
    for file in &expect.files {
        let found = output
            .files
            .iter()
            .any(|e| e.path == *file && matches!(&e.data, EntryData::File(d) if !d.is_empty()));
        if !found {
            problems.push(format!("no output file {file}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs 10 slow items with `jobs` workers; answers the most that ran at once.
    fn most_at_once(jobs: usize) -> usize {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<usize> = (0..10).collect();
        let results = for_each_parallel(&items, jobs, |i, item| {
            assert_eq!(i, *item);
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            running.fetch_sub(1, Ordering::SeqCst);
            item * 10
        });
        assert_eq!(results, (0..10).map(|i| i * 10).collect::<Vec<_>>(), "results in order");
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn builds_run_at_most_jobs_at_a_time() {
        assert_eq!(most_at_once(1), 1);
        assert_eq!(most_at_once(2), 2);
        assert_eq!(most_at_once(3), 3);
    }

    #[test]
    fn no_items_and_zero_jobs_are_harmless() {
        let none: Vec<u8> = Vec::new();
        assert!(for_each_parallel(&none, 2, |_, _| 1).is_empty());
        assert_eq!(for_each_parallel(&[1, 2], 0, |_, x| x + 1), [2, 3]);
    }
}
