//! Collecting a job's output directory, the same way in the guest init and in the host's
//! namespace sandbox: depth first in sorted order, files and directories only, until a cap is
//! reached. What is left out is said in a note.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cpio::{self, Entry, EntryData, Limits};

/// Caps on what is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub entries: usize,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Paths relative to the output directory.
    pub entries: Vec<Entry>,
    /// Whether anything was left out.
    pub truncated: bool,
    /// One line per thing left out or unreadable.
    pub notes: Vec<String>,
}

/// Collects every file and directory under `root`. Links and special files are left out with a
/// note, as are names an archive cannot carry; the first entry over a cap ends the walk. Call it
/// only once nothing writes to `root` any more (the job has ended).
pub fn collect(root: &Path, caps: Caps) -> Collected {
    let mut out = Collected::default();
    let mut bytes = 0u64;
    // Entries still to visit, `(path, relative path)`, the next one last.
    let mut pending = Vec::new();
    push_children(root, "", &mut pending);
    while let Some((path, rel)) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let size = if meta.is_file() { meta.len() } else { 0 };
        if out.entries.len() >= caps.entries || bytes + size > caps.bytes {
            out.notes
                .push(format!("output/{rel} and later files were left out: over the output limit"));
            out.truncated = true;
            return out;
        }
        if let Err(err) = cpio::normalize_path(&rel, &Limits::MAX) {
            out.notes.push(format!("output/{rel} was left out: {err}"));
            out.truncated = true;
            continue;
        }
        let data = if meta.is_dir() {
            push_children(&path, &rel, &mut pending);
            EntryData::Dir
        } else if meta.is_file() {
            match fs::read(&path) {
                Ok(data) => EntryData::File(data),
                Err(err) => {
                    out.notes.push(format!("output/{rel} could not be read: {err}"));
                    continue;
                }
            }
        } else {
            out.notes.push(format!(
                "output/{rel} was left out: only files and directories are returned"
            ));
            out.truncated = true;
            continue;
        };
        // Nothing writes any more, so `size` is the file's length.
        bytes += size;
        let mode = meta.permissions().mode() & 0o777;
        out.entries.push(Entry { path: rel, mode, mtime: 0, data });
    }
    out
}

/// Pushes the entries of `dir` onto `pending`, in reverse order so they pop sorted.
fn push_children(dir: &Path, prefix: &str, pending: &mut Vec<(PathBuf, String)>) {
    let Ok(read) = fs::read_dir(dir) else { return };
    let mut children: Vec<_> = read.filter_map(Result::ok).collect();
    children.sort_by_key(|c| std::cmp::Reverse(c.file_name()));
    for child in children {
        let name = child.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        pending.push((child.path(), rel));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: Caps = Caps { entries: 100, bytes: 1 << 20 };

    fn paths(c: &Collected) -> Vec<&str> {
        c.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn depth_first_in_sorted_order_with_modes_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/inner")).unwrap();
        fs::write(root.join("b/inner/z.txt"), b"zz").unwrap();
        fs::write(root.join("b/a.txt"), b"a").unwrap();
        fs::write(root.join("c.txt"), b"c").unwrap();
        fs::write(root.join("a.bin"), [0u8, 1, 2]).unwrap();
        fs::set_permissions(root.join("a.bin"), fs::Permissions::from_mode(0o755)).unwrap();

        let got = collect(root, WIDE);
        assert_eq!(paths(&got), ["a.bin", "b", "b/a.txt", "b/inner", "b/inner/z.txt", "c.txt"]);
        assert!(!got.truncated, "{:?}", got.notes);
        assert_eq!(got.entries[0].mode, 0o755);
        assert_eq!(got.entries[0].data, EntryData::File(vec![0, 1, 2]));
        assert_eq!(got.entries[1].data, EntryData::Dir);
    }

    #[test]
    fn caps_end_the_walk_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1", "2", "3"] {
            fs::write(dir.path().join(name), b"1234").unwrap();
        }
        let got = collect(dir.path(), Caps { entries: 2, bytes: 1 << 20 });
        assert_eq!(paths(&got), ["1", "2"]);
        assert!(got.truncated);
        assert_eq!(got.notes, ["output/3 and later files were left out: over the output limit"]);

        let got = collect(dir.path(), Caps { entries: 100, bytes: 9 });
        assert_eq!(paths(&got), ["1", "2"], "the third file's 4 bytes would make 12 > 9");
        assert!(got.truncated);
    }

    #[test]
    fn links_and_special_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let got = collect(dir.path(), WIDE);
        assert_eq!(paths(&got), ["real"]);
        assert!(got.truncated);
        assert_eq!(
            got.notes,
            ["output/link was left out: only files and directories are returned"]
        );
    }

    #[test]
    fn a_missing_directory_is_empty() {
        let got = collect(Path::new("/nonexistent/pe-output"), WIDE);
        assert!(got.entries.is_empty() && !got.truncated && got.notes.is_empty());
    }
}
