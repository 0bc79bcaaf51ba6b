//! The image builder: turns a recipe into a single-file root filesystem (squashfs, lz4) in the
//! [`ImageStore`].
//!
//! 1. Make the root filesystem in a temporary directory inside the store: Debian packages with
//!    `mmdebstrap` (downloaded `.deb` files are kept in `<store>/apt-cache`, so an interrupted
//!    build resumes without downloading again), an OCI image archive flattened by
//!    [`crate::oci`], or the built-in busybox recipe.
//! 2. Add what every job needs: the job user (uid 1000) in /etc/passwd, /input, /output, /tmp.
//! 3. `mksquashfs -comp lz4` into a temporary file (lz4 boots fastest from a cold page cache:
//!    see docs/PERFORMANCE.md), hash it, rename it to `sha256/<hex>`, then write the ref.
//!
//! The temporary directory is removed on every path (error, interrupt), and the ref is written
//! last and atomically, so a half-built image is never visible.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::store::{ImageFormat, ImageInfo, ImageStore, Ref};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run {program} (is it installed? scripts/setup.sh installs it)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {tail}")]
    Failed { program: String, status: std::process::ExitStatus, tail: String },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown built-in recipe {0:?}")]
    UnknownBuiltin(String),
    #[error("cannot import the image archive")]
    Oci(#[from] crate::oci::OciError),
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    Debian { packages: Vec<String> },
    Builtin { name: String },
    OciArchive { path: PathBuf },
}

impl Recipe {
    /// A stable fingerprint: a ref built from the same recipe is up to date.
    pub fn fingerprint(&self) -> String {
        let text = match self {
            Recipe::Debian { packages } => format!("debian:{}", packages.join(",")),
            Recipe::Builtin { name } => {
                format!("builtin:{name}:{}", file_stamp(Path::new("/bin/busybox")))
            }
            Recipe::OciArchive { path } => format!("oci:{}:{}", path.display(), file_stamp(path)),
        };
        hex::encode(&Sha256::digest(format!("recipe-v1|{text}"))[..8])
    }
}

fn file_stamp(path: &Path) -> String {
    fs::metadata(path).map(|m| format!("{}:{:?}", m.len(), m.modified().ok())).unwrap_or_default()
}

/// Where Debian packages come from.
#[derive(Debug, Clone)]
pub struct DebianSource {
    pub suite: String,
    /// `deb ...` lines given to mmdebstrap.
    pub sources: Vec<String>,
}

