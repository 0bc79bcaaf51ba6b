//! `pe archive` held to GNU cpio: archives made by `cpio -o -H newc` decode to the same files,
//! and archives we write extract with `cpio -idm` to the same bytes and modes. Hostile archives
//! are refused with a one-line error and write nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use shared::cpio::{Encoder, Limits};

fn pe(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pe")).args(args).current_dir(cwd).output().unwrap()
}

fn sh(script: &str, cwd: &Path) -> Output {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(cwd).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed (is GNU cpio installed? scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tree with nested directories, an empty file, binary content, odd names and modes.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("src/nested dir")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    fs::write(root.join("src/nested dir/caf\u{e9}.txt"), "unicode name\n").unwrap();
    fs::write(root.join("empty"), "").unwrap();
    fs::write(root.join("binary.bin"), (0..=255u8).cycle().take(5000).collect::<Vec<_>>()).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every file and directory under `root`, with its mode and content.
fn snapshot(root: &Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                stack.push(path);
                out.push((rel, mode, None));
            } else {
                out.push((rel, mode, Some(fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn gnu_cpio_archives_list_and_unpack_to_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(&tmp.path().join("tree"));
    sh("find tree | cpio -o -H newc --quiet > gnu.cpio", tmp.path());

    let ours = pe(&["archive", "list", "gnu.cpio"], tmp.path());
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let gnu = sh("cpio -t --quiet < gnu.cpio", tmp.path());
    assert_eq!(String::from_utf8_lossy(&ours.stdout), String::from_utf8_lossy(&gnu.stdout));

    // Through a pipe too, as the README shows.
    let piped = sh(
        &format!(
            "find tree | cpio -o -H newc --quiet | {} archive list -",
            env!("CARGO_BIN_EXE_pe")
        ),
        tmp.path(),
    );
    assert_eq!(piped.stdout, gnu.stdout);

    let out = pe(&["archive", "unpack", "gnu.cpio", "unpacked"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(&tmp.path().join("unpacked/tree")), snapshot(&tmp.path().join("tree")));
}

#[test]
fn our_archives_extract_with_gnu_cpio_to_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(&tmp.path().join("tree"));
    let out = pe(&["archive", "pack", "tree", "-o", "ours.cpio"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fs::create_dir(tmp.path().join("gnu")).unwrap();
    sh("cpio -idm --quiet < ../ours.cpio", &tmp.path().join("gnu"));
    assert_eq!(snapshot(&tmp.path().join("gnu")), snapshot(&tmp.path().join("tree")));
    // Same entries as GNU cpio lists, in our sorted order.
    let gnu = sh("cpio -t --quiet < ours.cpio", tmp.path());
    let ours = pe(&["archive", "list", "ours.cpio"], tmp.path());
    assert_eq!(ours.stdout, gnu.stdout);
}

/// Writes an archive whose only entry has `name`, bypassing our encoder's checks.
fn raw_archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            i + 1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let trailer = Encoder::new(Vec::new(), Limits::MAX).finish().unwrap();
    out.extend(trailer);
    out
}

#[test]
fn hostile_archives_are_refused_with_one_line_and_write_nothing() {
    let good: &[u8] = b"ok";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            raw_archive(&[("a.txt", 0o100644, good), ("../x", 0o100644, good)]),
            "contains '..'",
        ),
        (
            "absolute",
            raw_archive(&[("a.txt", 0o100644, good), ("/etc/x", 0o100644, good)]),
            "is absolute",
        ),
        (
            "duplicate",
            raw_archive(&[("a.txt", 0o100644, good), ("a.txt", 0o100644, good)]),
            "appears twice",
        ),
        (
            "device",
            raw_archive(&[("a.txt", 0o100644, good), ("null", 0o020666, b"")]),
            "character device",
        ),
        (
            "symlink",
            raw_archive(&[("a.txt", 0o100644, good), ("l", 0o120777, b"/etc")]),
            "symbolic link",
        ),
        (
            "truncated",
            {
                let full = raw_archive(&[("a.txt", 0o100644, b"hello world")]);
                full[..full.len() - 130].to_vec()
            },
            "truncated",
        ),
    ];
    for (name, bytes, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("bad.cpio"), &bytes).unwrap();
        let out = pe(&["archive", "unpack", "bad.cpio", "dest/inner"], tmp.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        // Nothing written: not even the destination, nor anything beside it.
        let left: Vec<_> =
            fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["bad.cpio"], "{name}");
    }
}

#[test]
fn unpack_never_follows_a_symlink_already_in_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir_all(tmp.path().join("outside")).unwrap();
    fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside"), dest.join("sub")).unwrap();
    fs::write(tmp.path().join("a.cpio"), raw_archive(&[("sub/x", 0o100644, b"x")])).unwrap();
    let out = pe(&["archive", "unpack", "a.cpio", "dest"], tmp.path());
    assert!(!out.status.success());
    assert!(fs::read_dir(tmp.path().join("outside")).unwrap().next().is_none());
}

#[test]
fn pack_refuses_symlinks_rather_than_following_them() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("tree")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("tree/link")).unwrap();
    let out = pe(&["archive", "pack", "tree"], tmp.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic link"));
}

#[test]
fn squashfs_images_list_and_unpack_like_archives_and_symlinks_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(&tmp.path().join("tree"));
    sh("mksquashfs tree tree.sqfs -comp gzip -noappend -quiet -no-progress", tmp.path());
    let listed = pe(&["archive", "list", "tree.sqfs"], tmp.path());
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let mut lines: Vec<String> =
        String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    let mut expected: Vec<String> =
        snapshot(&tmp.path().join("tree")).into_iter().map(|e| e.0).collect();
    expected.sort();
    assert_eq!(lines, expected);
    let out = pe(&["archive", "unpack", "tree.sqfs", "unpacked"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(&tmp.path().join("unpacked")), snapshot(&tmp.path().join("tree")));

    // A symlink is listed with its target, and unpacking refuses it before writing anything.
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("tree/evil")).unwrap();
    sh("mksquashfs tree link.sqfs -comp gzip -noappend -quiet -no-progress", tmp.path());
    let listed = pe(&["archive", "list", "-v", "link.sqfs"], tmp.path());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("evil -> /etc/passwd"));
    let out = pe(&["archive", "unpack", "link.sqfs", "refused"], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("evil is a symbolic link") && err.lines().count() == 1, "{err}");
    assert!(!tmp.path().join("refused").exists(), "nothing is written");
}
