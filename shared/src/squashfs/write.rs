//! Writing a squashfs image from archive entries that were already validated (paths normalised,
//! no links or devices: [`crate::cpio::Entry`]). Directories a path needs but the entries do not
//! list are made with mode 0755.
//!
//! 1. Build the tree; number the inodes in the order they will be written (children before
//!    their directory, so a directory's listing can name its children's inodes).
//! 2. Write each file's data blocks after the superblock (zlib, or stored when that is no
//!    smaller).
//! 3. Walk the tree again, writing file inodes, then each directory's listing and inode.
//! 4. Append the inode table, the directory table and the id table (one id: 0), then the
//!    superblock, and pad the image to 4 KiB.

use std::collections::BTreeMap;

use miniz_oxide::deflate::compress_to_vec_zlib;

use super::*;
use crate::cpio::{Entry, EntryData};

/// zlib level: 6 is zlib's default, a good balance of size and speed.
const LEVEL: u8 = 6;

enum Tree {
    Dir { mode: u16, mtime: u32, children: BTreeMap<String, Tree> },
    File { mode: u16, mtime: u32, data: Vec<u8> },
}

impl Tree {
    fn dir() -> Tree {
        Tree::Dir { mode: 0o755, mtime: 0, children: BTreeMap::new() }
    }
}

/// A squashfs image of `entries` (gzip, 128 KiB blocks, no fragments).
pub fn write(entries: &[Entry]) -> Result<Vec<u8>, SquashfsError> {
    let mut root = Tree::dir();
    for entry in entries {
        insert(&mut root, entry)?;
    }
    let mut count = 0u32;
    count_inodes(&root, &mut count);
    let mut image = vec![0u8; SUPERBLOCK_LEN];
    let mut w = Writer {
        inodes: Meta::default(),
        dirs: Meta::default(),
        next_number: 1,
        inode_count: count,
        data: Vec::new(),
    };
    // Data blocks first: each file's list of block sizes, in the order the walk will meet them.
    collect_data(&root, &mut image, &mut w.data)?;
    w.data.reverse();
    let (root_ref, _) = w.emit_dir(&root, count + 1)?;
    let inode_table_start = image.len() as u64;
    image.extend(w.inodes.finish());
    let directory_table_start = image.len() as u64;
    image.extend(w.dirs.finish());
    let id_block = image.len() as u64;
    image.extend(metadata_block(&0u32.to_le_bytes()));
    let id_table_start = image.len() as u64;
    image.extend(id_block.to_le_bytes());
    let bytes_used = image.len() as u64;
    let mtime = match &root {
        Tree::Dir { mtime, .. } => *mtime,
        Tree::File { .. } => 0,
    };
    let mut sb = Vec::with_capacity(SUPERBLOCK_LEN);
    sb.extend(MAGIC.to_le_bytes());
    sb.extend(count.to_le_bytes());
    sb.extend(mtime.to_le_bytes());
    sb.extend(BLOCK_SIZE.to_le_bytes());
    sb.extend(0u32.to_le_bytes()); // fragments
    sb.extend(COMPRESSION_GZIP.to_le_bytes());
    sb.extend((BLOCK_SIZE.trailing_zeros() as u16).to_le_bytes());
    sb.extend((FLAG_NO_FRAGMENTS | FLAG_NO_XATTRS).to_le_bytes());
    sb.extend(1u16.to_le_bytes()); // ids
    sb.extend(4u16.to_le_bytes());
    sb.extend(0u16.to_le_bytes());
    sb.extend(root_ref.to_le_bytes());
    sb.extend(bytes_used.to_le_bytes());
    sb.extend(id_table_start.to_le_bytes());
    sb.extend(NONE.to_le_bytes()); // xattr ids
    sb.extend(inode_table_start.to_le_bytes());
    sb.extend(directory_table_start.to_le_bytes());
    sb.extend(NONE.to_le_bytes()); // fragment table
    sb.extend(NONE.to_le_bytes()); // export table
    image[..SUPERBLOCK_LEN].copy_from_slice(&sb);
    image.resize(image.len().div_ceil(4096) * 4096, 0);
    Ok(image)
}

fn insert(root: &mut Tree, entry: &Entry) -> Result<(), SquashfsError> {
    let mut node = root;
    let parts: Vec<&str> = entry.path.split('/').collect();
    let (last, parents) =
        parts.split_last().ok_or_else(|| SquashfsError::Write("empty path".into()))?;
    for part in parents {
        let Tree::Dir { children, .. } = node else {
            return Err(SquashfsError::Write(format!("{}: a parent is a file", entry.path)));
        };
        node = children.entry((*part).to_owned()).or_insert_with(Tree::dir);
    }
    let Tree::Dir { children, .. } = node else {
        return Err(SquashfsError::Write(format!("{}: a parent is a file", entry.path)));
    };
    let mode = (entry.mode & 0o777) as u16;
    match &entry.data {
        EntryData::Dir => match children.entry((*last).to_owned()).or_insert_with(Tree::dir) {
            Tree::Dir { mode: m, mtime, .. } => {
                *m = mode;
                *mtime = entry.mtime;
            }
            Tree::File { .. } => {
                return Err(SquashfsError::Write(format!(
                    "{}: both a file and a directory",
                    entry.path
                )));
            }
        },
        EntryData::File(data) => {
            let file = Tree::File { mode, mtime: entry.mtime, data: data.clone() };
            if children.insert((*last).to_owned(), file).is_some() {
                return Err(SquashfsError::Write(format!("{}: listed twice", entry.path)));
            }
        }
    }
    Ok(())
}

