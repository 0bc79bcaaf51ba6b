//! Importing image archives, made here with the `tar` crate (no Docker needed): `docker save`
//! and OCI layout archives, whiteouts, hostile archives, and a whole build into a squashfs image.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use images::ImageStore;
use images::build::{DebianSource, Recipe, build};
use images::oci::{ImageConfig, ImportOptions, Limits, OciError, import};
use sha2::{Digest, Sha256};

/// One entry of a layer. Paths are written into the header as they are, unchecked, so that
/// hostile archives can be made too.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str),
    Fifo(&'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        let (path, data, mode, kind, link): (&str, &[u8], u32, tar::EntryType, Option<&str>) =
            match *entry {
                E::Dir(p, mode) => (p, b"", mode, tar::EntryType::Directory, None),
                E::File(p, data, mode) => (p, data, mode, tar::EntryType::Regular, None),
                E::Symlink(p, to) => (p, b"", 0o777, tar::EntryType::Symlink, Some(to)),
                E::Hardlink(p, to) => (p, b"", 0o644, tar::EntryType::Link, Some(to)),
                E::CharDev(p) => (p, b"", 0o666, tar::EntryType::Char, None),
                E::Fifo(p) => (p, b"", 0o644, tar::EntryType::Fifo, None),
            };
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        if let Some(link) = link {
            h.set_link_name_literal(link).unwrap();
        }
        h.set_cksum();
        builder.append(&h, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_path(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", hex::encode(Sha256::digest(bytes)))
}

/// The outer archive: plain files.
fn archive(dir: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    let entries: Vec<E> =
        files.iter().map(|(name, data)| E::File(name, data.as_slice(), 0o644)).collect();
    let path = dir.join("image.tar");
    fs::write(&path, tar_of(&entries)).unwrap();
    path
}

fn config_json(arch: &str, entrypoint: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "GREETING=hi"],
            "Entrypoint": entrypoint,
            "Cmd": null,
            "WorkingDir": "/work",
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap()
}

/// A one-image `docker save` archive with these layer tarballs (stored as `blobs/sha256/...`).
fn docker_save(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    let config = config_json("amd64", &["/bin/sh"]);
    let mut files = vec![(blob_path(&config), config.clone())];
    for layer in layers {
        files.push((blob_path(layer), layer.clone()));
    }
    let manifest = serde_json::json!([{
        "Config": blob_path(&config),
        "RepoTags": ["test:latest"],
        "Layers": layers.iter().map(|l| blob_path(l)).collect::<Vec<_>>(),
    }]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    archive(dir, &files)
}

struct Imported {
    _dir: tempfile::TempDir,
    base: PathBuf,
    rootfs: PathBuf,
    result: Result<ImageConfig, OciError>,
    notes: Vec<String>,
}

/// Imports `layers` (as a `docker save` archive) into a fresh root filesystem.
fn import_layers(layers: &[Vec<u8>]) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_owned();
    let path = docker_save(&base, layers);
    let rootfs = base.join("rootfs");
    let mut notes = Vec::new();
    let result =
        import(&path, &rootfs, &ImportOptions::default(), &mut |l| notes.push(l.to_owned()));
    Imported { _dir: dir, base, rootfs, result, notes }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn docker_save_applies_layers_with_whiteouts_and_opaque_dirs() {
    let lower = tar_of(&[
        E::Dir("./", 0o755),
        E::Dir("etc", 0o755),
        E::File("etc/hello", b"one", 0o644),
        E::Dir("bin", 0o755),
        E::File("bin/tool", b"#!/bin/sh\n", 0o4755),
        E::Hardlink("bin/tool2", "bin/tool"),
        E::Symlink("bin/sh", "tool"),
        E::File("gone.txt", b"x", 0o644),
        E::Dir("data", 0o750),
        E::File("data/old", b"old", 0o644),
        E::Dir("data/sub", 0o755),
        E::File("data/sub/deep", b"deep", 0o644),
        E::Dir("ro", 0o555),
        E::File("ro/file", b"f", 0o444),
    ]);
    let upper = tar_of(&[
        // Written before the opaque marker in the same layer: it stays.
        E::File("data/new", b"new", 0o600),
        E::File("data/.wh..wh..opq", b"", 0o644),
        E::File(".wh.gone.txt", b"", 0o644),
        E::File("etc/hello", b"two", 0o640),
        E::File("ro/file2", b"g", 0o644),
    ]);
    // One plain layer at an old-style path, one gzip-compressed blob; two images, by tag.
    let dir = tempfile::tempdir().unwrap();
    let upper_gz = gzip(&upper);
    let config = config_json("amd64", &["/bin/sh", "-c"]);
    let other = config_json("amd64", &[]);
    let manifest = serde_json::json!([
        {"Config": "other.json", "RepoTags": ["other:1"], "Layers": ["missing/layer.tar"]},
        {"Config": "cfg.json", "RepoTags": ["docker.io/example/app:latest"],
         "Layers": ["abc/layer.tar", blob_path(&upper_gz)]},
    ]);
    let path = archive(
        dir.path(),
        &[
            ("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()),
            ("other.json".into(), other),
            ("cfg.json".into(), config),
            ("abc/layer.tar".into(), lower),
            (blob_path(&upper_gz), upper_gz),
        ],
    );
    let rootfs = dir.path().join("rootfs");
    let options = ImportOptions { tag: Some("example/app".into()), ..Default::default() };
    let config = import(&path, &rootfs, &options, &mut |_| {}).unwrap();

    assert_eq!(
        config,
        ImageConfig {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec![],
            env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hi".into()],
            working_dir: Some("/work".into()),
            user: None,
        }
    );
    assert!(!rootfs.join("gone.txt").exists(), "whiteout");
    assert!(!rootfs.join("data/old").exists(), "opaque dir");
    assert!(!rootfs.join("data/sub").exists(), "opaque dir, nested");
    assert_eq!(fs::read(rootfs.join("data/new")).unwrap(), b"new");
    assert!(!rootfs.join("data/.wh..wh..opq").exists());
    assert_eq!(fs::read(rootfs.join("etc/hello")).unwrap(), b"two");
    assert_eq!(mode(&rootfs.join("etc/hello")), 0o640);
    assert_eq!(mode(&rootfs.join("bin/tool")), 0o4755, "setuid is kept");
    assert_eq!(mode(&rootfs.join("data")), 0o750);
    assert_eq!(mode(&rootfs.join("ro")), 0o555, "read-only dir, filled by a later layer");
    assert_eq!(fs::read(rootfs.join("ro/file2")).unwrap(), b"g");
    let ino = |p: &str| fs::metadata(rootfs.join(p)).unwrap().ino();
    assert_eq!(ino("bin/tool"), ino("bin/tool2"), "hard link");
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("tool"));

    // Without a tag, the first image: its layer is missing from the archive.
    let err = import(&path, &dir.path().join("r2"), &ImportOptions::default(), &mut |_| {});
    assert!(matches!(err, Err(OciError::Missing { .. })), "{err:?}");
}

/// An OCI layout: index.json -> a multi-platform index -> the linux/amd64 manifest.
fn oci_layout(dir: &Path, layer_media_type: &str, tamper: bool) -> PathBuf {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let manifest_for = |arch: &str, layer: Vec<u8>, files: &mut Vec<(String, Vec<u8>)>| {
        let config = config_json(arch, &["/bin/hello"]);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": layer_media_type, "digest": digest(&layer),
                        "size": layer.len()}],
        }))
        .unwrap();
        let mut stored = layer.clone();
        if tamper {
            stored.push(0);
        }
        files.push((format!("./{}", blob_path(&layer)), stored));
        files.push((format!("./{}", blob_path(&config)), config));
        files.push((format!("./{}", blob_path(&manifest)), manifest.clone()));
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest), "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let arm = manifest_for("arm64", tar_of(&[E::File("hello.txt", b"arm64", 0o644)]), &mut files);
    let amd = manifest_for(
        "amd64",
        gzip(&tar_of(&[E::Dir("usr", 0o755), E::File("usr/hello.txt", b"amd64", 0o644)])),
        &mut files,
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm, amd],
    }))
    .unwrap();
    let top = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": digest(&index), "size": index.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    }))
    .unwrap();
    files.push((format!("./{}", blob_path(&index)), index));
    files.push(("./index.json".into(), top));
    files.push(("./oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    archive(dir, &files)
}

#[test]
fn oci_layout_with_a_gzip_layer_takes_the_linux_amd64_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = oci_layout(dir.path(), "application/vnd.oci.image.layer.v1.tar+gzip", false);
    let rootfs = dir.path().join("rootfs");
    let mut notes = Vec::new();
    let config =
        import(&path, &rootfs, &ImportOptions::default(), &mut |l| notes.push(l.to_owned()))
            .unwrap();
    assert_eq!(fs::read(rootfs.join("usr/hello.txt")).unwrap(), b"amd64");
    assert!(!rootfs.join("hello.txt").exists(), "the arm64 image was not taken");
    assert_eq!(config.entrypoint, ["/bin/hello"]);
    assert!(notes.iter().any(|n| n.contains("OCI layout archive, 1 layers")), "{notes:?}");
    // The builder's paths exist and are plain.
    assert!(fs::symlink_metadata(rootfs.join("etc")).unwrap().is_dir());
}

