//! Live runs with real microVMs through a real `pe serve` and a real WebSocket client: output
//! while the program runs (a cold VM), typed stdin answered line by line (a snapshot clone),
//! stop, and a closed socket that ends the VM at once. `pe run -i` is in vm.rs, the sandbox's
//! live runs in executor/tests/sandbox.rs. Needs scripts/setup.sh and the python image.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::real::{Server, http, qemu_pids_in, start_server, wait_for_warm};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(server: &Server) -> Socket {
    let url = format!("ws://127.0.0.1:{}/api/v1/run/live", server.port);
    let (socket, _) = tungstenite::connect(url).unwrap();
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    socket
}

/// The next event and when it came; `None` once the socket closes.
fn next(socket: &mut Socket) -> Option<(Instant, Value)> {
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => {
                return Some((Instant::now(), serde_json::from_str(&text).unwrap()));
            }
            Ok(Message::Close(_)) => {
                let _ = socket.flush();
                return None;
            }
            Ok(_) => {}
            Err(err) => panic!("the socket broke: {err}"),
        }
    }
}

fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).unwrap();
}

fn python(program: &str) -> Value {
    json!({"container": "python", "files": [{"path": "main.py", "content": program}]})
}

/// Joins the data of one stream's chunks, checking each starts where the last ended.
fn joined(events: &[(Instant, Value)], stream: &str) -> String {
    let mut text = String::new();
    for (_, event) in events.iter().filter(|(_, e)| e["type"] == stream) {
        assert_eq!(event["offset"].as_u64().unwrap() as usize, text.len(), "{event}");
        text.push_str(event["data"].as_str().unwrap());
    }
    text
}

#[test]
fn output_comes_while_the_program_runs_and_equals_a_plain_runs() {
    let server = start_server(&[]);
    let program = "import sys, time\nprint('first', flush=True)\nprint('note', file=sys.stderr, flush=True)\ntime.sleep(2)\nprint('second')\n";
    let mut request = python(program);
    request["stdin"] = json!("");
    let mut socket = connect(&server);
    send(&mut socket, request.clone());
    let events: Vec<(Instant, Value)> = std::iter::from_fn(|| next(&mut socket)).collect();
    let (exit_at, exit) = events.last().unwrap();
    assert_eq!(exit["type"], "exit", "{events:?}");
    let result = &exit["result"];
    assert_eq!(result["status"], "exited", "{result}");
    let (first_at, _) = events
        .iter()
        .find(|(_, e)| e["type"] == "stdout" && e["data"].as_str().unwrap().contains("first"))
        .expect("a chunk with the first line");
    let ahead = exit_at.duration_since(*first_at);
    assert!(ahead > Duration::from_millis(1500), "the first line came only {ahead:?} before exit");
    eprintln!("first line {ahead:?} before the exit event");

    // The streams, joined, are the result's; and the same job through POST gives the same.
    assert_eq!(joined(&events, "stdout"), "first\nsecond\n");
    assert_eq!(joined(&events, "stderr"), "note\n");
    assert_eq!(result["stdout"], "first\nsecond\n");
    let (status, _, body) = http(
        server.port,
        "POST",
        "/api/v1/run?cache=bypass",
        "application/json",
        &request.to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let plain: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plain["stdout"], result["stdout"]);
    assert_eq!(plain["stderr"], result["stderr"]);
    assert_eq!(plain["cached"], false);
}

#[test]
fn typed_stdin_is_answered_line_by_line_on_a_snapshot_clone() {
    typed_stdin_is_answered_line_by_line("snapshot", "snapshot");
}

#[test]
fn typed_stdin_is_answered_line_by_line_on_a_pre_booted_vm() {
    typed_stdin_is_answered_line_by_line("boot", "warm");
}

/// A program that squares each line it reads, on a warm VM made one way (`PE_WARM_START`),
/// which the job's `backend.start` names.
fn typed_stdin_is_answered_line_by_line(warm_start: &str, start: &str) {
    let server = start_server(&[("PE_WARM", "python=1"), ("PE_WARM_START", warm_start)]);
    wait_for_warm(server.port);
    let program = "import sys\nfor line in sys.stdin:\n    print(int(line) ** 2, flush=True)\nprint('eof', file=sys.stderr)\n";
    let mut socket = connect(&server);
    send(&mut socket, python(program));
    let (_, started) = next(&mut socket).unwrap();
    assert_eq!(started["type"], "started", "{started}");
    assert_eq!(started["backend"]["start"], start, "{started}");
    let mut stdout = String::new();
    for (n, want) in [(4, "16\n"), (5, "16\n25\n")] {
        send(&mut socket, json!({"type": "stdin", "data": format!("{n}\n")}));
        while stdout != want {
            let (_, event) = next(&mut socket).expect("an answer before the socket closed");
            assert_eq!(event["type"], "stdout", "{event}");
            stdout.push_str(event["data"].as_str().unwrap());
        }
    }
    send(&mut socket, json!({"type": "stdin_close"}));
    let rest: Vec<(Instant, Value)> = std::iter::from_fn(|| next(&mut socket)).collect();
    let result = &rest.last().unwrap().1["result"];
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(result["stdout"], "16\n25\n");
    assert_eq!(result["stderr"], "eof\n");
    assert!(result["not_cached"].is_string(), "{result}");
}

#[test]
fn stop_ends_the_program_and_a_closed_socket_ends_the_vm_at_once() {
    let server = start_server(&[]);
    let program = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n";
    let wait_for_ready = |socket: &mut Socket| loop {
        let (_, event) = next(socket).expect("ready before the socket closed");
        if event["type"] == "stdout" {
            assert_eq!(event["data"], "ready\n");
            return;
        }
    };

    // Stop: the program is killed and the result comes as usual.
    let mut socket = connect(&server);
    send(&mut socket, python(program));
    wait_for_ready(&mut socket);
    let stopped_at = Instant::now();
    send(&mut socket, json!({"type": "kill"}));
    let rest: Vec<(Instant, Value)> = std::iter::from_fn(|| next(&mut socket)).collect();
    let result = &rest.last().unwrap().1["result"];
    assert_eq!(result["status"], "signaled", "{result}");
    assert_eq!(result["signal"], 9, "{result}");
    assert!(result["message"].as_str().unwrap().contains("stopped by the user"), "{result}");
    assert!(stopped_at.elapsed() < Duration::from_secs(5), "stop took {:?}", stopped_at.elapsed());

    // A closed socket: no QEMU and no work files are left, at once.
    let mut socket = connect(&server);
    send(&mut socket, python(program));
    wait_for_ready(&mut socket);
    assert!(!qemu_pids_in(server.work.path()).is_empty(), "the job's QEMU should be running");
    drop(socket);
    let closed_at = Instant::now();
    let deadline = closed_at + Duration::from_secs(5);
    loop {
        let left: Vec<_> = std::fs::read_dir(server.work.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|name| name.to_string_lossy().starts_with("job"))
            .collect();
        if qemu_pids_in(server.work.path()).is_empty() && left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left after the socket closed: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("the VM was gone {:?} after the socket closed", closed_at.elapsed());
}
