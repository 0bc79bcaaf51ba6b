//! Why an image archive could not be imported.

use std::io;
use std::path::{Path, PathBuf};

/// Why an archive could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot read the archive {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} is not a valid tar archive")]
    Tar {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is neither a `docker save` archive (no manifest.json) nor an OCI image layout \
         (no index.json)"
    )]
    NotAnImage { path: PathBuf },
    #[error("the archive has no {name}, which the image needs")]
    Missing { name: String },
    #[error("{name} in the archive is not valid")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{name} in the archive is over {limit} bytes")]
    JsonTooLarge { name: String, limit: u64 },
    #[error("{name} does not match its digest (it hashes to sha256:{actual})")]
    DigestMismatch { name: String, actual: String },
    #[error("{0}")]
    NoImage(String),
    #[error("the image has no {wanted} variant (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error("the image is for {found}, and this host runs {wanted} images")]
    WrongPlatform { found: String, wanted: String },
    #[error(
        "layer {layer} is zstd-compressed, which is not supported: save the image with gzip \
         layers (e.g. `skopeo copy --dest-compress-format gzip ...`)"
    )]
    Zstd { layer: usize },
    #[error("layer {layer} has media type {media_type:?}, which is not a tar layer")]
    MediaType { layer: usize, media_type: String },
    #[error("layer {layer}: refusing entry {path:?}: {why}")]
    UnsafeEntry { layer: usize, path: PathBuf, why: &'static str },
    #[error("layer {layer}: entry {path:?} goes through more than 40 symlinks")]
    SymlinkLoop { layer: usize, path: PathBuf },
    #[error("the image unpacks to more than {limit} bytes (the limit)")]
    TooLarge { limit: u64 },
    #[error("the image has more than {limit} entries (the limit)")]
    TooManyEntries { limit: u64 },
    #[error(
        "the image's /etc is a symlink (to {target:?}), which the builder cannot add the job \
         user to"
    )]
    EtcIsSymlink { target: PathBuf },
}

pub(super) fn read_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Read { path: path.to_owned(), source }
}

pub(super) fn write_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Write { path: path.to_owned(), source }
}
