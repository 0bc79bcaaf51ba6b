//! cpio "newc" archives: the format `cpio -o -H newc` writes and Linux reads for initramfs.
//! (Over 600 lines with its tests: the encoder and the decoder share the entry rules.)
//!
//! Layout of one entry (all numbers are 8 ASCII hex digits):
//!
//! ```text
//! "070701" ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
//! <name, namesize bytes including its NUL> <pad to 4> <data, filesize bytes> <pad to 4>
//! ```
//!
//! The archive ends with an entry named `TRAILER!!!`; GNU cpio then pads to a 512-byte block,
//! which is ignored.
//!
//! Every archive here crosses a security boundary (it comes from a browser or from a guest), so
//! the decoder accepts only what can be unpacked safely anywhere:
//! regular files and directories; relative, normalised UTF-8 paths (a leading `./` and a `.` root
//! entry, as `find . | cpio` writes them, are accepted and dropped); no `..`, no absolute paths,
//! no duplicates, no path used both as a file and as a directory; no device nodes, FIFOs,
//! sockets, symlinks or hard links; bounded entry count, total content size, path length and
//! depth. Sizes are checked against [`Limits`] before anything is allocated or read, so a lying
//! header costs nothing. Permission bits are kept (`0o777` only: setuid, setgid and sticky are
//! dropped); owners are not.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use crate::limits;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// What a decoder (and encoder) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries, directories included (the `.` root entry and the trailer are not counted).
    pub max_entries: usize,
    /// Most bytes of file content, summed over all files.
    pub max_total_bytes: u64,
    /// Longest path, in bytes, after normalisation.
    pub max_path_len: usize,
    /// Most components in a path.
    pub max_depth: usize,
}

impl Limits {
    /// Limits for archives of input files sent by a client.
    pub const INPUT: Limits = Limits {
        max_entries: limits::MAX_INPUT_ENTRIES,
        max_total_bytes: limits::MAX_INPUT_BYTES,
        max_path_len: limits::MAX_PATH_LEN,
        max_depth: limits::MAX_PATH_DEPTH,
    };

    /// The widest limits any archive in the system may have (output archives, the CLI).
    pub const MAX: Limits = Limits {
        max_entries: limits::MAX_ARCHIVE_ENTRIES,
        max_total_bytes: limits::MAX_ARCHIVE_BYTES,
        max_path_len: limits::MAX_PATH_LEN,
        max_depth: limits::MAX_PATH_DEPTH,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::MAX
    }
}

/// Why an archive was refused. Each rule has its own variant so callers (and tests) can tell
/// them apart; the messages are meant to be shown to the person who sent the archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("archive is truncated: it ends inside {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    #[error("archive has no trailer: it ends after byte {offset} without a TRAILER!!! entry")]
    MissingTrailer { offset: u64 },
    #[error("not a cpio newc archive: bad magic {found:?} at byte {offset} (expected \"070701\")")]
    BadMagic { found: String, offset: u64 },
    #[error("corrupt cpio header at byte {offset}: field {field} is not 8 hex digits")]
    BadHeaderField { field: &'static str, offset: u64 },
    #[error("corrupt cpio entry at byte {offset}: name is not NUL-terminated")]
    BadName { offset: u64 },
    #[error("path {path:?} is absolute; only relative paths are allowed")]
    AbsolutePath { path: String },
    #[error("path {path:?} contains '..'")]
    ParentComponent { path: String },
    #[error("path {path:?} is invalid: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("a path is not valid UTF-8 ({lossy:?})")]
    NonUtf8Path { lossy: String },
    #[error("path {path:?} is {len} bytes long; the limit is {max}")]
    PathTooLong { path: String, len: usize, max: usize },
    #[error("path {path:?} is {depth} levels deep; the limit is {max}")]
    PathTooDeep { path: String, depth: usize, max: usize },
    #[error("path {path:?} appears twice")]
    Duplicate { path: String },
    #[error("path {path:?} is used both as a file and as a directory")]
    PathConflict { path: String },
    #[error("{path:?} is a {kind}; only regular files and directories are allowed")]
    SpecialFile { path: String, kind: &'static str },
    #[error("{path:?} is a symbolic link; links are not allowed")]
    Symlink { path: String },
    #[error("{path:?} is a hard link; links are not allowed")]
    HardLink { path: String },
    #[error("archive has more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("archive content is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("I/O error while reading or writing the archive")]
    Io(#[from] io::Error),
}

/// The kind and content of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryData {
    Dir,
    File(Vec<u8>),
}

/// One file or directory of an archive, with a validated, normalised relative path
/// (`a/b.txt`: no leading `./`, no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    /// Permission bits, `0o777` at most.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    pub data: EntryData,
}

