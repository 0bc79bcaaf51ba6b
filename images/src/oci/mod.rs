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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

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

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image to take from an archive holding several (`busybox:latest`, `busybox`): a
    /// `RepoTags` entry of `docker save`, or an `org.opencontainers.image.ref.name` or
    /// `io.containerd.image.name` annotation of an OCI layout. The first image if `None`.
    pub tag: Option<String>,
    pub limits: Limits,
}

/// How the image means to be run, from its config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl fmt::Display for ImageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entrypoint {:?}, cmd {:?}, env {:?}", self.entrypoint, self.cmd, self.env)?;
        if let Some(dir) = &self.working_dir {
            write!(f, ", working dir {dir:?}")?;
        }
        if let Some(user) = &self.user {
            write!(f, ", user {user:?}")?;
        }
        Ok(())
    }
}

/// JSON files (manifests, indexes, configs) are read whole; real ones are a few KiB.
const MAX_JSON: u64 = 16 << 20;
/// Symlinks followed when resolving one path (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

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

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Read { path: path.to_owned(), source }
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Write { path: path.to_owned(), source }
}

// ---------------------------------------------------------------------------------------------
// The archive: an index of the outer tarball.

/// The outer tarball, indexed: blobs are read in place.
struct Archive {
    path: PathBuf,
    file: File,
    /// Normalized name -> (offset of the data, size).
    files: HashMap<String, (u64, u64)>,
    /// Normalized name -> normalized target, for symlinks and hard links (older `docker save`
    /// links duplicate layers to one another).
    links: HashMap<String, String>,
}

