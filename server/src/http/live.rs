//! `GET /api/v1/run/live`: a run over a WebSocket, with output as it is written and stdin typed
//! while it runs (message types in `shared::api::live`).
//!
//! 1. [`upgrade`]: the rate limit and the client's live sockets are decided before the
//!    handshake and told after it, as an `error` event (a browser cannot read a refused
//!    handshake's body).
//! 2. [`first_request`]: the request, as `POST /api/v1/run` takes it, within
//!    [`LiveConfig::first_wait`] ([`FIRST_WAIT`] by default).
//! 3. The run handler's steps ([`Plan::new`], the cache key, the busy check); a request that
//!    gives its stdin up front may be answered from the cache, replayed as events at once.
//! 4. [`Session::run`]: the job runs live; its events go out as they come while the client's
//!    messages come in. Closing the socket drops the job, which kills its VM.
//! 5. The output the stream did not carry (past the guest's prompt flush) is sent from the
//!    result, by offset, then the `exit` event, then the socket is closed.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use executor::live::{LiveEvent, LiveInput, LiveIo, Stream};
use shared::api::live::{Chunk, ClientMessage, ServerEvent};
use shared::api::v1::{self, ErrorCode, RunJsonRequest, RunRequest};
use shared::cpio::{self, Entry, Limits};
use tokio::sync::mpsc;

use super::run::{self as run_route, Plan};
use super::{AppError, SharedState, add_rate_headers, client_ip};
use crate::convert::RunAnswer;
use crate::listener::Slot;
use crate::ratelimit::ClientKey;

/// How long the first message (the request) may take to come.
pub const FIRST_WAIT: Duration = Duration::from_secs(10);
/// How long the client may take to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Events waiting for the client, at most (each at most 64 KiB of output): beyond them the
/// job's output is not read, and the program blocks on write.
const EVENT_BUFFER: usize = 16;
/// Messages for the job waiting to be taken, at most.
const INPUT_BUFFER: usize = 1024;
/// Why a run with typed stdin is not cached.
const NOT_CACHED: &str = "a live run whose stdin stays open for typing is not cached: give `stdin` with the request to cache it";

/// Live runs' settings.
#[derive(Debug)]
pub struct LiveConfig {
    /// Live sockets one client may have open.
    pub per_client: usize,
    /// Bytes of stdin one run may receive.
    pub stdin_max: usize,
    /// How long the first message (the request) may take ([`FIRST_WAIT`]).
    pub first_wait: Duration,
    pub open: std::sync::Arc<crate::listener::Open>,
}

pub fn router() -> Router<SharedState> {
    Router::new().route("/api/v1/run/live", get(upgrade))
}

async fn upgrade(State(state): State<SharedState>, req: Request) -> Response {
    let ip = client_ip(&state, &req);
    let request_id =
        req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (mut parts, _) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let decision = state.limiter.enabled().then(|| state.limiter.check(ip));
    let admitted = match decision {
        Some(decision) if !decision.allowed => {
            state.metrics.refused(true);
            Err(AppError::RateLimited { retry_after: decision.reset })
        }
        _ => state
            .live
            .open
            .take(ClientKey::from(ip), state.live.per_client)
            .ok_or_else(|| AppError::RateLimited { retry_after: Duration::from_secs(1) }),
    };
    let admitted = admitted.map_err(|err| match err {
        AppError::RateLimited { retry_after } if decision.is_none_or(|d| d.allowed) => {
            // Not the token bucket: the client's open live sockets.
            (
                ErrorCode::RateLimited,
                format!(
                    "this client has {} live runs open, the most allowed; close one first",
                    state.live.per_client
                ),
                Some(retry_after),
            )
        }
        other => {
            let detail = other.detail();
            (detail.code, detail.message, other.retry_after())
        }
    });
    let max_message = state.max_body;
    let mut response = ws.max_message_size(max_message).on_upgrade(move |socket| async move {
        let mut session = Session { socket, request_id };
        match admitted {
            Ok(slot) => session.run(&state, slot).await,
            Err((code, message, retry_after)) => {
                session.fail(code, message, retry_after).await;
            }
        }
    });
    if let Some(decision) = decision {
        add_rate_headers(&mut response, decision);
    }
    response
}

/// The request, the inputs, and whether it came in the archive form (binary).
type FirstRequest = (RunRequest, Vec<Entry>, Vec<u8>, bool);

