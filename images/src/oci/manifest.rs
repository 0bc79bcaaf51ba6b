//! Finding the image in an archive: its config and its layers, from `manifest.json` (docker
//! save) or `index.json` (OCI layout, through a nested index when the image is multi-platform).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::archive::Archive;
use super::error::OciError;

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

/// The image chosen in the archive.
pub(super) struct Image {
    /// Name of the config file in the archive.
    pub(super) config: String,
    pub(super) layers: Vec<Layer>,
}

pub(super) struct Layer {
    pub(super) name: String,
    /// From the OCI manifest; `docker save` gives none.
    pub(super) media_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub(super) fn docker_image(archive: &Archive, tag: Option<&str>) -> Result<Image, OciError> {
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
pub(super) fn tag_matches(name: &str, tag: &str) -> bool {
    let with_latest = if tag.contains(':') { tag.to_owned() } else { format!("{tag}:latest") };
    [tag, with_latest.as_str()].iter().any(|t| name == *t || name.ends_with(&format!("/{t}")))
}

#[derive(Deserialize)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
pub(super) struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// An image index or an image manifest (told apart by which fields they have).
#[derive(Deserialize)]
pub(super) struct IndexOrManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

pub(super) fn oci_image(archive: &Archive, tag: Option<&str>) -> Result<Image, OciError> {
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
pub(super) fn choose_manifest(
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
pub(super) fn blob_name(digest: &str) -> Result<String, OciError> {
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
pub(super) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[derive(Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ContainerConfig {
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

pub(super) fn read_config(archive: &Archive, name: &str) -> Result<ImageConfig, OciError> {
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
