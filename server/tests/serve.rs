//! `pe serve` end to end with real microVMs: a JSON run, the cache, a burst of 50 concurrent
//! runs against one slot, and a clean shutdown. Needs scripts/setup.sh (the busybox image).
//! (Over 600 lines: the end-to-end scenarios share one harness and one test binary.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::real::{http, qemu_pids_in, run_json, start_server, wait_for_warm};

/// A field of `/proc/PID/status` in KiB (`VmHWM` peak, `VmRSS` now). Panics when it cannot be
/// read: a test must not pass on a 0 it never measured.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

#[test]
fn a_real_run_then_a_cache_hit() {
    let server = start_server(&[]);
    let body =
        r#"{"container":"busybox","files":[{"path":"main.sh","content":"echo real $((6*7))"}]}"#;
    let (status, _, first) = run_json(server.port, body);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "exited");
    assert_eq!(first["stdout"], "real 42\n");
    assert_eq!(first["backend"]["kind"], "microvm");
    assert_eq!(first["cached"], false);
    let (_, _, second) = run_json(server.port, body);
    assert_eq!(second["cached"], true);
    assert_eq!(second["stdout"], "real 42\n");
}

#[test]
fn a_burst_of_50_gets_only_200_429_or_503_and_memory_stays_bounded() {
    let server = start_server(&[("PE_SLOTS", "1"), ("PE_QUEUE", "4"), ("PE_RATE_BURST", "30")]);
    let before = rss_kib(server.child.id());
    let port = server.port;
    let started = Instant::now();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"container":"busybox","stdin":"{i}","files":[{{"path":"main.sh","content":"cat"}}]}}"#
                );
                let t = Instant::now();
                let (status, headers, json) = run_json(port, &body);
                (i, status, headers, json, t.elapsed())
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for handle in handles {
        let (i, status, headers, json, took) = handle.join().unwrap();
        slowest = slowest.max(took);
        *counts.entry(status).or_insert(0) += 1;
        match status {
            200 => {
                assert_eq!(json["stdout"], i.to_string(), "request {i} got someone else's answer")
            }
            429 => {
                assert!(headers.contains("retry-after:"), "{headers}");
                assert!(
                    headers.contains("ratelimit-limit:")
                        && headers.contains("ratelimit-remaining: 0")
                );
                assert_eq!(json["error"]["code"], "rate_limited");
            }
            503 => {
                assert!(headers.contains("retry-after:"), "{headers}");
                assert_eq!(json["error"]["code"], "busy");
            }
            other => panic!("request {i}: unexpected status {other}: {json}"),
        }
    }
    let after = rss_kib(server.child.id());
    eprintln!(
        "burst of 50 on 1 slot, queue 4, rate burst 30: {counts:?} in {:?}, slowest {slowest:?}, \
         server peak RSS {before} KiB before, {after} KiB after",
        started.elapsed()
    );
    assert!(counts.get(&200).copied().unwrap_or(0) >= 1, "{counts:?}");
    assert!(counts.get(&429).copied().unwrap_or(0) >= 15, "{counts:?}");
    assert!(counts.get(&503).copied().unwrap_or(0) >= 1, "{counts:?}");
    assert!(after < 200 * 1024, "server peak RSS {after} KiB");
}

