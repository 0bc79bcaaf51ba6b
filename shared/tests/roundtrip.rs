//! Property tests: whatever the encoder accepts, the decoder gives back unchanged, and no byte
//! string makes the decoder panic.

use proptest::prelude::*;
use shared::cpio::{self, Entry, EntryData, Limits};
use shared::framing;

fn component() -> impl Strategy<Value = String> {
    // Printable names, including spaces, unicode and dots (but never "." or "..").
    "[a-zA-Z0-9 _.\u{e9}\u{4e2d}-]{1,12}".prop_filter("not . or ..", |c| c != "." && c != "..")
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::btree_map(
        proptest::collection::vec(component(), 1..4).prop_map(|c| c.join("/")),
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300), 0u32..0o777, any::<u32>()),
        0..12,
    )
    .prop_map(|map| {
        let mut out: Vec<Entry> = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        for (path, (is_dir, data, mode, mtime)) in map {
            // Skip paths that would put a file where a directory is (or the reverse).
            let clashes = taken
                .iter()
                .any(|t| path.starts_with(&format!("{t}/")) || t.starts_with(&format!("{path}/")));
            if clashes {
                continue;
            }
            taken.push(path.clone());
            let data = if is_dir { EntryData::Dir } else { EntryData::File(data) };
            out.push(Entry { path, mode, mtime, data });
        }
        out
    })
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(entries in entries()) {
        let bytes = cpio::encode(&entries, &Limits::MAX).unwrap();
        prop_assert_eq!(cpio::decode(&bytes, &Limits::MAX).unwrap(), entries);
    }

    #[test]
    fn decoder_never_panics_on_mutated_archives(
        entries in entries(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = cpio::encode(&entries, &Limits::MAX).unwrap();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        let cut = cut % (bytes.len() + 1);
        let _ = cpio::decode(&bytes[..cut], &Limits::INPUT);
    }

    #[test]
    fn framing_round_trips(name in ".{0,40}", archive in proptest::collection::vec(any::<u8>(), 0..200)) {
        let frame = framing::encode(&name, &archive).unwrap();
        let (back, rest): (String, &[u8]) = framing::decode(&frame, 1024).unwrap();
        prop_assert_eq!(back, name);
        prop_assert_eq!(rest, &archive[..]);
    }
}
