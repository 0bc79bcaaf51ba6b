//! Importing a container image from an archive into a root filesystem directory, so that any
//! container a user has can be added: `docker save` output, or an OCI image layout tarball
//! (`skopeo copy ... oci-archive:`, `podman save --format oci-archive`; Docker 25+ writes both).
//!
//! 1. Index the archive: one pass over its tar headers records where each file's bytes lie, so
//!    blobs are then read in place (a gzip-compressed archive is first unpacked to an anonymous
//!    temporary file next to the root filesystem).
//! 2. Find the image: `manifest.json` (docker save) names the config and the layers; otherwise
//!    `index.json` (OCI layout) leads to a manifest, through a nested index when the image is
//!    multi-platform, choosing the host's platform (linux/amd64 here). Blobs stored as
//!    `blobs/sha256/<hex>` are checked against their digest.
//! 3. Apply the layers in order (plain tar or tar+gzip; zstd is refused with a clear error) with
//!    OCI whiteouts: `.wh.<name>` deletes `<name>` from lower layers, `.wh..wh..opq` clears what
//!    lower layers put in its directory. Neither applies to what the same layer adds.
//! 4. Return the image config ([`ImageConfig`]: Entrypoint, Cmd, Env, WorkingDir, User).
//!
//! # Security
//!
//! The archive is untrusted input; nothing is written outside the root filesystem:
//! - An entry whose path is absolute or has a `..` component fails the import with an error
//!   naming the layer and the entry (no image builder makes them, and a silently incomplete
//!   image would be worse than a clear error). So does a hard link whose target is.
//! - Parent directories are resolved inside the root, as the guest will see them: a symlink an
//!   earlier entry made is followed with `/` meaning the root and `..` stopping at it (so after
//!   `etc -> /`, the entry `etc/passwd` becomes `<rootfs>/passwd`). The last component is never
//!   followed: whatever is there is removed first and files are created with `O_EXCL`. Symlinks
//!   are kept as they are: the guest mounts the image read-only and resolves them inside it.
//!   (Checking with `lstat` and then writing by path is sound because nothing else writes to
//!   the fresh root filesystem while a build runs.)
//! - Hard links must point at an existing non-directory, resolved the same way.
//! - Device nodes and FIFOs are skipped with a note (the guest provides /dev).
//! - Modes are kept, setuid and setgid included: the job runs as uid 1000 with
//!   no_new_privileges, under which they have no effect. Ownership is not kept (the builder
//!   packs with `mksquashfs -all-root`), nor are xattrs or times.
//! - The bytes of all entries (declared sizes, also of skipped ones, which bounds decompression
//!   work) and the number of entries are bounded ([`Limits`]), as are the JSON files read.
//! - The builder then appends the job user to `etc/passwd` and `etc/group` and creates the job
//!   directories through plain host paths, so those are made plain here: a symlinked `/etc` is
//!   refused, a symlinked `passwd` or `group` becomes a copy of what it points to inside the
//!   image, and a symlink at `/input`, `/output`, `/tmp`, `/proc`, `/dev` or `/sys` becomes an
//!   empty directory.

use std::fs;
use std::path::Path;

mod archive;
mod error;
mod manifest;
mod unpack;

pub use archive::Limits;
pub use error::OciError;
pub use manifest::ImageConfig;

use archive::Archive;
use error::write_err;
use manifest::{docker_image, oci_image, read_config};
use unpack::Unpacker;

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image to take from an archive holding several (`busybox:latest`, `busybox`): a
    /// `RepoTags` entry of `docker save`, or an `org.opencontainers.image.ref.name` or
    /// `io.containerd.image.name` annotation of an OCI layout. The first image if `None`.
    pub tag: Option<String>,
    pub limits: Limits,
}

/// Imports the image in `archive` into the directory `rootfs` (created if missing) and returns
/// its config.
pub fn import(
    archive: &Path,
    rootfs: &Path,
    options: &ImportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageConfig, OciError> {
    let scratch = rootfs.parent().map_or_else(std::env::temp_dir, Path::to_owned);
    let archive = Archive::open(archive, &scratch, &options.limits)?;
    let (format, image) = if archive.has("manifest.json") {
        ("docker save", docker_image(&archive, options.tag.as_deref())?)
    } else if archive.has("index.json") {
        ("OCI layout", oci_image(&archive, options.tag.as_deref())?)
    } else {
        return Err(OciError::NotAnImage { path: archive.path.clone() });
    };
    let config = read_config(&archive, &image.config)?;
    progress(&format!("  {format} archive, {} layers", image.layers.len()));

    fs::create_dir_all(rootfs).map_err(write_err(rootfs))?;
    let mut unpacker = Unpacker::new(rootfs, options.limits);
    for (i, layer) in image.layers.iter().enumerate() {
        let n = i + 1;
        if let Some(media_type) = &layer.media_type {
            if media_type.contains("zstd") {
                return Err(OciError::Zstd { layer: n });
            }
            if !media_type.contains("tar") {
                return Err(OciError::MediaType { layer: n, media_type: media_type.clone() });
            }
        }
        let magic = archive.magic(&layer.name)?;
        let mut blob = archive.blob(&layer.name)?;
        let stats = if magic.starts_with(&[0x1f, 0x8b]) {
            unpacker.apply_layer(n, flate2::read::MultiGzDecoder::new(&mut blob))?
        } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(OciError::Zstd { layer: n });
        } else {
            unpacker.apply_layer(n, &mut blob)?
        };
        blob.finish()?;
        progress(&format!(
            "  layer {n}/{}: {} entries, {} MiB",
            image.layers.len(),
            stats.entries,
            stats.bytes >> 20
        ));
        if let Some(example) = &stats.skipped_example {
            progress(&format!(
                "  layer {n}: skipped {} device nodes, FIFOs or unknown entries (e.g. {})",
                stats.skipped,
                example.display()
            ));
        }
    }
    unpacker.finish(progress)?;
    Ok(config)
}