#[test]
fn sigterm_stops_the_server_cleanly_and_leaves_no_vm() {
    let mut server = start_server(&[]);
    let port = server.port;
    // A job in flight when the signal comes.
    let job = std::thread::spawn(move || {
        run_json(
            port,
            r#"{"container":"busybox","files":[{"path":"main.sh","content":"sleep 1; echo done"}]}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "pe serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let (code, _, json) = job.join().unwrap();
    assert_eq!(code, 200, "the running job was finished: {json}");
    assert_eq!(json["stdout"], "done\n");
    let left: Vec<_> = std::fs::read_dir(server.work.path()).unwrap().collect();
    assert!(left.is_empty(), "job directories left: {left:?}");
}

/// Three jobs in turn on warm VMs made one way (`boot` or `snapshot`): each must get a VM of
/// its own that nothing earlier touched.
fn warm_vms_run_one_job_each(start: &str, kind: &str) {
    let watcher = QemuUids::watch();
    let server = start_server(&[("PE_WARM", "busybox=1"), ("PE_WARM_START", start)]);
    let body = |i: u32| {
        format!(
            r#"{{"container":"busybox","stdin":"{i}","files":[{{"path":"main.sh","content":"cat /tmp/left-behind 2>/dev/null || echo clean; echo secret > /tmp/left-behind; echo secret > /output/x"}}]}}"#
        )
    };
    for i in 0..3 {
        wait_for_warm(server.port);
        let (status, _, json) = run_json(server.port, &body(i));
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["backend"]["start"], kind, "{json}");
        assert_eq!(json["stdout"], "clean\n", "job {i} saw what an earlier job left");
        let boot = json["timings_ms"]["boot"].as_u64().unwrap();
        let run = json["timings_ms"]["run"].as_u64().unwrap();
        eprintln!("{kind} job {i}: boot {boot} ms, run {run} ms");
    }
    // Metrics show the warm pool.
    let (_, _, metrics) = http(server.port, "GET", "/metrics", "", "").unwrap();
    assert!(metrics.contains("pe_warm_vms_ready"), "{metrics}");
    let templates = if kind == "snapshot" { 1 } else { 0 };
    assert!(metrics.contains(&format!("pe_snapshot_templates {templates}\n")), "{metrics}");
    assert!(metrics.contains(&format!("pe_vm_starts_total{{start=\"{kind}\"}} 3\n")), "{metrics}");
    // Every QEMU ran unprivileged once started, the snapshot template included. The last job's
    // replacement is waited for: one seen just launched, before QEMU switches user, would
    // count as root.
    wait_for_warm(server.port);
    let seen = watcher.stop();
    let dir = server.work.path().to_string_lossy().into_owned();
    let ours: Vec<_> = seen.iter().filter(|q| q.cmdline.contains(&dir)).collect();
    assert!(ours.iter().any(|q| q.cmdline.contains("/warm-") || q.cmdline.contains("/clone-")));
    if kind == "snapshot" {
        assert!(ours.iter().any(|q| q.cmdline.contains("/template-")), "no template seen");
    }
    for q in ours {
        assert_ne!(q.last_uid, 0, "QEMU {} still ran as root: {}", q.pid, q.cmdline);
    }
}

/// A QEMU process seen while watching, with the uid it had when last seen.
#[derive(Debug, Clone)]
struct SeenQemu {
    pid: u32,
    cmdline: String,
    last_uid: u32,
}

/// Polls /proc for QEMU processes until stopped.
struct QemuUids {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<SeenQemu>>,
}

impl QemuUids {
    fn watch() -> QemuUids {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: std::collections::HashMap<u32, SeenQemu> = Default::default();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
                    let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
                    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    if !cmdline.contains("qemu-system") {
                        continue;
                    }
                    // QEMU switches user after start-up: only a uid seen once the process has run
                    // a while counts, so each observation replaces the last.
                    let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
                        continue;
                    };
                    let uid = status
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok()
                        })
                        .unwrap_or(0);
                    let started = status.contains("State:\tS") || status.contains("State:\tR");
                    if started {
                        seen.insert(pid, SeenQemu { pid, cmdline, last_uid: uid });
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen.into_values().collect()
        });
        QemuUids { stop, thread }
    }

    fn stop(self) -> Vec<SeenQemu> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn pre_booted_vms_run_one_job_each_and_share_nothing() {
    warm_vms_run_one_job_each("boot", "warm");
}

#[test]
fn snapshot_clones_run_one_job_each_and_share_nothing() {
    warm_vms_run_one_job_each("snapshot", "snapshot");
}