impl Default for DebianSource {
    fn default() -> Self {
        let mirror = std::env::var("PE_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        let security = std::env::var("PE_DEBIAN_SECURITY")
            .unwrap_or_else(|_| "http://deb.debian.org/debian-security".into());
        DebianSource {
            suite: "bookworm".into(),
            sources: vec![
                format!("deb {mirror} bookworm main"),
                format!("deb {mirror} bookworm-updates main"),
                format!("deb {security} bookworm-security main"),
            ],
        }
    }
}

/// Builds `recipe` as image `id`, reporting each step through `progress`.
pub fn build(
    store: &ImageStore,
    id: &str,
    recipe: &Recipe,
    source: &DebianSource,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageInfo, BuildError> {
    let started = Instant::now();
    let tmp_root = store.root().join("tmp");
    fs::create_dir_all(&tmp_root).map_err(io_err(&tmp_root))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("build-{id}-"))
        .tempdir_in(&tmp_root)
        .map_err(io_err(&tmp_root))?;
    let rootfs = work.path().join("rootfs");
    let mut image_env = Vec::new();
    match recipe {
        Recipe::Debian { packages } => {
            progress(&format!(
                "installing {} with mmdebstrap ({})",
                packages.join(", "),
                source.suite
            ));
            mmdebstrap(store, &rootfs, packages, source, progress)?;
        }
        Recipe::Builtin { name } if name == "busybox" => {
            progress("assembling busybox (Debian's busybox-static)");
            busybox_rootfs(&rootfs)?;
        }
        Recipe::Builtin { name } => return Err(BuildError::UnknownBuiltin(name.clone())),
        Recipe::OciArchive { path } => {
            progress(&format!("importing the image archive {}", path.display()));
            let options = crate::oci::ImportOptions::default();
            let config = crate::oci::import(path, &rootfs, &options, progress)?;
            progress(&format!("  image config: {config}"));
            // The environment is what jobs need from it (a PATH to the tool, often); the
            // command line comes from the container's metadata.
            image_env = config.env;
        }
    }
    add_job_user(&rootfs)?;

    progress("packing squashfs (lz4)");
    let image = work.path().join("image.squashfs");
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(&rootfs).arg(&image);
    cmd.args(["-comp", "lz4", "-noappend", "-quiet", "-no-progress", "-all-root"]);
    cmd.args(["-mkfs-time", "0", "-all-time", "0", "-no-xattrs"]);
    run(&mut cmd, "mksquashfs", &mut |_| {})?;

    let digest = sha256_file(&image)?;
    let size = fs::metadata(&image).map_err(io_err(&image))?.len();
    let blob = store.root().join("sha256").join(&digest);
    fs::create_dir_all(blob.parent().unwrap_or(store.root())).map_err(io_err(&blob))?;
    fs::rename(&image, &blob).map_err(io_err(&blob))?;
    let r = Ref {
        id: id.to_owned(),
        digest: format!("sha256:{digest}"),
        format: ImageFormat::Squashfs,
        size,
        built_at: Some(now_utc()),
        recipe: Some(recipe.fingerprint()),
        build_secs: Some(started.elapsed().as_secs_f64()),
        env: image_env,
    };
    store.write_ref(&r).map_err(io_err(store.root()))?;
    progress(&format!(
        "done in {:.0} s: {} MiB, sha256:{}",
        started.elapsed().as_secs_f64(),
        size / (1024 * 1024),
        &digest[..12]
    ));
    store.resolve(id).map_err(|e| BuildError::Io { path: blob, source: std::io::Error::other(e) })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io { path: path.to_owned(), source }
}

fn mmdebstrap(
    store: &ImageStore,
    rootfs: &Path,
    packages: &[String],
    source: &DebianSource,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let cache = store.root().join("apt-cache");
    fs::create_dir_all(&cache).map_err(io_err(&cache))?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=essential", "--mode=root", "--format=directory"]);
    cmd.arg(format!("--include={}", packages.join(",")));
    // Keep images small: no documentation, manuals or translations.
    for dir in ["doc", "man", "info", "locale", "lintian", "linda"] {
        cmd.arg(format!("--dpkgopt=path-exclude=/usr/share/{dir}/*"));
    }
    cmd.arg("--dpkgopt=path-include=/usr/share/doc/*/copyright");
    // Maintainer scripts that register man pages with update-alternatives (OpenJDK's) fail
    // when the directory is missing, and the excluded man pages leave it missing.
    cmd.arg("--setup-hook=mkdir -p \"$1/usr/share/man/man1\"");
    // Reuse and keep downloaded packages: a second build (or a resumed one, or another image
    // with packages in common) downloads nothing.
    cmd.arg("--skip=download/empty");
    cmd.arg(format!("--setup-hook={}", cache_in_hook(&cache)));
    cmd.arg(format!("--customize-hook={}", cache_out_hook(&cache)));
    cmd.arg("--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb");
    cmd.arg(&source.suite).arg(rootfs);
    for line in &source.sources {
        cmd.arg(line);
    }
    run(&mut cmd, "mmdebstrap", &mut |line| {
        if let Some(step) = line.strip_prefix("I: ") {
            progress(&format!("  {step}"));
        }
    })
}

/// The package cache, `<store>/apt-cache`, is shared by every build, also by builds running at
/// the same time. The setup hook (run with the new root as `$1`) puts the cached packages where
/// apt looks for them, as hard links where it can (the cache and the build directories are on
/// one file system under the store), so that a build costs no copy of the whole cache.
fn cache_in_hook(cache: &Path) -> String {
    let cache = shell_quote(&cache.display().to_string());
    format!(
        "mkdir -p \"$1/var/cache/apt/archives\" && \
         find {cache} -maxdepth 1 -name '*.deb' -type f -exec sh -c \
         'cp -l -t \"$0\" \"$@\" 2>/dev/null || cp -t \"$0\" \"$@\"' \"$1/var/cache/apt/archives\" {{}} +"
    )
}

/// The customize hook (run with the new root as `$1`) puts the packages this build downloaded
/// into the cache. Each file appears there at once and whole: it is hard-linked, or copied to a
/// temporary name and renamed, and a package already there is never replaced, so two builds
/// adding the same package at the same time leave one good copy and a build reading the cache
/// never sees half a file.
fn cache_out_hook(cache: &Path) -> String {
    let cache = shell_quote(&cache.display().to_string());
    format!(
        "for deb in \"$1\"/var/cache/apt/archives/*.deb; do \
           [ -f \"$deb\" ] || continue; \
           name=${{deb##*/}}; [ -e {cache}/\"$name\" ] && continue; \
           ln \"$deb\" {cache}/\"$name\" 2>/dev/null && continue; \
           tmp={cache}/.\"$name\".$$; \
           cp \"$deb\" \"$tmp\" && {{ ln \"$tmp\" {cache}/\"$name\" 2>/dev/null; rm -f \"$tmp\"; }}; \
         done; true"
    )
}

/// `text` as one word for sh.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn busybox_rootfs(rootfs: &Path) -> Result<(), BuildError> {
    let busybox = Path::new("/bin/busybox");
    for dir in ["bin", "etc", "root", "usr/bin", "usr/sbin", "sbin"] {
        fs::create_dir_all(rootfs.join(dir)).map_err(io_err(rootfs))?;
    }
    let target = rootfs.join("bin/busybox");
    fs::copy(busybox, &target).map_err(io_err(&target))?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|source| BuildError::Spawn { program: "busybox".into(), source })?;
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        let link = rootfs.join("bin").join(applet);
        symlink("busybox", &link).map_err(io_err(&link))?;
    }
    let passwd = rootfs.join("etc/passwd");
    fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").map_err(io_err(&passwd))?;
    let group = rootfs.join("etc/group");
    fs::write(&group, "root:x:0:\n").map_err(io_err(&group))
}

