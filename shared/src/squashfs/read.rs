//! Reading a squashfs image lazily and defensively.
//!
//! 1. [`Image::open`] checks the superblock against the bytes held (magic, version 4, a
//!    supported compressor, a sane block size, every table inside the image).
//! 2. [`Image::list`] walks the tree from the root inode through the directory table: inodes and
//!    listings only, each metadata block decompressed once (at most 8 KiB) and kept; no file
//!    data is touched. Names, entry counts, depth and directory loops are checked as it goes.
//! 3. [`Image::read`] decompresses one file's blocks (and its fragment), each capped at the block
//!    size, the whole capped at [`ReadLimits::max_file_bytes`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use miniz_oxide::inflate::decompress_to_vec_zlib_with_limit;

use super::*;

/// What a listed entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File {
        size: u64,
    },
    /// Reported, never followed.
    Symlink {
        target: String,
    },
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Relative path (`a/b.txt`); the root is not listed.
    pub path: String,
    pub kind: NodeKind,
    /// Permission bits.
    pub mode: u16,
    pub mtime: u32,
    /// Where its inode is, for [`Image::read`].
    inode: u64,
}

/// The superblock fields the reader uses.
#[derive(Debug, Clone, Copy)]
struct Superblock {
    inode_count: u32,
    block_size: u32,
    fragments: u32,
    root_inode: u64,
    bytes_used: u64,
    inode_table: u64,
    directory_table: u64,
    fragment_table: u64,
}

/// An opened image. Cheap to share between threads; decompressed metadata blocks are cached.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    sb: Superblock,
    limits: ReadLimits,
    /// Metadata blocks by absolute position.
    cache: Mutex<HashMap<u64, Block>>,
}

/// A decompressed metadata block, and where the next one starts.
type Block = (Arc<Vec<u8>>, u64);

