//! The frames of a live run on the VM's control port (after `go`, or from the start in a cold
//! VM): the guest sends the program's stdout and stderr as they are read from its pipes, the
//! host sends what the user types.
//!
//! ```text
//! <u8 kind> <u32 length, little-endian> <length bytes>
//! ```
//!
//! A frame carries at most [`MAX_FRAME_DATA`] bytes. The guest's final answer (exit status,
//! usage, output files, and stdout and stderr in full) still travels on the I/O disk: the
//! stream is for showing output early, the answer is the record.

/// Bytes of data in one frame, at most.
pub const MAX_FRAME_DATA: usize = 64 * 1024;
/// Length of a frame's header.
pub const FRAME_HEADER_LEN: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Guest to host: bytes the program wrote to stdout.
    Stdout = 1,
    /// Guest to host: bytes the program wrote to stderr.
    Stderr = 2,
    /// Host to guest: bytes for the program's stdin.
    Stdin = 3,
    /// Host to guest: no more stdin (the program reads end of file once the rest is read).
    StdinClose = 4,
    /// Host to guest: the user stopped the run; kill the program and answer as usual.
    Kill = 5,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Stdin,
            4 => FrameKind::StdinClose,
            5 => FrameKind::Kill,
            _ => return None,
        })
    }
}

/// A frame that breaks the protocol: the stream cannot be trusted past it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME_DATA}")]
    TooLong(usize),
}

/// Appends one frame to `out`. `data` longer than [`MAX_FRAME_DATA`] is split over several
/// frames of the same kind.
pub fn encode(kind: FrameKind, data: &[u8], out: &mut Vec<u8>) {
    let mut chunks = data.chunks(MAX_FRAME_DATA).peekable();
    if chunks.peek().is_none() {
        out.push(kind as u8);
        out.extend_from_slice(&0u32.to_le_bytes());
        return;
    }
    for chunk in chunks {
        out.push(kind as u8);
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Reads frames out of a byte stream that arrives in pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes as they were read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(FrameKind, Vec<u8>)>, FrameError> {
        let pending = &self.buf[self.start..];
        if pending.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let kind = FrameKind::from_byte(pending[0]).ok_or(FrameError::Kind(pending[0]))?;
        let len = u32::from_le_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
        if len > MAX_FRAME_DATA {
            return Err(FrameError::TooLong(len));
        }
        if pending.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let data = pending[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start > 1 << 20 {
            // Keep the buffer from growing with everything ever read.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some((kind, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split_of_the_stream() {
        let mut bytes = Vec::new();
        encode(FrameKind::Stdout, b"hello\n", &mut bytes);
        encode(FrameKind::StdinClose, b"", &mut bytes);
        encode(FrameKind::Stderr, &vec![7u8; MAX_FRAME_DATA + 3], &mut bytes);
        for piece in [1, 2, 5, 7, 4096, bytes.len()] {
            let mut decoder = Decoder::new();
            let mut frames = Vec::new();
            for chunk in bytes.chunks(piece) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            let kinds: Vec<(FrameKind, usize)> =
                frames.iter().map(|(kind, data)| (*kind, data.len())).collect();
            assert_eq!(
                kinds,
                [
                    (FrameKind::Stdout, 6),
                    (FrameKind::StdinClose, 0),
                    (FrameKind::Stderr, MAX_FRAME_DATA),
                    (FrameKind::Stderr, 3)
                ],
                "pieces of {piece}"
            );
            assert_eq!(frames[0].1, b"hello\n");
        }
    }

    #[test]
    fn broken_frames_are_refused() {
        let mut decoder = Decoder::new();
        decoder.push(&[9, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(FrameError::Kind(9)));
        let mut decoder = Decoder::new();
        decoder.push(&[1]);
        decoder.push(&((MAX_FRAME_DATA + 1) as u32).to_le_bytes());
        assert_eq!(decoder.next_frame(), Err(FrameError::TooLong(MAX_FRAME_DATA + 1)));
    }
}