#[test]
fn snapshot_clones_get_their_own_randomness_and_the_current_time() {
    let server = start_server(&[("PE_WARM", "busybox=1"), ("PE_WARM_START", "snapshot")]);
    // Kernel randomness two ways (a UUID, raw bytes) and the wall clock: every clone wakes up
    // with the template's, unless `go` replaced them.
    let script =
        "cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1; date +%s";
    let mut seen = Vec::new();
    wait_for_warm(server.port);
    // A clone's clock, left alone, would lag by the template's age when the clone was restored.
    // The first job's replacement is restored at least this long after the template was saved.
    std::thread::sleep(Duration::from_secs(6));
    for i in 0..2 {
        wait_for_warm(server.port);
        let body = serde_json::json!({"container": "busybox", "stdin": i.to_string(),
            "files": [{"path": "main.sh", "content": script}]});
        let (status, _, json) = run_json(server.port, &body.to_string());
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["backend"]["start"], "snapshot", "{json}");
        let stdout = json["stdout"].as_str().unwrap().to_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        let guest_time: i64 = lines[2].trim().parse().unwrap();
        let host_time =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
                as i64;
        assert!(
            (host_time - guest_time).abs() <= 3,
            "the clone's clock says {guest_time}, the host's {host_time}"
        );
        seen.push((lines[0].to_owned(), lines[1].to_owned()));
    }
    assert_ne!(seen[0].0, seen[1].0, "two clones produced the same UUID");
    assert_ne!(seen[0].1, seen[1].1, "two clones read the same random bytes");
}

/// A snapshot clone's pre-made container: the job's program is the container's process 1 (the
/// waiter exec'd it), holds no descriptor but its stdio, sees only its own environment and
/// processes, and nothing a job does (files, processes, limits it could touch) reaches the
/// next job's clone.
#[test]
fn a_premade_container_shows_nothing_of_its_waiter_and_keeps_nothing_between_jobs() {
    let server = start_server(&[("PE_WARM", "busybox=1"), ("PE_WARM_START", "snapshot")]);
    let script = r#"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "fds=$(ls /proc/self/fd | tr '\n' ' ')"
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
echo "env=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
echo "left=$(cat /tmp/left 2>/dev/null || echo none)"
echo "sleepers=$(ps -o comm | grep -c '^sleep' || true)"
echo "memory.max=$(cat /sys/fs/cgroup/memory.max)"
echo mark > /tmp/left
sleep 1000 &
"#;
    let mut outputs = Vec::new();
    for i in 0..2 {
        wait_for_warm(server.port);
        let body = serde_json::json!({"container": "busybox", "stdin": i.to_string(),
            "env": {"JOB_ONLY": "1"}, "files": [{"path": "main.sh", "content": script}]});
        let (status, _, json) = run_json(server.port, &body.to_string());
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["backend"]["start"], "snapshot", "{json}");
        assert_eq!(json["backend"]["container"], "premade", "{json}");
        let exec = json["timings_ms"]["exec"].as_u64().unwrap();
        assert!(exec > 0 && exec <= json["timings_ms"]["run"].as_u64().unwrap(), "{json}");
        outputs.push(json["stdout"].as_str().unwrap().to_owned());
    }
    for stdout in &outputs {
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .trim()
                .to_owned()
        };
        assert!(field("pid1").starts_with("sh main.sh"), "{stdout}");
        assert_eq!(field("fds"), "0 1 2 3", "only stdio (and ls's own directory): {stdout}");
        // sh, the command substitution's subshell, and ls.
        assert!(field("procs").parse::<u32>().unwrap() <= 4, "{stdout}");
        assert_eq!(field("env"), "HOME JOB_ONLY PATH PWD SHLVL", "{stdout}");
        assert_eq!(field("left"), "none", "a file of the last job: {stdout}");
        assert_eq!(field("sleepers"), "0", "a process of the last job: {stdout}");
        // The job's own limit, written on `go` over the one the container was made with (the
        // guest keeps 96 MiB of the VM's memory for itself).
        let job_limit = (u64::from(shared::limits::DEFAULT_MEMORY_MIB) - 96) << 20;
        assert_eq!(field("memory.max"), job_limit.to_string(), "{stdout}");
    }
}

