//! The squashfs codec against squashfs-tools (installed by scripts/setup.sh; these tests fail,
//! never skip, without them): images written here unpack identically with `unsquashfs`, and
//! images `mksquashfs` makes read identically here.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use shared::cpio::Entry;
use shared::squashfs::{self, Image, NodeKind, ReadLimits};

/// Every path under `root` with what it is: `Some(content)` for a file, `None` for a directory,
/// `Some("-> target")` for a symlink.
fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, Some(format!("-> {}", target.display()).into_bytes()));
            } else if meta.is_dir() {
                out.insert(rel, None);
                stack.push(path);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// What the reader sees of an image, in the same form.
fn read_all(image: &[u8]) -> BTreeMap<String, Option<Vec<u8>>> {
    let img = Image::open(image, ReadLimits::ANSWER).unwrap();
    img.list()
        .unwrap()
        .into_iter()
        .map(|node| {
            let value = match &node.kind {
                NodeKind::Dir => None,
                NodeKind::File { .. } => Some(img.read(&node).unwrap()),
                NodeKind::Symlink { target } => Some(format!("-> {target}").into_bytes()),
            };
            (node.path, value)
        })
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/setup.sh)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn our_images_unpack_identically_with_unsquashfs() {
    let mut entries = vec![
        Entry::file("stdout", "out\n"),
        Entry::file("stderr", ""),
        Entry::dir("output/empty-dir"),
        Entry::file("output/a/b/c/deep.txt", "deep"),
        Entry::file("output/noise.bin", noise(400_000)),
        Entry::file("output/text.txt", "line\n".repeat(100_000)),
        Entry::file(format!("output/{}", "L".repeat(255)), "long"),
    ];
    for i in 0..300 {
        entries.push(Entry::file(format!("output/many/{i}"), i.to_string()));
    }
    let dir = tempfile::tempdir().unwrap();
    let image_path = dir.path().join("out.sqfs");
    fs::write(&image_path, squashfs::write(&entries).unwrap()).unwrap();
    // unsquashfs -l lists every path (under squashfs-root/).
    let listing = run(Command::new("unsquashfs").arg("-l").arg(&image_path));
    for entry in &entries {
        assert!(
            listing.contains(&format!("squashfs-root/{}\n", entry.path)),
            "{} not listed",
            entry.path
        );
    }
    let out = dir.path().join("unpacked");
    run(Command::new("unsquashfs").arg("-no-xattrs").arg("-d").arg(&out).arg(&image_path));
    let unpacked = snapshot(&out);
    for entry in &entries {
        let got = unpacked.get(&entry.path).unwrap_or_else(|| panic!("{} missing", entry.path));
        match got {
            Some(content) => assert_eq!(content.as_slice(), entry.content(), "{}", entry.path),
            None => assert!(entry.is_dir(), "{}", entry.path),
        }
    }
    let mode = fs::metadata(out.join("output/text.txt")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // And our reader agrees with what unsquashfs unpacked.
    assert_eq!(read_all(&fs::read(&image_path).unwrap()), unpacked);
}

#[test]
fn images_made_by_mksquashfs_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("nested/deeper/deepest")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("zero"), b"").unwrap();
    fs::write(src.join("small.txt"), b"small, in a fragment").unwrap();
    fs::write(src.join("nested/deeper/deepest/file"), b"at the bottom").unwrap();
    fs::write(src.join("nested/big.bin"), noise(3 * 131_072 + 4321)).unwrap();
    fs::write(src.join("nested/text"), "compressible ".repeat(50_000)).unwrap();
    fs::write(src.join("x".repeat(255)), b"long name").unwrap();
    fs::hard_link(src.join("small.txt"), src.join("hard-link")).unwrap();
    symlink("nested/text", src.join("link")).unwrap();
    symlink("/etc/passwd", src.join("absolute-link")).unwrap();
    for i in 0..1000 {
        fs::write(src.join(format!("nested/n{i:04}")), i.to_string()).unwrap();
    }
    let expected = snapshot(&src);
    for (name, extra) in [
        ("default.sqfs", &[][..]),
        ("no-fragments.sqfs", &["-no-fragments"][..]),
        ("uncompressed.sqfs", &["-noI", "-noD", "-noF", "-noX"][..]),
        ("small-blocks.sqfs", &["-b", "4096"][..]),
    ] {
        let image = dir.path().join(name);
        run(Command::new("mksquashfs")
            .arg(&src)
            .arg(&image)
            .args(["-comp", "gzip", "-noappend", "-quiet", "-no-progress"])
            .args(extra));
        let got = read_all(&fs::read(&image).unwrap());
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{name}");
        for (path, content) in &expected {
            assert_eq!(&got[path], content, "{name}: {path}");
        }
    }
}

#[test]
fn other_compressors_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let image = dir.path().join("xz.sqfs");
    run(Command::new("mksquashfs").arg(&src).arg(&image).args([
        "-comp",
        "xz",
        "-noappend",
        "-quiet",
    ]));
    let bytes = fs::read(&image).unwrap();
    let err = Image::open(&bytes, ReadLimits::ANSWER).unwrap_err();
    assert!(err.to_string().contains("compression 4"), "{err}");
}
