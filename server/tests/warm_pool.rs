//! The warm pool with real microVMs, through the executor's API: a job that fits a warm VM's
//! pre-made container has its program exec'd in it; one that does not (another scratch size)
//! gets a container created for it in the same VM, and says so. Needs scripts/setup.sh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use executor::pool::Backend;
use executor::warm::{WarmMicroVm, WarmPool, WarmStart};
use executor::{Job, JobLimits, Outcome};
use server::executor_config::ExecutorArgs;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    exec: ExecutorArgs,
}

async fn ready(pool: &Arc<WarmPool>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.stats().ready == 0 {
        assert!(Instant::now() < deadline, "no warm VM became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A VM configuration with its own work directory (kept while the test runs), and the busybox
/// image.
async fn busybox_setup() -> (tempfile::TempDir, executor::vm::VmConfig, images::ImageInfo) {
    let work = tempfile::tempdir().unwrap();
    let args = Args::parse_from(["test", "--work-dir", work.path().to_str().unwrap()]).exec;
    let (config, _) = args.probe(args.vm_config().unwrap()).await;
    let image = args.images().resolve("busybox").expect("the busybox image (scripts/setup.sh)");
    (work, config, image)
}

#[tokio::test]
async fn a_job_that_does_not_fit_the_premade_container_gets_one_created() {
    let (_work, config, image) = busybox_setup().await;
    let limits = JobLimits::default();
    let pool = WarmPool::new(
        config,
        limits,
        vec![(image.clone(), 1)],
        WarmStart::Boot,
        Default::default(),
    );
    pool.fill();
    let backend = WarmMicroVm { warm: pool.clone() };
    // The scratch tmpfs's size, as the job sees it.
    let script = "df -m /tmp | awk 'NR == 2 { print $2 }'";
    let job = |scratch_mib: u32| {
        let mut job = Job::new(image.clone(), vec!["sh".into(), "-c".into(), script.into()]);
        job.limits.scratch_mib = scratch_mib;
        job
    };
    for (scratch_mib, container) in [(limits.scratch_mib, "premade"), (64, "created")] {
        ready(&pool).await;
        let output = backend.run(&job(scratch_mib)).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert_eq!(output.outcome, Outcome::Exited(0), "{stdout} {:?}", output.notes);
        assert_eq!(output.ran_on.start, "warm");
        assert_eq!(output.ran_on.container, container, "scratch {scratch_mib} MiB");
        assert_eq!(stdout, scratch_mib.to_string(), "the job's own scratch size");
    }
}

/// A container's warm-up command runs in each clone before its job, with `/dev`, `/proc` and a
/// `/tmp` of its own (before `go` the kernel's random pool is not initialized: python's
/// start-up then reads `/dev/urandom`, and failed there until it had one). What it leaves in
/// its `/tmp` is not the job's, and one that fails (or leaves a process running) is counted and
/// the clone still serves.
#[tokio::test]
async fn the_warm_up_command_runs_in_each_clone_and_its_failure_is_reported() {
    let (_work, config, image) = busybox_setup().await;
    let needs = "head -c 16 /dev/urandom | wc -c | grep -qx 16 && grep -q '^Uid:' /proc/self/status \
                 && echo warm > /tmp/warm-up-was-here";
    let fails = "echo 'this warm-up is broken' >&2; exit 3";
    // A process left running is stopped with the warm-up's cgroup, and counts as a failure.
    let leaves = "sleep 1000 >/dev/null 2>&1 & exit 0";
    for (command, failures) in [(needs, 0), (fails, 1), (leaves, 1)] {
        let warm_up = [(image.id.clone(), vec!["sh".into(), "-c".into(), command.into()])];
        let pool = WarmPool::new(
            config.clone(),
            JobLimits::default(),
            vec![(image.clone(), 1)],
            WarmStart::Snapshot,
            warm_up.into_iter().collect(),
        );
        pool.fill();
        ready(&pool).await;
        assert_eq!(pool.stats().warm_up_failures, failures, "warm-up {command:?}");
        let backend = WarmMicroVm { warm: pool.clone() };
        let script = "ls -A /tmp; test ! -e /tmp/warm-up-was-here && echo clean";
        let job = Job::new(image.clone(), vec!["sh".into(), "-c".into(), script.into()]);
        let output = backend.run(&job).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert_eq!(output.outcome, Outcome::Exited(0), "{stdout} {:?}", output.notes);
        assert_eq!(output.ran_on.start, "snapshot");
        assert_eq!(stdout, "clean", "the job's /tmp holds nothing of the warm-up");
    }
}