#[test]
fn oci_layout_gzip_compressed_as_a_whole_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = oci_layout(dir.path(), "application/vnd.oci.image.layer.v1.tar+gzip", false);
    let gz = dir.path().join("image.tar.gz");
    fs::write(&gz, gzip(&fs::read(&path).unwrap())).unwrap();
    let rootfs = dir.path().join("rootfs");
    import(&gz, &rootfs, &ImportOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(fs::read(rootfs.join("usr/hello.txt")).unwrap(), b"amd64");
}

#[test]
fn zstd_layers_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = oci_layout(dir.path(), "application/vnd.oci.image.layer.v1.tar+zstd", false);
    let err = import(&path, &dir.path().join("rootfs"), &ImportOptions::default(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, OciError::Zstd { layer: 1 }), "{err:?}");
    assert!(err.to_string().contains("zstd-compressed"), "{err}");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = oci_layout(dir.path(), "application/vnd.oci.image.layer.v1.tar+gzip", true);
    let err = import(&path, &dir.path().join("rootfs"), &ImportOptions::default(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err:?}");
}

#[test]
fn something_that_is_no_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = archive(dir.path(), &[("hello.txt".into(), b"hi".to_vec())]);
    let err = import(&path, &dir.path().join("rootfs"), &ImportOptions::default(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, OciError::NotAnImage { .. }), "{err:?}");
}

