//! Applying layers into the root filesystem: whiteouts, paths resolved inside the root, limits
//! (the rules are in [`super`]'s documentation, under Security).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::archive::{Limits, copy};
use super::error::{OciError, write_err};

/// Symlinks followed when resolving one path (Linux's own limit).
pub(super) const MAX_SYMLINKS: usize = 40;

/// What one layer held.
#[derive(Debug, Default)]
pub(super) struct LayerStats {
    pub(super) entries: u64,
    pub(super) bytes: u64,
    pub(super) skipped: u64,
    pub(super) skipped_example: Option<PathBuf>,
}

/// Applies layers into the root, keeping the totals against the limits.
pub(super) struct Unpacker {
    root: PathBuf,
    limits: Limits,
    bytes: u64,
    entries: u64,
    /// Directory modes, applied at the end so that a read-only directory can still be filled.
    dir_modes: BTreeMap<PathBuf, u32>,
}

impl Unpacker {
    pub(super) fn new(root: &Path, limits: Limits) -> Self {
        Unpacker { root: root.to_owned(), limits, bytes: 0, entries: 0, dir_modes: BTreeMap::new() }
    }

    pub(super) fn apply_layer(
        &mut self,
        layer: usize,
        reader: impl Read,
    ) -> Result<LayerStats, OciError> {
        let tar_err = |source| OciError::Tar { what: format!("layer {layer}"), source };
        let mut stats = LayerStats::default();
        // What this layer wrote: whiteouts in the same layer do not apply to them.
        let mut written: HashSet<PathBuf> = HashSet::new();
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(OciError::TooManyEntries { limit: self.limits.max_entries });
            }
            let size = entry.size().max(entry.header().entry_size().map_err(tar_err)?);
            self.bytes = self.bytes.saturating_add(size);
            if self.bytes > self.limits.max_bytes {
                return Err(OciError::TooLarge { limit: self.limits.max_bytes });
            }
            stats.entries += 1;
            stats.bytes += size;

