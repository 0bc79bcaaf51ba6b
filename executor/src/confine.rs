//! What confines each QEMU on the host besides its own seccomp filter: a uid of its own and a
//! cgroup of its own.
//!
//! 1. [`QemuUsers`]: the uids QEMUs switch to (`-runas UID:GID`) once their files are open. With
//!    a range (the subordinate uids `scripts/setup.sh` reserves for `pe-vm` in /etc/subuid) every
//!    QEMU alive at one time has a uid no other process has, so an escaped QEMU cannot signal,
//!    trace or read another (a waiting VM that will run someone else's job included). With a
//!    single user (a name without a range) they share it.
//! 2. [`Cgroups`]: a cgroup per QEMU (v2, or the v1 `memory`, `pids` and `cpu` hierarchies)
//!    capping its memory and tasks, under one parent `pe` whose CPU weight is that of one busy
//!    process per core: the VMs together cannot starve the host (the server keeps its share), and
//!    with equal weights among themselves one runaway VM cannot starve the other slots.
//!
//! A [`Confinement`] holds both for one QEMU. When it drops (the QEMU has been killed), its
//! cgroup is removed once empty and only then its uid goes back to the pool.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The uids QEMUs run as.
#[derive(Debug)]
pub struct QemuUsers {
    /// What `pe doctor` shows: the user name and how the uids are chosen.
    pub describe: String,
    kind: UidKind,
}

#[derive(Debug)]
enum UidKind {
    /// Every QEMU runs as this user.
    Shared { uid: u32, gid: u32 },
    /// Each QEMU takes a uid of the range (gid = uid) and gives it back when it is gone.
    Pool { free: Mutex<BTreeSet<u32>> },
}

/// One QEMU's uid and gid.
#[derive(Debug)]
pub struct Lease {
    pub uid: u32,
    pub gid: u32,
    users: Arc<QemuUsers>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let UidKind::Pool { free } = &self.users.kind {
            lock(free).insert(self.uid);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl QemuUsers {
    /// Every QEMU runs as `uid`:`gid`.
    pub fn shared(name: &str, uid: u32, gid: u32) -> Arc<QemuUsers> {
        Arc::new(QemuUsers {
            describe: format!("{name} (uid {uid}), shared by every QEMU"),
            kind: UidKind::Shared { uid, gid },
        })
    }

    /// Each QEMU gets a uid of `first..first + count` of its own.
    pub fn range(name: &str, first: u32, count: u32) -> Arc<QemuUsers> {
        Arc::new(QemuUsers {
            describe: format!(
                "a uid of its own per QEMU, from {name}'s range {first}-{}",
                first + count - 1
            ),
            kind: UidKind::Pool { free: Mutex::new((first..first + count).collect()) },
        })
    }

    /// `name`'s subordinate uid range in `subuid` (the /etc/subuid format, `name:first:count`),
    /// if it has one.
    pub fn subordinate_range(subuid: &str, name: &str) -> Option<(u32, u32)> {
        subuid.lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then_some(())?;
            let first = fields.next()?.parse().ok()?;
            let count: u32 = fields.next()?.parse().ok()?;
            (count > 0).then_some((first, count))
        })
    }

    /// A uid for one QEMU, or an error when every uid of the range is in use.
    pub fn lease(self: &Arc<Self>) -> io::Result<Lease> {
        let (uid, gid) = match &self.kind {
            UidKind::Shared { uid, gid } => (*uid, *gid),
            UidKind::Pool { free } => {
                let uid = lock(free).pop_first().ok_or_else(|| {
                    io::Error::other("every uid of the QEMU range is in use; widen the range")
                })?;
                (uid, uid)
            }
        };
        Ok(Lease { uid, gid, users: self.clone() })
    }
}

