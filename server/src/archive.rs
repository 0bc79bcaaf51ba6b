//! `pe archive`: pack a directory into a cpio newc archive, unpack one safely, list one.
//! A debugging aid built on `shared::cpio`, so it enforces exactly the rules the server and the
//! guest do. `unpack` and `list` read squashfs images too (the server's other answer format,
//! told apart by its magic), through `shared::squashfs`: the same path rules, symlinks listed
//! but never unpacked or followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use shared::cpio::{self, CpioError, Encoder, Entry, EntryData, Limits};
use shared::squashfs::{self, Image, NodeKind, ReadLimits, SquashfsError};

/// Why an archive command failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Cpio(#[from] CpioError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is a symbolic link; archives hold only files and directories")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file or directory")]
    Special { path: PathBuf },
    #[error("{path} is not valid UTF-8")]
    NonUtf8 { path: PathBuf },
    #[error("{path} already exists and is not a directory; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("{0}")]
    Squashfs(#[from] SquashfsError),
    #[error("{path} is a symbolic link (to {target}); it is not unpacked")]
    SquashfsSymlink { path: String, target: String },
}

/// Whether `bytes` start like a squashfs image.
fn is_squashfs(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == squashfs::MAGIC
}

/// The entries of a squashfs image, held to the rules of cpio archives.
fn squashfs_entries(bytes: &[u8]) -> Result<Vec<Entry>, ArchiveError> {
    let image = Image::open(bytes, ReadLimits::ANSWER)?;
    let mut entries = Vec::new();
    for node in image.list()? {
        let path = cpio::normalize_path(&node.path, &Limits::MAX)?.unwrap_or_default();
        let mode = u32::from(node.mode & 0o777);
        let data = match &node.kind {
            NodeKind::Dir => EntryData::Dir,
            NodeKind::File { .. } => EntryData::File(image.read(&node)?),
            NodeKind::Symlink { target } => {
                return Err(ArchiveError::SquashfsSymlink { path, target: target.clone() });
            }
        };
        entries.push(Entry { path, mode, mtime: node.mtime, data });
    }
    Ok(entries)
}

/// Writes an archive of everything under `dir` (paths relative to it, sorted) to `out`.
pub fn pack(dir: &Path, out: impl Write) -> Result<(), ArchiveError> {
    let mut encoder = Encoder::new(out, Limits::MAX);
    pack_dir(dir, "", &mut encoder)?;
    encoder.finish()?;
    Ok(())
}

fn pack_dir<W: Write>(
    dir: &Path,
    prefix: &str,
    encoder: &mut Encoder<W>,
) -> Result<(), ArchiveError> {
    let read_err = |source| ArchiveError::Read { path: dir.to_owned(), source };
    let mut children =
        fs::read_dir(dir).map_err(read_err)?.collect::<Result<Vec<_>, _>>().map_err(read_err)?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let Ok(name) = child.file_name().into_string() else {
            return Err(ArchiveError::NonUtf8 { path });
        };
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let meta = fs::symlink_metadata(&path)
            .map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
        let mtime = u32::try_from(meta.mtime()).unwrap_or(0);
        if meta.file_type().is_symlink() {
            return Err(ArchiveError::Symlink { path });
        } else if meta.is_dir() {
            encoder.add_dir(&rel, meta.mode(), mtime)?;
            pack_dir(&path, &rel, encoder)?;
        } else if meta.is_file() {
            let data = fs::read(&path).map_err(|source| ArchiveError::Read { path, source })?;
            encoder.add_file(&rel, meta.mode(), mtime, &data)?;
        } else {
            return Err(ArchiveError::Special { path });
        }
    }
    Ok(())
}

