//! The frame of an `application/x-pe-archive` body:
//!
//! ```text
//! <u32 little-endian header_len> <header_len bytes of JSON header> <archive: the rest>
//! ```
//!
//! The JSON header (a `RunRequest` going in, a `RunResult` coming back) comes first so the
//! receiver can act on it before the archive has arrived: [`HeaderReader`] is fed chunks as
//! they come off the network and yields the header as soon as it is complete, together with the
//! bytes of the archive that arrived in the same chunk.

use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_HEADER_BYTES;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("body ends after {got} bytes, inside the 4-byte header length")]
    TruncatedLength { got: usize },
    #[error("header length {len} exceeds the limit of {max} bytes")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("header length is {len} bytes but the body ends after {got}")]
    TruncatedHeader { len: usize, got: usize },
    #[error("header length is 0")]
    EmptyHeader,
    #[error("header is not valid JSON for this request")]
    InvalidHeader(#[source] serde_json::Error),
    #[error("I/O error while reading the frame")]
    Io(#[from] std::io::Error),
}

/// Encodes `header` as JSON and frames it with `archive`.
pub fn encode<H: Serialize>(header: &H, archive: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(header)?;
    let mut out = Vec::with_capacity(4 + json.len() + archive.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(archive);
    Ok(out)
}

/// Splits a frame held in memory into its parsed header and the archive bytes.
pub fn decode<H: DeserializeOwned>(
    bytes: &[u8],
    max_header: usize,
) -> Result<(H, &[u8]), FrameError> {
    let len = header_len(bytes, max_header)?;
    let end = 4 + len;
    if bytes.len() < end {
        return Err(FrameError::TruncatedHeader { len, got: bytes.len() - 4 });
    }
    let header = parse_header(&bytes[4..end])?;
    Ok((header, &bytes[end..]))
}

/// Reads the length prefix and header from a reader, leaving it positioned at the archive.
pub fn read_header<H: DeserializeOwned, R: Read>(
    reader: &mut R,
    max_header: usize,
) -> Result<H, FrameError> {
    let mut prefix = [0u8; 4];
    let got = read_up_to(reader, &mut prefix)?;
    let len = header_len(&prefix[..got], max_header)?;
    let mut json = vec![0u8; len];
    let got = read_up_to(reader, &mut json)?;
    if got < len {
        return Err(FrameError::TruncatedHeader { len, got });
    }
    parse_header(&json)
}

fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Validates the length prefix at the start of `bytes`.
fn header_len(bytes: &[u8], max_header: usize) -> Result<usize, FrameError> {
    let prefix: [u8; 4] = bytes
        .get(..4)
        .and_then(|p| p.try_into().ok())
        .ok_or(FrameError::TruncatedLength { got: bytes.len() })?;
    let len = u32::from_le_bytes(prefix) as usize;
    let max = max_header.min(MAX_HEADER_BYTES);
    if len > max {
        return Err(FrameError::HeaderTooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::EmptyHeader);
    }
    Ok(len)
}

fn parse_header<H: DeserializeOwned>(json: &[u8]) -> Result<H, FrameError> {
    serde_json::from_slice(json).map_err(FrameError::InvalidHeader)
}

/// An incremental frame reader for bodies that arrive in chunks (sans I/O: the caller owns the
/// network). Memory is bounded by the header limit: the archive is never buffered here.
#[derive(Debug)]
pub struct HeaderReader {
    max_header: usize,
    buf: Vec<u8>,
}

/// What [`HeaderReader::push`] found.
#[derive(Debug)]
pub enum Progress<H> {
    /// More bytes are needed before the header is complete.
    NeedMore,
    /// The header, and the bytes after it that came in the same chunk (the archive's start).
    Header(H, Vec<u8>),
}

impl HeaderReader {
    pub fn new(max_header: usize) -> Self {
        HeaderReader { max_header: max_header.min(MAX_HEADER_BYTES), buf: Vec::new() }
    }

    /// Feeds the next chunk. Refuses an oversized header as soon as its length is known.
    pub fn push<H: DeserializeOwned>(&mut self, chunk: &[u8]) -> Result<Progress<H>, FrameError> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() < 4 {
            return Ok(Progress::NeedMore);
        }
        let len = header_len(&self.buf, self.max_header)?;
        if self.buf.len() < 4 + len {
            return Ok(Progress::NeedMore);
        }
        let header = parse_header(&self.buf[4..4 + len])?;
        let rest = self.buf.split_off(4 + len);
        self.buf.clear();
        Ok(Progress::Header(header, rest))
    }

    /// Call when the body ended: reports what was missing.
    pub fn finish(&self) -> FrameError {
        match header_len(&self.buf, self.max_header) {
            Ok(len) => FrameError::TruncatedHeader { len, got: self.buf.len() - 4 },
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct H {
        name: String,
    }

    #[test]
    fn round_trip_in_memory_and_from_a_reader() {
        let frame = encode(&H { name: "x".into() }, b"ARCHIVE").unwrap();
        let (h, rest): (H, _) = decode(&frame, 1024).unwrap();
        assert_eq!((h.name.as_str(), rest), ("x", &b"ARCHIVE"[..]));
        let mut reader = &frame[..];
        let h: H = read_header(&mut reader, 1024).unwrap();
        assert_eq!(h.name, "x");
        assert_eq!(reader, b"ARCHIVE");
    }

    #[test]
    fn header_reader_accepts_any_chunking() {
        let frame = encode(&H { name: "chunky".into() }, b"tail").unwrap();
        for size in 1..frame.len() {
            let mut reader = HeaderReader::new(1024);
            let mut got = None;
            let mut rest = Vec::new();
            for chunk in frame.chunks(size) {
                if got.is_some() {
                    rest.extend_from_slice(chunk);
                    continue;
                }
                if let Progress::Header(h, r) = reader.push::<H>(chunk).unwrap() {
                    got = Some(h);
                    rest = r;
                }
            }
            assert_eq!(got.unwrap().name, "chunky", "chunk size {size}");
            assert_eq!(rest, b"tail", "chunk size {size}");
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert!(matches!(
            decode::<H>(b"\x01\x00", 64),
            Err(FrameError::TruncatedLength { got: 2 })
        ));
        assert!(matches!(decode::<H>(b"\x00\x00\x00\x00", 64), Err(FrameError::EmptyHeader)));
        assert!(matches!(
            decode::<H>(b"\xff\xff\xff\xff{}", 64),
            Err(FrameError::HeaderTooLarge { max: 64, .. })
        ));
        assert!(matches!(
            decode::<H>(b"\x10\x00\x00\x00{}", 64),
            Err(FrameError::TruncatedHeader { len: 16, got: 2 })
        ));
        assert!(matches!(
            decode::<H>(b"\x02\x00\x00\x00{]", 64),
            Err(FrameError::InvalidHeader(_))
        ));
        assert!(matches!(
            decode::<H>(b"\x0a\x00\x00\x00{\"name\":1}x", 64),
            Err(FrameError::InvalidHeader(_))
        ));
        // The incremental reader refuses an oversized header from its length alone.
        let mut reader = HeaderReader::new(64);
        assert!(matches!(
            reader.push::<H>(b"\x00\x00\x01\x00"),
            Err(FrameError::HeaderTooLarge { len: 65536, .. })
        ));
    }
}
