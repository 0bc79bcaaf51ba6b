//! `GET /api/v1/run/live` with the fake backend, over real sockets and a real WebSocket client
//! (tungstenite): the events of a run, the cache, and every refusal as an `error` event followed
//! by a clean close. The real-VM side (streaming while the program runs, typed stdin, stop) is
//! in live_vm.rs.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Harness, harness};
use serde_json::{Value, json};
use server::http::app;
use tokio::sync::Semaphore;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Serves the harness's app on a loopback port from a runtime of its own.
struct Served {
    addr: SocketAddr,
    h: Harness,
    _runtime: tokio::runtime::Runtime,
}

fn serve(h: Harness) -> Served {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(h.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    runtime.spawn(async move { axum::serve(listener, service).await });
    Served { addr, h, _runtime: runtime }
}

fn connect(addr: SocketAddr) -> Socket {
    let (socket, response) = tungstenite::connect(format!("ws://{addr}/api/v1/run/live")).unwrap();
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    socket
}

/// The next event, as JSON (a binary message is returned as `{"binary": len}`).
fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Message::Binary(bytes)) => return Some(json!({ "binary": bytes.len() })),
            Ok(Message::Close(_)) => {
                // Sends the reply tungstenite queued: the server waits for it.
                let _ = socket.flush();
                return None;
            }
            Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Every event until the socket closes.
fn all_events(socket: &mut Socket) -> Vec<Value> {
    std::iter::from_fn(|| next(socket)).collect()
}

fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).unwrap();
}

fn request(stdin: Option<&str>) -> Value {
    let mut request = json!({
        "container": "busybox",
        "files": [{"path": "main.sh", "content": "echo hi"}],
    });
    if let Some(stdin) = stdin {
        request["stdin"] = json!(stdin);
    }
    request
}

/// Asserts the only event is an `error` with `code`, and the socket then closes.
fn assert_error_then_close(socket: &mut Socket, code: &str, needle: &str) -> Value {
    let events = all_events(socket);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "error", "{events:?}");
    assert_eq!(events[0]["code"], code, "{events:?}");
    let message = events[0]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    events[0].clone()
}

#[test]
fn a_live_run_says_started_streams_its_output_and_exits_with_the_full_result() {
    let served = serve(harness(1, 0, 0, None));
    let mut socket = connect(served.addr);
    send(&mut socket, request(None));
    send(&mut socket, json!({"type": "stdin", "data": "typed"}));
    send(&mut socket, json!({"type": "stdin_close"}));
    let events = all_events(&mut socket);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"exit"), "{events:?}");
    assert_eq!(events[0]["image"]["id"], "busybox");
    assert_eq!(events[0]["backend"]["kind"], "fake");
    assert_eq!(events[0]["cached"], false);
    let exit = &events.last().unwrap()["result"];
    // The chunks of each stream, joined at their offsets, are the result's stream.
    let mut stdout = String::new();
    for event in events.iter().filter(|e| e["type"] == "stdout") {
        assert_eq!(event["offset"].as_u64().unwrap() as usize, stdout.len());
        stdout.push_str(event["data"].as_str().unwrap());
    }
    assert_eq!(stdout, exit["stdout"].as_str().unwrap());
    assert!(stdout.contains("main.sh=echo hi"), "{stdout}");
    assert_eq!(exit["status"], "exited");
    assert_eq!(exit["files"][0]["path"], "out.txt");
    // Stdin stayed open for typing: not cached, and the result says why.
    assert!(exit["not_cached"].as_str().unwrap().contains("not cached"), "{exit}");
}

#[test]
fn a_run_with_stdin_given_up_front_is_cached_and_a_hit_replays_at_once() {
    let served = serve(harness(1, 0, 0, None));
    for round in 0..2 {
        let mut socket = connect(served.addr);
        send(&mut socket, request(Some("given")));
        let events = all_events(&mut socket);
        let exit = &events.last().unwrap()["result"];
        assert_eq!(events[0]["cached"], round == 1, "{events:?}");
        assert_eq!(exit["cached"], round == 1, "{exit}");
        assert_eq!(exit["stderr"], "given", "the fake echoes stdin on stderr");
        assert!(exit.get("not_cached").is_none(), "{exit}");
        let stderr: Vec<&Value> = events.iter().filter(|e| e["type"] == "stderr").collect();
        assert_eq!(stderr.len(), 1, "{events:?}");
    }
    assert_eq!(served.h.fake.calls.load(Ordering::SeqCst), 1, "the second run was a hit");
    // Typing into a run whose stdin was given is refused.
    let mut socket = connect(served.addr);
    send(&mut socket, request(Some("other")));
    send(&mut socket, json!({"type": "stdin", "data": "x"}));
    let events = all_events(&mut socket);
    let last = events.last().unwrap();
    assert!(last["type"] == "error" || last["type"] == "exit", "{events:?}");
}

