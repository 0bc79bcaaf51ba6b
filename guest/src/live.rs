//! A live run's side of the control port ([`shared::stream`]): the program's output goes out as
//! frames while it runs, typed stdin comes in and is fed to the program's stdin pipe.
//!
//! Nothing here blocks: the port and the stdin pipe are non-blocking, and [`crate::job`]'s
//! poll loop asks [`Live::interest`] which way to wait. Backpressure: while more than
//! [`HIGH_WATER`] bytes wait to go out, the job stops reading the program's pipes, so a host
//! (and a client) that stops reading makes the program block on write, not the guest buffer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use shared::guest::LiveRequest;
use shared::stream::{self, Decoder, FrameKind};

use crate::{SetupError, Stage, sys};

/// Bytes waiting to go out above which the program's pipes are not read.
pub const HIGH_WATER: usize = 64 * 1024;

/// The program's stdin, fed from `stdin` frames.
struct StdinFeed {
    /// `None` once closed (by the host's `stdin_close`, or the program closing its end).
    writer: Option<io::PipeWriter>,
    pending: Vec<u8>,
    close_when_flushed: bool,
}

pub struct Live {
    port: &'static File,
    decoder: Decoder,
    outbox: Vec<u8>,
    sent: usize,
    port_open: bool,
    stdin: Option<StdinFeed>,
    /// The host asked to stop the program.
    pub kill_requested: bool,
}

impl Live {
    /// Opens the control port for the stream. With `stdin_open`, also returns the read end of
    /// the program's stdin pipe, primed with `initial` (the request's own stdin).
    pub fn open(
        request: &LiveRequest,
        initial: Vec<u8>,
    ) -> Result<(Live, Option<io::PipeReader>), SetupError> {
        const STAGE: &str = "open the live stream";
        let port = crate::control::port()?;
        sys::set_nonblocking(port).stage(STAGE)?;
        let (stdin, reader) = if request.stdin_open {
            let (reader, writer) = io::pipe().stage(STAGE)?;
            sys::set_nonblocking(&writer).stage(STAGE)?;
            let feed =
                StdinFeed { writer: Some(writer), pending: initial, close_when_flushed: false };
            (Some(feed), Some(reader))
        } else {
            (None, None)
        };
        let live = Live {
            port,
            decoder: Decoder::new(),
            outbox: Vec::new(),
            sent: 0,
            port_open: true,
            stdin,
            kill_requested: false,
        };
        Ok((live, reader))
    }

    /// Whether the job may read more of the program's output now.
    pub fn has_room(&self) -> bool {
        self.outbox.len() - self.sent < HIGH_WATER
    }

    /// Queues output bytes as a frame.
    pub fn send(&mut self, kind: FrameKind, data: &[u8]) {
        if data.is_empty() || !self.port_open {
            return;
        }
        if self.sent == self.outbox.len() {
            self.outbox.clear();
            self.sent = 0;
        }
        stream::encode(kind, data, &mut self.outbox);
    }

    /// The descriptors to poll and for what: the port (read always, write when there is
    /// something to send) and the stdin pipe (write when there is something to feed).
    pub fn interest(&self) -> [(RawFd, libc::c_short); 2] {
        let mut port_events = 0;
        if self.port_open {
            port_events |= libc::POLLIN;
            if self.sent < self.outbox.len() {
                port_events |= libc::POLLOUT;
            }
        }
        let port = if port_events == 0 { -1 } else { self.port.as_raw_fd() };
        let stdin = match &self.stdin {
            Some(StdinFeed { writer: Some(writer), pending, .. }) if !pending.is_empty() => {
                (writer.as_raw_fd(), libc::POLLOUT)
            }
            _ => (-1, 0),
        };
        [(port, port_events), stdin]
    }

    /// Does what `revents` (for the descriptors of [`Live::interest`]) allows.
    pub fn on_ready(&mut self, revents: [libc::c_short; 2]) {
        if revents[0] & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_port();
        }
        if revents[0] & libc::POLLOUT != 0 {
            self.write_port();
        }
        if revents[1] != 0 {
            self.feed_stdin();
        }
    }

    fn read_port(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match (&*self.port).read(&mut buf) {
                Ok(0) => {
                    // The host went away: it will end the VM; stop streaming.
                    self.port_open = false;
                    return;
                }
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.port_open = false;
                    return;
                }
            }
        }
        loop {
            match self.decoder.next_frame() {
                Ok(Some((FrameKind::Stdin, data))) => {
                    if let Some(feed) = self.stdin.as_mut().filter(|f| !f.close_when_flushed) {
                        feed.pending.extend_from_slice(&data);
                    }
                }
                Ok(Some((FrameKind::Kill, _))) => self.kill_requested = true,
                Ok(Some((FrameKind::StdinClose, _))) => {
                    if let Some(feed) = self.stdin.as_mut() {
                        feed.close_when_flushed = true;
                    }
                }
                // Output frames come from the guest, never to it; a broken stream is ignored
                // from there on (the host ends the VM if it means harm).
                Ok(Some(_)) | Err(_) => {
                    self.port_open = false;
                    return;
                }
                Ok(None) => break,
            }
        }
        self.feed_stdin();
    }

    fn write_port(&mut self) {
        while self.sent < self.outbox.len() {
            match (&*self.port).write(&self.outbox[self.sent..]) {
                Ok(0) => break,
                Ok(n) => self.sent += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.port_open = false;
                    break;
                }
            }
        }
    }

    fn feed_stdin(&mut self) {
        let Some(feed) = self.stdin.as_mut() else { return };
        if let Some(writer) = feed.writer.as_mut() {
            while !feed.pending.is_empty() {
                match writer.write(&feed.pending) {
                    Ok(n) => {
                        feed.pending.drain(..n);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // The program closed its stdin: what is left has no reader.
                        feed.pending.clear();
                        feed.writer = None;
                        break;
                    }
                }
            }
        }
        if feed.pending.is_empty() && feed.close_when_flushed {
            feed.writer = None;
        }
    }

    /// Sends what is left, for at most `limit` (the answer on the I/O disk has it all anyway).
    pub fn flush(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.port_open && self.sent < self.outbox.len() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let fds = [(self.port.as_raw_fd(), libc::POLLOUT)];
            match sys::poll(&fds, Some(until - now)) {
                Ok(revents) if revents[0] != 0 => self.write_port(),
                _ => break,
            }
        }
    }
}
