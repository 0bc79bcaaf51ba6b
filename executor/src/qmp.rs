//! The few QMP (QEMU Machine Protocol) commands the executor needs, over a Unix socket: one JSON
//! object per line each way, asynchronous events interleaved with replies (and skipped here).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A QMP connection after capability negotiation.
#[derive(Debug)]
pub struct Qmp {
    stream: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects to QEMU's QMP socket (retrying while QEMU creates it, up to `wait`) and enters
    /// command mode.
    pub async fn connect(path: &Path, wait: Duration) -> Result<Qmp, String> {
        let stream = connect_unix(path, wait).await?;
        let mut qmp = Qmp { stream: BufReader::new(stream) };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(format!("QMP: unexpected greeting {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let mut line = json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("QMP {command}: {e}"))?;
        loop {
            let mut reply = self.read_message().await?;
            if let Some(value) = reply.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = reply.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("unknown error");
                return Err(format!("QMP {command}: {desc}"));
            }
            // Anything else is an event: not the reply we are waiting for.
        }
    }

    async fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self.stream.read_line(&mut line).await.map_err(|e| format!("QMP: {e}"))?;
        if n == 0 {
            return Err("QMP: QEMU closed the connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP: bad message {line:?}: {e}"))
    }
}

/// Connects to a Unix socket that a starting QEMU is about to create.
pub async fn connect_unix(path: &Path, wait: Duration) -> Result<UnixStream, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("cannot connect to {}: {err}", path.display()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
