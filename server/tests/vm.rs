//! Real-VM tests: `pe run` through a real microVM (QEMU microvm, the project's kernel and guest
//! init, crun, the busybox image). They need `scripts/setup.sh` to have run; they fail, never
//! skip, when its products are missing.
//!
//! Each test uses its own work directory and checks afterwards that no job directory and no
//! QEMU process using it is left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Run {
    out: Output,
    took: Duration,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout(), self.stderr()))
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("PE_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/program-explorer"),
        PathBuf::from,
    )
}

fn assert_ready() {
    let cache = cache_dir();
    for part in ["vmlinux", "initramfs.cpio", "images/refs/busybox.json"] {
        assert!(
            cache.join(part).exists(),
            "{} is missing: run scripts/setup.sh first (the README's test command does)",
            cache.join(part).display()
        );
    }
}

/// Runs `pe run ARGS` with a private work directory, then checks nothing was left behind.
fn pe_run(args: &[&str], cwd: &Path) -> Run {
    assert_ready();
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pe"))
        .arg("run")
        .args(args)
        .current_dir(cwd)
        .env("PE_WORK_DIR", work.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let left: Vec<_> = fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind in the work dir: {left:?}");
    assert!(!qemu_running_in(work.path()), "a QEMU process outlived its job");
    Run { out, took }
}

/// Whether any process's command line mentions `dir`.
fn qemu_running_in(dir: &Path) -> bool {
    let needle = dir.to_string_lossy().into_owned();
    fs::read_dir("/proc").unwrap().filter_map(Result::ok).any(|p| {
        fs::read(p.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&needle))
            .unwrap_or(false)
    })
}

#[test]
fn echo_runs_in_a_microvm() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pe_run(&["busybox", "--", "echo", "hello"], tmp.path());
    assert_eq!((run.code(), run.stdout().as_str()), (0, "hello\n"), "{}", run.stderr());
    let summary = run.stderr();
    assert!(summary.contains("exited 0"), "{summary}");
    assert!(summary.contains("microvm on tcg") || summary.contains("microvm on kvm"), "{summary}");
    assert!(summary.contains("sha256:"), "{summary}");
}

#[test]
fn exit_status_and_failures_to_start_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pe_run(&["busybox", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], tmp.path());
    assert_eq!(run.code(), 3);
    assert_eq!(run.stdout(), "out\n");
    assert!(run.stderr().starts_with("err\n"), "{}", run.stderr());

    let run = pe_run(&["--json", "busybox", "--", "no-such-program"], tmp.path());
    assert_eq!(run.code(), 125);
    let json = run.json();
    assert_eq!(json["status"], "failed_to_start");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("no-such-program"), "{message}");
}

#[test]
fn input_files_arrive_and_output_files_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("in.txt"), "data from the host\n").unwrap();
    let script = "set -e; cat /input/data.txt; id -u; \
                  tr a-z A-Z < /input/data.txt > /output/upper.txt; \
                  mkdir -p /output/sub; echo nested > /output/sub/n.txt";
    let run = pe_run(
        &["--file", "in.txt=data.txt", "--out", "out", "busybox", "--", "sh", "-c", script],
        tmp.path(),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.stdout(), "data from the host\n1000\n", "runs as the unprivileged job user");
    let out = tmp.path().join("out");
    assert_eq!(fs::read_to_string(out.join("upper.txt")).unwrap(), "DATA FROM THE HOST\n");
    assert_eq!(fs::read_to_string(out.join("sub/n.txt")).unwrap(), "nested\n");
}

#[test]
fn stdin_and_environment_reach_the_program() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("stdin.txt"), "line one\nline two\n").unwrap();
    let run = pe_run(
        &[
            "--stdin",
            "stdin.txt",
            "--env",
            "GREETING=hi",
            "busybox",
            "--",
            "sh",
            "-c",
            "wc -l; echo $GREETING; pwd",
        ],
        tmp.path(),
    );
    assert_eq!(run.stdout(), "2\nhi\n/input\n", "{}", run.stderr());
}