impl Entry {
    /// A regular file with mode 0644 and mtime 0.
    pub fn file(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Entry {
        Entry { path: path.into(), mode: 0o644, mtime: 0, data: EntryData::File(data.into()) }
    }

    /// A directory with mode 0755 and mtime 0.
    pub fn dir(path: impl Into<String>) -> Entry {
        Entry { path: path.into(), mode: 0o755, mtime: 0, data: EntryData::Dir }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.data, EntryData::Dir)
    }

    /// The file's content; empty for a directory.
    pub fn content(&self) -> &[u8] {
        match &self.data {
            EntryData::File(data) => data,
            EntryData::Dir => &[],
        }
    }
}

/// Checks and normalises a path read from an archive or given to the encoder.
///
/// Returns `None` for the archive root (`.` or `./`), which is skipped.
pub fn normalize_path(raw: &str, limits: &Limits) -> Result<Option<String>, CpioError> {
    let err = |reason| CpioError::InvalidPath { path: raw.to_owned(), reason };
    if raw.is_empty() {
        return Err(err("it is empty"));
    }
    if raw.starts_with('/') {
        return Err(CpioError::AbsolutePath { path: raw.to_owned() });
    }
    if raw.contains('\0') {
        return Err(err("it contains a NUL byte"));
    }
    if raw.contains('\\') {
        return Err(err("it contains a backslash"));
    }
    let mut rest = raw;
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest == "." {
        return Ok(None);
    }
    let mut depth = 0;
    for component in rest.split('/') {
        match component {
            "" => return Err(err("it has an empty component ('//')")),
            "." => return Err(err("it has a '.' component")),
            ".." => {
                return Err(CpioError::ParentComponent { path: raw.to_owned() });
            }
            c if c.chars().any(char::is_control) => {
                return Err(err("it contains a control character"));
            }
            c if c.len() > crate::limits::MAX_NAME_BYTES => {
                return Err(err("a component is longer than 255 bytes (the file system's limit)"));
            }
            _ => depth += 1,
        }
    }
    if rest.len() > limits.max_path_len {
        return Err(CpioError::PathTooLong {
            path: truncate_for_message(rest),
            len: rest.len(),
            max: limits.max_path_len,
        });
    }
    if depth > limits.max_depth {
        return Err(CpioError::PathTooDeep {
            path: truncate_for_message(rest),
            depth,
            max: limits.max_depth,
        });
    }
    Ok(Some(rest.to_owned()))
}