impl Archive {
    fn open(path: &Path, scratch: &Path, limits: &Limits) -> Result<Archive, OciError> {
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
    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name);
        for _ in 0..8 {
            if let Some(&found) = self.files.get(&name) {
                return Some(found);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    /// The first bytes of a file (to tell compressions apart).
    fn magic(&self, name: &str) -> Result<[u8; 4], OciError> {
        let (offset, size) =
            self.locate(name).ok_or_else(|| OciError::Missing { name: name.into() })?;
        let mut magic = [0u8; 4];
        let want = size.min(4) as usize;
        self.file.read_exact_at(&mut magic[..want], offset).map_err(read_err(&self.path))?;
        Ok(magic)
    }

    /// A reader of a file's bytes, which checks them against the digest in its name, if any.
    fn blob(&self, name: &str) -> Result<Blob<'_>, OciError> {
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
    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, OciError> {
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
struct Blob<'a> {
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
    fn finish(mut self) -> Result<(), OciError> {
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
fn normalize(name: &str) -> String {
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
fn copy(
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

// ---------------------------------------------------------------------------------------------
// Finding the image: config and layers.

/// The image chosen in the archive.
struct Image {
    /// Name of the config file in the archive.
    config: String,
    layers: Vec<Layer>,
}

struct Layer {
    name: String,
    /// From the OCI manifest; `docker save` gives none.
    media_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_image(archive: &Archive, tag: Option<&str>) -> Result<Image, OciError> {
    let manifests: Vec<DockerManifest> = archive.json("manifest.json")?;
    let chosen = match tag {
        None => manifests.into_iter().next(),
        Some(tag) => manifests
            .into_iter()
            .find(|m| m.repo_tags.iter().flatten().any(|t| tag_matches(t, tag))),
    };
    let Some(manifest) = chosen else {
        return Err(OciError::NoImage(match tag {
            None => "manifest.json lists no image".into(),
            Some(tag) => format!("manifest.json has no image tagged {tag:?}"),
        }));
    };
    Ok(Image {
        config: manifest.config,
        layers: manifest.layers.into_iter().map(|name| Layer { name, media_type: None }).collect(),
    })
}

/// Whether an image name (`docker.io/library/busybox:latest`) is what the user asked for
/// (`busybox`, `busybox:latest`, or the whole name).
fn tag_matches(name: &str, tag: &str) -> bool {
    let with_latest = if tag.contains(':') { tag.to_owned() } else { format!("{tag}:latest") };
    [tag, with_latest.as_str()].iter().any(|t| name == *t || name.ends_with(&format!("/{t}")))
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// An image index or an image manifest (told apart by which fields they have).
#[derive(Deserialize)]
struct IndexOrManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

fn oci_image(archive: &Archive, tag: Option<&str>) -> Result<Image, OciError> {
    let mut name = "index.json".to_owned();
    let mut tag = tag;
    // index.json -> (nested indexes ->) manifest.
    for _ in 0..4 {
        let doc: IndexOrManifest = archive.json(&name)?;
        if let Some(manifests) = doc.manifests {
            name = blob_name(&choose_manifest(&name, manifests, tag.take())?.digest)?;
            continue;
        }
        let (Some(config), Some(layers)) = (doc.config, doc.layers) else {
            return Err(OciError::NoImage(format!("{name} is neither an index nor a manifest")));
        };
        let layers = layers
            .into_iter()
            .map(|d| Ok(Layer { name: blob_name(&d.digest)?, media_type: d.media_type }))
            .collect::<Result<_, OciError>>()?;
        return Ok(Image { config: blob_name(&config.digest)?, layers });
    }
    Err(OciError::NoImage("the image indexes nest too deeply".into()))
}

/// In an index: the image with the tag (if any), for the host's platform.
fn choose_manifest(
    index_name: &str,
    manifests: Vec<Descriptor>,
    tag: Option<&str>,
) -> Result<Descriptor, OciError> {
    let candidates: Vec<Descriptor> = match tag {
        None => manifests,
        Some(tag) => manifests
            .into_iter()
            .filter(|d| {
                ["org.opencontainers.image.ref.name", "io.containerd.image.name"]
                    .iter()
                    .filter_map(|key| d.annotations.as_ref()?.get(*key))
                    .any(|name| tag_matches(name, tag))
            })
            .collect(),
    };
    if candidates.is_empty() {
        return Err(OciError::NoImage(match tag {
            Some(tag) => format!("{index_name} has no image tagged {tag:?}"),
            None => format!("{index_name} lists no image"),
        }));
    }
    let arch = host_arch();
    let exact = candidates.iter().position(|d| {
        d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch)
    });
    let unlabelled = candidates.iter().position(|d| d.platform.is_none());
    match exact.or(unlabelled) {
        Some(i) => Ok(candidates.into_iter().nth(i).expect("index in range")),
        None => Err(OciError::NoPlatform {
            wanted: format!("linux/{arch}"),
            available: candidates
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `sha256:<hex>` -> `blobs/sha256/<hex>`.
fn blob_name(digest: &str) -> Result<String, OciError> {
    match digest.split_once(':') {
        Some((alg, enc))
            if !alg.is_empty()
                && !enc.is_empty()
                && alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_') =>
        {
            Ok(format!("blobs/{alg}/{enc}"))
        }
        _ => Err(OciError::NoImage(format!("{digest:?} is not a digest"))),
    }
}

/// The host's architecture, as images name it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

fn read_config(archive: &Archive, name: &str) -> Result<ImageConfig, OciError> {
    let file: ConfigFile = archive.json(name)?;
    let os = file.os.filter(|s| !s.is_empty()).unwrap_or_else(|| "linux".into());
    let arch = file.architecture.filter(|s| !s.is_empty()).unwrap_or_else(|| host_arch().into());
    if os != "linux" || arch != host_arch() {
        return Err(OciError::WrongPlatform {
            found: format!("{os}/{arch}"),
            wanted: format!("linux/{}", host_arch()),
        });
    }
    let c = file.config.unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|s| !s.is_empty()),
        user: c.user.filter(|s| !s.is_empty()),
    })
}

// ---------------------------------------------------------------------------------------------
// Applying layers.

/// What one layer held.
#[derive(Debug, Default)]
struct LayerStats {
    entries: u64,
    bytes: u64,
    skipped: u64,
    skipped_example: Option<PathBuf>,
}

/// Applies layers into the root, keeping the totals against the limits.
struct Unpacker {
    root: PathBuf,
    limits: Limits,
    bytes: u64,
    entries: u64,
    /// Directory modes, applied at the end so that a read-only directory can still be filled.
    dir_modes: BTreeMap<PathBuf, u32>,
}

impl Unpacker {
    fn new(root: &Path, limits: Limits) -> Self {
        Unpacker { root: root.to_owned(), limits, bytes: 0, entries: 0, dir_modes: BTreeMap::new() }
    }

    fn apply_layer(&mut self, layer: usize, reader: impl Read) -> Result<LayerStats, OciError> {
        let tar_err = |source| OciError::Tar { what: format!("layer {layer}"), source };
        let mut stats = LayerStats::default();
        // What this layer wrote: whiteouts in the same layer do not apply to them.
        let mut written: HashSet<PathBuf> = HashSet::new();
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(OciError::TooManyEntries { limit: self.limits.max_entries });
            }
            let size = entry.size().max(entry.header().entry_size().map_err(tar_err)?);
            self.bytes = self.bytes.saturating_add(size);
            if self.bytes > self.limits.max_bytes {
                return Err(OciError::TooLarge { limit: self.limits.max_bytes });
            }
            stats.entries += 1;
            stats.bytes += size;

            let raw = entry.path().map_err(tar_err)?.into_owned();
            let parts = entry_parts(layer, &raw)?;
            let Some((name, dir)) = parts.split_last() else { continue }; // the root itself
            let kind = entry.header().entry_type();
            if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(".wh.")) {
                self.whiteout(layer, &raw, dir, hidden, &written)?;
                continue;
            }
            let unpacked_kind = kind.is_file()
                || kind.is_contiguous()
                || kind.is_gnu_sparse()
                || kind.is_dir()
                || kind.is_symlink()
                || kind.is_hard_link();
            if !unpacked_kind {
                if !kind.is_pax_global_extensions() {
                    stats.skipped += 1;
                    stats.skipped_example.get_or_insert(raw);
                }
                continue;
            }
            let parent = self
                .resolve_dir(layer, &raw, dir, Some(&mut written))?
                .expect("created when missing");
            let dest = parent.join(name);
            let mode = entry.header().mode().map_err(tar_err)? & 0o7777;

            if kind.is_dir() {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        self.remove(&dest)?;
                        fs::DirBuilder::new()
                            .mode(0o755)
                            .create(&dest)
                            .map_err(write_err(&dest))?;
                    }
                }
                self.dir_modes.insert(dest.clone(), mode);
            } else if kind.is_symlink() {
                let target = entry.link_name().map_err(tar_err)?.ok_or_else(|| {
                    OciError::UnsafeEntry { layer, path: raw.clone(), why: "a symlink to nothing" }
                })?;
                self.remove(&dest)?;
                std::os::unix::fs::symlink(&target, &dest).map_err(write_err(&dest))?;
            } else if kind.is_hard_link() {
                let target =
                    entry.link_name().map_err(tar_err)?.ok_or_else(|| OciError::UnsafeEntry {
                        layer,
                        path: raw.clone(),
                        why: "a hard link to nothing",
                    })?;
                let target = self.resolve_link_target(layer, &raw, &target)?;
                if target != dest {
                    self.remove(&dest)?;
                    fs::hard_link(&target, &dest).map_err(write_err(&dest))?;
                }
            } else {
                self.remove(&dest)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(write_err(&dest))?;
                copy(&mut entry, &mut file, tar_err, &dest)?;
                // After writing, which would clear setuid bits.
                file.set_permissions(fs::Permissions::from_mode(mode)).map_err(write_err(&dest))?;
            }
            written.insert(dest);
        }
        Ok(stats)
    }

    /// `.wh.<hidden>` in `dir`: deletes `hidden` (or, for `.wh..wh..opq`, everything in `dir`)
    /// unless this layer wrote it.
    fn whiteout(
        &mut self,
        layer: usize,
        raw: &Path,
        dir: &[OsString],
        hidden: &str,
        written: &HashSet<PathBuf>,
    ) -> Result<(), OciError> {
        if hidden == "." || hidden == ".." {
            let why = "a whiteout of `.` or `..`";
            return Err(OciError::UnsafeEntry { layer, path: raw.to_owned(), why });
        }
        let Some(parent) = self.resolve_dir(layer, raw, dir, None)? else { return Ok(()) };
        if hidden == ".wh..opq" {
            self.clear_opaque(&parent, written)
        } else if hidden.starts_with(".wh.") || hidden.is_empty() {
            Ok(()) // other AUFS metadata (`.wh..wh.plnk`, ...): nothing to apply
        } else {
            let path = parent.join(hidden);
            if written.contains(&path) { Ok(()) } else { self.remove(&path) }
        }
    }

    /// Removes everything under `dir` that the current layer did not write.
    fn clear_opaque(&mut self, dir: &Path, written: &HashSet<PathBuf>) -> Result<(), OciError> {
        for child in fs::read_dir(dir).map_err(write_err(dir))? {
            let path = child.map_err(write_err(dir))?.path();
            if !written.contains(&path) {
                self.remove(&path)?;
            } else if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.clear_opaque(&path, written)?;
            }
        }
        Ok(())
    }

    /// Removes whatever is at `path` (never following a symlink), if anything.
    fn remove(&mut self, path: &Path) -> Result<(), OciError> {
        let result = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                // The directory and what is under it sort together.
                let under: Vec<PathBuf> = (self.dir_modes.range(path.to_owned()..))
                    .map(|(p, _)| p)
                    .take_while(|p| p.starts_with(path))
                    .cloned()
                    .collect();
                for p in under {
                    self.dir_modes.remove(&p);
                }
                fs::remove_dir_all(path)
            }
            Ok(_) => fs::remove_file(path),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(write_err(path)(e)),
            _ => Ok(()),
        }
    }

    /// The host path of the directory `parts` inside the root, resolving symlinks as the guest
    /// would (`/` is the root, `..` stops at it). With `created`, missing directories (and
    /// non-directories in the way) are made and recorded there; without, `None` if missing.
    fn resolve_dir(
        &mut self,
        layer: usize,
        raw: &Path,
        parts: &[OsString],
        mut created: Option<&mut HashSet<PathBuf>>,
    ) -> Result<Option<PathBuf>, OciError> {
        let mut resolved = self.root.clone();
        let mut depth = 0usize; // components of `resolved` below the root
        let mut todo: VecDeque<OsString> = parts.iter().cloned().collect();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            if part == "." || part.is_empty() {
                continue;
            }
            if part == ".." {
                if depth > 0 {
                    resolved.pop();
                    depth -= 1;
                }
                continue;
            }
            let next = resolved.join(&part);
            match fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(OciError::SymlinkLoop { layer, path: raw.to_owned() });
                    }
                    let target = fs::read_link(&next).map_err(write_err(&next))?;
                    if target.has_root() {
                        resolved = self.root.clone();
                        depth = 0;
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => todo.push_front(n.to_owned()),
                            Component::ParentDir => todo.push_front("..".into()),
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                    continue;
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) | Err(_) => {
                    let Some(created) = created.as_deref_mut() else { return Ok(None) };
                    self.remove(&next)?;
                    fs::DirBuilder::new().mode(0o755).create(&next).map_err(write_err(&next))?;
                    created.insert(next.clone());
                }
            }
            resolved = next;
            depth += 1;
        }
        Ok(Some(resolved))
    }

    /// The host path a hard link's target names: inside the root, an existing non-directory.
    fn resolve_link_target(
        &mut self,
        layer: usize,
        raw: &Path,
        target: &Path,
    ) -> Result<PathBuf, OciError> {
        let parts = entry_parts(layer, target)?;
        let bad = |why| OciError::UnsafeEntry { layer, path: raw.to_owned(), why };
        let (name, dir) = parts.split_last().ok_or_else(|| bad("a hard link to the root"))?;
        let found = self
            .resolve_dir(layer, raw, dir, None)?
            .map(|d| d.join(name))
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()));
        found.ok_or_else(|| bad("a hard link to a missing file or a directory"))
    }

    /// Applies the directory modes and makes the paths the builder writes through plain.
    fn finish(self, progress: &mut dyn FnMut(&str)) -> Result<(), OciError> {
        for (dir, mode) in self.dir_modes.iter().rev() {
            if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
                    .map_err(write_err(dir))?;
            }
        }
        settle_builder_paths(&self.root, progress)
    }
}