#[test]
fn killing_a_warm_vm_mid_job_gives_a_clear_error_and_a_fresh_vm() {
    // The default: VMs restored from a snapshot.
    let server = start_server(&[("PE_WARM", "busybox=1")]);
    wait_for_warm(server.port);
    let port = server.port;
    let job = std::thread::spawn(move || {
        run_json(
            port,
            r#"{"container":"busybox","files":[{"path":"main.sh","content":"sleep 8; echo never"}]}"#,
        )
    });
    // Wait until the job's VM is running (a replacement is booting beside it), then kill the
    // oldest QEMU: the one running the job.
    std::thread::sleep(Duration::from_millis(1500));
    let pids = qemu_pids_in(server.work.path());
    assert!(!pids.is_empty(), "no QEMU found");
    // Every QEMU runs as the unprivileged user, not root (scripts/setup.sh adds `pe-vm`).
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or("").to_owned();
        assert!(!uid.split_whitespace().any(|id| id == "0"), "QEMU {pid} runs as root: Uid {uid}");
    }
    let victim = pids.iter().min().unwrap();
    Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap();
    let (status, _, json) = job.join().unwrap();
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "failed_to_start", "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("the VM stopped without a valid answer"), "{message}");
    // The next job gets a fresh VM and runs normally.
    wait_for_warm(server.port);
    let (status, _, json) = run_json(
        server.port,
        r#"{"container":"busybox","files":[{"path":"main.sh","content":"echo fine"}]}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(json["stdout"], "fine\n", "{json}");
}

#[test]
fn hostile_jobs_through_the_api_end_with_clear_statuses() {
    let server = start_server(&[("PE_TIMEOUT_SECS", "3"), ("PE_WARM", "none")]);
    let run = |script: &str| {
        let body = serde_json::json!({"container": "busybox", "files": [{"path": "main.sh", "content": script}]});
        let (status, _, json) = run_json(server.port, &body.to_string());
        assert_eq!(status, 200, "{json}");
        json
    };
    let json = run("echo start; while :; do :; done");
    assert_eq!(
        (json["status"].as_str(), json["stdout"].as_str()),
        (Some("timeout"), Some("start\n")),
        "{json}"
    );
    assert!(json["message"].as_str().unwrap().contains("time limit of 3 s"), "{json}");
    let json = run("yes | head -c 50000000");
    assert_eq!(json["status"], "output_limit", "{json}");
    assert_eq!(json["truncated"]["stdout"], true);
    let json = run("nc -w 1 192.0.2.1 80 </dev/null; ls /sys/class/net");
    assert_eq!(json["stdout"], "lo\n", "{json}");
    assert!(json["stderr"].as_str().unwrap().contains("Network is unreachable"), "{json}");
    // A fork bomb: the pids limit refuses its forks (counted by the job's cgroup). The shell
    // waits (with builtins: it cannot fork either) until a fork has been refused, then stops
    // the bomb, whose hundreds of processes would otherwise starve it past the time limit.
    let json = run("bomb() { bomb | bomb & }; bomb 2>/dev/null; \
                    until read -r ev < /sys/fs/cgroup/pids.events && [ \"${ev#max }\" != 0 ]; do :; done; \
                    kill -9 -1 2>/dev/null; \
                    read -r max < /sys/fs/cgroup/pids.max; read -r ev < /sys/fs/cgroup/pids.events; \
                    echo \"$max $ev\"");
    assert!(["exited", "timeout"].contains(&json["status"].as_str().unwrap()), "{json}");
    let stdout = json["stdout"].as_str().unwrap();
    let (max, refused) = stdout.trim().split_once(" max ").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(max, shared::limits::DEFAULT_PIDS_MAX.to_string(), "{json}");
    assert!(refused.parse::<u64>().unwrap() > 0, "no fork was refused: {json}");
    // None of these results is cached: they hit a limit.
    let json = run("echo start; while :; do :; done");
    assert_eq!(json["cached"], false);
    let left: Vec<_> = std::fs::read_dir(server.work.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn what_a_killed_server_left_behind_is_cleaned_up() {
    let mut first = start_server(&[("PE_WARM", "busybox=1"), ("PE_WARM_START", "snapshot")]);
    wait_for_warm(first.port);
    let pid = first.child.id();
    let owned_by = |dir: &std::path::Path, pid: u32| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.split('-').nth(1) == Some(&pid.to_string()))
            .collect()
    };
    let shm = std::path::Path::new("/dev/shm");
    assert_eq!(owned_by(shm, pid).len(), 1, "the template's RAM file is on tmpfs");
    assert!(!owned_by(first.work.path(), pid).is_empty(), "a warm VM's directory");

    // SIGKILL: no destructor runs.
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    first.child.wait().unwrap();
    // The waiting VM sees its control socket close and powers off by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !qemu_pids_in(&first.work.path().join(format!("clone-{pid}-"))).is_empty() {
        assert!(Instant::now() < deadline, "the orphaned VM is still running");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!owned_by(shm, pid).is_empty(), "nothing removed the RAM file yet");

    // The next server on the same work directory removes what the dead one left.
    let work = first.work.path().to_string_lossy().into_owned();
    let _second = start_server(&[("PE_WORK_DIR", &work)]);
    assert_eq!(owned_by(shm, pid), Vec::<String>::new());
    assert_eq!(owned_by(first.work.path(), pid), Vec::<String>::new());
}

