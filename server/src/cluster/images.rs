//! Images by digest: `pe image push ID` uploads a built image to the JetStream object store
//! bucket [`IMAGES`] under its digest; a worker that lacks the image a job names fetches it,
//! hashing as it writes, and keeps it only if the sha256 is the digest the job named. A
//! mismatch (a tampered or corrupt object) is refused: the file is removed and the job's
//! result says why.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use async_nats::jetstream::{self, object_store};
use images::ImageStore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::executor_config::ExecutorArgs;

/// The bucket of images (kept until replaced: no age limit).
pub const IMAGES: &str = "pe-images";

/// Why an image could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not a sha256 digest")]
    BadDigest(String),
    #[error("the image {digest} is not in the object store (pe image push it)")]
    Missing {
        digest: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the image {digest} from the object store")]
    Read {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the image fetched for {expected} has the digest sha256:{got}: refused")]
    Mismatch { expected: String, got: String },
}

/// The object name of a digest: `sha256-<hex>`, the hex checked (it becomes a file name).
pub fn object_name(digest: &str) -> Result<(String, String), FetchError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| FetchError::BadDigest(digest.to_owned()))?;
    Ok((format!("sha256-{hex}"), hex.to_ascii_lowercase()))
}

/// The images bucket, made if missing.
pub async fn bucket(
    js: &jetstream::Context,
) -> Result<object_store::ObjectStore, async_nats::Error> {
    match js.get_object_store(IMAGES).await {
        Ok(bucket) => Ok(bucket),
        Err(_absent) => Ok(js
            .create_object_store(object_store::Config {
                bucket: IMAGES.into(),
                description: Some("Program Explorer: container images by digest".into()),
                ..Default::default()
            })
            .await?),
    }
}

/// Connects to NATS at `url` and opens the images bucket.
pub async fn open_bucket(url: &str) -> anyhow::Result<object_store::ObjectStore> {
    let client = super::connect(url, "pe image push").await?;
    let js = jetstream::new(client);
    bucket(&js).await.map_err(|e| anyhow::anyhow!(e)).context("cannot open the images bucket")
}

/// Uploads `data` as the image with `digest` (which it is not checked against: workers check).
pub async fn upload(
    bucket: &object_store::ObjectStore,
    digest: &str,
    data: &mut (impl tokio::io::AsyncRead + Unpin),
) -> anyhow::Result<u64> {
    let (name, _) = object_name(digest)?;
    let info = bucket
        .put(name.as_str(), data)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot upload {digest}"))?;
    Ok(info.size as u64)
}

/// `pe image push ID --nats URL`.
pub async fn push(exec: &ExecutorArgs, id: &str, nats: &str) -> anyhow::Result<ExitCode> {
    let image = exec.images().resolve(id)?;
    let bucket = open_bucket(nats).await?;
    let mut file = tokio::fs::File::open(&image.path)
        .await
        .with_context(|| format!("cannot open {}", image.path.display()))?;
    let size = upload(&bucket, &image.digest, &mut file).await?;
    println!("pushed {id} {} ({size} bytes) to {nats}", image.digest);
    Ok(ExitCode::SUCCESS)
}

/// Fetches the image `digest` into `images` (`<root>/sha256/<hex>`), verifying it. Returns
/// its path.
pub async fn fetch(
    bucket: &object_store::ObjectStore,
    images: &ImageStore,
    digest: &str,
) -> Result<PathBuf, FetchError> {
    let (name, hex) = object_name(digest)?;
    let mut object = bucket
        .get(name.as_str())
        .await
        .map_err(|e| FetchError::Missing { digest: digest.to_owned(), source: e.into() })?;
    let dir = images.root().join("sha256");
    let tmp_dir = images.root().join("tmp");
    for d in [&dir, &tmp_dir] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|source| FetchError::Io { path: d.clone(), source })?;
    }
    let tmp = tmp_dir.join(format!("fetch-{hex}-{}", super::random_id()));
    let io = |source| FetchError::Io { path: tmp.clone(), source };
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    let copied: Result<(), FetchError> = async {
        loop {
            let n = object
                .read(&mut buf)
                .await
                .map_err(|source| FetchError::Read { digest: digest.to_owned(), source })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)
    }
    .await;
    let got = hex::encode(hasher.finalize());
    if let Err(err) = copied {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err);
    }
    if got != hex {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(FetchError::Mismatch { expected: digest.to_owned(), got });
    }
    let path = dir.join(&hex);
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|source| FetchError::Io { path: path.clone(), source })?;
    Ok(path)
}

/// What a server in cluster mode needs of an image: its ref (digest, format, environment),
/// not its file, which only workers use (and fetch by digest when they lack it). An image
/// whose file is here resolves as usual.
pub fn resolve_ref(store: &ImageStore, id: &str) -> Result<images::ImageInfo, images::ImageError> {
    match store.resolve(id) {
        Err(images::ImageError::MissingFile { path, .. }) => {
            let ref_path = store.root().join("refs").join(format!("{id}.json"));
            let text = std::fs::read_to_string(&ref_path)
                .map_err(|source| images::ImageError::Io { path: ref_path, source })?;
            let r: images::Ref = serde_json::from_str(&text)
                .map_err(|source| images::ImageError::BadRef { id: id.into(), source })?;
            Ok(images::ImageInfo {
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
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_digests_name_objects() {
        let hex = "ab".repeat(32);
        assert_eq!(object_name(&format!("sha256:{hex}")).unwrap(), (format!("sha256-{hex}"), hex));
        for bad in
            ["sha256:../../etc", "md5:00", "sha256:abc", &format!("sha256:{}", "zz".repeat(32))]
        {
            assert!(matches!(object_name(bad), Err(FetchError::BadDigest(_))), "{bad}");
        }
    }
}
