//! The few QMP (QEMU Machine Protocol) commands the executor needs, over a Unix socket: one JSON
//! object per line each way, asynchronous events interleaved with replies (and skipped here).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// What went wrong talking to QEMU over QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("QMP: unexpected greeting {0}")]
    Greeting(Value),
    #[error("QMP {command}: cannot send the command")]
    Send {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("QMP: cannot read QEMU's message")]
    Read(#[source] io::Error),
    #[error("QMP: QEMU closed the connection")]
    Closed,
    #[error("QMP: bad message {line:?}")]
    BadMessage {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("QMP {command}: {desc}")]
    Refused { command: String, desc: String },
}

/// A QMP connection after capability negotiation.
#[derive(Debug)]
pub struct Qmp {
    stream: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects to QEMU's QMP socket (retrying while QEMU creates it, up to `wait`) and enters
    /// command mode.
    pub async fn connect(path: &Path, wait: Duration) -> Result<Qmp, QmpError> {
        let stream = connect_unix(path, wait)
            .await
            .map_err(|source| QmpError::Connect { path: path.to_owned(), source })?;
        let mut qmp = Qmp { stream: BufReader::new(stream) };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Greeting(greeting));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut line = json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(|source| QmpError::Send { command: command.to_owned(), source })?;
        loop {
            let mut reply = self.read_message().await?;
            if let Some(value) = reply.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = reply.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("unknown error");
                return Err(QmpError::Refused {
                    command: command.to_owned(),
                    desc: desc.to_owned(),
                });
            }
            // Anything else is an event: not the reply we are waiting for.
        }
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self.stream.read_line(&mut line).await.map_err(QmpError::Read)?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|source| QmpError::BadMessage { line, source })
    }
}

/// Connects to a Unix socket that a starting QEMU is about to create; the error is the last
/// attempt's, once `wait` has passed.
pub async fn connect_unix(path: &Path, wait: Duration) -> io::Result<UnixStream> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
