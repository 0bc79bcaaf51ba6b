//! Every system call the init makes that std does not wrap. All `unsafe` of the guest is here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// mount(2).
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (source, target, fstype) = (cstr(source)?, cstr(target)?, cstr(fstype)?);
    let data = data.map(cstr).transpose()?;
    let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call, or null
    // for `data`, which mount(2) accepts.
    check(unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data_ptr)
    })?;
    Ok(())
}

/// umount(2).
pub fn umount(target: &str) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: `target` is a valid NUL-terminated string that outlives the call.
    check(unsafe { libc::umount(target.as_ptr()) })?;
    Ok(())
}

/// Sets the filesystem uid and gid used for permission checks and new files' owners, so input
/// files are created as the unprivileged job user. Returns nothing: setfsuid cannot report errors.
pub fn set_fs_ids(uid: u32, gid: u32) {
    // SAFETY: setfsgid/setfsuid take plain integers and have no memory effects.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
}

/// pidfd_open(2): a file descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes two integers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// poll(2) for readability on `fds`; returns which are readable (or hung up). `None` waits
/// forever.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let fds: Vec<(RawFd, libc::c_short)> = fds.iter().map(|&fd| (fd, libc::POLLIN)).collect();
    Ok(poll(&fds, timeout)?.into_iter().map(|revents| revents != 0).collect())
}

/// poll(2) on `(fd, events)` pairs (a negative fd is skipped); returns each one's `revents`.
/// `None` waits forever.
pub fn poll(
    fds: &[(RawFd, libc::c_short)],
    timeout: Option<Duration>,
) -> io::Result<Vec<libc::c_short>> {
    let mut pollfds: Vec<libc::pollfd> =
        fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    let timeout_ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    loop {
        // SAFETY: `pollfds` is a valid, exclusively borrowed array of `len` pollfd structs.
        let ret =
            unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout_ms) };
        if ret >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(pollfds.iter().map(|p| p.revents).collect())
}

/// Puts `fd` in non-blocking mode: reads and writes answer `WouldBlock` instead of waiting.
pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor borrowed for the call; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// umount2(2) with MNT_DETACH: the mount goes now, the filesystem when nothing uses it.
pub fn umount_detach(target: &str) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: `target` is a valid NUL-terminated string for the duration of the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(|_| ())
}

