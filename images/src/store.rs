//! The image store: container root filesystems as single files, stored by content digest.
//!
//! ```text
//! <root>/sha256/<hex>          the image (squashfs or erofs), named by its sha256
//! <root>/refs/<id>.json        {"id", "digest": "sha256:<hex>", "format", "size", "built_at"}
//! ```
//!
//! A ref is replaced atomically (write, then rename), so a reader never sees a half-built image.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Root filesystem formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Squashfs,
    Erofs,
}

/// A built image, ready to attach to a VM.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub path: PathBuf,
    pub format: ImageFormat,
    pub size: u64,
    pub built_at: Option<String>,
    /// Fingerprint of the recipe it was built from (see `build::Recipe::fingerprint`).
    pub recipe: Option<String>,
    /// How long the build took.
    pub build_secs: Option<f64>,
    /// The image's own default environment (`KEY=VALUE`, from an OCI image's config); jobs
    /// start from it.
    pub env: Vec<String>,
}

/// The ref file of a built image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ref {
    pub id: String,
    pub digest: String,
    pub format: ImageFormat,
    pub size: u64,
    #[serde(default)]
    pub built_at: Option<String>,
    #[serde(default)]
    pub recipe: Option<String>,
    #[serde(default)]
    pub build_secs: Option<f64>,
    /// The image's default environment (`KEY=VALUE`), from an OCI image's config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no image {id:?} is built (looked in {dir}); build it with `pe image build {id}`")]
    NotBuilt { id: String, dir: PathBuf },
    #[error("image {id:?}: its ref is unreadable")]
    BadRef {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {id:?}: the file {path} is missing; rebuild it with `pe image build {id}`")]
    MissingFile { id: String, path: PathBuf },
    #[error("{path} is neither a squashfs nor an erofs image")]
    UnknownFormat { path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The store at a directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A built image by id, or an image file given by path (anything containing a `/`).
    pub fn resolve(&self, name: &str) -> Result<ImageInfo, ImageError> {
        if name.contains('/') {
            return image_file(Path::new(name));
        }
        let ref_path = self.root.join("refs").join(format!("{name}.json"));
        let text = match fs::read_to_string(&ref_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NotBuilt { id: name.into(), dir: self.root.clone() });
            }
            Err(source) => return Err(ImageError::Io { path: ref_path, source }),
        };
        let r: Ref = serde_json::from_str(&text)
            .map_err(|source| ImageError::BadRef { id: name.into(), source })?;
        let hex = r.digest.strip_prefix("sha256:").unwrap_or(&r.digest);
        let path = self.root.join("sha256").join(hex);
        if !path.is_file() {
            return Err(ImageError::MissingFile { id: name.into(), path });
        }
        Ok(ImageInfo {
            id: r.id,
            digest: r.digest,
            path,
            format: r.format,
            size: r.size,
            built_at: r.built_at,
            recipe: r.recipe,
            build_secs: r.build_secs,
            env: r.env,
        })
    }

    /// Writes (or replaces) a ref atomically.
    pub fn write_ref(&self, r: &Ref) -> io::Result<()> {
        let dir = self.root.join("refs");
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{}.json.tmp", r.id));
        fs::write(&tmp, serde_json::to_vec_pretty(r).map_err(io::Error::other)?)?;
        fs::rename(&tmp, dir.join(format!("{}.json", r.id)))
    }

    /// Removes an image's ref, and its file when no other ref uses it. Returns whether there
    /// was such an image.
    pub fn remove(&self, id: &str) -> Result<bool, ImageError> {
        let info = match self.resolve(id) {
            Ok(info) => info,
            Err(ImageError::NotBuilt { .. }) => return Ok(false),
            Err(ImageError::MissingFile { .. }) => {
                let _ = fs::remove_file(self.root.join("refs").join(format!("{id}.json")));
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let ref_path = self.root.join("refs").join(format!("{id}.json"));
        fs::remove_file(&ref_path).map_err(|source| ImageError::Io { path: ref_path, source })?;
        if !self.list().iter().any(|other| other.digest == info.digest) {
            let _ = fs::remove_file(&info.path);
        }
        Ok(true)
    }

    /// Every built image, sorted by id.
    pub fn list(&self) -> Vec<ImageInfo> {
        let Ok(dir) = fs::read_dir(self.root.join("refs")) else { return Vec::new() };
        let mut out: Vec<ImageInfo> = dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
            .filter_map(|id| self.resolve(&id).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// An image file outside the store: its format from its magic, its digest from its bytes.
fn image_file(path: &Path) -> Result<ImageInfo, ImageError> {
    let io_err = |source| ImageError::Io { path: path.to_owned(), source };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut head = vec![0u8; 1028];
    let n = read_up_to(&mut file, &mut head).map_err(io_err)?;
    head.truncate(n);
    let format = if head.starts_with(b"hsqs") {
        ImageFormat::Squashfs
    } else if head.get(1024..1028) == Some(&[0xe2, 0xe1, 0xf5, 0xe0]) {
        ImageFormat::Erofs
    } else {
        return Err(ImageError::UnknownFormat { path: path.to_owned() });
    };
    let mut hasher = Sha256::new();
    hasher.update(&head);
    io::copy(&mut file, &mut hasher).map_err(io_err)?;
    let size = fs::metadata(path).map_err(io_err)?.len();
    let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_owned();
    Ok(ImageInfo {
        id,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        path: path.to_owned(),
        format,
        size,
        built_at: None,
        recipe: None,
        build_secs: None,
        env: Vec::new(),
    })
}

fn read_up_to(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
