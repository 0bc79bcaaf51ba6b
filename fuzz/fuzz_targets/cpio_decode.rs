//! Fuzzes the cpio "newc" decoder (`shared::cpio`).
//!
//! Input layout: 8 control bytes, then the archive.
//!
//! ```text
//! c[0] max_entries     = c[0] % 16          (0xff: Limits::INPUT's value)
//! c[1] max_total_bytes = c[1] * 4           (0xff: Limits::INPUT's value)
//! c[2] max_path_len    = c[2] % 64          (0xff: Limits::INPUT's value)
//! c[3] max_depth       = c[3] % 8           (0xff: Limits::INPUT's value)
//! c[4..8]              read sizes for the streaming decoder, cycled: 1..=7 bytes per read,
//!                      0 = one `Interrupted` error (then a real read)
//! ```
//!
//! Inputs shorter than 8 bytes are decoded whole with `Limits::INPUT`.
//!
//! The archive is decoded with `Limits::INPUT` and with the small limits above. Checked:
//! - the streaming `Decoder`, fed a few bytes per `read`, gives exactly what `decode` gives
//!   (same entries, or the same error);
//! - an accepted archive obeys every rule: relative, normalised paths without `..`, `.` or empty
//!   components, no control characters, backslashes or NULs; no duplicates; no path that is
//!   both a file and a directory; mode <= 0o777; entry count, total content, path length and
//!   depth within the limits;
//! - limits only ever refuse more: accepted under the small limits => accepted, identically,
//!   under `Limits::INPUT`, and accepted under `Limits::INPUT` => accepted under `Limits::MAX`;
//! - round trip: `encode` accepts the decoded entries under the same limits, decoding that gives
//!   them back, and encoding again gives the same bytes.
#![no_main]

use std::collections::HashMap;
use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use shared::cpio::{self, CpioError, Decoder, Entry, EntryData, Limits};

const CONTROL_LEN: usize = 8;