#[test]
fn the_archive_form_answers_with_the_archive_forms_bytes() {
    let served = serve(harness(1, 0, 0, None));
    let mut socket = connect(served.addr);
    let run: shared::api::v1::RunRequest =
        serde_json::from_value(json!({"container": "busybox", "stdin": ""})).unwrap();
    let body = common::archive_request(&run, &[shared::cpio::Entry::file("main.sh", "echo hi")]);
    socket.send(Message::binary(body)).unwrap();
    let mut frame = None;
    while let Ok(message) = socket.read() {
        if let Message::Binary(bytes) = message {
            frame = Some(bytes.to_vec());
        }
    }
    let frame = frame.expect("a binary exit message");
    let (result, archive): (shared::api::v1::RunResult, &[u8]) =
        shared::framing::decode(&frame, 1 << 20).unwrap();
    assert_eq!(result.status, shared::api::v1::RunStatus::Exited);
    let entries = shared::cpio::decode(archive, &shared::cpio::Limits::MAX).unwrap();
    let stdout = entries.iter().find(|e| e.path == "stdout").unwrap();
    assert!(String::from_utf8_lossy(stdout.content()).contains("main.sh=echo hi"));
}

#[test]
fn bad_messages_get_an_error_event_and_a_clean_close() {
    let served = serve(harness(1, 0, 0, None));
    let cases: Vec<(Message, &str, &str)> = vec![
        (Message::binary(b"\x04\0\0\0{xyz".to_vec()), "bad_request", "header"),
        (Message::binary(vec![0xde, 0xad, 0xbe, 0xef, 1, 2]), "too_large", "header"),
        (Message::text("{not json"), "bad_request", "invalid JSON request"),
        (Message::text(r#"{"container":"nope"}"#), "not_found", "no container"),
        (Message::text(r#"{"container":"busybox","options":{"x":1}}"#), "invalid_option", "x"),
    ];
    for (first, code, needle) in cases {
        let mut socket = connect(served.addr);
        socket.send(first).unwrap();
        assert_error_then_close(&mut socket, code, needle);
    }
    // After a valid request: an unknown type, and a second request.
    let gate = Arc::new(Semaphore::new(0));
    let held = serve(harness(1, 0, 0, Some(gate.clone())));
    for (message, needle) in
        [(json!({"type": "stdinn"}), "unknown message"), (request(None), "one run per socket")]
    {
        let mut socket = connect(held.addr);
        send(&mut socket, request(None));
        send(&mut socket, message);
        let events = all_events(&mut socket);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "error", "{events:?}");
        assert!(last["message"].as_str().unwrap().contains(needle), "{events:?}");
        // The run was dropped with the socket: its slot is free again.
        wait_idle(&held);
    }
}

/// Waits until no job holds a slot (a dropped run gives its slot back), or fails.
fn wait_idle(served: &Served) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while served.h.state.pool.running() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(served.h.state.pool.running(), 0, "a dropped run kept its slot");
}

#[test]
fn a_request_that_never_comes_is_timed_out() {
    let served = serve(harness(1, 0, 0, None));
    let mut socket = connect(served.addr);
    let started = Instant::now();
    assert_error_then_close(&mut socket, "timeout", "no request within 300 ms");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn stdin_over_its_cap_and_after_close_are_refused() {
    let gate = Arc::new(Semaphore::new(0));
    let served = serve(harness(1, 0, 0, Some(gate)));
    let mut socket = connect(served.addr);
    send(&mut socket, request(None));
    let chunk = "x".repeat(512 * 1024);
    for _ in 0..3 {
        send(&mut socket, json!({"type": "stdin", "data": chunk}));
    }
    let events = all_events(&mut socket);
    let last = events.last().unwrap();
    assert_eq!(
        (&last["type"], &last["code"]),
        (&json!("error"), &json!("too_large")),
        "{events:?}"
    );
    wait_idle(&served);

    let mut socket = connect(served.addr);
    send(&mut socket, request(None));
    send(&mut socket, json!({"type": "stdin_close"}));
    send(&mut socket, json!({"type": "stdin", "data": "late"}));
    let events = all_events(&mut socket);
    let last = events.last().unwrap();
    assert_eq!(last["message"], "stdin after stdin_close", "{events:?}");
}

#[test]
fn too_many_live_sockets_and_a_full_pool_are_error_events_with_a_retry_time() {
    let gate = Arc::new(Semaphore::new(0));
    let served = serve(harness(1, 0, 0, Some(gate.clone())));
    // Two open sockets (the harness allows two per client); the first one's run holds the slot.
    let mut first = connect(served.addr);
    send(&mut first, request(None));
    let mut second = connect(served.addr);
    let mut third = connect(served.addr);
    let refused = assert_error_then_close(&mut third, "rate_limited", "live runs open");
    assert!(refused["retry_after_s"].as_u64().unwrap() >= 1);
    // The pool's one slot is held and it has no queue: the second socket's run is refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while served.h.state.pool.running() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    send(&mut second, request(None));
    let busy = assert_error_then_close(&mut second, "busy", "busy");
    assert!(busy["retry_after_s"].as_u64().unwrap() >= 1);
    gate.add_permits(10);
    send(&mut first, json!({"type": "stdin_close"}));
    let events = all_events(&mut first);
    assert_eq!(events.last().unwrap()["type"], "exit", "{events:?}");
}

#[test]
fn the_rate_limit_is_an_error_event() {
    // A burst of 2: the third live run of this client is refused.
    let served = serve(harness(1, 4, 2, None));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut socket = connect(served.addr);
        send(&mut socket, request(Some("")));
        seen.push(all_events(&mut socket).last().unwrap().clone());
    }
    assert_eq!(seen[0]["type"], "exit");
    assert_eq!(seen[2]["type"], "error", "{seen:?}");
    assert_eq!(seen[2]["code"], "rate_limited");
    assert!(seen[2]["retry_after_s"].as_u64().unwrap() >= 1);
}
