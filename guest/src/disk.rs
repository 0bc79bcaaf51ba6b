//! The two disks the host attaches, found by virtio serial (never by order): the I/O disk that
//! carries the request in and the answer out, and the read-only image.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use shared::guest::{self, GuestRequest, GuestResponse, IMAGE_DISK_SERIAL, IO_DISK_SERIAL};
use shared::limits::{MAX_HEADER_BYTES, MAX_REQUEST_BYTES};

use crate::{SetupError, Stage, sys};

/// Device paths, e.g. `/dev/vdb`.
#[derive(Debug)]
pub struct Disks {
    pub io: PathBuf,
    pub image: PathBuf,
}

/// The I/O disk, remembered so the panic hook can answer.
pub static IO_DISK: OnceLock<PathBuf> = OnceLock::new();

pub fn find_disks() -> Result<Disks, SetupError> {
    let (mut io, mut image) = (None, None);
    for entry in fs::read_dir("/sys/block").stage("find disks")? {
        let entry = entry.stage("find disks")?;
        let Ok(serial) = fs::read_to_string(entry.path().join("serial")) else { continue };
        let dev = PathBuf::from("/dev").join(entry.file_name());
        match serial.trim() {
            IO_DISK_SERIAL => io = Some(dev),
            IMAGE_DISK_SERIAL => image = Some(dev),
            _ => {}
        }
    }
    let missing = |serial| SetupError::new("find disks", format!("no disk with serial {serial}"));
    let io = io.ok_or_else(|| missing(IO_DISK_SERIAL))?;
    let _ = IO_DISK.set(io.clone());
    Ok(Disks { io, image: image.ok_or_else(|| missing(IMAGE_DISK_SERIAL))? })
}

/// Reads the request and its input archive from the start of the I/O disk.
pub fn read_request(io: &PathBuf) -> Result<(GuestRequest, Vec<u8>), SetupError> {
    const STAGE: &str = "read request";
    let dev = File::open(io).stage(STAGE)?;
    // A pre-booted guest may have read this disk before the host wrote the request.
    let _ = sys::flush_block_cache(&dev);
    let read_u32 = |offset: u64| -> Result<usize, SetupError> {
        let mut buf = [0u8; 4];
        dev.read_exact_at(&mut buf, offset).stage(STAGE)?;
        Ok(u32::from_le_bytes(buf) as usize)
    };
    let header_len = read_u32(0)?;
    if header_len == 0 || header_len > MAX_HEADER_BYTES {
        return Err(SetupError::new(STAGE, format!("header length {header_len} is out of range")));
    }
    let mut header = vec![0u8; header_len];
    dev.read_exact_at(&mut header, 4).stage(STAGE)?;
    let archive_len = read_u32(4 + header_len as u64)?;
    if archive_len > MAX_REQUEST_BYTES {
        return Err(SetupError::new(
            STAGE,
            format!("archive length {archive_len} is out of range"),
        ));
    }
    let mut archive = vec![0u8; archive_len];
    dev.read_exact_at(&mut archive, 8 + header_len as u64).stage(STAGE)?;
    let request = serde_json::from_slice(&header).stage(STAGE)?;
    Ok((request, archive))
}

/// Writes the answer: body first, then the prefix with the magic, each followed by a flush, so
/// the host sees the magic only when the whole answer is on the disk.
pub fn write_answer(response: &GuestResponse, archive: &[u8]) -> std::io::Result<()> {
    let io = IO_DISK.get().ok_or_else(|| std::io::Error::other("the I/O disk was never found"))?;
    let json = serde_json::to_vec(response)?;
    let dev = OpenOptions::new().write(true).open(io)?;
    let offset = guest::RESPONSE_PREFIX_LEN as u64;
    dev.write_all_at(&json, offset)?;
    dev.write_all_at(archive, offset + json.len() as u64)?;
    dev.sync_all()?;
    dev.write_all_at(&guest::response_prefix(json.len(), archive.len()), 0)?;
    dev.sync_all()
}