/// The job user (uid 1000, home /tmp) and the directories every job mounts over.
fn add_job_user(rootfs: &Path) -> Result<(), BuildError> {
    use std::io::Write;
    // Never write through a link: a hostile image could point these at the host's files.
    for rel in ["etc", "etc/passwd", "etc/group"] {
        let path = rootfs.join(rel);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(BuildError::Io {
                path,
                source: std::io::Error::other("is a symbolic link; refusing to write through it"),
            });
        }
    }
    for (file, line) in
        [("etc/passwd", "pe:x:1000:1000:job:/tmp:/bin/sh\n"), ("etc/group", "pe:x:1000:\n")]
    {
        let path = rootfs.join(file);
        let existing = fs::read_to_string(&path).unwrap_or_default();
        if !existing.lines().any(|l| l.starts_with("pe:")) {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.write_all(line.as_bytes()).map_err(io_err(&path))?;
        }
    }
    for dir in ["input", "output", "tmp", "proc", "dev", "sys"] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

/// Runs a command, passing each line of its stderr (and stdout) to `on_line`; on failure the
/// error carries the last lines.
fn run(cmd: &mut Command, program: &str, on_line: &mut dyn FnMut(&str)) -> Result<(), BuildError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BuildError::Spawn { program: program.into(), source })?;
    let _running = Running::register(child.id());
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            on_line(&line);
            tail.push(line);
            if tail.len() > 8 {
                tail.remove(0);
            }
        }
    }
    // Reaped with the list locked, so that `stop_running_builds` never signals a process id
    // the system has given to another process since.
    let status = loop {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        match child.try_wait() {
            Ok(Some(status)) => {
                running.retain(|pid| *pid != child.id());
                break status;
            }
            Ok(None) => {}
            Err(source) => return Err(BuildError::Spawn { program: program.into(), source }),
        }
        drop(running);
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if !status.success() {
        return Err(BuildError::Failed { program: program.into(), status, tail: tail.join(" | ") });
    }
    Ok(())
}

/// The builders' child processes (mmdebstrap, mksquashfs) running now, by process id.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// A child process listed in [`RUNNING`] until it is reaped (or `run` returns early).
struct Running(u32);

impl Running {
    fn register(pid: u32) -> Running {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Running(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|pid| *pid != self.0);
    }
}

/// Asks every build running in this process to stop (SIGTERM to its mmdebstrap or mksquashfs,
/// which clean up after themselves); each of those builds then fails and removes its
/// temporary directory. For a server shutting down while images build in the background: the
/// builders' children would otherwise outlive it. Answers how many processes were asked.
pub fn stop_running_builds() -> usize {
    let pids = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    for pid in pids.iter() {
        // `kill` the command: this crate has no unsafe code and std has no signal but SIGKILL.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    pids.len()
}

fn sha256_file(path: &Path) -> Result<String, BuildError> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds).
fn now_utc() -> String {
    utc(std::time::SystemTime::now())
}

