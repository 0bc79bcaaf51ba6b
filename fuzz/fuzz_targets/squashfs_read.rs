//! Fuzzes the squashfs reader (`shared::squashfs::Image`): any bytes are opened, listed and every
//! listed file read, under small limits so work stays bounded.
//!
//! Checked: no panic, no unbounded allocation (the limits cap entries, depth and file size, and
//! each decompression is capped); what is listed obeys the rules (relative paths of names
//! without `/`, `.`, `..` or NUL, within the depth limit; at most `max_entries` entries); a file
//! that reads reads exactly its listed size; and an image the writer makes from the listed tree
//! reads back to the same tree (paths and contents).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::cpio::Entry;
use shared::squashfs::{Image, NodeKind, ReadLimits, write};

const LIMITS: ReadLimits = ReadLimits { max_entries: 2_000, max_depth: 16, max_file_bytes: 4 << 20 };

fuzz_target!(|data: &[u8]| {
    let Ok(image) = Image::open(data, LIMITS) else { return };
    let Ok(nodes) = image.list() else { return };
    assert!(nodes.len() <= LIMITS.max_entries);
    let mut entries = Vec::new();
    for node in &nodes {
        let parts: Vec<&str> = node.path.split('/').collect();
        assert!(parts.len() <= LIMITS.max_depth, "{}", node.path);
        for part in &parts {
            assert!(!part.is_empty() && *part != "." && *part != ".." && !part.contains('\0'));
        }
        match &node.kind {
            NodeKind::File { size } => {
                if let Ok(content) = image.read(node) {
                    assert_eq!(content.len() as u64, *size, "{}", node.path);
                    entries.push(Entry::file(node.path.clone(), content));
                }
            }
            NodeKind::Dir => entries.push(Entry::dir(node.path.clone())),
            NodeKind::Symlink { .. } => {}
        }
    }
    // What was read writes and reads back the same (names may repeat only across directories).
    if let Ok(again) = write(&entries) {
        let back = Image::open(&again, LIMITS).unwrap();
        let listed = back.list().unwrap();
        for entry in &entries {
            let node = listed.iter().find(|n| n.path == entry.path).unwrap();
            if !entry.is_dir() {
                assert_eq!(back.read(node).unwrap(), entry.content());
            }
        }
    }
});
