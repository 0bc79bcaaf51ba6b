//! What a review and a hostile probe of the server found (issue 18), through the fake backend:
//! one error shape everywhere under `/api/`, no host paths in answers, refusals before any VM
//! or body read, RateLimit headers on every answer of a limited route, `Connection: close`
//! where a body was left unread, links checked like runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use common::*;

/// The body of an answer, as text.
async fn text(response: axum::http::Response<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// An error answer in the one shape, with a request id; returns the body.
async fn assert_shaped(
    response: axum::http::Response<Body>,
    status: StatusCode,
    code: &str,
) -> Value {
    let (got, headers, body) = text(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{body}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(json["error"]["code"], code, "{body}");
    assert!(!json["error"]["message"].as_str().unwrap().is_empty(), "{body}");
    let id = json["error"]["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty() && Some(id) == headers["x-request-id"].to_str().ok(), "{body}");
    json
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn answers_the_http_layer_makes_under_api_have_the_json_shape() {
    let mut h = harness(1, 4, 0, None);
    // Duplicate query fields: a query-string rejection.
    let dup = json_run(hello());
    let (mut parts, body) = dup.into_parts();
    parts.uri = "/api/v1/run?cache=bypass&cache=use".parse().unwrap();
    assert_shaped(
        send(&h, Request::from_parts(parts, body)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    // Invalid UTF-8 in a path parameter.
    assert_shaped(
        send(&h, get("/api/v1/links/%FF%FE")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    // Unknown routes and wrong methods.
    assert_shaped(send(&h, get("/api/v1/nope")).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_shaped(send(&h, get("/api/nope")).await, StatusCode::NOT_FOUND, "not_found").await;
    let wrong = send(&h, get("/api/v1/run")).await;
    assert!(wrong.headers().contains_key(header::ALLOW));
    assert_shaped(wrong, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    // The request timeout: a job held past it.
    let gate = Arc::new(Semaphore::new(0));
    h = harness(1, 4, 0, Some(gate.clone()));
    Arc::get_mut(&mut h.state).unwrap().request_timeout = Duration::from_millis(200);
    assert_shaped(send(&h, json_run(hello())).await, StatusCode::REQUEST_TIMEOUT, "timeout").await;
    gate.add_permits(10);
    // Outside /api/ a missing page stays as it was (not JSON).
    let (status, headers, _) = text(send(&h, get("/no-such-page")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_ne!(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn error_bodies_never_show_host_paths() {
    let h = harness(1, 4, 0, None);
    let host_dirs: Vec<String> = [h._dirs.0.path(), h._dirs.1.path()]
        .iter()
        .map(|p| p.display().to_string())
        .chain(["/var/lib/pe".to_owned(), std::env::temp_dir().display().to_string()])
        .collect();
    let mut disk_full = hello();
    disk_full["env"] = json!({"FAKE_FAIL": "disk-full"});
    let requests = vec![
        (json_run(disk_full), StatusCode::SERVICE_UNAVAILABLE),
        // gcc is in the catalog, its image is not built here.
        (json_run(json!({"container": "gcc"})), StatusCode::SERVICE_UNAVAILABLE),
        (json_run(json!({"container": "nope"})), StatusCode::NOT_FOUND),
        (
            json_run(json!({"container": "busybox", "files": [{"path": "/etc/x", "content": ""}]})),
            StatusCode::BAD_REQUEST,
        ),
        (get("/api/v1/links/nope"), StatusCode::NOT_FOUND),
        (get("/api/v1/containers/nope"), StatusCode::NOT_FOUND),
    ];
    for (req, status) in requests {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, _, body) = text(send(&h, req).await).await;
        assert_eq!(got, status, "{what}: {body}");
        for dir in &host_dirs {
            assert!(!body.contains(dir.as_str()), "{what} shows {dir}: {body}");
        }
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"]["request_id"].is_string(), "{what}: {body}");
    }
}

#[tokio::test]
async fn over_long_names_and_stdin_are_refused_before_any_vm() {
    let h = harness(1, 4, 0, None);
    let long = json!({"container": "busybox",
                      "files": [{"path": format!("d/{}", "x".repeat(256)), "content": ""}]});
    let body =
        assert_shaped(send(&h, json_run(long)).await, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("255"), "{body}");
    let stdin =
        json!({"container": "busybox", "stdin": "x".repeat(shared::limits::MAX_STDIN_BYTES + 1)});
    assert_shaped(send(&h, json_run(stdin)).await, StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        .await;
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0, "no VM was started");
}

#[tokio::test]
async fn an_over_long_url_segment_is_404_not_500() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("index.html"), "<!doctype html>").unwrap();
    let h = harness_with_static(1, 4, 0, None, Some(dist.path().to_owned()));
    for uri in [format!("/{}", "a".repeat(300)), format!("/assets/{}.js", "%41".repeat(300))] {
        let (status, _, _) = text(send(&h, get(&uri)).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn every_answer_of_a_limited_route_carries_the_rate_headers_and_costs_a_token() {
    let h = harness(1, 4, 3, None);
    let bad = [
        json_run(json!({"container": "nope"})),
        json_run(json!({"container": "busybox", "files": [{"path": "../x", "content": ""}]})),
        Request::post("/api/v1/links")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{"))
            .unwrap(),
    ];
    for (n, req) in bad.into_iter().enumerate() {
        let response = send(&h, req).await;
        assert!(response.status().is_client_error());
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(response.headers()["ratelimit-remaining"], (2 - n).to_string().as_str());
    }
    let refused = send(&h, json_run(hello())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The body was not read: the connection cannot carry another request, and says so.
    assert_eq!(refused.headers()[header::CONNECTION], "close");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    // A request without a body keeps its connection.
    let ok = send(&h, get("/api/v1/containers")).await;
    assert!(!ok.headers().contains_key(header::CONNECTION));
}

#[tokio::test]
async fn busy_is_answered_before_the_body_is_read() {
    // One slot, no queue, the slot held.
    let gate = Arc::new(Semaphore::new(0));
    let h = harness(1, 0, 0, Some(gate.clone()));
    let held = tokio::spawn({
        let state = h.state.clone();
        async move {
            use tower::ServiceExt;
            server::http::app(state).oneshot(json_run(hello())).await.unwrap()
        }
    });
    while h.fake.calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A body that never ends: answered anyway.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tx.send(Ok(bytes::Bytes::from_static(b"{\"container\": "))).await.unwrap();
    let endless = Body::from_stream(tokio_stream_from(rx));
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/json")
        .body(endless)
        .unwrap();
    let answer =
        tokio::time::timeout(Duration::from_secs(5), send(&h, req)).await.expect("answered");
    assert_shaped(answer, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().status(), StatusCode::OK);
    drop(tx);
}

/// A stream of the channel's items.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn bodies_beyond_the_budget_in_flight_are_answered_busy() {
    let mut h = harness(1, 4, 0, None);
    Arc::get_mut(&mut h.state).unwrap().body_budget = Arc::new(Semaphore::new(1000));
    let mut small = hello();
    small["stdin"] = json!("x".repeat(100));
    assert_eq!(send(&h, json_run(small)).await.status(), StatusCode::OK);
    let mut big = hello();
    big["stdin"] = json!("x".repeat(2000));
    assert_shaped(send(&h, json_run(big)).await, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    // The budget came back after each request.
    assert_eq!(h.state.body_budget.available_permits(), 1000);
}

#[tokio::test]
async fn links_are_checked_by_the_rules_of_runs() {
    let h = harness(1, 4, 0, None);
    let post = |body: String| {
        Request::post("/api/v1/links")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let state = |extra: Value| {
        let mut state = json!({"container": "busybox",
                               "files": [{"path": "main.sh", "content": "echo"}]});
        for (k, v) in extra.as_object().unwrap() {
            state[k] = v.clone();
        }
        state.to_string()
    };
    let cases = [
        (
            json!({"files": [{"path": "../x", "content": ""}]}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"files": [{"path": format!("{}", "y".repeat(300)), "content": ""}]}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (json!({"env": {"1BAD": "x"}}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"args": ["a\u{0}b"]}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"options": {"nope": 1}}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_option"),
        (
            json!({"stdin": "x".repeat(shared::limits::MAX_STDIN_BYTES + 1)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (extra, status, code) in cases {
        assert_shaped(send(&h, post(state(extra))).await, status, code).await;
    }
    // A malformed body is 400, not 413; only a body over the cap is 413.
    assert_shaped(send(&h, post("{".into())).await, StatusCode::BAD_REQUEST, "bad_request").await;
    let huge = state(json!({"files": [{"path": "a", "content": "z".repeat(2 << 20)}]}));
    assert_shaped(send(&h, post(huge)).await, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    // What a run accepts, a link accepts.
    assert_eq!(send(&h, post(state(json!({})))).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn readiness_is_checked_at_each_probe() {
    let ready = |h: &Harness| {
        let state = h.state.clone();
        async move {
            use tower::ServiceExt;
            let response = server::http::app(state).oneshot(get("/readyz")).await.unwrap();
            let status = response.status();
            (status, body_json(response).await)
        }
    };
    let mut h = harness(1, 4, 0, None);
    let (status, body) = ready(&h).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["problems"], json!([]));
    // The disk fills up.
    Arc::get_mut(&mut h.state).unwrap().health.min_free_bytes = u64::MAX;
    let (status, body) = ready(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["problems"][0]["check"], "disk_full", "{body}");
    Arc::get_mut(&mut h.state).unwrap().health.min_free_bytes = 0;
    // A part of the backend goes missing.
    let part = h._dirs.1.path().join("vmlinux");
    std::fs::write(&part, b"kernel").unwrap();
    Arc::get_mut(&mut h.state).unwrap().health.parts = vec![part.clone()];
    assert_eq!(ready(&h).await.0, StatusCode::OK);
    std::fs::remove_file(&part).unwrap();
    let (status, body) = ready(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["problems"][0]["check"], "part_missing", "{body}");
    std::fs::write(&part, b"kernel").unwrap();
    // The image store becomes unreadable.
    let images = h._dirs.0.path().to_owned();
    let moved = h._dirs.1.path().join("images-moved");
    std::fs::rename(&images, &moved).unwrap();
    let (status, body) = ready(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["problems"][0]["check"], "image_store_unreadable", "{body}");
    std::fs::rename(&moved, &images).unwrap();
    assert_eq!(ready(&h).await.0, StatusCode::OK, "and it recovers by itself");
}