/// Decodes the whole archive (so a hostile one is refused before anything is written), then
/// creates its entries under `dir`. Never follows a symlink and never overwrites a file.
pub fn unpack(mut archive: impl Read, dir: &Path) -> Result<usize, ArchiveError> {
    let mut bytes = Vec::new();
    archive
        .read_to_end(&mut bytes)
        .map_err(|source| ArchiveError::Read { path: "the archive".into(), source })?;
    let entries = if is_squashfs(&bytes) {
        squashfs_entries(&bytes)?
    } else {
        cpio::decode(&bytes, &Limits::MAX)?
    };
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut dirs = Vec::new();
    for entry in &entries {
        let target = dir.join(&entry.path);
        ensure_parents(dir, &entry.path)?;
        match &entry.data {
            EntryData::Dir => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(ArchiveError::Exists { path: target }),
                    Err(_) => fs::create_dir(&target).map_err(write_err(&target))?,
                }
                dirs.push(entry);
            }
            EntryData::File(data) => {
                // create_new refuses existing files and symlinks alike (O_EXCL).
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(write_err(&target))?;
                file.write_all(data).map_err(write_err(&target))?;
                finish_metadata(&file, entry).map_err(write_err(&target))?;
            }
        }
    }
    // Directory modes and times last, deepest first, so writing into them is not blocked.
    for entry in dirs.iter().rev() {
        let target = dir.join(&entry.path);
        let file = File::open(&target).map_err(write_err(&target))?;
        finish_metadata(&file, entry).map_err(write_err(&target))?;
    }
    Ok(entries.len())
}

/// Creates the missing parent directories of `rel` under `root`, refusing any that is a symlink
/// or a file.
fn ensure_parents(root: &Path, rel: &str) -> Result<(), ArchiveError> {
    let mut current = root.to_owned();
    let components: Vec<&str> = rel.split('/').collect();
    for component in &components[..components.len() - 1] {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(ArchiveError::Exists { path: current }),
            Err(_) => fs::create_dir(&current)
                .map_err(|source| ArchiveError::Write { path: current.clone(), source })?,
        }
    }
    Ok(())
}

fn finish_metadata(file: &File, entry: &Entry) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(entry.mode))?;
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(entry.mtime.into()))
}

/// Writes one line per entry: its path, or with `verbose` its mode, size and path. A squashfs
/// image is listed from its tables alone (no file is decompressed); its symlinks show their
/// target.
pub fn list(
    mut archive: impl Read,
    verbose: bool,
    mut out: impl Write,
) -> Result<usize, ArchiveError> {
    let stdout_err = |source| ArchiveError::Write { path: "stdout".into(), source };
    let mut magic = [0u8; 4];
    let mut head = 0;
    while head < 4 {
        match archive.read(&mut magic[head..]) {
            Ok(0) => break,
            Ok(n) => head += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ArchiveError::Read { path: "the archive".into(), source }),
        }
    }
    if is_squashfs(&magic[..head]) {
        let mut bytes = magic.to_vec();
        archive
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Read { path: "the archive".into(), source })?;
        let image = Image::open(&bytes, ReadLimits::ANSWER)?;
        let nodes = image.list()?;
        for node in &nodes {
            let (kind, size, link) = match &node.kind {
                NodeKind::Dir => ('d', 0, String::new()),
                NodeKind::File { size } => ('-', *size, String::new()),
                NodeKind::Symlink { target } => ('l', 0, format!(" -> {target}")),
            };
            if verbose {
                writeln!(out, "{kind}{:04o} {size:>10} {}{link}", node.mode & 0o7777, node.path)
            } else {
                writeln!(out, "{}{link}", node.path)
            }
            .map_err(stdout_err)?;
        }
        return Ok(nodes.len());
    }
    let archive = io::Cursor::new(magic[..head].to_vec()).chain(archive);
    let mut count = 0;
    for entry in cpio::Decoder::new(archive, Limits::MAX) {
        let entry = entry?;
        count += 1;
        if verbose {
            let kind = if entry.is_dir() { 'd' } else { '-' };
            writeln!(out, "{kind}{:04o} {:>10} {}", entry.mode, entry.content().len(), entry.path)
        } else {
            writeln!(out, "{}", entry.path)
        }
        .map_err(stdout_err)?;
    }
    Ok(count)
}