#[test]
fn a_loop_ends_as_timeout_within_the_limit_plus_two_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    // The default limit (10 s).
    let run = pe_run(
        &["--json", "busybox", "--", "sh", "-c", "echo started; while :; do :; done"],
        tmp.path(),
    );
    let json = run.json();
    assert_eq!(json["status"], "timeout", "{json}");
    assert_eq!(run.code(), 124);
    assert_eq!(json["stdout"], "started\n", "output before the kill is kept");
    let run_ms = json["timings_ms"]["run"].as_u64().unwrap();
    assert!((10_000..12_000).contains(&run_ms), "program time {run_ms} ms");
    assert!(run.took < Duration::from_secs(10 + 2) + boot_allowance(&json), "took {:?}", run.took);
}

/// The VM's own start-up, which is not part of the program's limit.
fn boot_allowance(json: &serde_json::Value) -> Duration {
    Duration::from_millis(json["timings_ms"]["boot"].as_u64().unwrap())
}

#[test]
fn a_fork_bomb_is_capped_by_the_pids_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let run =
        pe_run(&["--json", "--timeout", "6", "busybox", "--", "sh", "-c", FORK_BOMB], tmp.path());
    let json = run.json();
    let status = json["status"].as_str().unwrap();
    assert!(["exited", "signaled", "timeout"].contains(&status), "{json}");
    assert_the_pids_limit_stopped_the_bomb(json["stdout"].as_str().unwrap());
    // The host is unharmed: the next job runs normally.
    let next = pe_run(&["busybox", "--", "echo", "fine"], tmp.path());
    assert_eq!(next.stdout(), "fine\n");
}

/// A fork bomb, then (with shell builtins only: forks fail while it runs) the job cgroup's pids
/// limit, its peak and how often it refused a fork.
const FORK_BOMB: &str = "bomb() { bomb | bomb & }; bomb 2>/dev/null; sleep 2; \
    for f in pids.max pids.peak pids.events; do read -r v < /sys/fs/cgroup/$f && echo \"$f $v\"; done; \
    echo survived";

/// Checks what [`FORK_BOMB`] printed: the limit is the default, the process count never passed
/// it, and the limit is what refused forks.
fn assert_the_pids_limit_stopped_the_bomb(stdout: &str) {
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {stdout:?}"))
            .to_owned()
    };
    let max: u32 = value("pids.max").parse().unwrap();
    assert_eq!(max, shared::limits::DEFAULT_PIDS_MAX, "{stdout}");
    let peak: u32 = value("pids.peak").parse().unwrap();
    assert!(peak <= max && peak >= max / 2, "peak {peak} of {max}: the bomb did not reach the cap");
    let refused: u64 = value("pids.events").strip_prefix("max ").unwrap().parse().unwrap();
    assert!(refused > 0, "no fork was refused by the pids limit: {stdout}");
    assert!(stdout.contains("survived"), "{stdout}");
}

