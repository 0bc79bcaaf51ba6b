//! Per-job and per-VM temporary directories, named after the process that owns them so that
//! what a killed server left behind can be told apart from what a live one is using.
//!
//! A directory is `<kind>-<pid>-<random>`. Normally it is removed when its handle drops; a
//! process killed with SIGKILL leaves its directories (and a snapshot template's RAM file on
//! tmpfs, which holds host memory) behind. [`sweep_stale`] removes those whose process is gone.

use std::io;
use std::path::Path;

/// The kinds of directory the executor makes in its work directory.
pub const WORK_KINDS: &[&str] = &["job", "warm", "template", "clone", "sandbox", "probe"];

/// A fresh directory `<kind>-<pid>-<random>` in `parent`, removed when the handle drops.
pub fn create(parent: &Path, kind: &str) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(&format!("{kind}-{}-", std::process::id())).tempdir_in(parent)
}

/// Removes the directories in `parent` made by [`create`] with one of `kinds` whose process no
/// longer runs. Returns how many were removed.
pub fn sweep_stale(parent: &Path, kinds: &[&str]) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = owner(&name.to_string_lossy(), kinds) else { continue };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a name made by [`create`] for one of `kinds`.
fn owner(name: &str, kinds: &[&str]) -> Option<u32> {
    let (kind, rest) = name.split_once('-')?;
    if !kinds.contains(&kind) {
        return None;
    }
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        let parent = tempfile::tempdir().unwrap();
        let dir = create(parent.path(), "clone").unwrap();
        let name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(owner(&name, &["clone"]), Some(std::process::id()));
        assert_eq!(owner(&name, &["job"]), None);
        assert_eq!(owner("clone-12", &["clone"]), None);
        assert_eq!(owner("clone-x-abc", &["clone"]), None);
    }

    #[test]
    fn only_directories_of_dead_processes_are_swept() {
        let parent = tempfile::tempdir().unwrap();
        let live = create(parent.path(), "job").unwrap();
        // No process has this pid: above the kernel's maximum.
        let dead = parent.path().join("job-4194305-abcdef");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("io"), b"left behind").unwrap();
        let unrelated = parent.path().join("notes-4194305-x");
        std::fs::create_dir(&unrelated).unwrap();

        assert_eq!(sweep_stale(parent.path(), &["job"]), 1);
        assert!(!dead.exists());
        assert!(live.path().exists());
        assert!(unrelated.exists());
    }
}