fn count_inodes(tree: &Tree, count: &mut u32) {
    *count += 1;
    if let Tree::Dir { children, .. } = tree {
        children.values().for_each(|c| count_inodes(c, count));
    }
}

/// A written file's data: where its blocks start and their size words.
struct Data {
    start: u64,
    sizes: Vec<u32>,
}

/// Writes the data blocks of every file, in the order [`Writer::emit_dir`] visits them.
fn collect_data(
    tree: &Tree,
    image: &mut Vec<u8>,
    out: &mut Vec<Data>,
) -> Result<(), SquashfsError> {
    let Tree::Dir { children, .. } = tree else { return Ok(()) };
    for child in children.values() {
        match child {
            Tree::File { data, .. } => {
                let start = image.len() as u64;
                let mut sizes = Vec::new();
                for chunk in data.chunks(BLOCK_SIZE as usize) {
                    let packed = compress_to_vec_zlib(chunk, LEVEL);
                    if packed.len() < chunk.len() {
                        sizes.push(packed.len() as u32);
                        image.extend(packed);
                    } else {
                        sizes.push(chunk.len() as u32 | BLOCK_UNCOMPRESSED);
                        image.extend_from_slice(chunk);
                    }
                }
                out.push(Data { start, sizes });
            }
            Tree::Dir { .. } => collect_data(child, image, out)?,
        }
    }
    Ok(())
}

/// A metadata table being written: whole blocks so far, and the block being filled.
#[derive(Default)]
struct Meta {
    out: Vec<u8>,
    pending: Vec<u8>,
}

impl Meta {
    /// Where the next byte goes: (block start relative to the table, offset in the block).
    fn position(&self) -> (u64, u16) {
        (self.out.len() as u64, self.pending.len() as u16)
    }

    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= METADATA_SIZE {
            let rest = self.pending.split_off(METADATA_SIZE);
            self.out.extend(metadata_block(&self.pending));
            self.pending = rest;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if !self.pending.is_empty() {
            self.out.extend(metadata_block(&self.pending));
        }
        self.out
    }
}

/// One metadata block: its header and `data`, compressed when that is smaller.
fn metadata_block(data: &[u8]) -> Vec<u8> {
    let packed = compress_to_vec_zlib(data, LEVEL);
    let (header, body) = if packed.len() < data.len() {
        (packed.len() as u16, packed.as_slice())
    } else {
        (data.len() as u16 | METADATA_UNCOMPRESSED, data)
    };
    let mut block = header.to_le_bytes().to_vec();
    block.extend_from_slice(body);
    block
}

struct Writer {
    inodes: Meta,
    dirs: Meta,
    next_number: u32,
    inode_count: u32,
    /// Files' data, in reverse order of the walk (popped as the walk meets them).
    data: Vec<Data>,
}

/// A child as its directory lists it.
struct Listed<'a> {
    name: &'a str,
    inode_ref: u64,
    number: u32,
    kind: u16,
}

impl Writer {
    fn number(&mut self) -> u32 {
        let n = self.next_number;
        self.next_number += 1;
        n
    }

    fn inode_ref(&self) -> u64 {
        let (block, offset) = self.inodes.position();
        (block << 16) | u64::from(offset)
    }

    fn header(&mut self, kind: u16, mode: u16, mtime: u32, number: u32) {
        let mut h = Vec::with_capacity(16);
        h.extend(kind.to_le_bytes());
        h.extend(mode.to_le_bytes());
        h.extend(0u16.to_le_bytes()); // uid index
        h.extend(0u16.to_le_bytes()); // gid index
        h.extend(mtime.to_le_bytes());
        h.extend(number.to_le_bytes());
        self.inodes.push(&h);
    }