/// A parsed inode.
enum Inode {
    Dir {
        mode: u16,
        mtime: u32,
        block: u64,
        offset: usize,
        listing: u64,
    },
    File {
        mode: u16,
        mtime: u32,
        start: u64,
        size: u64,
        fragment: u32,
        frag_offset: u32,
        blocks_at: (u64, usize),
    },
    Symlink {
        mode: u16,
        mtime: u32,
        target: String,
    },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<'a> Image<'a> {
    /// Checks the superblock of `bytes`.
    pub fn open(bytes: &'a [u8], limits: ReadLimits) -> Result<Image<'a>, SquashfsError> {
        if bytes.len() < SUPERBLOCK_LEN {
            return Err(SquashfsError::NotSquashfs("shorter than a superblock"));
        }
        if u32_at(bytes, 0) != MAGIC {
            return Err(SquashfsError::NotSquashfs("no hsqs magic"));
        }
        if (u16_at(bytes, 28), u16_at(bytes, 30)) != (4, 0) {
            return Err(SquashfsError::NotSquashfs("not version 4.0"));
        }
        let compression = u16_at(bytes, 20);
        if compression != COMPRESSION_GZIP {
            return Err(SquashfsError::Compression(compression));
        }
        let block_size = u32_at(bytes, 12);
        let block_log = u16_at(bytes, 22);
        if !(4096..=1 << 20).contains(&block_size)
            || !block_size.is_power_of_two()
            || u32::from(block_log) != block_size.trailing_zeros()
        {
            return Err(damaged(format!("block size {block_size} (log {block_log})")));
        }
        let sb = Superblock {
            inode_count: u32_at(bytes, 4),
            block_size,
            fragments: u32_at(bytes, 16),
            root_inode: u64_at(bytes, 32),
            bytes_used: u64_at(bytes, 40),
            inode_table: u64_at(bytes, 64),
            directory_table: u64_at(bytes, 72),
            fragment_table: u64_at(bytes, 80),
        };
        let len = bytes.len() as u64;
        if sb.bytes_used > len {
            return Err(SquashfsError::OutOfBounds {
                what: "the image's end",
                at: sb.bytes_used,
                len,
            });
        }
        for (what, at) in
            [("the inode table", sb.inode_table), ("the directory table", sb.directory_table)]
        {
            if at < SUPERBLOCK_LEN as u64 || at >= sb.bytes_used {
                return Err(SquashfsError::OutOfBounds { what, at, len: sb.bytes_used });
            }
        }
        if sb.fragments > 0 && sb.fragment_table >= sb.bytes_used {
            let at = sb.fragment_table;
            return Err(SquashfsError::OutOfBounds {
                what: "the fragment table",
                at,
                len: sb.bytes_used,
            });
        }
        Ok(Image { bytes, sb, limits, cache: Mutex::new(HashMap::new()) })
    }

    /// The metadata block at absolute position `at`: its data and where the next one starts.
    fn block(&self, at: u64) -> Result<Block, SquashfsError> {
        if let Some(hit) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&at) {
            return Ok(hit.clone());
        }
        let end = self.sb.bytes_used;
        if at.checked_add(2).is_none_or(|e| e > end) {
            return Err(SquashfsError::OutOfBounds { what: "a metadata block", at, len: end });
        }
        let header = u16_at(self.bytes, at as usize);
        let size = u64::from(header & !METADATA_UNCOMPRESSED);
        let start = at + 2;
        if size == 0 || size as usize > METADATA_SIZE || start + size > end {
            return Err(SquashfsError::OutOfBounds {
                what: "a metadata block",
                at: start + size,
                len: end,
            });
        }
        let raw = &self.bytes[start as usize..(start + size) as usize];
        let data = if header & METADATA_UNCOMPRESSED != 0 {
            raw.to_vec()
        } else {
            decompress_to_vec_zlib_with_limit(raw, METADATA_SIZE)
                .map_err(|e| damaged(format!("a metadata block at {at} does not inflate: {e:?}")))?
        };
        let entry = (Arc::new(data), start + size);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(at, entry.clone());
        Ok(entry)
    }

    /// `len` bytes of a metadata table from block `block` (absolute), offset `offset`.
    fn metadata(
        &self,
        mut block: u64,
        mut offset: usize,
        len: usize,
    ) -> Result<Vec<u8>, SquashfsError> {
        let mut out = Vec::with_capacity(len.min(1 << 20));
        while out.len() < len {
            let (data, next) = self.block(block)?;
            if offset > data.len() {
                return Err(damaged(format!(
                    "offset {offset} in a metadata block of {} bytes",
                    data.len()
                )));
            }
            let take = (len - out.len()).min(data.len() - offset);
            out.extend_from_slice(&data[offset..offset + take]);
            if out.len() < len {
                block = next;
                offset = 0;
            } else {
                offset += take;
            }
        }
        Ok(out)
    }

    /// Where `n` bytes after (`block`, `offset`) end.
    fn advance(&self, block: u64, offset: usize, n: usize) -> Result<(u64, usize), SquashfsError> {
        let (mut block, mut offset, mut left) = (block, offset, n);
        loop {
            let (data, next) = self.block(block)?;
            if offset + left <= data.len() {
                return Ok((block, offset + left));
            }
            left -= data.len().saturating_sub(offset);
            block = next;
            offset = 0;
        }
    }

    fn inode(&self, inode_ref: u64) -> Result<Inode, SquashfsError> {
        let block = self.sb.inode_table + (inode_ref >> 16);
        let offset = (inode_ref & 0xffff) as usize;
        let head = self.metadata(block, offset, 16)?;
        let (kind, mode, mtime) = (u16_at(&head, 0), u16_at(&head, 2) & 0o7777, u32_at(&head, 8));
        let (block, offset) = self.advance(block, offset, 16)?;
        match kind {
            BASIC_DIR => {
                let b = self.metadata(block, offset, 16)?;
                let listing = u64::from(u16_at(&b, 8));
                let dir_block = self.sb.directory_table + u64::from(u32_at(&b, 0));
                Ok(Inode::Dir {
                    mode,
                    mtime,
                    block: dir_block,
                    offset: u16_at(&b, 10) as usize,
                    listing,
                })
            }
            EXT_DIR => {
                let b = self.metadata(block, offset, 24)?;
                let listing = u64::from(u32_at(&b, 4));
                let dir_block = self.sb.directory_table + u64::from(u32_at(&b, 8));
                Ok(Inode::Dir {
                    mode,
                    mtime,
                    block: dir_block,
                    offset: u16_at(&b, 18) as usize,
                    listing,
                })
            }
            BASIC_FILE => {
                let b = self.metadata(block, offset, 16)?;
                Ok(Inode::File {
                    mode,
                    mtime,
                    start: u64::from(u32_at(&b, 0)),
                    fragment: u32_at(&b, 4),
                    frag_offset: u32_at(&b, 8),
                    size: u64::from(u32_at(&b, 12)),
                    blocks_at: self.advance(block, offset, 16)?,
                })
            }
            EXT_FILE => {
                let b = self.metadata(block, offset, 40)?;
                Ok(Inode::File {
                    mode,
                    mtime,
                    start: u64_at(&b, 0),
                    size: u64_at(&b, 8),
                    fragment: u32_at(&b, 28),
                    frag_offset: u32_at(&b, 32),
                    blocks_at: self.advance(block, offset, 40)?,
                })
            }
            BASIC_SYMLINK | EXT_SYMLINK => {
                let b = self.metadata(block, offset, 8)?;
                let len = u32_at(&b, 4) as usize;
                if len == 0 || len > 4096 {
                    return Err(damaged(format!("a symlink target of {len} bytes")));
                }
                let (block, offset) = self.advance(block, offset, 8)?;
                let target = self.metadata(block, offset, len)?;
                let target = String::from_utf8(target)
                    .map_err(|e| damaged(format!("a symlink target is not UTF-8: {e}")))?;
                Ok(Inode::Symlink { mode, mtime, target })
            }
            4..=7 | 11..=14 => Err(damaged("device nodes, FIFOs and sockets are not allowed")),
            other => Err(damaged(format!("unknown inode type {other}"))),
        }
    }

    /// Every entry of the tree, directories before their contents, each directory's entries
    /// in name order. Reads metadata only.
    pub fn list(&self) -> Result<Vec<Node>, SquashfsError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let root = self.inode(self.sb.root_inode)?;
        let Inode::Dir { .. } = root else { return Err(damaged("the root is not a directory")) };
        seen.insert(self.sb.root_inode);
        self.walk(root, "", 1, &mut seen, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        dir: Inode,
        prefix: &str,
        depth: usize,
        seen: &mut HashSet<u64>,
        out: &mut Vec<Node>,
    ) -> Result<(), SquashfsError> {
        let Inode::Dir { block, offset, listing, .. } = dir else { return Ok(()) };
        if depth > self.limits.max_depth {
            return Err(SquashfsError::Limit(format!(
                "deeper than {} levels",
                self.limits.max_depth
            )));
        }
        if listing < 3 {
            return Err(damaged(format!("a directory listing of {listing} bytes")));
        }
        let len = (listing - 3) as usize;
        // A listing cannot be longer than its entries could make it (each at least 9 bytes,
        // plus headers): bounded by the entries still allowed.
        if len > (self.limits.max_entries - out.len().min(self.limits.max_entries)) * 270 + 12 {
            return Err(SquashfsError::Limit(format!(
                "more than {} entries",
                self.limits.max_entries
            )));
        }
        let bytes = self.metadata(block, offset, len)?;
        let mut at = 0;
        while at < bytes.len() {
            if at + 12 > bytes.len() {
                return Err(damaged("a directory header is cut off"));
            }
            let count = u32_at(&bytes, at) as usize + 1;
            let start = u64::from(u32_at(&bytes, at + 4));
            if count > 256 {
                return Err(damaged(format!("a directory header of {count} entries")));
            }
            at += 12;
            for _ in 0..count {
                if at + 8 > bytes.len() {
                    return Err(damaged("a directory entry is cut off"));
                }
                let offset = u64::from(u16_at(&bytes, at));
                let name_len = u16_at(&bytes, at + 6) as usize + 1;
                at += 8;
                if at + name_len > bytes.len() {
                    return Err(damaged("a directory entry's name is cut off"));
                }
                let name = checked_name(&bytes[at..at + name_len])?;
                at += name_len;
                if out.len() >= self.limits.max_entries {
                    return Err(SquashfsError::Limit(format!(
                        "more than {} entries",
                        self.limits.max_entries
                    )));
                }
                let inode_ref = (start << 16) | offset;
                let path =
                    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
                let inode = self.inode(inode_ref)?;
                match inode {
                    Inode::Dir { mode, mtime, .. } => {
                        if !seen.insert(inode_ref) {
                            return Err(SquashfsError::Loop);
                        }
                        out.push(Node {
                            path: path.clone(),
                            kind: NodeKind::Dir,
                            mode,
                            mtime,
                            inode: inode_ref,
                        });
                        self.walk(inode, &path, depth + 1, seen, out)?;
                    }
                    Inode::File { mode, mtime, size, .. } => {
                        out.push(Node {
                            path,
                            kind: NodeKind::File { size },
                            mode,
                            mtime,
                            inode: inode_ref,
                        });
                    }
                    Inode::Symlink { mode, mtime, target } => {
                        out.push(Node {
                            path,
                            kind: NodeKind::Symlink { target },
                            mode,
                            mtime,
                            inode: inode_ref,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// A file's content: its blocks, then its fragment's part, each decompressed with a cap.
    pub fn read(&self, node: &Node) -> Result<Vec<u8>, SquashfsError> {
        let Inode::File { start, size, fragment, frag_offset, blocks_at, .. } =
            self.inode(node.inode)?
        else {
            return Err(damaged(format!("{} is not a file", node.path)));
        };
        if size > self.limits.max_file_bytes {
            return Err(SquashfsError::Limit(format!(
                "{} is {size} bytes, over the {} allowed",
                node.path, self.limits.max_file_bytes
            )));
        }
        let bs = u64::from(self.sb.block_size);
        let has_fragment = fragment != NO_FRAGMENT;
        let full = if has_fragment { size / bs } else { size.div_ceil(bs) };
        let words = self.metadata(blocks_at.0, blocks_at.1, (full as usize) * 4)?;
        let mut out = Vec::with_capacity(size as usize);
        let mut pos = start;
        for i in 0..full as usize {
            let word = u32_at(&words, i * 4);
            let want = (size - out.len() as u64).min(bs) as usize;
            let stored = u64::from(word & !BLOCK_UNCOMPRESSED);
            if stored == 0 {
                out.resize(out.len() + want, 0); // a sparse block
                continue;
            }
            let data = self.data_block(pos, stored, word & BLOCK_UNCOMPRESSED != 0, want)?;
            if data.len() != want {
                return Err(damaged(format!(
                    "{}: a block holds {} bytes, not {want}",
                    node.path,
                    data.len()
                )));
            }
            out.extend(data);
            pos += stored;
        }
        if has_fragment {
            let tail = (size % bs) as usize;
            let block = self.fragment(fragment)?;
            let from = frag_offset as usize;
            let part = block.get(from..from + tail).ok_or_else(|| {
                damaged(format!("{}: its fragment is shorter than its tail", node.path))
            })?;
            out.extend_from_slice(part);
        }
        if out.len() as u64 != size {
            return Err(damaged(format!("{}: {} bytes read of {size}", node.path, out.len())));
        }
        Ok(out)
    }

    /// A data block at `pos` of `stored` bytes, inflated to at most `max` bytes.
    fn data_block(
        &self,
        pos: u64,
        stored: u64,
        raw: bool,
        max: usize,
    ) -> Result<Vec<u8>, SquashfsError> {
        let end = self.sb.bytes_used;
        if stored > u64::from(self.sb.block_size) || pos.checked_add(stored).is_none_or(|e| e > end)
        {
            return Err(SquashfsError::OutOfBounds { what: "a data block", at: pos, len: end });
        }
        let bytes = &self.bytes[pos as usize..(pos + stored) as usize];
        if raw {
            return Ok(bytes.to_vec());
        }
        decompress_to_vec_zlib_with_limit(bytes, max).map_err(|e| {
            damaged(format!("a data block at {pos} does not inflate within {max} bytes: {e:?}"))
        })
    }

    /// Fragment block `index`, decompressed.
    fn fragment(&self, index: u32) -> Result<Vec<u8>, SquashfsError> {
        if index >= self.sb.fragments {
            return Err(damaged(format!("fragment {index} of {}", self.sb.fragments)));
        }
        // The fragment table: u64 pointers to metadata blocks of 512 entries of 16 bytes.
        let slot = self.sb.fragment_table + u64::from(index / 512) * 8;
        if slot + 8 > self.sb.bytes_used {
            return Err(SquashfsError::OutOfBounds {
                what: "the fragment table",
                at: slot,
                len: self.sb.bytes_used,
            });
        }
        let block = u64_at(self.bytes, slot as usize);
        let entry = self.metadata(block, (index % 512) as usize * 16, 16)?;
        let (start, word) = (u64_at(&entry, 0), u32_at(&entry, 8));
        let stored = u64::from(word & !BLOCK_UNCOMPRESSED);
        self.data_block(start, stored, word & BLOCK_UNCOMPRESSED != 0, self.sb.block_size as usize)
    }

    /// Inodes the superblock says the image holds.
    pub fn inode_count(&self) -> u32 {
        self.sb.inode_count
    }
}

/// A directory entry's name: UTF-8, not `.` or `..`, no `/` or NUL.
fn checked_name(raw: &[u8]) -> Result<&str, SquashfsError> {
    let name = std::str::from_utf8(raw).map_err(|_not_utf8| SquashfsError::BadName {
        name: String::from_utf8_lossy(raw).into_owned(),
        reason: "not UTF-8",
    })?;
    let reason = if name == "." || name == ".." {
        Some("a '.' or '..' entry")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SquashfsError::BadName { name: name.to_owned(), reason }),
        None => Ok(name),
    }
}