/// Step 2: the first message is the request.
fn first_request(message: Message) -> Result<FirstRequest, AppError> {
    match message {
        Message::Text(text) => {
            let json: RunJsonRequest = serde_json::from_str(text.as_str())
                .map_err(|e| AppError::BadRequest(format!("invalid JSON request: {e}")))?;
            let (request, files) = json.split();
            let stdin = run_route::checked_stdin(request.stdin.as_deref())?;
            let files = run_route::json_files(files)?;
            Ok((request, files, stdin, false))
        }
        Message::Binary(bytes) => {
            let (request, archive): (RunRequest, &[u8]) =
                shared::framing::decode(&bytes, shared::limits::MAX_HEADER_BYTES)?;
            let stdin = run_route::checked_stdin(request.stdin.as_deref())?;
            let files = if archive.is_empty() {
                Vec::new()
            } else {
                cpio::decode(archive, &Limits::INPUT)?
            };
            let digest = v1::inputs_digest(&files, &stdin);
            if request.inputs_digest.as_ref().is_some_and(|claimed| *claimed != digest) {
                return Err(AppError::BadRequest(
                    "inputs_digest does not match the input archive".into(),
                ));
            }
            Ok((request, files, stdin, true))
        }
        _ => Err(AppError::BadRequest("the first message must be the run request".into())),
    }
}

struct Session {
    socket: WebSocket,
    request_id: Option<String>,
}

/// The socket is gone (closed by the client, or broken): nothing more can be said.
struct Gone;

/// Logs why the socket cannot be written to.
fn gone(err: impl std::fmt::Display) -> Gone {
    tracing::debug!(error = %err, "the live socket is gone");
    Gone
}

impl Session {
    async fn send(&mut self, event: &ServerEvent) -> Result<(), Gone> {
        let text = serde_json::to_string(event).map_err(gone)?;
        self.socket.send(Message::text(text)).await.map_err(gone)
    }

    /// An `error` event, then a clean close.
    async fn fail(&mut self, code: ErrorCode, message: String, retry_after: Option<Duration>) {
        let event = ServerEvent::Error {
            code,
            message,
            retry_after_s: retry_after.map(|d| d.as_secs().max(1)),
            request_id: self.request_id.clone(),
        };
        if self.send(&event).await.is_ok() {
            self.close(1000, "").await;
        }
    }

    async fn fail_with(&mut self, err: AppError) {
        let detail = err.detail();
        self.fail(detail.code, detail.message, err.retry_after()).await;
    }