/// Makes `cmd`'s child join the cgroup whose `cgroup.procs` is open as `procs` (kept open by the
/// caller until the spawn returns) before it execs, so all it starts is in that cgroup. Call it
/// before anything that drops privileges in the child.
pub fn join_cgroup(cmd: &mut std::process::Command, procs: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls write(2), which
    // is async-signal-safe, on a descriptor that stays open across the fork and a static buffer.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs, b"0".as_ptr().cast(), 1) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `fds` (`(parent fd, child fd)`) the child's descriptors `child fd` when `cmd` spawns
/// (dup2 in the child, which also clears close-on-exec on the copy).
pub fn map_fds(cmd: &mut std::process::Command, fds: Vec<(RawFd, RawFd)>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls dup2, which is
    // async-signal-safe; it allocates nothing (the vector was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &fds {
                if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s child enter `root` (chroot, then `/`) and drop to `uid`/`gid` with no
/// supplementary groups, before it execs.
pub fn chroot_as(
    cmd: &mut std::process::Command,
    root: &str,
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let root = cstr(root)?;
    let slash = cstr("/")?;
    // SAFETY: the closure runs in the forked child before exec and calls only chroot, chdir,
    // setgroups, setgid and setuid, which are async-signal-safe, on strings made before fork.
    unsafe {
        cmd.pre_exec(move || {
            for ret in [
                libc::chroot(root.as_ptr()),
                libc::chdir(slash.as_ptr()),
                libc::setgroups(0, std::ptr::null()),
                libc::setgid(gid),
                libc::setuid(uid),
            ] {
                if ret < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Takes ownership of descriptor `fd`, inherited from the parent; `None` if it is not open.
pub fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only checks that the descriptor is open; no memory is passed.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open, was inherited for this process to own, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets close-on-exec on `fd`.
pub fn set_cloexec(fd: &impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: F_SETFD on a descriptor borrowed for the call; no memory is passed.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(|_| ())
}

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// waitpid(2) without blocking: `None` while the process runs.
pub fn try_wait(pid: libc::pid_t) -> io::Result<Option<WaitStatus>> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let ret = check(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    if ret == 0 {
        return Ok(None);
    }
    Ok(Some(if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    }))
}

/// Reaps every exited child without blocking (orphans re-parented to PID 1).
pub fn reap_zombies() {
    loop {
        let mut status = 0;
        // SAFETY: as in `try_wait`.
        let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if ret <= 0 {
            break;
        }
    }
}

/// Drops the kernel's cached pages of a block device, so a read sees what the host wrote to the
/// backing file after the guest last looked.
pub fn flush_block_cache(dev: &std::fs::File) -> io::Result<()> {
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    // SAFETY: BLKFLSBUF takes no argument; the fd is a valid open block device.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), BLKFLSBUF as _, 0) })?;
    Ok(())
}

/// Mixes `seed` into the kernel's entropy pool with full credit and reseeds the CRNG at once.
/// A plain write to /dev/urandom would mix the bytes in but leave the CRNG's current key in use
/// until its next scheduled reseed: VMs restored from one snapshot would then hand out the same
/// random numbers.
pub fn reseed_rng(random: &std::fs::File, seed: &[u8]) -> io::Result<()> {
    // _IOW('R', 0x03, int[2]) and _IO('R', 0x07) from <linux/random.h>.
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }, laid out as
    // 32-bit words so the buffer is aligned for it.
    let words = seed.len().div_ceil(4);
    let mut info = vec![0u32; 2 + words];
    info[0] = (seed.len() * 8) as u32;
    info[1] = seed.len() as u32;
    for (i, byte) in seed.iter().enumerate() {
        info[2 + i / 4] |= u32::from(*byte) << (8 * (i % 4));
    }
    // SAFETY: `info` is a valid rand_pool_info whose buf_size bytes of buffer follow the two
    // header ints inside the same allocation, which outlives the call. Needs CAP_SYS_ADMIN,
    // which PID 1 has.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG as _, 0) })?;
    Ok(())
}

/// Sets the wall clock (a VM restored from a snapshot wakes up with the snapshot's time).
pub fn set_realtime(since_epoch: Duration) -> io::Result<()> {
    // The field types differ between libc targets (and musl's `time_t` alias is deprecated):
    // let the compiler pick them. Seconds since 1970 fit either way until 2038 on 32 bits.
    let ts = libc::timespec {
        tv_sec: since_epoch.as_secs() as _,
        tv_nsec: since_epoch.subsec_nanos() as _,
    };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })?;
    Ok(())
}

/// Flushes every filesystem and block device.
pub fn sync() {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The value written to the debug-exit port by a probe boot: QEMU then exits with
/// `(PROBE_EXIT << 1) | 1` = 85, which no QEMU error exit looks like.
pub const PROBE_EXIT: u8 = 0x2a;

/// Ends the VM: writes `code` to QEMU's isa-debug-exit port (QEMU exits at once with
/// `(code << 1) | 1`), falling back to the kernel's power-off if the port is not there.
pub fn power_off(code: u8) -> ! {
    sync();
    // SAFETY: ioperm grants this process access to port 0xf4 only; the `out` instruction then
    // writes one byte to it. On a VM without the debug-exit device the write is ignored.
    unsafe {
        if libc::ioperm(0xf4, 4, 1) == 0 {
            std::arch::asm!("out dx, al", in("dx") 0xf4u16, in("al") code, options(nomem, nostack));
        }
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot(2) does not return on success; if everything failed, do not exit PID 1 (that is a
    // kernel panic with a confusing message): spin until the host's deadline kills the VM.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
