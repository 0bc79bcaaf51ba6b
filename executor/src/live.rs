//! Live runs, host side: the job's output as it is written, and stdin typed while it runs.
//!
//! The caller hands the executor a [`LiveIo`]: a bounded channel for [`LiveEvent`]s and a
//! receiver of [`StdinMsg`]s. A microVM streams over its control port ([`pump`]), the sandbox
//! over its pipes. The caps of the job hold for what is forwarded, and a full event channel
//! stops the reading (the guest then stops reading the program's pipes and the program blocks
//! on write): a slow client never makes the host buffer without bound.

use std::time::Duration;

use shared::stream::{self, Decoder, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::job::{JobLimits, RanOn};

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a live job reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// The job has its VM (or sandbox): what runs it, and how long it waited for a slot.
    Started { ran_on: RanOn, queue_ms: u64 },
    /// Bytes the program wrote, in the order it wrote them.
    Output { stream: Stream, data: Vec<u8> },
}

/// What the user sends to a live job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveInput {
    /// Bytes for stdin (ignored unless stdin is open).
    Stdin(Vec<u8>),
    /// No more stdin.
    StdinClose,
    /// Stop the program; the job ends and answers as usual (killed by SIGKILL).
    Kill,
}

/// The channels of a live job.
#[derive(Debug)]
pub struct LiveIo {
    pub events: mpsc::Sender<LiveEvent>,
    pub input: mpsc::Receiver<LiveInput>,
    /// Whether stdin stays open for typing (the job's own `stdin` is fed first); otherwise
    /// stdin is the job's `stdin` alone, as in a run that is not live.
    pub stdin_open: bool,
    /// Set by the pool once the job has its slot.
    pub queue_ms: u64,
}

impl LiveIo {
    /// Says the job has started on `ran_on`.
    pub async fn started(&self, ran_on: &RanOn) {
        let event = LiveEvent::Started { ran_on: ran_on.clone(), queue_ms: self.queue_ms };
        let _ = self.events.send(event).await;
    }
}

/// The note on the result of a run its user stopped.
pub const STOPPED_NOTE: &str = "stopped by the user";

/// How long, after the VM has ended, what is still on the control port may take to arrive.
const TAIL: Duration = Duration::from_millis(200);

/// Forwards frames between a live VM's control port and `live` until the port closes. Output
/// beyond the job's caps is not forwarded; a broken frame ends the forwarding (the guest's
/// answer on the I/O disk still has every byte).
pub async fn pump(port: UnixStream, live: &mut LiveIo, limits: &JobLimits) {
    let (mut from_guest, mut to_guest) = port.into_split();
    let mut decoder = Decoder::new();
    let mut forwarded = [0u64; 2];
    let caps = [limits.stdout_bytes, limits.stderr_bytes];
    let mut buf = vec![0u8; 64 * 1024];
    let mut input_open = true;
    let mut frame = Vec::new();
    loop {
        tokio::select! {
            read = from_guest.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                decoder.push(&buf[..n]);
                loop {
                    let (stream, data) = match decoder.next_frame() {
                        Ok(Some((FrameKind::Stdout, data))) => (Stream::Stdout, data),
                        Ok(Some((FrameKind::Stderr, data))) => (Stream::Stderr, data),
                        Ok(None) => break,
                        Ok(Some(_)) | Err(_) => return,
                    };
                    let index = stream as usize;
                    let room = caps[index].saturating_sub(forwarded[index]);
                    let data = &data[..data.len().min(room as usize)];
                    if data.is_empty() {
                        continue;
                    }
                    forwarded[index] += data.len() as u64;
                    let event = LiveEvent::Output { stream, data: data.to_vec() };
                    if live.events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            input = live.input.recv(), if input_open => {
                frame.clear();
                match input {
                    Some(LiveInput::Stdin(data)) => stream::encode(FrameKind::Stdin, &data, &mut frame),
                    Some(LiveInput::StdinClose) => stream::encode(FrameKind::StdinClose, &[], &mut frame),
                    Some(LiveInput::Kill) => stream::encode(FrameKind::Kill, &[], &mut frame),
                    None => input_open = false,
                }
                if !frame.is_empty() && to_guest.write_all(&frame).await.is_err() {
                    input_open = false;
                }
            }
        }
    }
}

/// Waits for `wait` while `pump` forwards the stream; once `wait` is done, gives the pump
/// [`TAIL`] to forward what the guest sent last.
pub async fn wait_while_pumping<W: std::future::Future>(
    wait: W,
    pump: Option<impl std::future::Future<Output = ()>>,
) -> W::Output {
    let Some(pump) = pump else { return wait.await };
    tokio::pin!(wait);
    tokio::pin!(pump);
    let mut pumping = true;
    let output = loop {
        tokio::select! {
            output = &mut wait => break output,
            () = &mut pump, if pumping => pumping = false,
        }
    };
    if pumping {
        let _ = tokio::time::timeout(TAIL, pump).await;
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pump_forwards_output_within_caps_and_stdin_as_frames() {
        let (host, guest) = UnixStream::pair().unwrap();
        let (events, mut rx) = mpsc::channel(16);
        let (input_tx, input_rx) = mpsc::channel(4);
        let mut live = LiveIo { events, input: input_rx, stdin_open: true, queue_ms: 0 };
        let limits = JobLimits { stdout_bytes: 5, ..JobLimits::default() };
        let guest_side = tokio::spawn(async move {
            let mut guest = guest;
            let mut out = Vec::new();
            stream::encode(FrameKind::Stdout, b"abc", &mut out);
            stream::encode(FrameKind::Stderr, b"oops", &mut out);
            stream::encode(FrameKind::Stdout, b"defgh", &mut out);
            guest.write_all(&out).await.unwrap();
            // Read the stdin frames the host sends, then hang up.
            let mut decoder = Decoder::new();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while !got.iter().any(|(kind, _)| *kind == FrameKind::StdinClose) {
                let n = guest.read(&mut buf).await.unwrap();
                decoder.push(&buf[..n]);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            got
        });
        input_tx.send(LiveInput::Stdin(b"4\n".to_vec())).await.unwrap();
        input_tx.send(LiveInput::StdinClose).await.unwrap();
        pump(host, &mut live, &limits).await;
        let mut seen = Vec::new();
        while let Ok(event) = rx.try_recv() {
            seen.push(event);
        }
        let out = |stream, data: &[u8]| LiveEvent::Output { stream, data: data.to_vec() };
        assert_eq!(
            seen,
            [out(Stream::Stdout, b"abc"), out(Stream::Stderr, b"oops"), out(Stream::Stdout, b"de")]
        );
        let frames = guest_side.await.unwrap();
        assert_eq!(frames, [(FrameKind::Stdin, b"4\n".to_vec()), (FrameKind::StdinClose, vec![])]);
    }
}
