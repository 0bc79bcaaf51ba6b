use super::*;
use crate::cpio::Entry;

/// Bytes that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tree() -> Vec<Entry> {
    let mut entries = vec![
        Entry::file("stdout", "hello\n"),
        Entry::file("stderr", ""),
        Entry::dir("output/empty"),
        Entry::file("output/site/index.html", "<h1>hi</h1>".repeat(1000)),
        Entry::file("output/site/media/noise.bin", noise(300_000, 7)),
        Entry::file("output/zeros", vec![0u8; 3 * BLOCK_SIZE as usize]),
        Entry::file(format!("output/{}", "n".repeat(255)), "long name"),
    ];
    // More entries than one directory header holds, and listings over one metadata block.
    for i in 0..600 {
        entries.push(Entry::file(format!("output/many/file-{i:04}.txt"), format!("{i}\n")));
    }
    entries
}

fn content_of<'a>(entries: &'a [Entry], path: &str) -> Option<&'a [u8]> {
    entries.iter().find(|e| e.path == path).map(|e| e.content())
}

#[test]
fn what_is_written_reads_back_identically() {
    let entries = tree();
    let image = write(&entries).unwrap();
    assert_eq!(image.len() % 4096, 0);
    let img = Image::open(&image, ReadLimits::ANSWER).unwrap();
    let nodes = img.list().unwrap();
    // Every file, with its size and content; every directory the paths need.
    for entry in &entries {
        let node =
            nodes.iter().find(|n| n.path == entry.path).unwrap_or_else(|| panic!("{}", entry.path));
        match &node.kind {
            NodeKind::File { size } => {
                assert_eq!(*size, entry.content().len() as u64, "{}", entry.path);
                assert_eq!(img.read(node).unwrap(), entry.content(), "{}", entry.path);
            }
            NodeKind::Dir => assert!(entry.is_dir()),
            NodeKind::Symlink { .. } => panic!("no symlinks were written"),
        }
    }
    for dir in ["output", "output/site", "output/site/media", "output/many"] {
        assert!(nodes.iter().any(|n| n.path == dir && n.kind == NodeKind::Dir), "{dir}");
    }
    assert_eq!(nodes.len(), entries.len() + 4);
    assert_eq!(img.inode_count() as usize, nodes.len() + 1, "the root is an inode too");
    // Directories come before their contents, entries of a directory in name order.
    let many: Vec<&str> = nodes
        .iter()
        .filter(|n| n.path.starts_with("output/many/"))
        .map(|n| n.path.as_str())
        .collect();
    let mut sorted = many.clone();
    sorted.sort();
    assert_eq!(many, sorted);
    assert_eq!(content_of(&entries, "stdout"), Some(&b"hello\n"[..]));
}

#[test]
fn an_empty_tree_is_an_image_with_an_empty_root() {
    let image = write(&[]).unwrap();
    let img = Image::open(&image, ReadLimits::ANSWER).unwrap();
    assert_eq!(img.list().unwrap(), Vec::<Node>::new());
}

#[test]
fn listing_is_bounded_by_the_limits() {
    let image = write(&tree()).unwrap();
    let few = ReadLimits { max_entries: 10, ..ReadLimits::ANSWER };
    let err = Image::open(&image, few).unwrap().list().unwrap_err();
    assert!(matches!(err, SquashfsError::Limit(_)), "{err}");
    let shallow = ReadLimits { max_depth: 2, ..ReadLimits::ANSWER };
    let err = Image::open(&image, shallow).unwrap().list().unwrap_err();
    assert!(matches!(err, SquashfsError::Limit(_)), "{err}");
    let small = ReadLimits { max_file_bytes: 1000, ..ReadLimits::ANSWER };
    let img = Image::open(&image, small).unwrap();
    let nodes = img.list().unwrap();
    let big = nodes.iter().find(|n| n.path == "output/site/media/noise.bin").unwrap();
    assert!(matches!(img.read(big).unwrap_err(), SquashfsError::Limit(_)));
}

/// `image` (one directory block, as [`write`] lays it out) with `from` replaced by `to` in its
/// directory table, which is stored uncompressed; the tables after it move and the superblock
/// follows them.
fn patch_listing(image: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = |i: usize| u64::from_le_bytes(image[i..i + 8].try_into().unwrap()) as usize;
    let (dir_start, id_table) = (at(72), at(48));
    let id_block = at(id_table);
    let header = u16::from_le_bytes([image[dir_start], image[dir_start + 1]]);
    let stored = &image[dir_start + 2..id_block];
    let mut listing = if header & METADATA_UNCOMPRESSED != 0 {
        stored.to_vec()
    } else {
        miniz_oxide::inflate::decompress_to_vec_zlib(stored).unwrap()
    };
    let i = listing.windows(from.len()).position(|w| w == from).expect("the name");
    listing[i..i + to.len()].copy_from_slice(to);
    let mut out = image[..dir_start].to_vec();
    out.extend((listing.len() as u16 | METADATA_UNCOMPRESSED).to_le_bytes());
    out.extend(&listing);
    let new_id_block = out.len() as u64;
    out.extend(&image[id_block..id_table]);
    let new_id_table = out.len() as u64;
    out.extend(new_id_block.to_le_bytes());
    let used = out.len() as u64;
    out[48..56].copy_from_slice(&new_id_table.to_le_bytes());
    out[40..48].copy_from_slice(&used.to_le_bytes());
    out
}

#[test]
fn hostile_names_are_refused() {
    for (evil, why) in [(&b"a/b"[..], "'/'"), (b"..", "'..'"), (b"a\0b", "NUL")] {
        let name = "x".repeat(evil.len());
        let image = write(&[Entry::file(name.clone(), "1")]).unwrap();
        let fine = patch_listing(&image, name.as_bytes(), name.as_bytes());
        assert_eq!(Image::open(&fine, ReadLimits::ANSWER).unwrap().list().unwrap().len(), 1);
        let image = patch_listing(&image, name.as_bytes(), evil);
        let err = Image::open(&image, ReadLimits::ANSWER).unwrap().list().unwrap_err();
        assert!(matches!(err, SquashfsError::BadName { .. }), "{why}: {err}");
    }
}

#[test]
fn damaged_images_are_refused_without_panicking() {
    let image = write(&tree()).unwrap();
    // Cut anywhere: refused at open, at listing or at reading, never a panic.
    for cut in (0..image.len()).step_by(997).chain([1, 95, 96, 97]) {
        let bytes = &image[..cut];
        let Ok(img) = Image::open(bytes, ReadLimits::ANSWER) else { continue };
        if let Ok(nodes) = img.list() {
            for node in nodes.iter().filter(|n| matches!(n.kind, NodeKind::File { .. })) {
                let _ = img.read(node);
            }
        }
    }
    // Flipped bytes anywhere.
    for at in (0..image.len()).step_by(331) {
        let mut bad = image.clone();
        bad[at] ^= 0x5a;
        let Ok(img) = Image::open(&bad, ReadLimits::ANSWER) else { continue };
        if let Ok(nodes) = img.list() {
            for node in nodes.iter().take(50) {
                let _ = img.read(node);
            }
        }
    }
    assert!(matches!(Image::open(b"hsqs", ReadLimits::ANSWER), Err(SquashfsError::NotSquashfs(_))));
    let mut xz = image.clone();
    xz[20] = 4;
    assert!(matches!(Image::open(&xz, ReadLimits::ANSWER), Err(SquashfsError::Compression(4))));
}