#[test]
fn warm_containers_follow_what_this_server_runs() {
    let server = start_server(&[("PE_WARM", "auto"), ("PE_WARM_REFRESH_SECS", "1")]);
    let warm = || -> Vec<String> {
        let (_, _, body) = http(server.port, "GET", "/readyz", "", "").unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        serde_json::from_value(json["warm"].clone()).unwrap()
    };
    // No history yet: the defaults.
    assert_eq!(warm(), ["busybox", "gcc", "python"]);
    for i in 0..2 {
        let body = serde_json::json!({"container": "graphviz",
            "files": [{"path": "graph.dot", "content": format!("digraph {{ a{i} -> b }}")}]});
        let (status, _, json) = run_json(server.port, &body.to_string());
        assert_eq!(status, 200, "{json}");
    }
    // Graphviz is now the most run container; busybox, never run, makes room for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while warm() != ["gcc", "graphviz", "python"] {
        assert!(Instant::now() < deadline, "still warm: {:?}", warm());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Busybox's template is gone with it: three templates, three RAM files on tmpfs.
    let pid = server.child.id();
    let ram_files = || {
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("pe_snapshot-{pid}-")))
            .count()
    };
    loop {
        let (_, _, metrics) = http(server.port, "GET", "/metrics", "", "").unwrap();
        if metrics.contains("pe_snapshot_templates 3\n") && ram_files() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "templates: {} RAM files; {metrics}", ram_files());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads until the server closes the connection (or `within` passes): whether it closed.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slow_headers_idle_keep_alive_and_too_many_connections_are_closed() {
    let server =
        start_server(&[("PE_HEADER_TIMEOUT_SECS", "2"), ("PE_CONNECTIONS_PER_CLIENT", "4")]);
    let connect = || TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // Slow loris: a header byte every 300 ms never completes a head within 2 s.
    let mut slow = connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(60) {
        std::thread::sleep(Duration::from_millis(300));
        if slow.write_all(&[*byte]).is_err() || closed_within(&mut slow, Duration::ZERO) {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slow-loris connection stayed open {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8), "cut after {:?}", started.elapsed());
    // Idle keep-alive: one request answered, then nothing: closed after the timeout.
    let mut idle = connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(6)),
        "an idle keep-alive connection stayed"
    );
    // Four connections at once are allowed, the fifth is closed at once.
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = connect();
    assert!(closed_within(&mut fifth, Duration::from_secs(1)), "a fifth connection was kept");
    // Once they are gone, the client is served again.
    for stream in &mut held {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http(server.port, "GET", "/healthz", "", "").unwrap().0, 200);
}