            let raw = entry.path().map_err(tar_err)?.into_owned();
            let parts = entry_parts(layer, &raw)?;
            let Some((name, dir)) = parts.split_last() else { continue }; // the root itself
            let kind = entry.header().entry_type();
            if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(".wh.")) {
                self.whiteout(layer, &raw, dir, hidden, &written)?;
                continue;
            }
            let unpacked_kind = kind.is_file()
                || kind.is_contiguous()
                || kind.is_gnu_sparse()
                || kind.is_dir()
                || kind.is_symlink()
                || kind.is_hard_link();
            if !unpacked_kind {
                if !kind.is_pax_global_extensions() {
                    stats.skipped += 1;
                    stats.skipped_example.get_or_insert(raw);
                }
                continue;
            }
            let parent = self
                .resolve_dir(layer, &raw, dir, Some(&mut written))?
                .expect("created when missing");
            let dest = parent.join(name);
            let mode = entry.header().mode().map_err(tar_err)? & 0o7777;

            if kind.is_dir() {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        self.remove(&dest)?;
                        fs::DirBuilder::new()
                            .mode(0o755)
                            .create(&dest)
                            .map_err(write_err(&dest))?;
                    }
                }
                self.dir_modes.insert(dest.clone(), mode);
            } else if kind.is_symlink() {
                let target = entry.link_name().map_err(tar_err)?.ok_or_else(|| {
                    OciError::UnsafeEntry { layer, path: raw.clone(), why: "a symlink to nothing" }
                })?;
                self.remove(&dest)?;
                std::os::unix::fs::symlink(&target, &dest).map_err(write_err(&dest))?;
            } else if kind.is_hard_link() {
                let target =
                    entry.link_name().map_err(tar_err)?.ok_or_else(|| OciError::UnsafeEntry {
                        layer,
                        path: raw.clone(),
                        why: "a hard link to nothing",
                    })?;
                let target = self.resolve_link_target(layer, &raw, &target)?;
                if target != dest {
                    self.remove(&dest)?;
                    fs::hard_link(&target, &dest).map_err(write_err(&dest))?;
                }
            } else {
                self.remove(&dest)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(write_err(&dest))?;
                copy(&mut entry, &mut file, tar_err, &dest)?;
                // After writing, which would clear setuid bits.
                file.set_permissions(fs::Permissions::from_mode(mode)).map_err(write_err(&dest))?;
            }
            written.insert(dest);
        }
        Ok(stats)
    }

    /// `.wh.<hidden>` in `dir`: deletes `hidden` (or, for `.wh..wh..opq`, everything in `dir`)
    /// unless this layer wrote it.
    pub(super) fn whiteout(
        &mut self,
        layer: usize,
        raw: &Path,
        dir: &[OsString],
        hidden: &str,
        written: &HashSet<PathBuf>,
    ) -> Result<(), OciError> {
        if hidden == "." || hidden == ".." {
            let why = "a whiteout of `.` or `..`";
            return Err(OciError::UnsafeEntry { layer, path: raw.to_owned(), why });
        }
        let Some(parent) = self.resolve_dir(layer, raw, dir, None)? else { return Ok(()) };
        if hidden == ".wh..opq" {
            self.clear_opaque(&parent, written)
        } else if hidden.starts_with(".wh.") || hidden.is_empty() {
            Ok(()) // other AUFS metadata (`.wh..wh.plnk`, ...): nothing to apply
        } else {
            let path = parent.join(hidden);
            if written.contains(&path) { Ok(()) } else { self.remove(&path) }
        }
    }

    /// Removes everything under `dir` that the current layer did not write.
    pub(super) fn clear_opaque(
        &mut self,
        dir: &Path,
        written: &HashSet<PathBuf>,
    ) -> Result<(), OciError> {
        for child in fs::read_dir(dir).map_err(write_err(dir))? {
            let path = child.map_err(write_err(dir))?.path();
            if !written.contains(&path) {
                self.remove(&path)?;
            } else if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.clear_opaque(&path, written)?;
            }
        }
        Ok(())
    }

    /// Removes whatever is at `path` (never following a symlink), if anything.
    pub(super) fn remove(&mut self, path: &Path) -> Result<(), OciError> {
        let result = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                // The directory and what is under it sort together.
                let under: Vec<PathBuf> = (self.dir_modes.range(path.to_owned()..))
                    .map(|(p, _)| p)
                    .take_while(|p| p.starts_with(path))
                    .cloned()
                    .collect();
                for p in under {
                    self.dir_modes.remove(&p);
                }
                fs::remove_dir_all(path)
            }
            Ok(_) => fs::remove_file(path),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(write_err(path)(e)),
            _ => Ok(()),
        }
    }

    /// The host path of the directory `parts` inside the root, resolving symlinks as the guest
    /// would (`/` is the root, `..` stops at it). With `created`, missing directories (and
    /// non-directories in the way) are made and recorded there; without, `None` if missing.
    pub(super) fn resolve_dir(
        &mut self,
        layer: usize,
        raw: &Path,
        parts: &[OsString],
        mut created: Option<&mut HashSet<PathBuf>>,
    ) -> Result<Option<PathBuf>, OciError> {
        let mut resolved = self.root.clone();
        let mut depth = 0usize; // components of `resolved` below the root
        let mut todo: VecDeque<OsString> = parts.iter().cloned().collect();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            if part == "." || part.is_empty() {
                continue;
            }
            if part == ".." {
                if depth > 0 {
                    resolved.pop();
                    depth -= 1;
                }
                continue;
            }
            let next = resolved.join(&part);
            match fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(OciError::SymlinkLoop { layer, path: raw.to_owned() });
                    }
                    let target = fs::read_link(&next).map_err(write_err(&next))?;
                    if target.has_root() {
                        resolved = self.root.clone();
                        depth = 0;
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => todo.push_front(n.to_owned()),
                            Component::ParentDir => todo.push_front("..".into()),
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                    continue;
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) | Err(_) => {
                    let Some(created) = created.as_deref_mut() else { return Ok(None) };
                    self.remove(&next)?;
                    fs::DirBuilder::new().mode(0o755).create(&next).map_err(write_err(&next))?;
                    created.insert(next.clone());
                }
            }
            resolved = next;
            depth += 1;
        }
        Ok(Some(resolved))
    }

    /// The host path a hard link's target names: inside the root, an existing non-directory.
    pub(super) fn resolve_link_target(
        &mut self,
        layer: usize,
        raw: &Path,
        target: &Path,
    ) -> Result<PathBuf, OciError> {
        let parts = entry_parts(layer, target)?;
        let bad = |why| OciError::UnsafeEntry { layer, path: raw.to_owned(), why };
        let (name, dir) = parts.split_last().ok_or_else(|| bad("a hard link to the root"))?;
        let found = self
            .resolve_dir(layer, raw, dir, None)?
            .map(|d| d.join(name))
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()));
        found.ok_or_else(|| bad("a hard link to a missing file or a directory"))
    }

    /// Applies the directory modes and makes the paths the builder writes through plain.
    pub(super) fn finish(self, progress: &mut dyn FnMut(&str)) -> Result<(), OciError> {
        for (dir, mode) in self.dir_modes.iter().rev() {
            if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
                    .map_err(write_err(dir))?;
            }
        }
        settle_builder_paths(&self.root, progress)
    }
}