fn utc(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_the_recipe() {
        let a = Recipe::Debian { packages: vec!["gcc".into()] };
        let b = Recipe::Debian { packages: vec!["gcc".into(), "make".into()] };
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    /// Runs a build hook as mmdebstrap does: `sh -c HOOK sh ROOT`.
    fn run_hook(hook: &str, root: &Path) -> std::process::Child {
        Command::new("sh").arg("-c").arg(hook).arg("sh").arg(root).spawn().unwrap()
    }

    fn archives(root: &Path) -> PathBuf {
        root.join("var/cache/apt/archives")
    }

    #[test]
    fn the_package_cache_is_linked_in_and_new_packages_are_added_whole() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // A name a shell would split or unquote.
        let cache = dir.path().join("apt cache 'x'");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("a_1_amd64.deb"), "package a").unwrap();
        fs::write(cache.join("c_1_amd64.deb"), "cached c").unwrap();
        fs::write(cache.join("notes.txt"), "not a package").unwrap();
        let root = dir.path().join("root");

        assert!(run_hook(&cache_in_hook(&cache), &root).wait().unwrap().success());
        let linked = archives(&root).join("a_1_amd64.deb");
        assert_eq!(fs::read_to_string(&linked).unwrap(), "package a");
        assert_eq!(
            fs::metadata(&linked).unwrap().ino(),
            fs::metadata(cache.join("a_1_amd64.deb")).unwrap().ino(),
            "linked, not copied"
        );
        assert!(!archives(&root).join("notes.txt").exists());

        // The build downloads b and (say) a different c of the same name.
        fs::write(archives(&root).join("b_2_amd64.deb"), "package b").unwrap();
        fs::remove_file(archives(&root).join("c_1_amd64.deb")).unwrap();
        fs::write(archives(&root).join("c_1_amd64.deb"), "downloaded c").unwrap();
        fs::create_dir_all(archives(&root).join("partial")).unwrap();
        fs::write(archives(&root).join("partial/d_1_amd64.deb"), "half").unwrap();
        assert!(run_hook(&cache_out_hook(&cache), &root).wait().unwrap().success());
        assert_eq!(fs::read_to_string(cache.join("b_2_amd64.deb")).unwrap(), "package b");
        assert_eq!(fs::read_to_string(cache.join("c_1_amd64.deb")).unwrap(), "cached c");
        assert!(!cache.join("d_1_amd64.deb").exists(), "partial downloads stay out");
        let mut names: Vec<String> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a_1_amd64.deb", "b_2_amd64.deb", "c_1_amd64.deb", "notes.txt"]);
    }

    #[test]
    fn builds_adding_the_same_packages_at_once_leave_whole_files_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir_all(&cache).unwrap();
        let content = |i: usize| format!("package {i} ").repeat(20_000);
        let roots: Vec<PathBuf> = (0..4).map(|r| dir.path().join(format!("root{r}"))).collect();
        for root in &roots {
            fs::create_dir_all(archives(root)).unwrap();
            for i in 0..20 {
                fs::write(archives(root).join(format!("p{i}.deb")), content(i)).unwrap();
            }
        }
        let hook = cache_out_hook(&cache);
        let children: Vec<_> = roots.iter().map(|root| run_hook(&hook, root)).collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let entries: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 20, "no temporary files left");
        for i in 0..20 {
            assert_eq!(fs::read_to_string(cache.join(format!("p{i}.deb"))).unwrap(), content(i));
        }
    }

    #[test]
    fn running_builds_are_stopped_on_request() {
        let started = Instant::now();
        let worker = std::thread::spawn(|| {
            run(
                Command::new("sh").arg("-c").arg("echo working >&2; exec sleep 30"),
                "sh",
                &mut |_| {},
            )
        });
        while RUNNING.lock().unwrap().is_empty() {
            assert!(started.elapsed().as_secs() < 10, "the child never started");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(stop_running_builds() >= 1);
        let err = worker.join().unwrap().unwrap_err();
        assert!(matches!(err, BuildError::Failed { .. }), "{err}");
        assert!(err.to_string().contains("working"), "the tail is kept: {err}");
        assert!(started.elapsed().as_secs() < 10, "stopped, not waited for");
    }

    #[test]
    fn dates_are_rfc_3339_utc_seconds() {
        let at = |secs| utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        // A leap day, and the last second of a leap year.
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(now_utc().len(), 20);
    }
}