    /// The closing handshake: our close frame, then what the client still sends until its
    /// own close frame (for at most [`CLOSE_WAIT`]). Dropping the connection with unread
    /// messages in it would reset it, and the client could lose the last events.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame { code, reason: reason.into() };
        if self.socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = self.socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Steps 2 to 5.
    async fn run(&mut self, state: &SharedState, _slot: Slot) {
        let wait = state.live.first_wait;
        let first = match tokio::time::timeout(wait, self.socket.recv()).await {
            Ok(Some(Ok(message))) => message,
            Ok(_) => return, // closed before asking for anything
            Err(_) => {
                let message = format!("no request within {} ms", wait.as_millis());
                return self.fail(ErrorCode::Timeout, message, None).await;
            }
        };
        let started = Instant::now();
        let (request, files, stdin, binary) = match first_request(first) {
            Ok(first) => first,
            Err(err) => return self.fail_with(err).await,
        };
        let plan = match Plan::new(state, &request) {
            Ok(plan) => plan,
            Err(err) => return self.fail_with(err).await,
        };
        // Only a run whose stdin is all given up front is the same each time.
        let stdin_open = request.stdin.is_none();
        let key = plan.key(state, &v1::inputs_digest(&files, &stdin));
        if !stdin_open {
            if let Some(answer) = run_route::cached(state, &key, started).await {
                return self.replay(answer, binary).await;
            }
            state.metrics.cache(false);
        }
        if let Err(err) = run_route::refuse_if_busy(state) {
            return self.fail_with(err).await;
        }

        let (events, mut event_rx) = mpsc::channel(EVENT_BUFFER);
        let (input, input_rx) = mpsc::channel(INPUT_BUFFER);
        let live = LiveIo { events, input: input_rx, stdin_open, queue_ms: 0 };
        let image = plan_image(&plan);
        let job = run_route::execute(state, plan.job(files, stdin), started, Some(live));
        tokio::pin!(job);
        let mut stream = Streamed::default();
        let stdin_state = if stdin_open { Stdin::Open } else { Stdin::Given };
        let mut typed = Typed { stdin: stdin_state, bytes: 0, max: state.live.stdin_max };
        let mut events_open = true;
        let result = loop {
            tokio::select! {
                biased;
                event = event_rx.recv(), if events_open => match event {
                    Some(event) => {
                        if self.forward(event, &image, &mut stream).await.is_err() {
                            return;
                        }
                    }
                    None => events_open = false,
                },
                result = &mut job => break result,
                message = self.socket.recv() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        // Gone: dropping the job kills its VM.
                        Some(Err(_)) | None => return,
                    };
                    match typed.take(message, &input) {
                        Ok(()) => {}
                        Err(Some(err)) => return self.fail_with(err).await,
                        Err(None) => return,
                    }
                }
            }
        };
        while let Ok(event) = event_rx.try_recv() {
            if self.forward(event, &image, &mut stream).await.is_err() {
                return;
            }
        }
        let mut answer = match result {
            Ok(answer) => answer,
            Err(err) => return self.fail_with(err).await,
        };
        if stdin_open {
            answer.result.not_cached = Some(NOT_CACHED.to_owned());
        } else if let Ok(frame) = answer.to_frame() {
            run_route::store_if_cacheable(state, &key, &answer, &frame).await;
        }
        if self.finish(&answer, &mut stream, binary).await.is_ok() {
            self.close(1000, "").await;
        }
    }

    /// One event of the job, as the client sees it.
    async fn forward(
        &mut self,
        event: LiveEvent,
        image: &v1::ImageRef,
        stream: &mut Streamed,
    ) -> Result<(), Gone> {
        let event = match event {
            LiveEvent::Started { ran_on, queue_ms } => ServerEvent::Started {
                image: image.clone(),
                backend: v1::BackendInfo {
                    kind: ran_on.backend.to_owned(),
                    accel: ran_on.accel.map(str::to_owned),
                    start: Some(ran_on.start.to_owned()),
                    // Known once the job has run (the result says): a warm VM may not fit it.
                    container: None,
                },
                queue_ms,
                cached: false,
            },
            LiveEvent::Output { stream: which, data } => stream.chunk(which, &data),
        };
        self.send(&event).await
    }

    /// The output the stream has not carried, from the result, then the `exit` event (for an
    /// archive-form request, the archive-form answer as one binary message).
    async fn finish(
        &mut self,
        answer: &RunAnswer,
        stream: &mut Streamed,
        binary: bool,
    ) -> Result<(), Gone> {
        for (which, all) in [(Stream::Stdout, &answer.stdout), (Stream::Stderr, &answer.stderr)] {
            let sent = stream.offsets[which as usize] as usize;
            if let Some(rest) = all.get(sent..).filter(|rest| !rest.is_empty()) {
                let event = stream.chunk(which, rest);
                self.send(&event).await?;
            }
        }
        if binary {
            let frame = answer.to_frame().map_err(gone)?;
            self.socket.send(Message::binary(frame)).await.map_err(gone)
        } else {
            self.send(&ServerEvent::Exit { result: Box::new(answer.to_json()) }).await
        }
    }

    /// A cached answer, replayed at once.
    async fn replay(&mut self, answer: RunAnswer, binary: bool) {
        let started = ServerEvent::Started {
            image: answer.result.image.clone(),
            backend: answer.result.backend.clone(),
            queue_ms: 0,
            cached: true,
        };
        if self.send(&started).await.is_ok()
            && self.finish(&answer, &mut Streamed::default(), binary).await.is_ok()
        {
            self.close(1000, "").await;
        }
    }
}

fn plan_image(plan: &Plan) -> v1::ImageRef {
    let image = plan.image();
    v1::ImageRef { id: image.id.clone(), digest: image.digest.clone() }
}

/// Bytes of each stream sent so far.
#[derive(Debug, Default)]
struct Streamed {
    offsets: [u64; 2],
}

impl Streamed {
    fn chunk(&mut self, which: Stream, data: &[u8]) -> ServerEvent {
        let offset = &mut self.offsets[which as usize];
        let chunk = Chunk::new(*offset, data);
        *offset += data.len() as u64;
        match which {
            Stream::Stdout => ServerEvent::Stdout(chunk),
            Stream::Stderr => ServerEvent::Stderr(chunk),
        }
    }
}

/// Where a live run's stdin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdin {
    /// Open for typing.
    Open,
    /// Given whole with the request.
    Given,
    /// Closed by the client's `stdin_close`.
    Closed,
}

/// The client's side of the run: its messages checked and passed to the job.
struct Typed {
    stdin: Stdin,
    bytes: usize,
    max: usize,
}