/// The components of an entry's path, refusing absolute paths and `..`.
pub(super) fn entry_parts(layer: usize, raw: &Path) -> Result<Vec<OsString>, OciError> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_owned()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                let why = "absolute paths are not allowed in a layer";
                return Err(OciError::UnsafeEntry { layer, path: raw.to_owned(), why });
            }
            Component::ParentDir => {
                let why = "`..` is not allowed in a layer";
                return Err(OciError::UnsafeEntry { layer, path: raw.to_owned(), why });
            }
        }
    }
    Ok(parts)
}

/// `build::add_job_user` appends to `etc/passwd` and `etc/group` and creates the job
/// directories through plain host paths, which would follow symlinks on the host: make them
/// plain files and directories.
pub(super) fn settle_builder_paths(
    root: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), OciError> {
    let etc = root.join("etc");
    match fs::symlink_metadata(&etc) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&etc).unwrap_or_default();
            return Err(OciError::EtcIsSymlink { target });
        }
        Ok(m) if m.is_dir() => {}
        Ok(_) | Err(_) => {
            let _ = fs::remove_file(&etc);
            fs::DirBuilder::new().mode(0o755).create(&etc).map_err(write_err(&etc))?;
        }
    }
    for name in ["passwd", "group"] {
        let path = etc.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if meta.is_file() {
            continue;
        }
        // A symlink (or something else): replace it by a copy of what it means in the image.
        let content = if meta.file_type().is_symlink() {
            read_inside(root, &path).unwrap_or_default()
        } else {
            Vec::new()
        };
        if meta.is_dir() {
            fs::remove_dir_all(&path).map_err(write_err(&path))?;
        } else {
            fs::remove_file(&path).map_err(write_err(&path))?;
        }
        fs::write(&path, content).map_err(write_err(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(write_err(&path))?;
        progress(&format!("  note: /etc/{name} was not a plain file; made it one"));
    }
    for dir in ["input", "output", "tmp", "proc", "dev", "sys"] {
        let path = root.join(dir);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Err(_) => {}
            Ok(_) => {
                fs::remove_file(&path).map_err(write_err(&path))?;
                fs::DirBuilder::new().mode(0o755).create(&path).map_err(write_err(&path))?;
                progress(&format!("  note: /{dir} was not a directory; made it an empty one"));
            }
        }
    }
    Ok(())
}

/// The contents (up to 1 MiB) of the regular file a symlink at `path` names inside `root`.
pub(super) fn read_inside(root: &Path, path: &Path) -> Option<Vec<u8>> {
    let mut unpacker = Unpacker::new(root, Limits::default());
    let mut current = path.to_owned();
    for _ in 0..MAX_SYMLINKS {
        let meta = fs::symlink_metadata(&current).ok()?;
        if meta.is_file() {
            let mut bytes = Vec::new();
            File::open(&current).ok()?.take(1 << 20).read_to_end(&mut bytes).ok()?;
            return Some(bytes);
        }
        if !meta.file_type().is_symlink() {
            return None;
        }
        let target = fs::read_link(&current).ok()?;
        // Resolve the target from the link's directory, inside the root.
        let dir = current.parent()?.strip_prefix(root).ok()?;
        let mut parts: Vec<OsString> = dir.components().map(|c| c.as_os_str().to_owned()).collect();
        if target.has_root() {
            parts.clear();
        }
        for c in target.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_owned()),
                Component::ParentDir => parts.push(OsStr::new("..").to_owned()),
                _ => {}
            }
        }
        let (name, dir) = parts.split_last()?;
        if name == ".." {
            return None;
        }
        let resolved = unpacker.resolve_dir(0, path, dir, None).ok()??;
        current = resolved.join(name);
    }
    None
}