/// The real uid of a process.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn each_qemu_has_a_uid_and_a_cgroup_of_its_own_and_cannot_signal_another() {
    use std::os::unix::process::CommandExt;
    let server = start_server(&[("PE_WARM", "busybox=2"), ("PE_WARM_START", "boot")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pids = loop {
        let (_, _, body) = http(server.port, "GET", "/readyz", "", "").unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let pids = qemu_pids_in(server.work.path());
        if json["warm_ready"].as_u64() == Some(2) && pids.len() == 2 {
            break pids;
        }
        assert!(Instant::now() < deadline, "two warm VMs did not come up: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (a, b) = (pids[0], pids[1]);
    let (uid_a, uid_b) = (uid_of(a), uid_of(b));
    assert_ne!(uid_a, 0);
    assert_ne!(uid_b, 0);
    assert_ne!(uid_a, uid_b, "two QEMUs share a uid");
    // What QEMU A could do if it escaped: signal QEMU B. The kernel refuses.
    let signal =
        Command::new("kill").args(["-0", &b.to_string()]).uid(uid_a).gid(uid_a).output().unwrap();
    assert!(!signal.status.success(), "QEMU A's uid could signal QEMU B");
    assert!(String::from_utf8_lossy(&signal.stderr).contains("not permitted"), "{signal:?}");
    // Each sits in a cgroup of its own, with its memory and tasks capped.
    let cgroups: Vec<String> = [a, b]
        .iter()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap())
        .collect();
    for cgroup in &cgroups {
        assert!(cgroup.contains("/pe/vm-"), "{cgroup}");
    }
    assert_ne!(cgroups[0], cgroups[1]);
    let memory_line =
        cgroups[0].lines().find(|l| l.contains(":memory:") || l.starts_with("0::")).unwrap();
    let path = memory_line.rsplit(':').next().unwrap();
    let limit_file = if memory_line.starts_with("0::") {
        format!("/sys/fs/cgroup{path}/memory.max")
    } else {
        format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    };
    let limit: u64 = std::fs::read_to_string(&limit_file).unwrap().trim().parse().unwrap();
    assert!(limit < 8 << 30, "{limit_file}: {limit}");
}

#[test]
fn memory_taken_by_large_bodies_is_given_back_once_idle() {
    let server = start_server(&[("PE_RATE_PER_MINUTE", "0")]);
    let pid = server.child.id();
    let before = status_kib(pid, "VmRSS");
    // 15 MiB bodies, refused (the file is over the input cap) after they were read and parsed:
    // ten in a row, then twenty at once (some are refused before their body by the budget).
    let body = serde_json::json!({"container": "busybox",
        "files": [{"path": "pad", "content": "x".repeat(15 << 20)}]})
    .to_string();
    let send = |body: &str| {
        let answer = http(server.port, "POST", "/api/v1/run", "application/json", body);
        // A body refused before it was read may end in a reset while it is still being sent.
        assert!(
            answer.as_ref().map_or(true, |(status, _, _)| [413, 503].contains(status)),
            "{answer:?}"
        );
    };
    for _ in 0..10 {
        send(&body);
    }
    std::thread::scope(|scope| {
        for _ in 0..20 {
            scope.spawn(|| send(&body));
        }
    });
    let peak = status_kib(pid, "VmHWM");
    std::thread::sleep(Duration::from_secs(3));
    let after = status_kib(pid, "VmRSS");
    eprintln!("RSS before {before} KiB, peak {peak} KiB, idle after {after} KiB");
    assert!(peak > before + 30 * 1024, "the load did not take memory: {before} -> {peak} KiB");
    assert!(after < before + 16 * 1024, "RSS stayed up: {before} -> {after} KiB (peak {peak})");
}