/// Entries that could only write outside the root fail the import (a clear error beats a
/// silently incomplete image), and nothing is written outside.
#[test]
fn entries_escaping_the_root_fail_the_import() {
    let probe = tempfile::tempdir().unwrap();
    let abs = probe.path().join("abs");
    let abs = abs.to_str().unwrap();
    let cases: Vec<(&str, Vec<E>)> = vec![
        ("`..`", vec![E::File("../escape", b"x", 0o644)]),
        ("`..` inside", vec![E::Dir("a", 0o755), E::File("a/../../escape", b"x", 0o644)]),
        ("absolute", vec![E::File(abs, b"x", 0o644)]),
        ("absolute dir", vec![E::Dir("/", 0o777)]),
        ("hard link up", vec![E::Hardlink("link", "../escape")]),
        ("whiteout of ..", vec![E::File("a/.wh...", b"", 0o644)]),
    ];
    for (what, entries) in cases {
        let imported = import_layers(&[tar_of(&entries)]);
        let err = imported.result.unwrap_err();
        assert!(matches!(err, OciError::UnsafeEntry { layer: 1, .. }), "{what}: {err:?}");
        assert!(err.to_string().contains("refusing entry"), "{what}: {err}");
        assert!(!imported.base.join("escape").exists(), "{what}");
        assert!(imported.base.exists() && imported.rootfs.exists(), "{what}");
    }
    assert!(!Path::new(abs).exists());
}

/// Symlinks an earlier layer made are followed inside the root, never on the host.
#[test]
fn writes_through_symlinks_stay_inside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim"), "original").unwrap();
    let out = outside.path().to_str().unwrap();
    let victim = format!("{out}/victim");
    let host_passwd = fs::read("/etc/passwd").unwrap();
    let lower = tar_of(&[
        E::Symlink("evil", out),
        E::Symlink("etc", "/"),
        E::Symlink("up", "../../../../../../../../.."),
        E::Symlink("victim", &victim),
        E::Symlink("loop", "loop"),
    ]);
    let upper = tar_of(&[
        E::File("evil/pwned", b"x", 0o644),
        E::File("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644),
        E::File("up/pwned2", b"x", 0o644),
        E::File("victim", b"replaced", 0o644),
        E::CharDev("dev/null"),
        E::Fifo("pipe"),
    ]);
    // A later layer replaces the symlinked /etc with a directory (the builder needs one).
    let last = tar_of(&[E::Dir("etc", 0o755)]);
    let imported = import_layers(&[lower, upper, last]);
    imported.result.unwrap();
    let root = &imported.rootfs;

    let left: Vec<_> =
        fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["victim"], "nothing written outside");
    assert_eq!(fs::read(outside.path().join("victim")).unwrap(), b"original");
    assert_eq!(fs::read("/etc/passwd").unwrap(), host_passwd);
    assert!(root.join(out.trim_start_matches('/')).join("pwned").is_file(), "evil/pwned");
    assert!(root.join("passwd").is_file(), "etc/passwd through etc -> /");
    assert!(root.join("pwned2").is_file(), "up/pwned2 through up -> ../..");
    let victim_meta = fs::symlink_metadata(root.join("victim")).unwrap();
    assert!(victim_meta.is_file(), "the symlink was replaced, not written through");
    assert_eq!(fs::read(root.join("victim")).unwrap(), b"replaced");
    assert!(!root.join("dev/null").exists() && !root.join("pipe").exists());
    assert!(
        imported.notes.iter().any(|n| n.contains("skipped 2 device nodes")),
        "{:?}",
        imported.notes
    );

    // Writing through a symlink loop is an error, not a hang.
    let looped = import_layers(&[
        tar_of(&[E::Symlink("loop", "loop")]),
        tar_of(&[E::File("loop/x", b"x", 0o644)]),
    ]);
    assert!(matches!(looped.result, Err(OciError::SymlinkLoop { layer: 2, .. })));
}

