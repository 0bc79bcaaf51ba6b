//! `POST /api/v1/run` through the fake backend: the JSON and archive forms, the cache, argv,
//! bad requests and their one error shape, a full queue, hostile strings, faults on the server's
//! side (the real VM path is covered by tests/serve.rs and tests/vm.rs).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use server::http::app;
use shared::api::v1::{RunRequest, RunResult, inputs_digest};
use shared::cpio::{self, Entry, Limits};
use shared::framing;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use common::*;

#[tokio::test]
async fn a_json_run_is_answered_and_then_served_from_the_cache() {
    let h = harness(1, 4, 0, None);
    let first = body_json(send(&h, json_run(hello())).await).await;
    assert_eq!(first["status"], "exited");
    assert_eq!(first["cached"], false);
    assert_eq!(first["argv"], json!(["sh", "main.sh"]));
    assert_eq!(first["stdout"], "argv=[\"sh\", \"main.sh\"]\nmain.sh=echo hi\n");
    assert_eq!(first["stderr"], "in");
    assert_eq!(first["files"][0]["path"], "out.txt");
    assert_eq!(first["image"]["digest"], "sha256:abc");

    let second = body_json(send(&h, json_run(hello())).await).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["stdout"], first["stdout"]);
    assert_eq!(second["files"], first["files"]);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1, "the second run never reached the backend");

    // Different input, or cache=bypass, runs again.
    let mut other = hello();
    other["stdin"] = json!("other");
    body_json(send(&h, json_run(other)).await).await;
    let bypass = Request::post("/api/v1/run?cache=bypass")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(hello().to_string()))
        .unwrap();
    assert_eq!(body_json(send(&h, bypass).await).await["cached"], false);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_archive_form_round_trips_and_a_hit_needs_only_the_header() {
    let h = harness(1, 4, 0, None);
    let files = vec![Entry::file("main.sh", "echo archive")];
    let mut request = RunRequest { container: "busybox".into(), ..RunRequest::default() };
    request.options.insert("flags".into(), json!(["-e"]));
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(archive_request(&request, &files)))
        .unwrap();
    let response = send(&h, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/x-pe-archive");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let (result, archive): (RunResult, _) = framing::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(result.argv, ["sh", "-e", "main.sh"]);
    let entries = cpio::decode(archive, &Limits::MAX).unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["stdout", "stderr", "output", "output/out.txt"]);

    // Now only the header, with the inputs' digest; the body never ends.
    request.inputs_digest = Some(inputs_digest(&files, b""));
    let header_only = framing::encode(&request, &[]).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tx.send(Ok(header_only.into())).await.unwrap();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from_stream(stream))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), send(&h, req))
        .await
        .expect("answered before the body ended");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let (result, _): (RunResult, _) = framing::decode(&bytes, 1 << 20).unwrap();
    assert!(result.cached);
    drop(tx);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1);

    // A digest that does not match the archive is refused.
    request.inputs_digest = Some("0".repeat(64));
    let req = Request::post("/api/v1/run?cache=bypass")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(archive_request(&request, &files)))
        .unwrap();
    assert_error(send(&h, req).await, StatusCode::BAD_REQUEST, "bad_request", "inputs_digest")
        .await;
}