#[test]
fn a_memory_hog_ends_as_oom() {
    let tmp = tempfile::tempdir().unwrap();
    // busybox has nothing that allocates fast under emulation: build a static hog.
    fs::write(
        tmp.path().join("hog.c"),
        "#include <stdlib.h>\n#include <string.h>\n#include <stdio.h>\n\
         int main(void) { for (int i = 0; ; i++) { char *p = malloc(16 << 20); \
         if (!p) { puts(\"malloc failed\"); return 2; } memset(p, 1, 16 << 20); } }\n",
    )
    .unwrap();
    let gcc = Command::new("gcc")
        .args(["-static", "-O1", "-o", "hog", "hog.c"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(gcc.status.success(), "gcc: {}", String::from_utf8_lossy(&gcc.stderr));
    let run = pe_run(
        &["--json", "--memory", "256", "--file", "hog", "busybox", "--", "/input/hog"],
        tmp.path(),
    );
    let json = run.json();
    assert_eq!(json["status"], "oom", "{json}");
    assert_eq!(json["signal"], 9);
    assert_eq!(run.code(), 137);
}

#[test]
fn flooding_stdout_ends_as_output_limit_keeping_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pe_run(
        &["--json", "busybox", "--", "sh", "-c", "echo first; yes | head -c 100000000"],
        tmp.path(),
    );
    let json = run.json();
    assert_eq!(json["status"], "output_limit", "{json}");
    assert_eq!(json["truncated"]["stdout"], true);
    let stdout = json["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("first\ny\ny\n"));
    assert_eq!(stdout.len() as u64, shared::limits::DEFAULT_STDOUT_BYTES);
}

#[test]
fn there_is_no_network() {
    let tmp = tempfile::tempdir().unwrap();
    let script = "ls /sys/class/net; nc -w 1 192.0.2.1 80 </dev/null; \
                  nslookup example.com 2>&1 | tail -1; echo done";
    let run = pe_run(&["busybox", "--", "sh", "-c", script], tmp.path());
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert!(stdout.starts_with("lo\n"), "only loopback: {stdout}");
    assert!(stderr.contains("Network is unreachable"), "{stderr}");
    assert!(stdout.ends_with("done\n"), "{stdout}");
}

#[test]
fn the_container_cannot_make_a_user_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    // A user namespace would give the job every capability over namespaces of its own; the
    // container's seccomp filter refuses it (and keyrings, BPF, perf events: shared/src/oci.rs).
    let script = "unshare -U -r id 2>&1; echo \"unshare: $?\"; unshare -m true && echo mount-ns";
    let run = pe_run(&["busybox", "--", "sh", "-c", script], tmp.path());
    let stdout = run.stdout();
    assert!(stdout.contains("Operation not permitted"), "{stdout}");
    assert!(stdout.contains("unshare: 1"), "{stdout}");
    assert!(!stdout.contains("mount-ns"), "no capabilities for a mount namespace: {stdout}");
}

#[test]
fn only_output_tmp_and_input_are_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let script = "for f in /x /etc/x /usr/bin/x /bin/sh; do \
                    if echo x >> $f 2>/dev/null; then echo \"wrote $f\"; fi; done; \
                  echo x > /tmp/ok && echo x > /output/ok && echo x > /input/ok && echo writable";
    let run = pe_run(&["busybox", "--", "sh", "-c", script], tmp.path());
    assert_eq!(run.stdout(), "writable\n", "{}", run.stderr());
}

#[test]
fn image_test_runs_the_catalog_examples() {
    assert_ready();
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pe"))
        .args(["image", "test", "busybox"])
        .env("PE_WORK_DIR", work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok   busybox / Word count"), "{stdout}");
}

#[test]
fn an_invalid_option_is_refused_before_any_vm_starts() {
    let work = tempfile::tempdir().unwrap();
    let meta = tempfile::tempdir().unwrap();
    // A catalog whose example uses a bad value fails to load, naming the option.
    let gcc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../container-meta/gcc.toml"))
            .unwrap();
    fs::create_dir(meta.path().join("groups")).unwrap();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../container-meta/groups/c-family.toml"),
        meta.path().join("groups/c-family.toml"),
    )
    .unwrap();
    fs::write(
        meta.path().join("gcc.toml"),
        gcc.replace("optimization = \"-O2\"", "optimization = \"-O9\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pe"))
        .args(["image", "test", "gcc"])
        .env("PE_META_DIR", meta.path())
        .env("PE_WORK_DIR", work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("option \"optimization\": \"-O9\" is not one of"), "{stderr}");
    assert!(fs::read_dir(work.path()).unwrap().next().is_none(), "no VM was started");
}

