//! Fuzzes the `<u32le header_len><JSON header><archive>` frame parser (`shared::framing`).
//!
//! Input layout: 4 control bytes, then the frame.
//!
//! ```text
//! c[0] & 3     header limit: 0 = limits::MAX_HEADER_BYTES, 1 = usize::MAX (clamped by the
//!              parser), 2 = (c[0] >> 2) * 4 bytes (0..=252), 3 = 16
//! c[1..4]      chunk sizes for HeaderReader::push and for the reader given to read_header,
//!              cycled: 1..=16 bytes (low nibble + 1); bit 7 set = push an empty chunk first
//! ```
//!
//! Inputs shorter than 4 bytes are used whole as the frame with the default limit.
//!
//! Checked: `decode`, the incremental `HeaderReader` fed the frame in chunks, and `read_header`
//! over a reader that returns a few bytes at a time all agree: the same header and the same
//! archive bytes after it, or the same error. A decoded frame re-encodes and decodes to the same
//! header and archive.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shared::framing::{self, FrameError, HeaderReader, Progress};
use shared::limits::MAX_HEADER_BYTES;

const CONTROL_LEN: usize = 4;

fn chunk_len(c: u8) -> usize {
    usize::from(c & 0x0f) + 1
}

struct Chunked<'a> {
    data: &'a [u8],
    pattern: &'a [u8],
    step: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let c = self.pattern[self.step % self.pattern.len()];
        self.step += 1;
        let n = chunk_len(c).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

fn err_key(e: &FrameError) -> String {
    format!("{e:?}")
}

/// Feeds `frame` to a HeaderReader in chunks; returns the header and every byte after it.
fn incremental(
    frame: &[u8],
    pattern: &[u8],
    max_header: usize,
) -> Result<(Value, Vec<u8>), FrameError> {
    let mut reader = HeaderReader::new(max_header);
    let mut pos = 0;
    let mut step = 0;
    while pos < frame.len() {
        let c = pattern[step % pattern.len()];
        step += 1;
        if c & 0x80 != 0 {
            match reader.push::<Value>(&[])? {
                Progress::NeedMore => {}
                Progress::Header(..) => panic!("an empty chunk completed a header"),
            }
        }
        let end = (pos + chunk_len(c)).min(frame.len());
        let chunk = &frame[pos..end];
        pos = end;
        if let Progress::Header(header, mut rest) = reader.push::<Value>(chunk)? {
            assert!(
                rest.len() <= chunk.len(),
                "HeaderReader returned more rest than the chunk held"
            );
            rest.extend_from_slice(&frame[pos..]);
            return Ok((header, rest));
        }
    }
    Err(reader.finish())
}

fn streamed(
    frame: &[u8],
    pattern: &[u8],
    max_header: usize,
) -> Result<(Value, Vec<u8>), FrameError> {
    let mut reader = Chunked { data: frame, pattern, step: 0 };
    let header = framing::read_header::<Value, _>(&mut reader, max_header)?;
    Ok((header, reader.data.to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let (control, frame) = if data.len() >= CONTROL_LEN {
        data.split_at(CONTROL_LEN)
    } else {
        (&[0u8, 3, 7, 0x8f][..], data)
    };
    let max_header = match control[0] & 3 {
        0 => MAX_HEADER_BYTES,
        1 => usize::MAX,
        2 => usize::from(control[0] >> 2) * 4,
        _ => 16,
    };
    let pattern = &control[1..4];

    let whole = framing::decode::<Value>(frame, max_header);
    let whole_key = whole.as_ref().map(|(h, rest)| (h, rest.to_vec())).map_err(err_key);

    let inc = incremental(frame, pattern, max_header);
    let inc_key = inc.as_ref().map(|(h, rest)| (h, rest.clone())).map_err(err_key);
    assert_eq!(inc_key, whole_key, "HeaderReader disagrees with decode (max_header {max_header})");

    let st = streamed(frame, pattern, max_header);
    let st_key = st.as_ref().map(|(h, rest)| (h, rest.clone())).map_err(err_key);
    assert_eq!(st_key, whole_key, "read_header disagrees with decode (max_header {max_header})");

    if let Ok((header, rest)) = &whole {
        let header_len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert!(header_len > 0 && header_len <= max_header.min(MAX_HEADER_BYTES));
        assert_eq!(4 + header_len + rest.len(), frame.len(), "rest is not the tail of the frame");
        // Re-encoding may change the JSON's length (whitespace, number forms): only decode it
        // again when it still fits.
        let encoded = framing::encode(header, rest).expect("a parsed Value serialises");
        let new_len = encoded.len() - 4 - rest.len();
        if new_len <= max_header.min(MAX_HEADER_BYTES) {
            let (again, rest2) = framing::decode::<Value>(&encoded, max_header)
                .unwrap_or_else(|e| panic!("re-encoded frame refused: {e}"));
            // serde_json's default float parsing is best-effort, so floats may not survive a
            // round trip bit for bit; everything else must.
            if !has_float(header) {
                assert_eq!(&again, header, "round trip changed the header");
            }
            assert_eq!(rest2, *rest, "round trip changed the archive");
        }
    }
});
