//! A live run's side of the control port ([`shared::stream`]): the program's output goes out as
//! frames while it runs, typed stdin comes in for the program's stdin pipe ([`StdinFeed`]).
//!
//! Nothing here blocks: the port is non-blocking, and [`crate::job`]'s poll loop asks
//! [`Live::interest`] which way to wait. Backpressure: while more than
//! [`HIGH_WATER`] bytes wait to go out, the job stops reading the program's pipes, so a host
//! (and a client) that stops reading makes the program block on write, not the guest buffer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use shared::stream::{self, Decoder, FrameKind};

use crate::job::StdinFeed;
use crate::{SetupError, Stage, sys};

/// Bytes waiting to go out above which the program's pipes are not read.
pub const HIGH_WATER: usize = 64 * 1024;

pub struct Live {
    port: &'static File,
    decoder: Decoder,
    outbox: Vec<u8>,
    sent: usize,
    port_open: bool,
    /// The host asked to stop the program.
    pub kill_requested: bool,
}

impl Live {
    /// Opens the control port for the stream.
    pub fn open() -> Result<Live, SetupError> {
        let port = crate::control::port()?;
        sys::set_nonblocking(port).stage("open the live stream")?;
        Ok(Live {
            port,
            decoder: Decoder::new(),
            outbox: Vec::new(),
            sent: 0,
            port_open: true,
            kill_requested: false,
        })
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

    /// The port to poll and for what: read always, write when there is something to send.
    pub fn interest(&self) -> (RawFd, libc::c_short) {
        if !self.port_open {
            return (-1, 0);
        }
        let mut events = libc::POLLIN;
        if self.sent < self.outbox.len() {
            events |= libc::POLLOUT;
        }
        (self.port.as_raw_fd(), events)
    }

    /// Does what `revents` (for [`Live::interest`]) allows; typed stdin goes to `stdin` (the
    /// program's stdin pipe, when it is open for typing).
    pub fn on_ready(&mut self, revents: libc::c_short, stdin: Option<&mut StdinFeed>) {
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_port(stdin);
        }
        if revents & libc::POLLOUT != 0 {
            self.write_port();
        }
    }

    fn read_port(&mut self, mut stdin: Option<&mut StdinFeed>) {
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
                    if let Some(feed) = stdin.as_deref_mut() {
                        feed.push(&data);
                    }
                }
                Ok(Some((FrameKind::StdinClose, _))) => {
                    if let Some(feed) = stdin.as_deref_mut() {
                        feed.close();
                    }
                }
                Ok(Some((FrameKind::Kill, _))) => self.kill_requested = true,
                // Output frames come from the guest, never to it; a broken stream is ignored
                // from there on (the host ends the VM if it means harm).
                Ok(Some(_)) | Err(_) => {
                    self.port_open = false;
                    return;
                }
                Ok(None) => break,
            }
        }
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
