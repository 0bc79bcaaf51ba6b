//! Everything before the program starts: system mounts, the container's root filesystem, the
//! inputs.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};

use shared::cpio::{self, EntryData, Limits};
use shared::guest::{GuestRequest, ImageFormat, request_paths};

use crate::{JOB_GID, JOB_UID, SetupError, Stage, sys};

/// Where things live in the guest.
pub mod paths {
    pub const IMAGE: &str = "/mnt/image";
    pub const SCRATCH: &str = "/mnt/scratch";
    pub const ROOT: &str = "/mnt/root";
    pub const BUNDLE: &str = "/run/bundle";
    pub const STDIN: &str = "/run/stdin";
    pub const CGROUP: &str = "/sys/fs/cgroup";
}

pub fn mount_system() -> Result<(), SetupError> {
    const STAGE: &str = "mount system filesystems";
    let nodev_nosuid = libc::MS_NODEV | libc::MS_NOSUID;
    for dir in ["/proc", "/sys", "/dev", "/run", "/mnt"] {
        fs::create_dir_all(dir).stage(STAGE)?;
    }
    sys::mount("proc", "/proc", "proc", nodev_nosuid | libc::MS_NOEXEC, None).stage(STAGE)?;
    sys::mount("sysfs", "/sys", "sysfs", nodev_nosuid | libc::MS_NOEXEC, None).stage(STAGE)?;
    sys::mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, None).stage(STAGE)?;
    sys::mount("tmpfs", "/run", "tmpfs", nodev_nosuid, Some("mode=0755,size=64m")).stage(STAGE)?;
    sys::mount("cgroup2", paths::CGROUP, "cgroup2", nodev_nosuid | libc::MS_NOEXEC, None)
        .stage(STAGE)?;
    // Let the job's cgroup use the controllers crun sets limits with.
    for controller in ["+memory", "+pids", "+cpu"] {
        let _ = fs::write(format!("{}/cgroup.subtree_control", paths::CGROUP), controller);
    }
    Ok(())
}

/// Milliseconds since the kernel started.
pub fn uptime_ms() -> u64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1000.0) as u64)
}

/// Mixes the host's random seed into the kernel's pool and reseeds the CRNG, so no two VMs
/// (even two restored from the same snapshot) share random state.
pub fn seed_rng(seed_hex: &str) -> Result<(), SetupError> {
    const STAGE: &str = "seed the random number generator";
    let bytes = hex::decode(seed_hex)
        .ok()
        .filter(|b| b.len() >= 16)
        .ok_or_else(|| SetupError::new(STAGE, format!("bad seed {seed_hex:?}")))?;
    let random = OpenOptions::new().write(true).open("/dev/urandom").stage(STAGE)?;
    sys::reseed_rng(&random, &bytes).stage(STAGE)
}

/// Mounts the image read-only (before the request is known, on a warm VM).
pub fn mount_image(image: &Path, format: ImageFormat) -> Result<(), SetupError> {
    const STAGE: &str = "mount the container image";
    fs::create_dir_all(paths::IMAGE).stage(STAGE)?;
    let fstype = match format {
        ImageFormat::Squashfs => "squashfs",
        ImageFormat::Erofs => "erofs",
    };
    let ro = libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID;
    sys::mount(image.to_str().unwrap_or_default(), paths::IMAGE, fstype, ro, None).stage(STAGE)
}

/// Puts the size-capped scratch tmpfs (overlay upper dir, /input, /output, /tmp) and the
/// overlay over the mounted image, and unpacks the inputs. Returns the file to use as the
/// program's stdin.
pub fn prepare_root(request: &GuestRequest, archive: &[u8]) -> Result<PathBuf, SetupError> {
    mount_root(request.limits.scratch_mib)?;
    unpack_inputs(archive)
}

/// Undoes [`mount_root`] (lazily: nothing may hold the mounts by then).
pub fn unmount_root() {
    for dir in [paths::ROOT, paths::SCRATCH] {
        let _ = sys::umount_detach(dir);
    }
}

/// The scratch tmpfs of `scratch_mib` MiB and the overlay root over the mounted image.
pub fn mount_root(scratch_mib: u32) -> Result<(), SetupError> {
    const STAGE: &str = "prepare the container's filesystem";
    let (scratch, root) = (paths::SCRATCH, paths::ROOT);
    for dir in [scratch, root, paths::BUNDLE] {
        fs::create_dir_all(dir).stage(STAGE)?;
    }
    let size = format!("size={scratch_mib}m,mode=0755");
    sys::mount("scratch", scratch, "tmpfs", libc::MS_NODEV | libc::MS_NOSUID, Some(&size))
        .stage(STAGE)?;
    for dir in ["upper", "work", "input", "output", "tmp"] {
        fs::create_dir(format!("{scratch}/{dir}")).stage(STAGE)?;
    }
    for dir in ["input", "output"] {
        chown(format!("{scratch}/{dir}"), Some(JOB_UID), Some(JOB_GID)).stage(STAGE)?;
    }
    fs::set_permissions(format!("{scratch}/tmp"), fs::Permissions::from_mode(0o1777))
        .stage(STAGE)?;
    let overlay =
        format!("lowerdir={},upperdir={scratch}/upper,workdir={scratch}/work", paths::IMAGE);
    sys::mount("overlay", root, "overlay", libc::MS_NODEV | libc::MS_NOSUID, Some(&overlay))
        .stage(STAGE)
}

/// Unpacks `input/...` into the scratch input directory as the job user, and `stdin` into a
/// root-only file outside the container.
pub fn unpack_inputs(archive: &[u8]) -> Result<PathBuf, SetupError> {
    const STAGE: &str = "unpack inputs";
    let entries = cpio::decode(archive, &Limits::INPUT).stage(STAGE)?;
    let input_root = PathBuf::from(paths::SCRATCH).join(request_paths::INPUT_DIR);
    let stdin = PathBuf::from(paths::STDIN);
    let mut stdin_data: &[u8] = &[];
    sys::set_fs_ids(JOB_UID, JOB_GID);
    let result = (|| {
        for entry in &entries {
            if entry.path == request_paths::STDIN {
                stdin_data = entry.content();
                continue;
            }
            let Some(rel) = entry.path.strip_prefix("input/") else {
                if entry.path == request_paths::INPUT_DIR && entry.is_dir() {
                    continue;
                }
                return Err(SetupError::new(STAGE, format!("unexpected entry {:?}", entry.path)));
            };
            let target = input_root.join(rel);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).stage(STAGE)?;
            }
            match &entry.data {
                EntryData::Dir => fs::create_dir_all(&target).stage(STAGE)?,
                EntryData::File(data) => {
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(entry.mode | 0o600)
                        .open(&target)
                        .stage(STAGE)?;
                    file.write_all(data).stage(STAGE)?;
                }
            }
        }
        Ok(())
    })();
    sys::set_fs_ids(0, 0);
    result?;
    fs::write(&stdin, stdin_data).stage(STAGE)?;
    Ok(stdin)
}
