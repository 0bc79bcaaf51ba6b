//! The control port of a pre-booted ("warm") VM: a virtio-serial port named `pe.ctl`, a Unix
//! socket on the host. The guest boots, mounts its image, says `ready`, and blocks until the
//! host has written the request to the I/O disk and says `go <seed> <unix-time-ns>`.
//!
//! A VM restored from a snapshot wakes up inside [`wait_for_go`], with the template's random
//! state and clock: the seed and the time in `go` replace both before anything else runs.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{SetupError, Stage};

/// virtio-serial port name the host gives the control channel.
pub const PORT_NAME: &str = "pe.ctl";

/// Kept open for the VM's life: closing it would tell the host the guest went away.
static PORT: OnceLock<File> = OnceLock::new();

fn find_port() -> Option<PathBuf> {
    for entry in fs::read_dir("/sys/class/virtio-ports").ok()?.filter_map(Result::ok) {
        let name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Some(PathBuf::from("/dev").join(entry.file_name()));
        }
    }
    None
}

/// What the host says when the job may start.
#[derive(Debug)]
pub struct Go {
    /// Hex bytes to reseed the kernel's random number generator with.
    pub seed: String,
    /// The host's wall clock.
    pub now: Option<Duration>,
}

/// The control port, opened on first use and kept open for the VM's life. A live run in a cold
/// VM opens it only for its stream; a warm VM opens it to wait for `go`.
pub fn port() -> Result<&'static File, SetupError> {
    const STAGE: &str = "open the control port";
    if let Some(port) = PORT.get() {
        return Ok(port);
    }
    // The port appears once its driver has probed it, which may be a little after init starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = loop {
        if let Some(path) = find_port().filter(|p| p.exists()) {
            break path;
        }
        if Instant::now() > deadline {
            return Err(SetupError::new(STAGE, format!("no virtio port named {PORT_NAME}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let port = OpenOptions::new().read(true).write(true).open(&path).stage(STAGE)?;
    Ok(PORT.get_or_init(|| port))
}

/// Reads one line, a byte at a time: what follows `go` on the port (a live run's stdin frames)
/// belongs to the job and must not be swallowed by a read-ahead buffer.
fn read_line(mut port: &File) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if port.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' || line.len() >= 4096 {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte[0]);
    }
}

/// Says `ready`, waits for `go <seed> <unix-time-ns>`.
pub fn wait_for_go() -> Result<Go, SetupError> {
    const STAGE: &str = "wait for the host";
    let port = port()?;
    (&*port).write_all(b"ready\n").stage(STAGE)?;
    // End of file means the host went away (a server that died): the error powers the VM off.
    // A clone restored from a snapshot finds its host connected, as the template did: the host
    // connects to the clone's port before the clone's state is loaded.
    loop {
        let line = read_line(port).stage(STAGE)?;
        if line.trim() == "warm" {
            // `ready`, with why the container's warm-up command failed if it did.
            let reply = match warm_up() {
                None => "ready\n".to_owned(),
                Some(failed) => format!("ready warm-up failed: {}\n", failed.replace('\n', " ")),
            };
            (&*port).write_all(reply.as_bytes()).stage(STAGE)?;
            continue;
        }
        return parse_go(line.trim()).ok_or_else(|| {
            SetupError::new(STAGE, format!("unexpected message {:?}", line.trim()))
        });
    }
}

/// Runs, once, the kernel paths every job takes (exec of crun and its libraries, a read of the
/// I/O disk, a tmpfs mount) with no job's data: on a clone restored from a snapshot they are
/// otherwise paid for by the job (under TCG each code path is translated again in a new QEMU
/// process, and each page the template touched is copied on its first write).
fn warm_up() -> Option<String> {
    let failed = run_tool_warm_up();
    let _ = std::process::Command::new("/usr/bin/crun")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Some(io) = crate::disk::IO_DISK.get()
        && let Ok(dev) = File::open(io)
    {
        let _ = crate::sys::flush_block_cache(&dev);
        let _ = (&dev).take(4096).read_to_end(&mut Vec::new());
    }
    let dir = "/run/warm-up";
    if fs::create_dir_all(dir).is_ok()
        && crate::sys::mount("tmpfs", dir, "tmpfs", 0, Some("size=1m")).is_ok()
    {
        let _ = fs::write(format!("{dir}/x"), b"x");
        let _ = crate::sys::umount(dir);
    }
    failed
}

/// The container's own warm-up command (`pe.warmup=HEX` of its JSON argv, from the container's
/// metadata), run in the read-only image as the job user with a time limit: the tool's start-up
/// code is then translated in this VM's QEMU before the job (under TCG that is most of an
/// interpreter's start). It sees `/dev`, `/proc` and an empty `/tmp` as a job does (before `go`
/// the kernel's random pool is not initialized, and python, for one, then reads
/// `/dev/urandom`), and leaves no process (it runs in a cgroup of its own, killed after it if
/// need be: that counts as a failure), file or mount. Returns why it failed, if it did: the
/// host logs it (a warm-up that fails early warms little).
fn run_tool_warm_up() -> Option<String> {
    const LIMIT: Duration = Duration::from_secs(10);
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let argv = warm_up_command(&cmdline)?;
    let image = crate::setup::paths::IMAGE;
    let nodev_nosuid = libc::MS_NODEV | libc::MS_NOSUID;
    let mounts = [
        ("/dev", "/dev", "", libc::MS_BIND | libc::MS_NOSUID, None),
        ("proc", "/proc", "proc", nodev_nosuid | libc::MS_NOEXEC, None),
        ("tmpfs", "/tmp", "tmpfs", nodev_nosuid, Some("size=16m,mode=1777")),
    ];
    let mut mounted = Vec::new();
    for (source, dir, fstype, flags, data) in mounts {
        let target = format!("{image}{dir}");
        if crate::sys::mount(source, &target, fstype, flags, data).is_ok() {
            mounted.push(target);
        }
    }
    let outcome = run_warm_up_command(&argv, image, LIMIT);
    for target in mounted.iter().rev() {
        let _ = crate::sys::umount_detach(target);
    }
    outcome.err().map(|reason| format!("{argv:?}: {reason}"))
}

/// Where a warm-up command runs: whatever it leaves running is stopped with the cgroup.
const WARM_UP_CGROUP: &str = "/sys/fs/cgroup/pe-warm-up";

fn run_warm_up_command(argv: &[String], root: &str, limit: Duration) -> Result<(), String> {
    let _ = fs::create_dir(WARM_UP_CGROUP);
    let outcome = run_in_warm_up_cgroup(argv, root, limit);
    // Anything it left running is stopped: the job's VM runs the job's processes only.
    let left = fs::read_to_string(format!("{WARM_UP_CGROUP}/cgroup.procs"))
        .map(|procs| procs.lines().count())
        .unwrap_or(0);
    if left > 0 {
        let _ = fs::write(format!("{WARM_UP_CGROUP}/cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(2);
        while fs::read_to_string(format!("{WARM_UP_CGROUP}/cgroup.events"))
            .is_ok_and(|events| events.contains("populated 1"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        crate::sys::reap_zombies();
    }
    let _ = fs::remove_dir(WARM_UP_CGROUP);
    match outcome {
        Ok(()) if left > 0 => Err(format!("it left {left} process(es) running, now stopped")),
        other => other,
    }
}

fn run_in_warm_up_cgroup(argv: &[String], root: &str, limit: Duration) -> Result<(), String> {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/tmp")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Joined first: once the child is the job user it may not move itself.
    let procs = OpenOptions::new()
        .write(true)
        .open(format!("{WARM_UP_CGROUP}/cgroup.procs"))
        .map_err(|e| format!("cannot make its cgroup: {e}"))?;
    crate::sys::join_cgroup(&mut cmd, std::os::fd::AsRawFd::as_raw_fd(&procs));
    crate::sys::chroot_as(&mut cmd, root, crate::JOB_UID, crate::JOB_GID)
        .map_err(|e| format!("cannot enter the image: {e}"))?;
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("did not start: {e}"))?;
    // What it says goes to a pipe read only at the end: a command that floods stderr is
    // stopped by the time limit (the pipe fills and it blocks), never by a full disk.
    let status = loop {
        match child.try_wait() {
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s", limit.as_secs()));
            }
            Ok(Some(status)) => break status,
        }
    };
    if status.success() {
        return Ok(());
    }
    // What is in the pipe now: a process the command left behind may hold it open.
    let mut said = Vec::new();
    if let Some(stderr) = child.stderr.take()
        && crate::sys::set_nonblocking(&stderr).is_ok()
    {
        let _ = stderr.take(4096).read_to_end(&mut said);
    }
    let said = String::from_utf8_lossy(&said);
    let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    Err(format!("{status}: {last}"))
}

/// The warm-up command on the kernel command line, if any.
fn warm_up_command(cmdline: &str) -> Option<Vec<String>> {
    let hex = cmdline.split_whitespace().find_map(|arg| arg.strip_prefix("pe.warmup="))?;
    let argv: Vec<String> = serde_json::from_slice(&hex::decode(hex).ok()?).ok()?;
    argv.first().filter(|program| !program.is_empty())?;
    Some(argv)
}

fn parse_go(line: &str) -> Option<Go> {
    let mut words = line.split_whitespace();
    if words.next()? != "go" {
        return None;
    }
    let seed = words.next()?.to_owned();
    let now = match words.next() {
        Some(ns) => Some(Duration::from_nanos(ns.parse().ok()?)),
        None => None,
    };
    Some(Go { seed, now })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_command_comes_hex_encoded_on_the_command_line() {
        let hex = hex::encode(br#"["python3","-c","pass"]"#);
        let cmdline = format!("quiet pe.warm=squashfs pe.warmup={hex} pe.premade=256");
        assert_eq!(warm_up_command(&cmdline).unwrap(), ["python3", "-c", "pass"]);
        assert_eq!(warm_up_command("quiet pe.warm=squashfs"), None);
        assert_eq!(warm_up_command("pe.warmup=zz"), None);
        assert_eq!(warm_up_command(&format!("pe.warmup={}", hex::encode("[]"))), None);
    }

    #[test]
    fn go_carries_a_seed_and_maybe_the_time() {
        let go = parse_go("go abcd 1700000000123456789").unwrap();
        assert_eq!(go.seed, "abcd");
        assert_eq!(go.now, Some(Duration::new(1_700_000_000, 123_456_789)));
        assert_eq!(parse_go("go abcd").unwrap().now, None);
        assert!(parse_go("go abcd soon").is_none());
        assert!(parse_go("stop").is_none());
        assert!(parse_go("go").is_none());
    }
}