/// A reader that hands out its data a few bytes at a time, following `pattern`.
struct Chunked<'a> {
    data: &'a [u8],
    pattern: &'a [u8],
    step: usize,
    just_interrupted: bool,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.data.is_empty() {
            return Ok(0);
        }
        let p = self.pattern[self.step % self.pattern.len()] % 8;
        self.step += 1;
        if p == 0 && !self.just_interrupted {
            self.just_interrupted = true;
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        self.just_interrupted = false;
        let n = usize::from(p.max(1)).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn small_limits(c: &[u8]) -> Limits {
    let input = Limits::INPUT;
    let pick = |b: u8, small: usize, full: usize| if b == 0xff { full } else { small };
    Limits {
        max_entries: pick(c[0], usize::from(c[0] % 16), input.max_entries),
        max_total_bytes: if c[1] == 0xff { input.max_total_bytes } else { u64::from(c[1]) * 4 },
        max_path_len: pick(c[2], usize::from(c[2] % 64), input.max_path_len),
        max_depth: pick(c[3], usize::from(c[3] % 8), input.max_depth),
    }
}

/// Errors compared by their Debug text (`CpioError` has no `PartialEq`; it holds `io::Error`).
fn key(result: &Result<Vec<Entry>, CpioError>) -> Result<&Vec<Entry>, String> {
    result.as_ref().map_err(|e| format!("{e:?}"))
}

fn check_stream(
    archive: &[u8],
    pattern: &[u8],
    limits: &Limits,
    whole: &Result<Vec<Entry>, CpioError>,
) {
    let reader = Chunked { data: archive, pattern, step: 0, just_interrupted: false };
    let mut decoder = Decoder::new(reader, *limits);
    let streamed: Result<Vec<Entry>, CpioError> = decoder.by_ref().collect();
    assert_eq!(key(&streamed), key(whole), "streaming decoder disagrees with decode ({limits:?})");
    // After the end (trailer or error) the decoder stays done.
    assert!(decoder.next().is_none(), "decoder yielded something after it finished");
    assert!(decoder.offset() <= archive.len() as u64, "decoder offset past the input");
}

fn check_invariants(entries: &[Entry], limits: &Limits) {
    assert!(entries.len() <= limits.max_entries, "{} entries > {limits:?}", entries.len());
    let total: u64 = entries.iter().map(|e| e.content().len() as u64).sum();
    assert!(total <= limits.max_total_bytes, "{total} bytes of content > {limits:?}");

    let mut kinds: HashMap<&str, bool> = HashMap::new(); // path -> is_dir
    for entry in entries {
        let path = entry.path.as_str();
        assert!(!path.is_empty(), "empty path");
        assert!(!path.starts_with('/'), "absolute path {path:?}");
        assert!(!path.ends_with('/'), "trailing slash in {path:?}");
        assert!(!path.contains('\\'), "backslash in {path:?}");
        assert!(!path.chars().any(char::is_control), "control character in {path:?}");
        assert!(path.len() <= limits.max_path_len, "path {path:?} longer than {limits:?}");
        let mut depth = 0;
        for component in path.split('/') {
            assert!(!component.is_empty(), "empty component in {path:?}");
            assert_ne!(component, ".", "'.' component in {path:?}");
            assert_ne!(component, "..", "'..' component in {path:?}");
            depth += 1;
        }
        assert!(depth <= limits.max_depth, "path {path:?} deeper than {limits:?}");
        assert!(
            entry.mode <= 0o777,
            "mode {:o} of {path:?} has more than permission bits",
            entry.mode
        );
        assert!(kinds.insert(path, entry.is_dir()).is_none(), "duplicate path {path:?}");
    }
    // No path is used both as a file and as a directory.
    for path in kinds.keys() {
        for (i, _) in path.match_indices('/') {
            let parent = &path[..i];
            assert_ne!(
                kinds.get(parent),
                Some(&false),
                "{parent:?} is a file and the parent of {path:?}"
            );
        }
    }
}

fn check_round_trip(entries: &[Entry], limits: &Limits) {
    let bytes = cpio::encode(entries, limits).unwrap_or_else(|e| {
        panic!("encode refused entries the decoder accepted ({limits:?}): {e}")
    });
    let again = cpio::decode(&bytes, limits)
        .unwrap_or_else(|e| panic!("decode refused what encode wrote ({limits:?}): {e}"));
    assert_eq!(again, entries, "round trip changed the entries");
    let bytes2 = cpio::encode(&again, limits).expect("second encode");
    assert_eq!(bytes2, bytes, "encoding is not deterministic");
}

/// Decodes `archive` under `limits` and checks everything; returns what `decode` gave.
fn check(archive: &[u8], pattern: &[u8], limits: &Limits) -> Result<Vec<Entry>, CpioError> {
    let whole = cpio::decode(archive, limits);
    check_stream(archive, pattern, limits, &whole);
    if let Ok(entries) = &whole {
        check_invariants(entries, limits);
        check_round_trip(entries, limits);
        for entry in entries {
            if let EntryData::Dir = entry.data {
                assert!(entry.content().is_empty());
            }
        }
    }
    whole
}

fuzz_target!(|data: &[u8]| {
    let (control, archive) = if data.len() >= CONTROL_LEN {
        data.split_at(CONTROL_LEN)
    } else {
        (&[0xffu8, 0xff, 0xff, 0xff, 1, 2, 3, 7][..], data)
    };
    let pattern = &control[4..8];

    let input = check(archive, pattern, &Limits::INPUT);
    if let Ok(entries) = &input {
        let max = cpio::decode(archive, &Limits::MAX);
        assert_eq!(
            max.as_ref().ok(),
            Some(entries),
            "Limits::MAX refused what Limits::INPUT accepted"
        );
    }

    let small = small_limits(control);
    let small_result = check(archive, pattern, &small);
    if let Ok(entries) = &small_result {
        // Every small limit is <= the INPUT one, so INPUT must accept the same archive.
        assert_eq!(
            input.as_ref().ok(),
            Some(entries),
            "Limits::INPUT refused what smaller limits {small:?} accepted: {:?}",
            input.as_ref().err()
        );
    }
});
