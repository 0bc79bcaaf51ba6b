//! Cluster mode end to end: real nats-server (JetStream) and PostgreSQL started by the test,
//! `pe serve --nats --database` servers and `pe worker`s as processes. Most tests run jobs on
//! the sandbox backend (fast); one uses real microVMs. Needs scripts/setup.sh (nats-server,
//! postgresql, the busybox image); a missing part fails the test, it never skips.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, Nats, Postgres, Worker, metric};
use common::real::{http, run_json, start_server};
use serde_json::{Value, json};

fn script(text: &str) -> String {
    json!({"container": "busybox", "files": [{"path": "main.sh", "content": text}]}).to_string()
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_servers_two_workers_share_runs_links_and_the_cache() {
    let cluster = Cluster::start(2);
    let workers = [
        Worker::start(&cluster.nats, "sandbox", &[]),
        Worker::start(&cluster.nats, "sandbox", &[]),
    ];
    // Runs through either server.
    for (n, server) in [0, 1].into_iter().enumerate() {
        let (status, _, body) = run_json(cluster.port(server), &script(&format!("echo run {n}")));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "exited");
        assert_eq!(body["stdout"], format!("run {n}\n"));
        assert_eq!(body["backend"]["kind"], "sandbox");
        assert_eq!(body["cached"], false);
    }
    // A cache hit across servers: run on 0, the same run on 1 comes from the shared cache.
    let body = script("echo cached $((6*7))");
    let (_, _, first) = run_json(cluster.port(0), &body);
    assert_eq!(first["cached"], false);
    let (status, _, second) = run_json(cluster.port(1), &body);
    assert_eq!(status, 200);
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["stdout"], "cached 42\n");
    // A permalink made on one server opens on the other.
    let state =
        json!({"container": "busybox", "files": [{"path": "main.sh", "content": "echo hi"}]});
    let (status, _, made) =
        http(cluster.port(0), "POST", "/api/v1/links", "application/json", &state.to_string())
            .unwrap();
    assert_eq!(status, 201, "{made}");
    let id = serde_json::from_str::<Value>(&made).unwrap()["id"].as_str().unwrap().to_owned();
    let (status, _, opened) =
        http(cluster.port(1), "GET", &format!("/api/v1/links/{id}"), "", "").unwrap();
    assert_eq!(status, 200, "{opened}");
    assert_eq!(serde_json::from_str::<Value>(&opened).unwrap()["files"][0]["content"], "echo hi");
    // Frames over the inline limit (768 KiB) go through the object store both ways.
    let big = "x".repeat(900 * 1024);
    let request = json!({"container": "busybox", "files": [
        {"path": "main.sh", "content": "wc -c < big.txt; cat big.txt"},
        {"path": "big.txt", "content": big},
    ]});
    let (status, _, body) = run_json(cluster.port(1), &request.to_string());
    assert_eq!(status, 200, "{body}");
    let stdout = body["stdout"].as_str().unwrap();
    assert_eq!(stdout, format!("{}\n{big}", big.len()), "the whole input and output made it");
    // Both workers' results add up to the runs that reached them; the servers are ready.
    let ran: f64 =
        workers.iter().map(|w| w.metric("pe_worker_results_total{status=\"exited\"}")).sum();
    assert_eq!(ran, 4.0, "four runs reached the workers (one was a cache hit)");
    for server in [0, 1] {
        let (status, _, ready) = http(cluster.port(server), "GET", "/readyz", "", "").unwrap();
        assert_eq!(status, 200, "{ready}");
        assert!(metric(cluster.port(server), "pe_cluster_nats_connected") == 1.0);
    }
    assert_eq!(metric(cluster.port(0), "pe_cluster_published_total"), 2.0);
}

