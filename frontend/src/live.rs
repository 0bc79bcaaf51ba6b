//! Live runs in the browser: the WebSocket of `GET /api/v1/run/live` and the xterm.js terminal
//! that shows the output as it comes (through `js/live.js`).
//!
//! The request goes in the archive form (the frame `POST /api/v1/run` takes), so the run's end
//! is the archive-form answer, unpacked by [`crate::api::unpack_result`] into the same result
//! panel as any run. The events between are `shared::api::live` types, parsed here; what the
//! user types goes out as `shared::api::live::ClientMessage`s.
//!
//! The socket, its callbacks and the terminal are JavaScript objects: they live in a
//! thread-local [`Live`] (one live run at a time), not in the store's signals.

use std::cell::RefCell;

use shared::api::live::{ClientMessage, ServerEvent};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/live.js")]
extern "C" {
    #[derive(Debug, Clone)]
    pub type Terminal;
    #[derive(Debug, Clone)]
    pub type Socket;

    /// Resolves to the terminal, once xterm.js is loaded.
    #[wasm_bindgen(js_name = openTerminal)]
    fn open_terminal(element: &web_sys::HtmlElement, dark: bool, label: &str) -> js_sys::Promise;
    #[wasm_bindgen(js_name = termWrite)]
    fn term_write(term: &Terminal, bytes: &[u8]);
    #[wasm_bindgen(js_name = termWriteText)]
    fn term_write_text(term: &Terminal, text: &str);
    #[wasm_bindgen(js_name = termDispose)]
    fn term_dispose(term: &Terminal);

    #[wasm_bindgen(js_name = openSocket)]
    fn open_socket(
        path: &str,
        first: &[u8],
        on_text: &js_sys::Function,
        on_binary: &js_sys::Function,
        on_close: &js_sys::Function,
    ) -> Socket;
    #[wasm_bindgen(js_name = socketSend)]
    fn socket_send(ws: &Socket, text: &str) -> bool;
    #[wasm_bindgen(js_name = socketClose)]
    fn socket_close(ws: &Socket);
}

/// What the app hears from a live run.
#[derive(Debug)]
pub enum Heard {
    /// The archive-form answer: the run is over.
    Answer(Vec<u8>),
    /// The server refused the request or the run (code and message).
    Error(String),
    /// The socket closed; `true` if it closed before an answer or an error.
    Closed(bool),
}

/// ANSI colour for standard error: bright red, then back to the default.
const STDERR_ON: &str = "\x1b[91m";
const STDERR_OFF: &str = "\x1b[0m";
/// Typed input, echoed dim (the program does not echo it: its stdin is not a terminal).
const TYPED_ON: &str = "\x1b[2m";

type TextCallback = Closure<dyn FnMut(String)>;
type BytesCallback = Closure<dyn FnMut(Vec<u8>)>;
type CloseCallback = Closure<dyn FnMut(u16, String)>;

/// The live run in flight.
struct Live {
    socket: Socket,
    terminal: Option<Terminal>,
    /// Output that came before the terminal was ready.
    pending: Vec<Vec<u8>>,
    ended: bool,
    _callbacks: (TextCallback, BytesCallback, CloseCallback),
}

thread_local! {
    static LIVE: RefCell<Option<Live>> = const { RefCell::new(None) };
}

/// Writes output to the terminal, or keeps it until there is one.
fn show(bytes: Vec<u8>) {
    LIVE.with(|live| {
        if let Some(live) = live.borrow_mut().as_mut() {
            match &live.terminal {
                Some(term) => term_write(term, &bytes),
                None => live.pending.push(bytes),
            }
        }
    });
}