#[test]
fn a_bad_option_on_the_command_line_is_refused_before_any_vm_starts() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pe"))
        .args(["run", "gcc", "--option", "optimization=-O9"])
        .env("PE_WORK_DIR", work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("option \"optimization\": \"-O9\" is not one of -O0"), "{stderr}");
    assert!(fs::read_dir(work.path()).unwrap().next().is_none(), "no VM was started");
}

#[test]
fn graphviz_returns_an_svg_output_file() {
    let tmp = tempfile::tempdir().unwrap();
    // The container's own command line and default files (graph.dot), rendered from its options.
    let run = pe_run(&["graphviz", "--out", "out"], tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let svg = fs::read_to_string(tmp.path().join("out/graph.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("browser"), "{svg}");
}

#[test]
fn python_errors_show_on_stderr_with_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pe_run(&["python", "--example", "An exception", "--json"], tmp.path());
    let json = run.json();
    assert_eq!(json["exit_code"], 1, "{json}");
    assert!(json["stderr"].as_str().unwrap().contains("ValueError: something went wrong"));
    assert_eq!(json["argv"], serde_json::json!(["python3", "main.py"]));
}

#[test]
fn a_full_disk_fails_the_job_clearly_and_leaves_nothing() {
    assert_ready();
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // A work directory on a 256 KiB tmpfs: the answer of a chatty job does not fit.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "pe-test-full", work.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root (the tests run as root)");
    let out = Command::new(env!("CARGO_BIN_EXE_pe"))
        .args(["run", "--json", "busybox", "--", "sh", "-c", "yes | head -c 900000"])
        .current_dir(tmp.path())
        .env("PE_WORK_DIR", work.path())
        .output()
        .unwrap();
    let left: Vec<_> = fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let _ = Command::new("umount").arg(work.path()).status();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(json["status"], "failed_to_start", "{json}");
    assert!(json["message"].as_str().unwrap_or("").contains("without a valid answer"), "{json}");
    assert!(left.is_empty(), "left behind: {left:?}");
    // The next job, with room, runs normally.
    let run = pe_run(&["busybox", "--", "echo", "recovered"], tmp.path());
    assert_eq!(run.stdout(), "recovered\n");
}

#[test]
fn output_files_over_their_limits_are_cut_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // 1000 tiny files, a 40 MB file, and a directory nested deeper than archives allow.
    let script = "for i in $(seq 1000); do : > /output/f$i; done; \
                  head -c 40000000 /dev/zero > /output/big; \
                  d=/output/deep; for i in $(seq 40); do d=$d/d; done; mkdir -p $d; echo done";
    let run = pe_run(&["--json", "busybox", "--", "sh", "-c", script], tmp.path());
    let json = run.json();
    assert_eq!(json["stdout"], "done\n", "{json}");
    assert_eq!(json["status"], "output_limit", "{json}");
    assert_eq!(json["truncated"]["files"], true);
    let files = json["files"].as_array().unwrap();
    assert!(files.len() <= shared::limits::DEFAULT_OUTPUT_ENTRIES, "{} files", files.len());
    let bytes: u64 = files.iter().map(|f| f["size"].as_u64().unwrap()).sum();
    assert!(bytes <= shared::limits::DEFAULT_OUTPUT_BYTES);
    assert!(json["message"].as_str().unwrap().contains("output files reached their limit"));
}

#[test]
fn filling_tmp_fails_inside_the_job_only() {
    let tmp = tempfile::tempdir().unwrap();
    let script = "dd if=/dev/zero of=/tmp/fill bs=1M 2>&1 | grep -o 'No space left on device' | head -1; \
                  echo x > /output/still-here 2>&1 || echo 'output full too'; echo after";
    let run = pe_run(&["busybox", "--", "sh", "-c", script], tmp.path());
    let stdout = run.stdout();
    assert!(stdout.contains("No space left on device"), "{stdout}");
    assert!(stdout.ends_with("after\n"), "the job goes on after the failed write: {stdout}");
    let next = pe_run(&["busybox", "--", "echo", "fine"], tmp.path());
    assert_eq!(next.stdout(), "fine\n", "the next job is unaffected");
}

#[test]
fn odd_programs_end_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // Closing stdout early.
    let run = pe_run(
        &["--json", "busybox", "--", "sh", "-c", "exec 1>&-; echo on-stderr >&2; exit 4"],
        tmp.path(),
    );
    let json = run.json();
    assert_eq!(
        (json["status"].as_str(), json["exit_code"].as_i64()),
        (Some("exited"), Some(4)),
        "{json}"
    );
    assert_eq!(json["stderr"], "on-stderr\n");
    // Signals to PID 1 of the container: ignored from inside (it is the namespace's init).
    let run = pe_run(
        &["busybox", "--", "sh", "-c", "kill -KILL 1; kill -TERM 1; echo survived"],
        tmp.path(),
    );
    assert_eq!(run.stdout(), "survived\n", "{}", run.stderr());
    // Children that sleep past the limit after the main program stopped waiting for them.
    let run = pe_run(
        &[
            "--json",
            "--timeout",
            "2",
            "busybox",
            "--",
            "sh",
            "-c",
            "(sleep 100; echo late) & (sleep 100 &) ; sleep 100",
        ],
        tmp.path(),
    );
    let json = run.json();
    assert_eq!(json["status"], "timeout", "{json}");
    assert!(
        run.took < Duration::from_secs(2) + boot_allowance(&json) + Duration::from_secs(3),
        "took {:?}",
        run.took
    );
}