    fn emit_file(&mut self, mode: u16, mtime: u32, size: u64) -> Result<(u64, u32), SquashfsError> {
        let data =
            self.data.pop().ok_or_else(|| SquashfsError::Write("data out of step".into()))?;
        let number = self.number();
        let inode_ref = self.inode_ref();
        let mut body = Vec::new();
        if let (Ok(start), Ok(size)) = (u32::try_from(data.start), u32::try_from(size)) {
            self.header(BASIC_FILE, mode, mtime, number);
            body.extend(start.to_le_bytes());
            body.extend(NO_FRAGMENT.to_le_bytes());
            body.extend(0u32.to_le_bytes());
            body.extend(size.to_le_bytes());
        } else {
            self.header(EXT_FILE, mode, mtime, number);
            body.extend(data.start.to_le_bytes());
            body.extend(size.to_le_bytes());
            body.extend(0u64.to_le_bytes()); // sparse bytes
            body.extend(1u32.to_le_bytes()); // links
            body.extend(NO_FRAGMENT.to_le_bytes());
            body.extend(0u32.to_le_bytes());
            body.extend(u32::MAX.to_le_bytes()); // no xattrs
        }
        for size in &data.sizes {
            body.extend(size.to_le_bytes());
        }
        self.inodes.push(&body);
        Ok((inode_ref, number))
    }

    /// Writes `tree`'s children, its listing and its inode; returns its reference and number.
    fn emit_dir(&mut self, tree: &Tree, parent: u32) -> Result<(u64, u32), SquashfsError> {
        let Tree::Dir { mode, mtime, children } = tree else {
            return Err(SquashfsError::Write("not a directory".into()));
        };
        // Numbers: children first (in the walk's order), then this directory; its
        // subdirectories need this directory's number as their parent before it is written, so
        // it is known in advance: one more than the last of its subtree.
        let mut subtree = 0;
        count_inodes(tree, &mut subtree);
        let own_number = self.next_number + subtree - 1;
        let mut listed = Vec::with_capacity(children.len());
        let mut subdirs = 0u32;
        for (name, child) in children {
            let (inode_ref, number, kind) = match child {
                Tree::File { mode, mtime, data } => {
                    let (r, n) = self.emit_file(*mode, *mtime, data.len() as u64)?;
                    (r, n, BASIC_FILE)
                }
                Tree::Dir { .. } => {
                    subdirs += 1;
                    let (r, n) = self.emit_dir(child, own_number)?;
                    (r, n, BASIC_DIR)
                }
            };
            listed.push(Listed { name, inode_ref, number, kind });
        }
        let number = self.number();
        debug_assert_eq!(number, own_number);
        let (block, offset) = self.dirs.position();
        let listing = listing(&listed);
        self.dirs.push(&listing);
        let file_size = listing.len() as u64 + 3;
        let inode_ref = self.inode_ref();
        let links = 2 + subdirs;
        let parent = if parent > self.inode_count { self.inode_count + 1 } else { parent };
        let mut body = Vec::new();
        match (u16::try_from(file_size), u32::try_from(block)) {
            (Ok(size), Ok(block)) => {
                self.header(BASIC_DIR, *mode, *mtime, number);
                body.extend(block.to_le_bytes());
                body.extend(links.to_le_bytes());
                body.extend(size.to_le_bytes());
                body.extend(offset.to_le_bytes());
                body.extend(parent.to_le_bytes());
            }
            _ => {
                let block = u32::try_from(block).map_err(|e| {
                    SquashfsError::Write(format!("directory table over 4 GiB: {e}"))
                })?;
                let size = u32::try_from(file_size).map_err(|e| {
                    SquashfsError::Write(format!("directory listing over 4 GiB: {e}"))
                })?;
                self.header(EXT_DIR, *mode, *mtime, number);
                body.extend(links.to_le_bytes());
                body.extend(size.to_le_bytes());
                body.extend(block.to_le_bytes());
                body.extend(parent.to_le_bytes());
                body.extend(0u16.to_le_bytes()); // no index
                body.extend(offset.to_le_bytes());
                body.extend(u32::MAX.to_le_bytes()); // no xattrs
            }
        }
        self.inodes.push(&body);
        Ok((inode_ref, number))
    }
}

/// A directory's listing: runs of at most 256 entries whose inodes share a metadata block and
/// whose numbers are within an `i16` of the run's base, each run after a header.
fn listing(children: &[Listed<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < children.len() {
        let first = &children[i];
        let block = first.inode_ref >> 16;
        let base = first.number;
        let mut end = i + 1;
        while end < children.len()
            && end - i < 256
            && children[end].inode_ref >> 16 == block
            && i64::from(children[end].number) - i64::from(base) <= i64::from(i16::MAX)
            && i64::from(children[end].number) - i64::from(base) >= i64::from(i16::MIN)
        {
            end += 1;
        }
        out.extend(((end - i - 1) as u32).to_le_bytes());
        out.extend((block as u32).to_le_bytes());
        out.extend(base.to_le_bytes());
        for child in &children[i..end] {
            out.extend(((child.inode_ref & 0xffff) as u16).to_le_bytes());
            out.extend(((i64::from(child.number) - i64::from(base)) as i16).to_le_bytes());
            out.extend(child.kind.to_le_bytes());
            out.extend(((child.name.len() - 1) as u16).to_le_bytes());
            out.extend(child.name.as_bytes());
        }
        i = end;
    }
    out
}
