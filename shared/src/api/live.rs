//! Live runs over a WebSocket, `GET /api/v1/run/live`: output while the program runs, and stdin
//! typed while it runs.
//!
//! 1. The client's first message is the request, as `POST /api/v1/run` takes it: a text message
//!    with the JSON form ([`super::v1::RunJsonRequest`]), or a binary message with the archive
//!    form (framed header and cpio archive).
//! 2. The server answers [`ServerEvent::Started`] once the job has a VM, then
//!    [`ServerEvent::Stdout`] and [`ServerEvent::Stderr`] chunks in the order the program wrote
//!    them, each with its stream's byte offset.
//! 3. The client may send [`ClientMessage`]s: `stdin`, `stdin_close`, `kill`.
//! 4. The server ends with [`ServerEvent::Exit`] carrying the result exactly as
//!    `POST /api/v1/run` answers it (for a binary request: one binary message holding the
//!    archive form's answer instead), or [`ServerEvent::Error`], and closes the socket.
//!
//! Stdin is open for typing when the request has no `stdin`; a request with `stdin` gives all
//! of it up front (the program reads end of file after it), and only such a run is cached.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::v1::{BackendInfo, ErrorCode, ImageRef, RunJsonResult};

/// What a client sends after its request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Bytes for the program's stdin: `data` (text) or `data_base64`.
    Stdin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_base64: Option<String>,
    },
    /// No more stdin: the program reads end of file once it has read what was sent.
    StdinClose,
    /// End the run now (the result says it was killed).
    Kill,
}

impl ClientMessage {
    /// A `stdin` message with these bytes: text when they are UTF-8, base64 otherwise.
    pub fn stdin(bytes: &[u8]) -> ClientMessage {
        match std::str::from_utf8(bytes) {
            Ok(text) => ClientMessage::Stdin { data: Some(text.to_owned()), data_base64: None },
            Err(_) => ClientMessage::Stdin { data: None, data_base64: Some(BASE64.encode(bytes)) },
        }
    }

    /// The bytes of a `stdin` message (empty for the others).
    pub fn stdin_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match self {
            ClientMessage::Stdin { data: Some(text), .. } => Ok(text.as_bytes().to_vec()),
            ClientMessage::Stdin { data: None, data_base64: Some(b64) } => BASE64.decode(b64),
            _ => Ok(Vec::new()),
        }
    }
}

/// What the server sends.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The job has its VM (or its cached result was found): what runs it, and how long it
    /// waited for a slot.
    Started {
        image: ImageRef,
        backend: BackendInfo,
        queue_ms: u64,
        /// A cached result is being replayed.
        cached: bool,
    },
    Stdout(Chunk),
    Stderr(Chunk),
    /// The run ended: the result as `POST /api/v1/run` answers it in JSON.
    Exit {
        result: Box<RunJsonResult>,
    },
    /// The request was refused or the run could not go on; the socket closes after it.
    Error {
        code: ErrorCode,
        message: String,
        /// For `rate_limited` and `busy`: when to try again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
}

/// A piece of one output stream.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Where the piece starts in its stream.
    pub offset: u64,
    /// The bytes, when they are valid UTF-8 on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The bytes in base64, when they are not (a character split between chunks, binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

impl Chunk {
    pub fn new(offset: u64, bytes: &[u8]) -> Chunk {
        match std::str::from_utf8(bytes) {
            Ok(text) => Chunk { offset, data: Some(text.to_owned()), data_base64: None },
            Err(_) => Chunk { offset, data: None, data_base64: Some(BASE64.encode(bytes)) },
        }
    }

    /// The chunk's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match (&self.data, &self.data_base64) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => BASE64.decode(b64),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_the_documented_shapes() {
        let stdin: ClientMessage =
            serde_json::from_str(r#"{"type":"stdin","data":"4\n"}"#).unwrap();
        assert_eq!(stdin, ClientMessage::Stdin { data: Some("4\n".into()), data_base64: None });
        let close: ClientMessage = serde_json::from_str(r#"{"type":"stdin_close"}"#).unwrap();
        assert_eq!(close, ClientMessage::StdinClose);
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"stdni"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"stdin","dat":"x"}"#).is_err());

        let event = ServerEvent::Stdout(Chunk::new(3, b"hi\n"));
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"stdout","offset":3,"data":"hi\n"}"#
        );
        let split = ServerEvent::Stderr(Chunk::new(0, &[0xe2, 0x82]));
        assert_eq!(
            serde_json::to_string(&split).unwrap(),
            r#"{"type":"stderr","offset":0,"data_base64":"4oI="}"#
        );
        let back: ServerEvent =
            serde_json::from_str(&serde_json::to_string(&split).unwrap()).unwrap();
        assert_eq!(back, split);
        let ServerEvent::Stderr(chunk) = back else { unreachable!() };
        assert_eq!(chunk.bytes().unwrap(), [0xe2, 0x82]);
        assert_eq!(ClientMessage::stdin(&[0xff]).stdin_bytes().unwrap(), [0xff]);
    }
}