#[test]
fn a_job_sees_nothing_of_the_host_or_other_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = format!("host-secret-{}", std::process::id());
    fs::write(tmp.path().join("secret.txt"), &marker).unwrap();
    // The VM has no shared filesystem: search everything readable for the host file's content.
    let script = format!(
        "ls /; cat /proc/mounts | cut -d' ' -f3 | sort -u | tr '\\n' ' '; echo; \
         grep -rs {marker} / --exclude-dir=proc --exclude-dir=sys | head -1; echo searched"
    );
    let run = pe_run(&["busybox", "--", "sh", "-c", &script], tmp.path());
    let stdout = run.stdout();
    assert!(stdout.ends_with("searched\n"), "{stdout}");
    assert!(
        !stdout.contains(&format!("{marker}\n")) && !stdout.contains(&format!(":{marker}")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("9p") && !stdout.contains("virtiofs") && !stdout.contains("nfs"),
        "{stdout}"
    );
}

/// `pe run -i`: the program's output comes as it is written, the terminal's stdin is fed to it
/// line by line, end of file closes it; Ctrl-C ends the VM and exits 130.
#[test]
fn pe_run_interactive_streams_feeds_stdin_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    assert_ready();
    let work = tempfile::tempdir().unwrap();
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pe"))
            .args(["run", "-i"])
            .args(args)
            .env("PE_WORK_DIR", work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let script = "echo ready; while read -r n; do echo \"got $n\"; done; echo bye";
    let mut child = spawn(&["busybox", "--", "sh", "-c", script]);
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = || lines.next().unwrap().unwrap();
    // Nothing was typed yet: "ready" comes while the program waits for input.
    assert_eq!(line(), "ready");
    writeln!(stdin, "one").unwrap();
    assert_eq!(line(), "got one");
    writeln!(stdin, "two").unwrap();
    assert_eq!(line(), "got two");
    drop(stdin);
    assert_eq!(line(), "bye");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    // Ctrl-C (SIGINT to pe) while the program sleeps: exit 130, no VM left.
    let mut child = spawn(&["busybox", "--", "sh", "-c", "echo ready; sleep 60"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let interrupted = Instant::now();
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(interrupted.elapsed() < Duration::from_secs(5), "{:?}", interrupted.elapsed());
    let deadline = Instant::now() + Duration::from_secs(5);
    while qemu_running_in(work.path()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!qemu_running_in(work.path()), "a QEMU process outlived pe run -i");
    let left: Vec<_> = fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind in the work dir: {left:?}");
}