#[tokio::test]
async fn a_request_argv_replaces_the_rendered_command_and_keys_the_cache() {
    let h = harness(1, 4, 0, None);
    let with_argv = |argv: Value| {
        let mut body = hello();
        body["argv"] = argv;
        body
    };
    let plain = body_json(send(&h, json_run(hello())).await).await;
    assert_eq!(plain["argv"], json!(["sh", "main.sh"]));

    let echo = body_json(send(&h, json_run(with_argv(json!(["echo", "hi there"])))).await).await;
    assert_eq!(echo["status"], "exited");
    assert_eq!(echo["argv"], json!(["echo", "hi there"]));
    assert_eq!(echo["stdout"], "argv=[\"echo\", \"hi there\"]\nmain.sh=echo hi\n");
    assert_eq!(echo["cached"], false, "another command line is another cache entry");
    let again = body_json(send(&h, json_run(with_argv(json!(["echo", "hi there"])))).await).await;
    assert_eq!(again["cached"], true);
    let other = body_json(send(&h, json_run(with_argv(json!(["echo", "hi"])))).await).await;
    assert_eq!(other["cached"], false);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 3);

    // The archive form carries it in the header.
    let request = RunRequest {
        container: "busybox".into(),
        argv: Some(vec!["cat".into(), "main.sh".into()]),
        ..RunRequest::default()
    };
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(archive_request(&request, &[Entry::file("main.sh", "x")])))
        .unwrap();
    let bytes = send(&h, req).await.into_body().collect().await.unwrap().to_bytes();
    let (result, _): (RunResult, _) = framing::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(result.argv, ["cat", "main.sh"]);

    for (argv, needle) in [
        (json!([]), "empty"),
        (json!([""]), "argv[0]"),
        (json!(["sh", "-c", "a\0b"]), "NUL"),
        (json!("echo hi"), "invalid JSON request"),
    ] {
        let response = send(&h, json_run(with_argv(argv))).await;
        assert_error(response, StatusCode::BAD_REQUEST, "bad_request", needle).await;
    }
    let mut both = with_argv(json!(["echo"]));
    both["args"] = json!(["-n"]);
    let response = send(&h, json_run(both)).await;
    assert_error(response, StatusCode::BAD_REQUEST, "bad_request", "args cannot go with").await;
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 4, "bad argv never reaches the backend");
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_one_error_shape() {
    let h = harness(1, 4, 0, None);
    let bad_option = json!({"container": "busybox", "options": {"flags": ["-q"]}});
    assert_error(
        send(&h, json_run(bad_option)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_option",
        "\"flags\"",
    )
    .await;
    let unknown = json!({"container": "busybox", "options": {"nope": 1}});
    assert_error(
        send(&h, json_run(unknown)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_option",
        "nope",
    )
    .await;
    assert_error(
        send(&h, json_run(json!({"container": "nope"}))).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "nope",
    )
    .await;
    // gcc is in the catalog but not built here.
    assert_error(
        send(&h, json_run(json!({"container": "gcc"}))).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "gcc",
    )
    .await;
    let malformed = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{"))
        .unwrap();
    assert_error(send(&h, malformed).await, StatusCode::BAD_REQUEST, "bad_request", "invalid JSON")
        .await;
    let wrong_type = json!({"container": "busybox", "args": "not a list"});
    assert_error(
        send(&h, json_run(wrong_type)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "invalid JSON",
    )
    .await;
    let hostile = json!({"container": "busybox", "files": [{"path": "../x", "content": ""}]});
    assert_error(send(&h, json_run(hostile)).await, StatusCode::BAD_REQUEST, "bad_request", "'..'")
        .await;
    let both = json!({"container": "busybox", "files": [{"path": "a", "content": "", "content_base64": ""}]});
    assert_error(
        send(&h, json_run(both)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "exactly one",
    )
    .await;

    // Archive form: a length prefix that promises more than the body holds, a hostile archive.
    let short = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(vec![200, 0, 0, 0, b'{']))
        .unwrap();
    assert_error(send(&h, short).await, StatusCode::BAD_REQUEST, "bad_request", "header length")
        .await;
    let huge_header = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(vec![255, 255, 255, 255]))
        .unwrap();
    assert_error(
        send(&h, huge_header).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "header length",
    )
    .await;
    let request = RunRequest { container: "busybox".into(), ..RunRequest::default() };
    let mut evil = Vec::new();
    let name = "../evil";
    evil.extend_from_slice(
        format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            1,
            0o100644,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .as_bytes(),
    );
    evil.extend_from_slice(name.as_bytes());
    evil.push(0);
    while evil.len() % 4 != 0 {
        evil.push(0);
    }
    evil.extend(cpio::encode(&[], &Limits::MAX).unwrap());
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(framing::encode(&request, &evil).unwrap()))
        .unwrap();
    assert_error(send(&h, req).await, StatusCode::BAD_REQUEST, "bad_request", "'..'").await;
    // Too large, by Content-Length and by the bytes themselves.
    let big = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "999999999")
        .body(Body::empty())
        .unwrap();
    assert_error(send(&h, big).await, StatusCode::PAYLOAD_TOO_LARGE, "too_large", "larger than")
        .await;
    let big = json_run(
        json!({"container": "busybox", "stdin": "x".repeat(shared::limits::MAX_REQUEST_BYTES)}),
    );
    assert_error(send(&h, big).await, StatusCode::PAYLOAD_TOO_LARGE, "too_large", "larger than")
        .await;
    let text = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("x"))
        .unwrap();
    assert_error(send(&h, text).await, StatusCode::BAD_REQUEST, "bad_request", "Content-Type")
        .await;
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0, "no bad request reached the backend");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let gate = Arc::new(Semaphore::new(0));
    let h = harness(1, 0, 0, Some(gate.clone()));
    let held = tokio::spawn({
        let state = h.state.clone();
        async move { app(state).oneshot(json_run(hello())).await.unwrap() }
    });
    while h.fake.calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut other = hello();
    other["stdin"] = json!("second");
    let refused = send(&h, json_run(other)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = refused.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "busy", "retry in").await;
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn hostile_strings_and_cut_bodies_are_refused_before_any_vm() {
    let h = harness(1, 4, 0, None);
    for (body, needle) in [
        (json!({"container": "busybox", "env": {"A=B": "x"}}), "not allowed"),
        (json!({"container": "busybox", "env": {"": "x"}}), "not allowed"),
        (json!({"container": "busybox", "env": {"OK": "a\u{0}b"}}), "NUL"),
        (json!({"container": "busybox", "args": ["a\u{0}b"]}), "NUL"),
        (json!({"container": "busybox", "optoins": {}}), "unknown field"),
        (
            json!({"container": "busybox", "files": [{"path": "a", "content_base64": "!!"}]}),
            "base64",
        ),
        (
            json!({"container": "busybox", "files": [{"path": "/etc/passwd", "content": ""}]}),
            "absolute",
        ),
        (
            json!({"container": "busybox", "files": [{"path": "a", "content": ""}, {"path": "a", "content": ""}]}),
            "twice",
        ),
    ] {
        assert_error(
            send(&h, json_run(body)).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            needle,
        )
        .await;
    }
    // Too many files for the input limits.
    let many: Vec<Value> =
        (0..1001).map(|i| json!({"path": format!("f{i}"), "content": ""})).collect();
    assert_error(
        send(&h, json_run(json!({"container": "busybox", "files": many}))).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "entries",
    )
    .await;
    // A body cut off mid-way (the client went away or the stream broke).
    let request = RunRequest { container: "busybox".into(), ..RunRequest::default() };
    let frame = archive_request(&request, &[Entry::file("main.sh", "echo hi")]);
    let half = frame[..frame.len() / 2].to_vec();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        vec![Ok(half.into()), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut"))];
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert_error(send(&h, req).await, StatusCode::BAD_REQUEST, "bad_request", "could not be read")
        .await;
    // A body that simply ends early: the archive is truncated.
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(frame[..frame.len() - 20].to_vec()))
        .unwrap();
    assert_error(send(&h, req).await, StatusCode::BAD_REQUEST, "bad_request", "truncated").await;
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn faults_on_the_server_side_are_clear_503s() {
    let h = harness(1, 4, 0, None);
    // The work directory's disk is full.
    let full = json!({"container": "busybox", "env": {"FAKE_FAIL": "disk-full"}});
    assert_error(
        send(&h, json_run(full)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "retry later",
    )
    .await;
    // The image file was deleted under the server.
    let digest_file = h._dirs.0.path().join("sha256/abc");
    std::fs::remove_file(&digest_file).unwrap();
    assert_error(
        send(&h, json_run(hello())).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "must rebuild it",
    )
    .await;
    // The service recovers by itself once the image is back.
    std::fs::write(&digest_file, b"hsqs").unwrap();
    assert_eq!(send(&h, json_run(hello())).await.status(), StatusCode::OK);
}

/// `pe serve --build-missing`: a container whose image is still being built (or waits for its
/// turn) answers 503 `unavailable` with `Retry-After` and says where it stands; the catalog
/// shows the same; once the image is there, it runs.
#[tokio::test]
async fn a_container_still_building_answers_503_with_retry_after_until_its_image_is_there() {
    use server::builds::{BuildFn, Builds};
    // Each build reports a step, then waits for the test's go.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let build: Arc<BuildFn> = Arc::new(move |id: &str, progress: &mut dyn FnMut(&str)| {
        progress(&format!("  installing {id}"));
        wait.lock().unwrap().recv().map_err(|e| e.to_string())
    });
    let builds = Builds::start(vec!["python".into(), "gcc".into()], 1, build);
    let h = harness_with_builds(builds.clone());
    while !matches!(builds.state("python"), Some(server::builds::BuildState::Building { .. })) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let python =
        || json!({"container": "python", "files": [{"path": "main.py", "content": "print(1)"}]});

    for (id, says) in [("python", "is being built"), ("gcc", "is queued for building (0 ahead")] {
        let response = send(&h, json_run(json!({"container": id}))).await;
        let retry: u64 = response.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((5..=600).contains(&retry), "{id}: Retry-After {retry}");
        assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable", says).await;
    }
    let catalog =
        body_json(send(&h, Request::get("/api/v1/containers").body(Body::empty()).unwrap()).await)
            .await;
    let status = |id: &str| {
        catalog.as_array().unwrap().iter().find(|c| c["id"] == id).unwrap()["image_status"].clone()
    };
    assert_eq!(status("python")["built"], false);
    assert_eq!(status("python")["build"]["state"], "building");
    assert_eq!(status("python")["build"]["step"], "installing python");
    assert_eq!(status("gcc")["build"]["state"], "queued");
    assert_eq!(status("gcc")["build"]["position"], 1);
    assert!(status("busybox").get("build").is_none(), "built: no build state");
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);

    // The build finishes: the image is in the store, and python runs.
    std::fs::write(h._dirs.0.path().join("sha256/def"), b"hsqs").unwrap();
    common::mark_built(&h.state.images, "python", "sha256:def");
    go.send(()).unwrap();
    while builds.state("python").is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = send(&h, json_run(python())).await;
    assert_eq!(response.status(), StatusCode::OK);
    // gcc is now the one being built.
    let response = send(&h, json_run(json!({"container": "gcc"}))).await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "is being built").await;
    go.send(()).unwrap();
}
