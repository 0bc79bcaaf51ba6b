//! The outer tarball, indexed in one pass over its headers so that blobs are then read in place
//! (a gzip-compressed archive is first unpacked to an anonymous temporary file).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{OciError, read_err, write_err};

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of all entries of all layers (and of a gzip-compressed archive unpacked).
    pub max_bytes: u64,
    /// Total entries of all layers (and of the archive itself).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 8 << 30, max_entries: 1_000_000 }
    }
}

/// JSON files (manifests, indexes, configs) are read whole; real ones are a few KiB.
pub(super) const MAX_JSON: u64 = 16 << 20;

/// The outer tarball, indexed: blobs are read in place.
pub(super) struct Archive {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Normalized name -> (offset of the data, size).
    pub(super) files: HashMap<String, (u64, u64)>,
    /// Normalized name -> normalized target, for symlinks and hard links (older `docker save`
    /// links duplicate layers to one another).
    pub(super) links: HashMap<String, String>,
}

impl Archive {
    pub(super) fn open(path: &Path, scratch: &Path, limits: &Limits) -> Result<Archive, OciError> {
        let mut file = File::open(path).map_err(read_err(path))?;
        let mut magic = [0u8; 2];
        let n = file.read_at(&mut magic, 0).map_err(read_err(path))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            // `docker save | gzip`: unpack to a temporary file to read blobs in place.
            let mut plain = tempfile::tempfile_in(scratch).map_err(write_err(scratch))?;
            let mut gz = flate2::read::MultiGzDecoder::new(file).take(limits.max_bytes + 1);
            let what = format!("the archive {} (gzip)", path.display());
            let gz_err = |source| OciError::Tar { what: what.clone(), source };
            let copied = copy(&mut gz, &mut plain, gz_err, scratch)?;
            if copied > limits.max_bytes {
                return Err(OciError::TooLarge { limit: limits.max_bytes });
            }
            plain.rewind().map_err(write_err(scratch))?;
            file = plain;
        }
        let what = || format!("the archive {}", path.display());
        let tar_err = |source| OciError::Tar { what: what(), source };
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let mut tar = tar::Archive::new(&file);
        for (count, entry) in tar.entries_with_seek().map_err(tar_err)?.enumerate() {
            if count as u64 >= limits.max_entries {
                return Err(OciError::TooManyEntries { limit: limits.max_entries });
            }
            let entry = entry.map_err(tar_err)?;
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            if kind.is_file() || kind.is_contiguous() {
                files.insert(name, (entry.raw_file_position(), entry.size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else { continue };
                let target = String::from_utf8_lossy(&target).into_owned();
                let target = match name.rsplit_once('/') {
                    Some((dir, _)) if kind.is_symlink() && !target.starts_with('/') => {
                        normalize(&format!("{dir}/{target}"))
                    }
                    _ => normalize(&target),
                };
                links.insert(name, target);
            }
        }
        Ok(Archive { path: path.to_owned(), file, files, links })
    }

    /// Where a file's bytes are, following links.
    pub(super) fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name);
        for _ in 0..8 {
            if let Some(&found) = self.files.get(&name) {
                return Some(found);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    /// The first bytes of a file (to tell compressions apart).
    pub(super) fn magic(&self, name: &str) -> Result<[u8; 4], OciError> {
        let (offset, size) =
            self.locate(name).ok_or_else(|| OciError::Missing { name: name.into() })?;
        let mut magic = [0u8; 4];
        let want = size.min(4) as usize;
        self.file.read_exact_at(&mut magic[..want], offset).map_err(read_err(&self.path))?;
        Ok(magic)
    }

    /// A reader of a file's bytes, which checks them against the digest in its name, if any.
    pub(super) fn blob(&self, name: &str) -> Result<Blob<'_>, OciError> {
        let (offset, size) =
            self.locate(name).ok_or_else(|| OciError::Missing { name: name.into() })?;
        let expected = normalize(name)
            .strip_prefix("blobs/sha256/")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        Ok(Blob {
            archive: self,
            name: name.to_owned(),
            pos: offset,
            end: offset + size,
            hasher: Sha256::new(),
            expected,
        })
    }

    /// A JSON file, parsed (and checked against its digest).
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, OciError> {
        let mut blob = self.blob(name)?;
        if blob.end - blob.pos > MAX_JSON {
            return Err(OciError::JsonTooLarge { name: name.into(), limit: MAX_JSON });
        }
        let mut bytes = Vec::new();
        blob.read_to_end(&mut bytes).map_err(read_err(&self.path))?;
        blob.finish()?;
        serde_json::from_slice(&bytes)
            .map_err(|source| OciError::Json { name: name.into(), source })
    }
}

/// The bytes of one file of the archive, hashed as they are read.
pub(super) struct Blob<'a> {
    archive: &'a Archive,
    name: String,
    pos: u64,
    end: u64,
    hasher: Sha256,
    expected: Option<String>,
}

impl Read for Blob<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos).try_into().unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.archive.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl Blob<'_> {
    /// Reads what is left (a tar's padding after its end) and checks the digest.
    pub(super) fn finish(mut self) -> Result<(), OciError> {
        io::copy(&mut self, &mut io::sink()).map_err(read_err(&self.archive.path))?;
        let Some(expected) = self.expected else { return Ok(()) };
        let actual = hex::encode(self.hasher.finalize());
        if actual != expected {
            return Err(OciError::DigestMismatch { name: self.name, actual });
        }
        Ok(())
    }
}

/// `./a//b/../c` -> `a/c`: names inside the archive, only ever used to look files up.
pub(super) fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Copies `from` into `to`, telling read errors (`read_err`) from write errors (to `dest`).
pub(super) fn copy(
    from: &mut impl Read,
    to: &mut impl io::Write,
    read_err: impl Fn(io::Error) -> OciError,
    dest: &Path,
) -> Result<u64, OciError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        to.write_all(&buf[..n]).map_err(write_err(dest))?;
        total += n as u64;
    }
}