#[test]
fn a_worker_killed_mid_job_its_job_completes_on_another() {
    let cluster = Cluster::start(1);
    let mut first = Worker::start(&cluster.nats, "sandbox", &[]);
    let port = cluster.port(0);
    let run = std::thread::spawn(move || run_json(port, &script("sleep 2; echo survived")));
    wait_until("the job to reach the first worker", 20, || {
        first.metric("pe_worker_in_flight") == 1.0
    });
    first.kill9();
    let started = Instant::now();
    let second = Worker::start(&cluster.nats, "sandbox", &[]);
    let (status, _, body) = run.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "survived\n");
    assert!(second.metric("pe_worker_redeliveries_total") >= 1.0, "the job was redelivered");
    // The ack wait is 4 s: the job moved on within seconds, not after its 10 s deadline.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_worker_stopped_with_sigterm_finishes_its_job_first() {
    let cluster = Cluster::start(1);
    let mut worker = Worker::start(&cluster.nats, "sandbox", &[]);
    let port = cluster.port(0);
    let run = std::thread::spawn(move || run_json(port, &script("sleep 2; echo drained")));
    wait_until("the job to run", 20, || worker.metric("pe_worker_in_flight") == 1.0);
    let pid = worker.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (status, _, body) = run.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "drained\n");
    let exited = worker.child.wait().unwrap();
    assert!(exited.success(), "{exited}");
}