/// The components of an entry's path, refusing absolute paths and `..`.
fn entry_parts(layer: usize, raw: &Path) -> Result<Vec<OsString>, OciError> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_owned()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                let why = "absolute paths are not allowed in a layer";
                return Err(OciError::UnsafeEntry { layer, path: raw.to_owned(), why });
            }
            Component::ParentDir => {
                let why = "`..` is not allowed in a layer";
                return Err(OciError::UnsafeEntry { layer, path: raw.to_owned(), why });
            }
        }
    }
    Ok(parts)
}

/// `build::add_job_user` appends to `etc/passwd` and `etc/group` and creates the job
/// directories through plain host paths, which would follow symlinks on the host: make them
/// plain files and directories.
fn settle_builder_paths(root: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), OciError> {
    let etc = root.join("etc");
    match fs::symlink_metadata(&etc) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&etc).unwrap_or_default();
            return Err(OciError::EtcIsSymlink { target });
        }
        Ok(m) if m.is_dir() => {}
        Ok(_) | Err(_) => {
            let _ = fs::remove_file(&etc);
            fs::DirBuilder::new().mode(0o755).create(&etc).map_err(write_err(&etc))?;
        }
    }
    for name in ["passwd", "group"] {
        let path = etc.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if meta.is_file() {
            continue;
        }
        // A symlink (or something else): replace it by a copy of what it means in the image.
        let content = if meta.file_type().is_symlink() {
            read_inside(root, &path).unwrap_or_default()
        } else {
            Vec::new()
        };
        if meta.is_dir() {
            fs::remove_dir_all(&path).map_err(write_err(&path))?;
        } else {
            fs::remove_file(&path).map_err(write_err(&path))?;
        }
        fs::write(&path, content).map_err(write_err(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(write_err(&path))?;
        progress(&format!("  note: /etc/{name} was not a plain file; made it one"));
    }
    for dir in ["input", "output", "tmp", "proc", "dev", "sys"] {
        let path = root.join(dir);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Err(_) => {}
            Ok(_) => {
                fs::remove_file(&path).map_err(write_err(&path))?;
                fs::DirBuilder::new().mode(0o755).create(&path).map_err(write_err(&path))?;
                progress(&format!("  note: /{dir} was not a directory; made it an empty one"));
            }
        }
    }
    Ok(())
}

