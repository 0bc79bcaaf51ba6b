//! squashfs 4.0 images: the second answer format beside cpio, for outputs that are whole trees.
//! The host writes them ([`write`]) from output entries it has already validated; the browser,
//! the CLI and tests read them ([`Image`]) lazily: the tree is listed from the inode and
//! directory tables alone, and a file's data is decompressed only when it is read.
//!
//! Layout (all integers little-endian), as the kernel and squashfs-tools define it:
//!
//! ```text
//! superblock (96 bytes) | file data blocks | [fragments] | inode table | directory table |
//! [fragment table] | id table
//! ```
//!
//! The inode and directory tables are sequences of metadata blocks: a `u16` header (the stored
//! size; bit 15 set when stored uncompressed) and at most 8 KiB of data once decompressed. A
//! reference to an inode is `(block start relative to the table) << 16 | offset in the block`.
//! Data blocks are zlib streams ("gzip" in squashfs' words), or stored as they are when that is
//! no smaller (bit 24 of their size word). This module writes gzip images without fragments,
//! xattrs or export tables; it reads gzip and uncompressed images from `mksquashfs` too,
//! fragments included.
//!
//! Every image read here may be hostile: each offset and size is checked against the bytes held
//! before it is followed, every decompression is capped at the size the format allows, directory
//! loops and names with `/`, `..` or NUL are refused, and listing is bounded in entries and
//! depth ([`ReadLimits`]). Symlinks are reported as links and never followed.

mod read;
mod write;

pub use read::{Image, Node, NodeKind};
pub use write::write;

/// `hsqs`.
pub const MAGIC: u32 = 0x7371_7368;
pub(crate) const SUPERBLOCK_LEN: usize = 96;
/// Uncompressed size of a metadata block.
pub(crate) const METADATA_SIZE: usize = 8192;
/// The block size this module writes (squashfs allows 4 KiB to 1 MiB).
pub const BLOCK_SIZE: u32 = 128 * 1024;
pub(crate) const COMPRESSION_GZIP: u16 = 1;
/// Absent table.
pub(crate) const NONE: u64 = u64::MAX;
/// A data block size word: stored uncompressed.
pub(crate) const BLOCK_UNCOMPRESSED: u32 = 1 << 24;
/// A metadata block header: stored uncompressed.
pub(crate) const METADATA_UNCOMPRESSED: u16 = 1 << 15;
/// No fragment.
pub(crate) const NO_FRAGMENT: u32 = u32::MAX;

// Superblock flags.
pub(crate) const FLAG_NO_FRAGMENTS: u16 = 0x0010;
pub(crate) const FLAG_NO_XATTRS: u16 = 0x0200;

// Inode types.
pub(crate) const BASIC_DIR: u16 = 1;
pub(crate) const BASIC_FILE: u16 = 2;
pub(crate) const BASIC_SYMLINK: u16 = 3;
pub(crate) const EXT_DIR: u16 = 8;
pub(crate) const EXT_FILE: u16 = 9;
pub(crate) const EXT_SYMLINK: u16 = 10;

/// What a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most entries listed, directories included.
    pub max_entries: usize,
    /// Deepest path, in components.
    pub max_depth: usize,
    /// Largest file that [`Image::read`] decompresses.
    pub max_file_bytes: u64,
}

impl ReadLimits {
    /// Answers of the server: the output limits with room for stdout and stderr.
    pub const ANSWER: ReadLimits = ReadLimits {
        max_entries: 100_000,
        max_depth: crate::limits::MAX_PATH_DEPTH + 1,
        max_file_bytes: 1 << 30,
    };
}

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SquashfsError {
    #[error("not a squashfs image: {0}")]
    NotSquashfs(&'static str),
    #[error("squashfs compression {0} is not supported (gzip and uncompressed are)")]
    Compression(u16),
    #[error("squashfs image is damaged: {0}")]
    Damaged(String),
    #[error("squashfs image: {what} is beyond the image ({at} of {len} bytes)")]
    OutOfBounds { what: &'static str, at: u64, len: u64 },
    #[error("squashfs image: {0}")]
    Limit(String),
    #[error("squashfs image: name {name:?} is not allowed ({reason})")]
    BadName { name: String, reason: &'static str },
    #[error("squashfs image: a directory contains itself")]
    Loop,
    #[error("cannot write a squashfs image: {0}")]
    Write(String),
}

fn damaged(what: impl Into<String>) -> SquashfsError {
    SquashfsError::Damaged(what.into())
}

#[cfg(test)]
mod tests;