#[test]
fn a_full_queue_is_503_busy_and_a_client_that_leaves_cancels_its_job() {
    let nats = Nats::start();
    let pg = Postgres::start();
    // This worker makes the stream: one job at most, waiting or running.
    let worker = Worker::start(&nats, "sandbox", &["--queue-max", "1"]);
    let server = start_server(&[
        ("PE_NATS", &nats.url()),
        ("PE_DATABASE", &pg.url()),
        ("PE_RATE_PER_MINUTE", "0"),
    ]);
    let port = server.port;
    // The client gives up after 1 s on a job of 8 s.
    let leaver = std::thread::spawn(move || {
        let body = script("sleep 8; echo too late");
        std::process::Command::new("curl")
            .args(["-s", "-m", "1", "-H", "content-type: application/json", "-d", &body])
            .arg(format!("http://127.0.0.1:{port}/api/v1/run"))
            .status()
            .unwrap()
    });
    wait_until("the job to run", 20, || worker.metric("pe_worker_in_flight") == 1.0);
    // The stream holds one job: the next is refused at once.
    let (status, headers, body) = run_json(port, &script("echo next"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert!(headers.contains("retry-after:"), "{headers}");
    assert!(metric(port, "pe_cluster_refused_full_total") >= 1.0);
    leaver.join().unwrap();
    // The client went away: the worker hears the cancel and ends the run long before 8 s.
    let left = Instant::now();
    wait_until("the worker to cancel", 5, || worker.metric("pe_worker_cancelled_total") == 1.0);
    assert_eq!(worker.metric("pe_worker_in_flight"), 0.0);
    assert!(left.elapsed() < Duration::from_secs(5));
    // The slot is free again.
    let (status, _, body) = run_json(port, &script("echo after"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "after\n");
}

#[test]
fn nats_down_for_5_s_gives_503_then_recovers_and_postgres_down_only_stops_links() {
    let mut cluster = Cluster::start(1);
    let _worker = Worker::start(&cluster.nats, "sandbox", &[]);
    let port = cluster.port(0);
    let (status, _, _) = run_json(port, &script("echo before"));
    assert_eq!(status, 200);

    // NATS stops for 5 s: runs are refused with a clear 503, readiness says why.
    cluster.nats.kill();
    let down = Instant::now();
    let (status, _, body) = run_json(port, &script("echo during"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _, ready) = http(port, "GET", "/readyz", "", "").unwrap();
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("nats_unreachable"), "{ready}");
    std::thread::sleep(Duration::from_secs(5).saturating_sub(down.elapsed()));
    cluster.nats.start_again();
    // Back without restarting anything.
    wait_until("the server and worker to reconnect", 20, || {
        run_json(port, &script("echo after")).0 == 200
    });

    // PostgreSQL goes down: links answer 503, runs keep working (uncached).
    cluster.pg.stop();
    let link = json!({"container": "busybox"}).to_string();
    let (status, _, body) = http(port, "POST", "/api/v1/links", "application/json", &link).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("permalinks are unavailable"), "{body}");
    let (status, _, body) = http(port, "GET", "/api/v1/links/abcdefabcdef", "", "").unwrap();
    assert_eq!(status, 503, "{body}");
    let (status, _, body) = run_json(port, &script("echo no database"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "no database\n");
    let (status, _, ready) = http(port, "GET", "/readyz", "", "").unwrap();
    assert_eq!(status, 200, "PostgreSQL down is reported, not fatal: {ready}");
    assert!(ready.contains("database_unreachable"), "{ready}");
    // It comes back: links work again.
    cluster.pg.start_again();
    let (status, _, body) = http(port, "POST", "/api/v1/links", "application/json", &link).unwrap();
    assert_eq!(status, 201, "{body}");
}

#[test]
fn a_worker_runs_jobs_in_real_microvms_cold_and_warm() {
    let cluster = Cluster::start(1);
    // Warm VMs for busybox (restored from a snapshot template), cold boots for the rest.
    let worker = Worker::start(&cluster.nats, "microvm", &["--warm", "busybox=1"]);
    wait_until("a warm VM", 120, || {
        let (_, _, ready) = http(worker.port, "GET", "/readyz", "", "").unwrap();
        serde_json::from_str::<Value>(&ready).unwrap()["warm_ready"].as_u64().unwrap_or(0) >= 1
    });
    let (status, _, body) = run_json(cluster.port(0), &script("echo vm $((6*7)); uname -r"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "exited");
    assert!(body["stdout"].as_str().unwrap().starts_with("vm 42\n"), "{body}");
    assert_eq!(body["backend"]["kind"], "microvm");
    assert_ne!(body["backend"]["start"], "cold", "{body}");
}

#[test]
fn a_worker_without_an_image_fetches_it_by_digest_and_refuses_a_tampered_one() {
    let cluster = Cluster::start(1);
    // The worker's image store is empty.
    let empty = tempfile::tempdir().unwrap();
    let cache = empty.path().to_str().unwrap();
    let worker = Worker::start_with_env(&cluster.nats, "sandbox", &[], &[("PE_CACHE_DIR", cache)]);
    let images =
        images::ImageStore::new(server::executor_config::default_cache_dir().join("images"));
    let busybox = images.resolve("busybox").expect("the busybox image is built (scripts/setup.sh)");

    // Not pushed yet: the job fails to start, and says why.
    let (status, _, body) = run_json(cluster.port(0), &script("echo fetched"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed_to_start");
    assert!(body["message"].as_str().unwrap().contains("pe image push"), "{body}");

    // Pushed: the worker fetches it, checks the digest, keeps it and runs the job.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pe"))
        .args(["image", "push", "busybox", "--nats", &cluster.nats.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _, body) = run_json(cluster.port(0), &script("echo fetched"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "fetched\n", "{body}");
    let hex = busybox.digest.strip_prefix("sha256:").unwrap();
    let kept = empty.path().join("images/sha256").join(hex);
    assert_eq!(std::fs::read(&kept).unwrap(), std::fs::read(&busybox.path).unwrap());
    assert_eq!(worker.metric("pe_worker_images_fetched_total"), 1.0);

    // A server on a host that never built images needs only their refs (the digests).
    let refs_only = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(refs_only.path().join("images/refs")).unwrap();
    std::fs::copy(
        images.root().join("refs/busybox.json"),
        refs_only.path().join("images/refs/busybox.json"),
    )
    .unwrap();
    let bare = start_server(&[
        ("PE_NATS", &cluster.nats.url()),
        ("PE_DATABASE", &cluster.pg.url()),
        ("PE_CACHE_DIR", refs_only.path().to_str().unwrap()),
    ]);
    let (status, _, body) = run_json(bare.port, &script("echo from a bare server"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "from a bare server\n", "{body}");

    // A tampered object under another image's digest is refused, and not kept.
    let catalog = server::catalog::Catalog::embedded().unwrap();
    let other = catalog
        .iter()
        .filter(|e| e.meta.id != "busybox")
        .find_map(|e| images.resolve(&e.meta.id).ok())
        .expect("a second container's image is built");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bucket = server::cluster::images::open_bucket(&cluster.nats.url()).await.unwrap();
        let mut tampered: &[u8] = b"not the image you are looking for";
        server::cluster::images::upload(&bucket, &other.digest, &mut tampered).await.unwrap();
    });
    let request = json!({"container": other.id, "argv": ["true"]}).to_string();
    let (status, _, body) = run_json(cluster.port(0), &request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed_to_start", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("refused") && message.contains(&other.digest), "{message}");
    assert_eq!(worker.metric("pe_worker_images_refused_total"), 2.0, "missing, then tampered");
    let other_hex = other.digest.strip_prefix("sha256:").unwrap();
    assert!(!empty.path().join("images/sha256").join(other_hex).exists());
    assert_eq!(std::fs::read_dir(empty.path().join("images/tmp")).unwrap().count(), 0);
}

#[test]
fn a_job_whose_every_worker_dies_gets_an_error_result_after_the_last_delivery() {
    let cluster = Cluster::start(1);
    let port = cluster.port(0);
    let run = std::thread::spawn(move || run_json(port, &script("sleep 9; echo never")));
    let started = Instant::now();
    // Three deliveries (the bound), each to a worker killed with -9 mid-job.
    for delivery in 1..=3 {
        let mut worker = Worker::start(&cluster.nats, "sandbox", &[]);
        wait_until(&format!("delivery {delivery}"), 20, || {
            worker.metric("pe_worker_in_flight") == 1.0
        });
        worker.kill9();
    }
    // A worker that keeps pulling (JetStream checks a message's deliveries when it would
    // deliver it again) never gets the job.
    let late = Worker::start(&cluster.nats, "sandbox", &[]);
    let (status, _, body) = run.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed_to_start", "{body}");
    assert!(body["message"].as_str().unwrap().contains("3 times"), "{body}");
    assert_eq!(metric(port, "pe_cluster_gave_up_total"), 1.0);
    // Answered when JetStream gave up, well before the request's deadline (10 s + 30 s).
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    // The job is gone from the stream: nothing was delivered to the last worker.
    assert_eq!(late.metric("pe_worker_in_flight"), 0.0);
    assert_eq!(late.metric("pe_worker_redeliveries_total"), 0.0);
    assert_eq!(metric(port, "pe_cluster_queue_depth"), 0.0);
}

/// A live run (`/api/v1/run/live`) through the queue streams: its first output arrives while
/// the program still runs, and typed stdin reaches the program on the worker.
#[test]
fn a_live_run_through_the_queue_streams_output_and_takes_typed_stdin() {
    use tungstenite::Message;
    let cluster = Cluster::start(1);
    let _worker = Worker::start(&cluster.nats, "sandbox", &[]);
    let url = format!("ws://127.0.0.1:{}/api/v1/run/live", cluster.port(0));
    let (mut socket, response) = tungstenite::connect(url).unwrap();
    assert_eq!(response.status(), 101);
    let program = "echo first; read line; echo \"got $line\"; sleep 2; echo last";
    let request =
        json!({"container": "busybox", "files": [{"path": "main.sh", "content": program}]});
    socket.send(Message::text(request.to_string())).unwrap();
    let mut events: Vec<(Instant, Value)> = Vec::new();
    let mut typed = false;
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                // Type a line once the program has said "first".
                if !typed && event["type"] == "stdout" && event["data"] == "first\n" {
                    let stdin = json!({"type": "stdin", "data": "typed\n"});
                    socket.send(Message::text(stdin.to_string())).unwrap();
                    socket.send(Message::text(json!({"type": "stdin_close"}).to_string())).unwrap();
                    typed = true;
                }
                events.push((Instant::now(), event));
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let kinds: Vec<&str> = events.iter().map(|(_, e)| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"exit"), "{kinds:?}");
    assert!(typed, "the first line came as a stdout event: {kinds:?}");
    let (first_at, _) = events.iter().find(|(_, e)| e["type"] == "stdout").unwrap();
    let (exit_at, exit) = events.last().unwrap();
    assert!(
        exit_at.duration_since(*first_at) > Duration::from_secs(1),
        "the first output came while the program ran, not with the result"
    );
    let result = &exit["result"];
    assert_eq!(result["status"], "exited", "{result}");
    assert_eq!(result["stdout"], "first\ngot typed\nlast\n");
    assert_eq!(result["backend"]["kind"], "sandbox");
}