#[test]
fn hard_links_cannot_reach_outside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, "host secret").unwrap();
    let out = outside.path().to_str().unwrap();
    let imported = import_layers(&[
        tar_of(&[E::Symlink("evil", out)]),
        tar_of(&[E::Hardlink("stolen", "evil/secret")]),
    ]);
    let err = imported.result.unwrap_err();
    assert!(matches!(err, OciError::UnsafeEntry { layer: 2, .. }), "{err:?}");
    assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
    assert!(!imported.rootfs.join("stolen").exists());
}

#[test]
fn size_and_entry_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 5000];
    let path = docker_save(dir.path(), &[tar_of(&[E::File("big", &big, 0o644)])]);
    let options = ImportOptions {
        limits: Limits { max_bytes: 4096, ..Limits::default() },
        ..Default::default()
    };
    let err = import(&path, &dir.path().join("r1"), &options, &mut |_| {}).unwrap_err();
    assert!(matches!(err, OciError::TooLarge { limit: 4096 }), "{err:?}");

    let many: Vec<E> = (0..10).map(|_| E::Dir("d", 0o755)).collect();
    let path = docker_save(dir.path(), &[tar_of(&many)]);
    let options = ImportOptions {
        limits: Limits { max_entries: 8, ..Limits::default() },
        ..Default::default()
    };
    let err = import(&path, &dir.path().join("r2"), &options, &mut |_| {}).unwrap_err();
    assert!(matches!(err, OciError::TooManyEntries { limit: 8 }), "{err:?}");
}

/// The whole builder: archive -> squashfs image in the store, with the job user added (not to
/// the host file a symlinked /etc/passwd in the image points at).
#[test]
fn build_makes_a_squashfs_image_from_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let host_file = dir.path().join("host-passwd");
    fs::write(&host_file, "host\n").unwrap();
    let layer = tar_of(&[
        E::Dir("bin", 0o755),
        E::File("bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
        E::Dir("etc", 0o755),
        E::Symlink("etc/passwd", host_file.to_str().unwrap()),
        E::Symlink("tmp", "/var/tmp"),
    ]);
    let upper =
        gzip(&tar_of(&[E::File("bin/.wh.hello", b"", 0o644), E::File("bin/hi", b"", 0o755)]));
    let path = docker_save(dir.path(), &[layer, upper]);
    let store = ImageStore::new(dir.path().join("store"));
    let mut notes = Vec::new();
    let recipe = Recipe::OciArchive { path };
    let info = build(&store, "oci-test", &recipe, &DebianSource::default(), &mut |l| {
        notes.push(l.to_owned())
    })
    .unwrap();

    let resolved = store.resolve("oci-test").unwrap();
    assert_eq!(resolved.path, info.path);
    // The image's own environment is kept (jobs of the image start from it: the executor's
    // `job::tests::the_environment_layers_defaults_image_and_job`).
    assert_eq!(resolved.env, ["PATH=/usr/bin:/bin", "GREETING=hi"]);
    assert_eq!(fs::read(&host_file).unwrap(), b"host\n", "the host file was not touched");
    assert!(
        notes.iter().any(|n| n.contains("image config: entrypoint [\"/bin/sh\"]")),
        "{notes:?}"
    );
    let list = Command::new("unsquashfs").arg("-l").arg(&info.path).output().unwrap();
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    for want in ["bin/hi", "etc/passwd", "input", "output", "tmp"] {
        assert!(list.lines().any(|l| l == format!("squashfs-root/{want}")), "{want}: {list}");
    }
    assert!(!list.contains("bin/hello"), "{list}");
    let passwd = Command::new("unsquashfs").arg("-cat").arg(&info.path).arg("etc/passwd").output();
    let passwd = String::from_utf8(passwd.unwrap().stdout).unwrap();
    assert_eq!(passwd, "pe:x:1000:1000:job:/tmp:/bin/sh\n");
    // Nothing is left in the store's scratch directory.
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}