/// Starts a live run of `frame` (the archive form); `on_heard` learns how it ends.
pub fn start(frame: &[u8], on_heard: impl Fn(Heard) + 'static) {
    stop_socket();
    let on_heard = std::rc::Rc::new(on_heard);
    let on_text: TextCallback = Closure::new({
        let on_heard = on_heard.clone();
        move |text: String| match serde_json::from_str::<ServerEvent>(&text) {
            Ok(ServerEvent::Stdout(chunk)) => show(chunk.bytes().unwrap_or_default()),
            Ok(ServerEvent::Stderr(chunk)) => {
                let mut bytes = STDERR_ON.as_bytes().to_vec();
                bytes.extend(chunk.bytes().unwrap_or_default());
                bytes.extend_from_slice(STDERR_OFF.as_bytes());
                show(bytes);
            }
            Ok(ServerEvent::Error { message, retry_after_s, .. }) => {
                mark_ended();
                let message = match retry_after_s {
                    Some(secs) => format!("{message} (retry in {secs} s)"),
                    None => message,
                };
                on_heard(Heard::Error(crate::format::sentence(&message)));
            }
            Ok(ServerEvent::Started { .. } | ServerEvent::Exit { .. }) => {}
            Err(err) => {
                on_heard(Heard::Error(format!("an event from the server is not valid: {err}")))
            }
        }
    });
    let on_binary: BytesCallback = Closure::new({
        let on_heard = on_heard.clone();
        move |bytes: Vec<u8>| {
            mark_ended();
            on_heard(Heard::Answer(bytes));
        }
    });
    let on_close: CloseCallback = Closure::new(move |_code: u16, _reason: String| {
        let early = LIVE.with(|live| live.borrow().as_ref().is_some_and(|l| !l.ended));
        on_heard(Heard::Closed(early));
    });
    let socket = open_socket(
        "/api/v1/run/live",
        frame,
        on_text.as_ref().unchecked_ref(),
        on_binary.as_ref().unchecked_ref(),
        on_close.as_ref().unchecked_ref(),
    );
    LIVE.with(|live| {
        *live.borrow_mut() = Some(Live {
            socket,
            terminal: None,
            pending: Vec::new(),
            ended: false,
            _callbacks: (on_text, on_binary, on_close),
        });
    });
}

fn mark_ended() {
    LIVE.with(|live| {
        if let Some(live) = live.borrow_mut().as_mut() {
            live.ended = true;
        }
    });
}

/// Opens the terminal in `element` and shows what came before it.
pub async fn attach_terminal(element: web_sys::HtmlElement, dark: bool) {
    let Ok(term) = wasm_bindgen_futures::JsFuture::from(open_terminal(
        &element,
        dark,
        "Live output: standard output, and standard error in red",
    ))
    .await
    else {
        return;
    };
    let term: Terminal = term.unchecked_into();
    let kept = LIVE.with(|live| match live.borrow_mut().as_mut() {
        Some(live) => {
            for bytes in live.pending.drain(..) {
                term_write(&term, &bytes);
            }
            live.terminal = Some(term.clone());
            true
        }
        None => false,
    });
    if !kept {
        term_dispose(&term);
    }
}

/// Sends a message of the user; false when the run is not live any more.
fn send(message: &ClientMessage) -> bool {
    let Ok(text) = serde_json::to_string(message) else { return false };
    LIVE.with(|live| live.borrow().as_ref().is_some_and(|l| socket_send(&l.socket, &text)))
}

/// Sends a typed line (with its newline) to the program's stdin and echoes it.
pub fn send_line(line: &str) -> bool {
    let text = format!("{line}\n");
    let sent = send(&ClientMessage::stdin(text.as_bytes()));
    if sent {
        show(format!("{TYPED_ON}{line}{STDERR_OFF}\n").into_bytes());
    }
    sent
}

/// Sends text given before the run (the stdin tab) and echoes it.
pub fn send_text(text: &str) -> bool {
    let sent = send(&ClientMessage::stdin(text.as_bytes()));
    if sent {
        show(format!("{TYPED_ON}{text}{STDERR_OFF}").into_bytes());
    }
    sent
}

/// Closes the program's stdin (Ctrl+D).
pub fn close_stdin() -> bool {
    let sent = send(&ClientMessage::StdinClose);
    if sent {
        show(format!("{TYPED_ON}^D{STDERR_OFF}\n").into_bytes());
    }
    sent
}

/// Stops the program; its result still comes.
pub fn kill() -> bool {
    send(&ClientMessage::Kill)
}

/// Closes the socket (the server ends the VM) and forgets the run.
pub fn stop_socket() {
    if let Some(live) = LIVE.with(|live| live.borrow_mut().take()) {
        if !live.ended {
            socket_close(&live.socket);
        }
        if let Some(term) = &live.terminal {
            term_dispose(term);
        }
    }
}

/// Forgets the terminal (its element is going away); the run goes on.
pub fn detach_terminal() {
    LIVE.with(|live| {
        if let Some(live) = live.borrow_mut().as_mut()
            && let Some(term) = live.terminal.take()
        {
            term_write_text(&term, "");
            term_dispose(&term);
        }
    });
}