impl Typed {
    /// Passes a client's message on; `Err(Some)` refuses it (the run ends), `Err(None)` means
    /// the client closed the socket.
    fn take(
        &mut self,
        message: Message,
        input: &mpsc::Sender<LiveInput>,
    ) -> Result<(), Option<AppError>> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return Err(Some(AppError::BadRequest(
                    "a binary message is only for the first message (the archive form)".into(),
                )));
            }
            Message::Close(_) => return Err(None),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        let message: ClientMessage = serde_json::from_str(text.as_str()).map_err(|err| {
            let is_request = serde_json::from_str::<serde_json::Value>(text.as_str())
                .is_ok_and(|v| v.get("container").is_some());
            Some(AppError::BadRequest(if is_request {
                "one run per socket: the request was already given".to_owned()
            } else {
                format!("unknown message: {err}")
            }))
        })?;
        let bad = |why: &str| Err(Some(AppError::BadRequest(why.to_owned())));
        let input_msg = match &message {
            ClientMessage::Stdin { .. } if self.stdin == Stdin::Closed => {
                return bad("stdin after stdin_close");
            }
            ClientMessage::Stdin { .. } if self.stdin == Stdin::Given => {
                return bad("stdin was given with the request: this run's stdin is closed");
            }
            ClientMessage::Stdin { .. } => {
                let bytes = message.stdin_bytes().map_err(|e| {
                    Some(AppError::BadRequest(format!("stdin: data_base64 is not base64: {e}")))
                })?;
                self.bytes += bytes.len();
                if self.bytes > self.max {
                    return Err(Some(AppError::TooLarge(format!(
                        "stdin is over its limit of {} bytes for one run",
                        self.max
                    ))));
                }
                LiveInput::Stdin(bytes)
            }
            ClientMessage::StdinClose if self.stdin != Stdin::Open => {
                return bad("stdin_close on a closed stdin");
            }
            ClientMessage::StdinClose => {
                self.stdin = Stdin::Closed;
                LiveInput::StdinClose
            }
            ClientMessage::Kill => LiveInput::Kill,
        };
        match input.try_send(input_msg) {
            Ok(()) => Ok(()),
            // The job has ended (its answer is on the way): nothing left to feed.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Some(AppError::TooLarge(format!(
                "more than {INPUT_BUFFER} messages wait for the program; send fewer, larger ones"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> Message {
        Message::text(json.to_owned())
    }

    #[test]
    fn the_clients_messages_are_checked_before_they_reach_the_job() {
        let (tx, mut rx) = mpsc::channel(INPUT_BUFFER);
        let mut typed = Typed { stdin: Stdin::Open, bytes: 0, max: 4 };
        assert!(typed.take(text(r#"{"type":"stdin","data":"ab"}"#), &tx).is_ok());
        assert_eq!(rx.try_recv().unwrap(), LiveInput::Stdin(b"ab".to_vec()));
        let over = typed.take(text(r#"{"type":"stdin","data":"cde"}"#), &tx);
        assert!(matches!(over, Err(Some(AppError::TooLarge(_)))));

        let mut typed = Typed { stdin: Stdin::Open, bytes: 0, max: 1024 };
        let unknown = typed.take(text(r#"{"type":"stdinn"}"#), &tx);
        assert!(
            matches!(unknown, Err(Some(AppError::BadRequest(m))) if m.starts_with("unknown message"))
        );
        let second = typed.take(text(r#"{"container":"python"}"#), &tx);
        assert!(
            matches!(second, Err(Some(AppError::BadRequest(m))) if m.starts_with("one run per socket"))
        );
        let binary = typed.take(Message::binary(vec![1, 2]), &tx);
        assert!(matches!(binary, Err(Some(AppError::BadRequest(_)))));
        assert!(typed.take(text(r#"{"type":"stdin_close"}"#), &tx).is_ok());
        assert_eq!(rx.try_recv().unwrap(), LiveInput::StdinClose);
        let after = typed.take(text(r#"{"type":"stdin","data":"x"}"#), &tx);
        assert!(
            matches!(after, Err(Some(AppError::BadRequest(m))) if m == "stdin after stdin_close")
        );
        assert!(typed.take(text(r#"{"type":"kill"}"#), &tx).is_ok());
        assert_eq!(rx.try_recv().unwrap(), LiveInput::Kill);

        let mut given = Typed { stdin: Stdin::Given, bytes: 0, max: 1024 };
        let refused = given.take(text(r#"{"type":"stdin","data":"x"}"#), &tx);
        assert!(
            matches!(refused, Err(Some(AppError::BadRequest(m))) if m.contains("given with the request"))
        );
    }

    #[test]
    fn chunks_carry_each_streams_own_offset() {
        let mut streamed = Streamed::default();
        let a = streamed.chunk(Stream::Stdout, b"abc");
        let b = streamed.chunk(Stream::Stderr, b"x");
        let c = streamed.chunk(Stream::Stdout, b"d");
        assert_eq!(a, ServerEvent::Stdout(Chunk::new(0, b"abc")));
        assert_eq!(b, ServerEvent::Stderr(Chunk::new(0, b"x")));
        assert_eq!(c, ServerEvent::Stdout(Chunk::new(3, b"d")));
    }
}