/// Where per-QEMU cgroups are made, and their limits.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Layout {
    /// The unified hierarchy: `<root>/pe` with memory, pids and cpu enabled for its children.
    V2(PathBuf),
    /// Legacy hierarchies: `<memory>/pe`, `<pids>/pe`, `<cpu>/pe`.
    V1 { memory: PathBuf, pids: PathBuf, cpu: PathBuf },
}

/// Tasks (threads) one QEMU may have.
const QEMU_PIDS_MAX: u32 = 256;
/// Host memory a QEMU may use beyond its guest's RAM: its own heap and, under TCG, the
/// translated code cache.
const QEMU_OVERHEAD_MIB: u64 = 1536;
/// CPU weight of each QEMU among its siblings (v2 `cpu.weight`, the default; v1 `cpu.shares` is
/// 10.24x).
const QEMU_CPU_WEIGHT: u64 = 100;

/// CPU weight of the `pe` parent: one default-weight process per core.
fn parent_cpu_weight() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    (QEMU_CPU_WEIGHT * cores).min(10_000)
}

/// Names of the per-QEMU cgroups of this process: `vm-<pid>-<n>`.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    /// The per-QEMU cgroup parent under `/sys/fs/cgroup`, made if needed; `None` when this host
    /// offers no writable hierarchy with the controllers (then QEMUs run without one; `pe
    /// doctor` says so).
    pub fn detect() -> Option<Cgroups> {
        Cgroups::detect_in(Path::new("/sys/fs/cgroup"))
    }

    fn detect_in(root: &Path) -> Option<Cgroups> {
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
        let layout = match controllers {
            Some(list) => {
                let has = |c: &str| list.split_whitespace().any(|x| x == c);
                if !(has("memory") && has("pids") && has("cpu")) {
                    return None;
                }
                let parent = root.join("pe");
                std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids +cpu").ok()?;
                make_dir(&parent).ok()?;
                std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu").ok()?;
                std::fs::write(parent.join("cpu.weight"), parent_cpu_weight().to_string()).ok()?;
                Layout::V2(parent)
            }
            None => {
                let v1 = |c: &str| {
                    let dir = root.join(c);
                    dir.join("cgroup.procs").is_file().then(|| dir.join("pe"))
                };
                let layout =
                    Layout::V1 { memory: v1("memory")?, pids: v1("pids")?, cpu: v1("cpu")? };
                if let Layout::V1 { memory, pids, cpu } = &layout {
                    for dir in [memory, pids, cpu] {
                        make_dir(dir).ok()?;
                    }
                    let shares = parent_cpu_weight() * 1024 / 100;
                    std::fs::write(cpu.join("cpu.shares"), shares.to_string()).ok()?;
                }
                layout
            }
        };
        Some(Cgroups { layout })
    }

    /// `v2` or `v1`, for `pe doctor`.
    pub fn version(&self) -> &'static str {
        match self.layout {
            Layout::V2(_) => "v2",
            Layout::V1 { .. } => "v1",
        }
    }

    /// A fresh cgroup for one QEMU whose guest has `guest_mib` of RAM.
    pub fn create(&self, guest_mib: u32) -> io::Result<Cgroup> {
        let name = format!("vm-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let memory = (u64::from(guest_mib) + QEMU_OVERHEAD_MIB) * 1024 * 1024;
        let mut dirs = Vec::new();
        let mut make = |parent: &Path, files: &[(&str, String)]| -> io::Result<()> {
            let dir = parent.join(&name);
            std::fs::create_dir(&dir)?;
            dirs.push(dir.clone());
            for (file, value) in files {
                std::fs::write(dir.join(file), value)
                    .map_err(|e| io::Error::new(e.kind(), format!("{file}: {e}")))?;
            }
            Ok(())
        };
        let made = match &self.layout {
            Layout::V2(parent) => make(
                parent,
                &[
                    ("memory.max", memory.to_string()),
                    ("memory.swap.max", "0".into()),
                    ("pids.max", QEMU_PIDS_MAX.to_string()),
                    ("cpu.weight", QEMU_CPU_WEIGHT.to_string()),
                ],
            ),
            Layout::V1 { memory: mem, pids, cpu } => {
                make(mem, &[("memory.limit_in_bytes", memory.to_string())])
                    .and_then(|()| make(pids, &[("pids.max", QEMU_PIDS_MAX.to_string())]))
                    .and_then(|()| {
                        make(cpu, &[("cpu.shares", (QEMU_CPU_WEIGHT * 1024 / 100).to_string())])
                    })
            }
        };
        let cgroup = Cgroup { dirs };
        made.map(|()| cgroup)
    }

    /// Removes the cgroups of this kind left by processes that are gone.
    pub fn sweep_stale(&self) -> usize {
        let parents: Vec<&PathBuf> = match &self.layout {
            Layout::V2(parent) => vec![parent],
            Layout::V1 { memory, pids, cpu } => vec![memory, pids, cpu],
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(parent) else { continue };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("vm-").and_then(|r| r.split('-').next()) else {
                    continue;
                };
                let alive = Path::new("/proc").join(pid).exists();
                if !alive && std::fs::remove_dir(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// One QEMU's cgroup directories (one per v1 hierarchy, one for v2).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Moves process `pid` into the cgroup.
    pub fn attach(&self, pid: u32) -> io::Result<()> {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Removes the directories, waiting up to `patience` for the processes to be gone.
    fn remove(&self, patience: Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = self.dirs.iter().filter(|d| d.exists() && std::fs::remove_dir(d).is_err());
            if left.count() == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A QEMU's uid and cgroup, released when it drops.
#[derive(Debug, Default)]
pub struct Confinement {
    pub lease: Option<Lease>,
    pub cgroup: Option<Cgroup>,
}

impl Confinement {
    /// Puts the started QEMU `pid` in its cgroup.
    pub fn attach(&self, pid: Option<u32>) -> io::Result<()> {
        match (&self.cgroup, pid) {
            (Some(cgroup), Some(pid)) => cgroup.attach(pid),
            _ => Ok(()),
        }
    }
}

impl Drop for Confinement {
    fn drop(&mut self) {
        let Some(cgroup) = self.cgroup.take() else { return };
        // The QEMU was just killed: until it is reaped its cgroup is busy, and its uid must not
        // go to another QEMU. Wait for both off the async threads.
        let lease = self.lease.take();
        if !cgroup.remove(Duration::ZERO) {
            std::thread::spawn(move || {
                if !cgroup.remove(Duration::from_secs(10)) {
                    tracing::warn!(cgroup = ?cgroup.dirs, "a QEMU cgroup stayed busy; left for the next sweep");
                }
                drop(lease);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lease_of_a_range_is_a_uid_of_its_own_until_given_back() {
        let users = QemuUsers::range("pe-vm", 200_000, 3);
        let a = users.lease().unwrap();
        let b = users.lease().unwrap();
        let c = users.lease().unwrap();
        let mut uids = vec![a.uid, b.uid, c.uid];
        uids.dedup();
        assert_eq!(uids.len(), 3);
        assert!(users.lease().is_err(), "the range is used up");
        let freed = b.uid;
        drop(b);
        assert_eq!(users.lease().unwrap().uid, freed);
        let shared = QemuUsers::shared("nobody", 65534, 65534);
        assert_eq!(shared.lease().unwrap().uid, shared.lease().unwrap().uid);
    }

    #[test]
    fn subordinate_ranges_are_read_from_etc_subuid() {
        let subuid = "root:100000:65536\npe-vm:6553600:1024\nbad:x:1\n";
        assert_eq!(QemuUsers::subordinate_range(subuid, "pe-vm"), Some((6_553_600, 1024)));
        assert_eq!(QemuUsers::subordinate_range(subuid, "nobody"), None);
        assert_eq!(QemuUsers::subordinate_range(subuid, "bad"), None);
    }
}