fn truncate_for_message(path: &str) -> String {
    const KEEP: usize = 64;
    if path.len() <= KEEP {
        return path.to_owned();
    }
    let mut end = KEEP;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

/// Tracks which paths an archive holds, to refuse duplicates and file/directory conflicts
/// (`a` as a file, then `a/b`). Parent directories may be implied.
#[derive(Debug, Default)]
struct PathSet {
    /// true = directory (explicit or implied), false = file.
    kinds: BTreeMap<String, Kind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    ExplicitDir,
    ImpliedDir,
}

impl PathSet {
    fn insert(&mut self, path: &str, is_dir: bool) -> Result<(), CpioError> {
        for (i, _) in path.match_indices('/') {
            let parent = &path[..i];
            match self.kinds.get(parent) {
                Some(Kind::File) => {
                    return Err(CpioError::PathConflict { path: parent.to_owned() });
                }
                Some(_) => {}
                None => {
                    self.kinds.insert(parent.to_owned(), Kind::ImpliedDir);
                }
            }
        }
        match (self.kinds.get(path).copied(), is_dir) {
            (None, _) => {}
            // A directory may be named after files inside it (GNU cpio with `find -depth`).
            (Some(Kind::ImpliedDir), true) => {}
            (Some(Kind::ImpliedDir), false) => {
                return Err(CpioError::PathConflict { path: path.to_owned() });
            }
            (Some(_), _) => {
                return Err(CpioError::Duplicate { path: path.to_owned() });
            }
        }
        let kind = if is_dir { Kind::ExplicitDir } else { Kind::File };
        self.kinds.insert(path.to_owned(), kind);
        Ok(())
    }
}

/// Reads entries one at a time from any reader, enforcing every rule as it goes.
///
/// Use it to unpack straight to disk without holding the archive in memory; [`decode`] and
/// [`decode_from`] collect it. After an error the decoder yields nothing more.
#[derive(Debug)]
pub struct Decoder<R> {
    reader: R,
    limits: Limits,
    offset: u64,
    entries: usize,
    total: u64,
    paths: PathSet,
    done: bool,
}

struct RawHeader {
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    namesize: u32,
}

impl<R: Read> Decoder<R> {
    pub fn new(reader: R, limits: Limits) -> Self {
        Decoder {
            reader,
            limits,
            offset: 0,
            entries: 0,
            total: 0,
            paths: PathSet::default(),
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, `Ok(None)` after the trailer.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, CpioError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_entry();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn read_entry(&mut self) -> Result<Option<Entry>, CpioError> {
        loop {
            let start = self.offset;
            let mut header = [0u8; HEADER_LEN];
            let got = self.read_up_to(&mut header)?;
            if got == 0 {
                return Err(CpioError::MissingTrailer { offset: start });
            }
            if got < HEADER_LEN {
                return Err(CpioError::Truncated { what: "an entry header", offset: self.offset });
            }
            let raw = parse_header(&header, start)?;

            // The name: bounded before it is read.
            let namesize = raw.namesize as usize;
            if namesize == 0 {
                return Err(CpioError::BadName { offset: start });
            }
            if namesize > self.limits.max_path_len + 3 {
                // +3: room for a leading "./" and the NUL.
                let mut prefix = vec![0u8; 64.min(namesize)];
                let got = self.read_up_to(&mut prefix)?;
                prefix.truncate(got);
                let path = String::from_utf8_lossy(&prefix).into_owned();
                return Err(CpioError::PathTooLong {
                    path: format!("{path}..."),
                    len: namesize - 1,
                    max: self.limits.max_path_len,
                });
            }
            let mut name = vec![0u8; namesize + pad4(HEADER_LEN + namesize)];
            self.read_exact_or(&mut name, "an entry name")?;
            name.truncate(namesize);
            if name.pop() != Some(0) {
                return Err(CpioError::BadName { offset: start });
            }
            let name = String::from_utf8(name).map_err(|e| CpioError::NonUtf8Path {
                lossy: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })?;

            if name == TRAILER {
                return Ok(None);
            }

            let kind = raw.mode & S_IFMT;
            // Check the type before the path so a device node named `../x` reports the node.
            let is_dir = match kind {
                S_IFREG => false,
                S_IFDIR => true,
                S_IFLNK => return Err(CpioError::Symlink { path: name }),
                S_IFCHR => return Err(special(name, "character device")),
                S_IFBLK => return Err(special(name, "block device")),
                S_IFIFO => return Err(special(name, "FIFO")),
                S_IFSOCK => return Err(special(name, "socket")),
                _ => return Err(special(name, "file of unknown type")),
            };
            if is_dir && raw.filesize != 0 {
                return Err(CpioError::InvalidPath {
                    path: name,
                    reason: "it is a directory with content",
                });
            }
            if !is_dir && raw.nlink > 1 {
                return Err(CpioError::HardLink { path: name });
            }

            let Some(path) = normalize_path(&name, &self.limits)? else {
                // The archive root (`.`): nothing to create.
                if !is_dir {
                    return Err(CpioError::InvalidPath { path: name, reason: "it names the root" });
                }
                continue;
            };

            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(CpioError::TooManyEntries { max: self.limits.max_entries });
            }
            let size = u64::from(raw.filesize);
            if self.total + size > self.limits.max_total_bytes {
                return Err(CpioError::TooLarge { max: self.limits.max_total_bytes });
            }
            self.total += size;
            self.paths.insert(&path, is_dir)?;

            let data = if is_dir {
                EntryData::Dir
            } else {
                // Read in bounded steps so a lying size on a short stream allocates only what
                // actually arrives.
                let mut data = Vec::new();
                let got = (&mut self.reader).take(size).read_to_end(&mut data)?;
                self.offset += got as u64;
                if (got as u64) < size {
                    return Err(CpioError::Truncated { what: "file content", offset: self.offset });
                }
                let mut pad = [0u8; 3];
                let pad = &mut pad[..pad4(raw.filesize as usize)];
                self.read_exact_or(pad, "padding")?;
                EntryData::File(data)
            };
            return Ok(Some(Entry { path, mode: raw.mode & 0o777, mtime: raw.mtime, data }));
        }
    }

    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, CpioError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), CpioError> {
        if self.read_up_to(buf)? < buf.len() {
            return Err(CpioError::Truncated { what, offset: self.offset });
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Decoder<R> {
    type Item = Result<Entry, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

fn special(path: String, kind: &'static str) -> CpioError {
    CpioError::SpecialFile { path, kind }
}

fn parse_header(header: &[u8; HEADER_LEN], offset: u64) -> Result<RawHeader, CpioError> {
    if &header[..6] != MAGIC {
        return Err(CpioError::BadMagic {
            found: String::from_utf8_lossy(&header[..6]).into_owned(),
            offset,
        });
    }
    const FIELDS: [&str; 13] = [
        "ino",
        "mode",
        "uid",
        "gid",
        "nlink",
        "mtime",
        "filesize",
        "devmajor",
        "devminor",
        "rdevmajor",
        "rdevminor",
        "namesize",
        "check",
    ];
    let mut values = [0u32; 13];
    for (i, field) in FIELDS.iter().enumerate() {
        let digits = &header[6 + i * 8..6 + (i + 1) * 8];
        values[i] = std::str::from_utf8(digits)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or(CpioError::BadHeaderField { field, offset })?;
    }
    Ok(RawHeader {
        mode: values[1],
        nlink: values[4],
        mtime: values[5],
        filesize: values[6],
        namesize: values[11],
    })
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Decodes a whole archive held in memory.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Vec<Entry>, CpioError> {
    decode_from(bytes, limits)
}

/// Decodes a whole archive from a reader, stopping at the trailer (anything after it, such as
/// GNU cpio's block padding, is not read).
pub fn decode_from<R: Read>(reader: R, limits: &Limits) -> Result<Vec<Entry>, CpioError> {
    Decoder::new(reader, *limits).collect()
}

/// Writes an archive entry by entry, enforcing the decoder's rules so that everything it writes
/// decodes again. Call [`Encoder::finish`] to write the trailer.
#[derive(Debug)]
pub struct Encoder<W: Write> {
    writer: W,
    limits: Limits,
    ino: u32,
    total: u64,
    paths: PathSet,
}

impl<W: Write> Encoder<W> {
    pub fn new(writer: W, limits: Limits) -> Self {
        Encoder { writer, limits, ino: 0, total: 0, paths: PathSet::default() }
    }

    /// Number of entries written so far.
    pub fn entries(&self) -> usize {
        self.ino as usize
    }

    /// Bytes of file content written so far.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Adds one entry.
    pub fn append(&mut self, entry: &Entry) -> Result<(), CpioError> {
        match &entry.data {
            EntryData::Dir => self.add_dir(&entry.path, entry.mode, entry.mtime),
            EntryData::File(data) => self.add_file(&entry.path, entry.mode, entry.mtime, data),
        }
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, path: &str, mode: u32, mtime: u32) -> Result<(), CpioError> {
        let path = self.check(path, true, 0)?;
        self.write_entry(&path, S_IFDIR | (mode & 0o777), mtime, &[])
    }

    /// Adds a regular file.
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        mtime: u32,
        data: &[u8],
    ) -> Result<(), CpioError> {
        let path = self.check(path, false, data.len() as u64)?;
        self.write_entry(&path, S_IFREG | (mode & 0o777), mtime, data)
    }

    fn check(&mut self, path: &str, is_dir: bool, size: u64) -> Result<String, CpioError> {
        let path = normalize_path(path, &self.limits)?.ok_or_else(|| CpioError::InvalidPath {
            path: path.to_owned(),
            reason: "it names the root",
        })?;
        if self.ino as usize >= self.limits.max_entries {
            return Err(CpioError::TooManyEntries { max: self.limits.max_entries });
        }
        if size > u64::from(u32::MAX) || self.total + size > self.limits.max_total_bytes {
            return Err(CpioError::TooLarge { max: self.limits.max_total_bytes });
        }
        self.paths.insert(&path, is_dir)?;
        self.total += size;
        Ok(path)
    }

    fn write_entry(
        &mut self,
        name: &str,
        mode: u32,
        mtime: u32,
        data: &[u8],
    ) -> Result<(), CpioError> {
        self.ino += 1;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let namesize = name.len() + 1;
        let fields =
            [self.ino, mode, 0, 0, nlink, mtime, data.len() as u32, 0, 0, 0, 0, namesize as u32, 0];
        write_raw(&mut self.writer, &fields, name, data)?;
        Ok(())
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        let fields = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, TRAILER.len() as u32 + 1, 0];
        write_raw(&mut self.writer, &fields, TRAILER, &[])?;
        self.writer.flush()?;
        Ok(self.writer)
    }
}

fn write_raw(w: &mut impl Write, fields: &[u32; 13], name: &str, data: &[u8]) -> io::Result<()> {
    let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    header.extend_from_slice(MAGIC);
    for field in fields {
        header.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    header.extend_from_slice(name.as_bytes());
    header.push(0);
    header.resize(header.len() + pad4(header.len()), 0);
    w.write_all(&header)?;
    w.write_all(data)?;
    w.write_all(&[0u8; 3][..pad4(data.len())])
}

/// Encodes entries into an archive in memory, enforcing `limits`.
pub fn encode(entries: &[Entry], limits: &Limits) -> Result<Vec<u8>, CpioError> {
    let mut encoder = Encoder::new(Vec::new(), *limits);
    for entry in entries {
        encoder.append(entry)?;
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_entry(name: &str, mode: u32, nlink: u32, data: &[u8], size: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let fields = [1, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        write_raw(&mut out, &fields, name, data).unwrap();
        out
    }

    fn trailer() -> Vec<u8> {
        let mut out = Vec::new();
        let fields = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, TRAILER.len() as u32 + 1, 0];
        write_raw(&mut out, &fields, TRAILER, &[]).unwrap();
        out
    }

    fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = parts.concat();
        out.extend(trailer());
        out
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        raw_entry(name, S_IFREG | 0o644, 1, data, data.len() as u32)
    }

    fn decode_err(bytes: &[u8]) -> CpioError {
        decode(bytes, &Limits::MAX).expect_err("archive should be refused")
    }

    #[test]
    fn round_trip_keeps_paths_modes_and_bytes() {
        let entries = vec![
            Entry::dir("src"),
            Entry { mode: 0o755, mtime: 1_700_000_000, ..Entry::file("src/run.sh", "#!/bin/sh\n") },
            Entry::file("empty", ""),
            Entry::file("odd", vec![1, 2, 3]),
        ];
        let bytes = encode(&entries, &Limits::MAX).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(decode(&bytes, &Limits::MAX).unwrap(), entries);
    }

    #[test]
    fn root_and_dot_slash_prefixes_are_normalised() {
        let bytes = archive(&[
            raw_entry(".", S_IFDIR | 0o755, 2, &[], 0),
            raw_entry("./d", S_IFDIR | 0o755, 2, &[], 0),
            file("./d/a.txt", b"hi"),
        ]);
        let entries = decode(&bytes, &Limits::MAX).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d", "d/a.txt"]);
    }

    #[test]
    fn setuid_bits_are_dropped() {
        let bytes = archive(&[raw_entry("x", S_IFREG | 0o4755, 1, b"", 0)]);
        assert_eq!(decode(&bytes, &Limits::MAX).unwrap()[0].mode, 0o755);
    }

    #[test]
    fn hostile_paths_are_refused() {
        type Check = fn(&CpioError) -> bool;
        let long_name = format!("dir/{}", "n".repeat(256));
        let cases: [(&str, Check); 8] = [
            (
                &long_name,
                |e| matches!(e, CpioError::InvalidPath { reason, .. } if reason.contains("255")),
            ),
            ("../x", |e| matches!(e, CpioError::ParentComponent { .. })),
            ("a/../../x", |e| matches!(e, CpioError::ParentComponent { .. })),
            ("/etc/passwd", |e| matches!(e, CpioError::AbsolutePath { .. })),
            ("a//b", |e| matches!(e, CpioError::InvalidPath { .. })),
            ("a/./b", |e| matches!(e, CpioError::InvalidPath { .. })),
            ("a\\..\\b", |e| matches!(e, CpioError::InvalidPath { .. })),
            ("a\nb", |e| matches!(e, CpioError::InvalidPath { .. })),
        ];
        for (name, is_expected) in cases {
            let err = decode_err(&archive(&[file(name, b"x")]));
            assert!(is_expected(&err), "{name:?}: got {err}");
        }
    }

    #[test]
    fn duplicates_and_conflicts_are_refused() {
        let err = decode_err(&archive(&[file("a", b"1"), file("a", b"2")]));
        assert!(matches!(err, CpioError::Duplicate { ref path } if path == "a"), "{err}");
        let err = decode_err(&archive(&[file("./a", b"1"), file("a", b"2")]));
        assert!(matches!(err, CpioError::Duplicate { .. }), "{err}");
        let err = decode_err(&archive(&[file("a", b"1"), file("a/b", b"2")]));
        assert!(matches!(err, CpioError::PathConflict { ref path } if path == "a"), "{err}");
        let err = decode_err(&archive(&[file("a/b", b"1"), file("a", b"2")]));
        assert!(matches!(err, CpioError::PathConflict { .. }), "{err}");
        // A directory entry after its contents is fine (find -depth order).
        let ok = archive(&[file("a/b", b"1"), raw_entry("a", S_IFDIR | 0o755, 2, &[], 0)]);
        assert_eq!(decode(&ok, &Limits::MAX).unwrap().len(), 2);
    }

    #[test]
    fn special_files_and_links_are_refused() {
        for (mode, kind) in [
            (S_IFCHR, "character device"),
            (S_IFBLK, "block device"),
            (S_IFIFO, "FIFO"),
            (S_IFSOCK, "socket"),
        ] {
            let err = decode_err(&archive(&[raw_entry("dev", mode | 0o600, 1, &[], 0)]));
            assert!(matches!(err, CpioError::SpecialFile { kind: k, .. } if k == kind), "{err}");
        }
        let err = decode_err(&archive(&[raw_entry("l", S_IFLNK | 0o777, 1, b"/etc", 4)]));
        assert!(matches!(err, CpioError::Symlink { .. }), "{err}");
        let err = decode_err(&archive(&[raw_entry("h", S_IFREG | 0o644, 2, b"", 0)]));
        assert!(matches!(err, CpioError::HardLink { .. }), "{err}");
    }

    #[test]
    fn truncation_anywhere_is_refused_without_panic() {
        let full = archive(&[file("a.txt", b"hello world"), file("b", b"")]);
        for cut in 0..full.len() {
            let err = decode_err(&full[..cut]);
            assert!(
                matches!(err, CpioError::Truncated { .. } | CpioError::MissingTrailer { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn lying_sizes_are_refused_before_allocation() {
        // Claims 4 GiB of content, holds 2 bytes.
        let bytes = raw_entry("big", S_IFREG | 0o644, 1, b"ab", u32::MAX);
        let err = decode_err(&bytes);
        assert!(matches!(err, CpioError::TooLarge { .. }), "{err}");
        // Within the limit but longer than the stream.
        let bytes = raw_entry("big", S_IFREG | 0o644, 1, b"ab", 1000);
        let err = decode_err(&bytes);
        assert!(matches!(err, CpioError::Truncated { what: "file content", .. }), "{err}");
        // A huge name size.
        let mut bytes = raw_entry("n", S_IFREG | 0o644, 1, b"", 0);
        bytes[94..102].copy_from_slice(b"FFFFFFFF");
        let err = decode_err(&bytes);
        assert!(matches!(err, CpioError::PathTooLong { .. }), "{err}");
    }

    #[test]
    fn counts_and_totals_are_bounded() {
        let limits = Limits { max_entries: 3, max_total_bytes: 10, ..Limits::MAX };
        let many: Vec<_> = (0..4).map(|i| file(&format!("f{i}"), b"")).collect();
        let err = decode(&archive(&many), &limits).unwrap_err();
        assert!(matches!(err, CpioError::TooManyEntries { max: 3 }), "{err}");
        let err =
            decode(&archive(&[file("a", b"123456"), file("b", b"123456")]), &limits).unwrap_err();
        assert!(matches!(err, CpioError::TooLarge { max: 10 }), "{err}");
        let deep = vec!["d"; 40].join("/");
        let err = decode_err(&archive(&[file(&deep, b"")]));
        assert!(matches!(err, CpioError::PathTooDeep { depth: 40, .. }), "{err}");
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let mut bytes = archive(&[file("a", b"x")]);
        bytes[0] = b'1';
        assert!(matches!(decode_err(&bytes), CpioError::BadMagic { .. }));
        let mut bytes = archive(&[file("a", b"x")]);
        bytes[20] = b'Z';
        assert!(matches!(decode_err(&bytes), CpioError::BadHeaderField { field: "mode", .. }));
        let mut bytes = archive(&[file("ab", b"x")]);
        bytes[HEADER_LEN + 2] = b'c'; // overwrite the NUL
        assert!(matches!(decode_err(&bytes), CpioError::BadName { .. }));
        let mut bytes = archive(&[file("ab", b"x")]);
        bytes[HEADER_LEN] = 0xff;
        assert!(matches!(decode_err(&bytes), CpioError::NonUtf8Path { .. }));
    }

    #[test]
    fn encoder_enforces_the_same_rules() {
        let mut enc = Encoder::new(Vec::new(), Limits::MAX);
        assert!(matches!(
            enc.add_file("../x", 0o644, 0, b""),
            Err(CpioError::ParentComponent { .. })
        ));
        assert!(matches!(enc.add_file("/x", 0o644, 0, b""), Err(CpioError::AbsolutePath { .. })));
        enc.add_file("x", 0o644, 0, b"").unwrap();
        assert!(matches!(enc.add_file("x", 0o644, 0, b""), Err(CpioError::Duplicate { .. })));
    }
}