/// The contents (up to 1 MiB) of the regular file a symlink at `path` names inside `root`.
fn read_inside(root: &Path, path: &Path) -> Option<Vec<u8>> {
    let mut unpacker = Unpacker::new(root, Limits::default());
    let mut current = path.to_owned();
    for _ in 0..MAX_SYMLINKS {
        let meta = fs::symlink_metadata(&current).ok()?;
        if meta.is_file() {
            let mut bytes = Vec::new();
            File::open(&current).ok()?.take(1 << 20).read_to_end(&mut bytes).ok()?;
            return Some(bytes);
        }
        if !meta.file_type().is_symlink() {
            return None;
        }
        let target = fs::read_link(&current).ok()?;
        // Resolve the target from the link's directory, inside the root.
        let dir = current.parent()?.strip_prefix(root).ok()?;
        let mut parts: Vec<OsString> = dir.components().map(|c| c.as_os_str().to_owned()).collect();
        if target.has_root() {
            parts.clear();
        }
        for c in target.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_owned()),
                Component::ParentDir => parts.push(OsStr::new("..").to_owned()),
                _ => {}
            }
        }
        let (name, dir) = parts.split_last()?;
        if name == ".." {
            return None;
        }
        let resolved = unpacker.resolve_dir(0, path, dir, None).ok()??;
        current = resolved.join(name);
    }
    None
}
