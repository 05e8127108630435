//! Where attachments' bytes live: [`Blobs`], an object store (a directory under the
//! embedded server's data dir, or an S3-compatible bucket in a cluster), and the checks an
//! upload passes on its way in (size limit while streaming, SHA-256, the content type
//! against the bytes). The metadata (who, where, which message) is the [`crate::Store`]'s
//! `attachments` table; this module knows nothing of users or conversations.
//!
//! An upload either ends as one complete object or leaves nothing: small files (under
//! [`PART_BYTES`]) are held in memory and written with one put once they passed every
//! check; larger ones go up as a multipart upload that is aborted (its parts or staging
//! file removed) when a check fails.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use switchboard_protocol::IMAGE_TYPES;

/// Size of each part of a multipart upload, and the size up to which an upload is held in
/// memory and written at once (S3's smallest part is 5 MiB).
pub const PART_BYTES: usize = 5 * 1024 * 1024;

/// Types other than images that are served as themselves (always as a download); any
/// other type is stored as `application/octet-stream`.
const SAFE_TYPES: [&str; 2] = ["text/plain", "application/pdf"];

/// Why an upload was refused or failed. Nothing is left in the store in every case.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file was declared {declared} but its content is {found}")]
    TypeMismatch { declared: String, found: String },
    #[error("the file is empty")]
    Empty,
    /// The client's body broke off.
    #[error("the upload broke off: {0}")]
    Body(String),
    /// The object store failed.
    #[error("attachment store: {0}")]
    Store(String),
}

/// A failure of the object store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such object {0}")]
    NotFound(String),
    #[error("attachment store: {0}")]
    Store(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Self::NotFound(path),
            e => Self::Store(e.to_string()),
        }
    }
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The checked type (see [`checked_type`]).
    pub content_type: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// How to reach an S3-compatible bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible server; None for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The object store attachments live in. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Where it is, for logs (`file:///...`, `s3://bucket`).
    location: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("location", &self.location).finish()
    }
}

impl Blobs {
    /// Objects as files under `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Store(format!("creating {}: {e}", dir.display())))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self { store: Arc::new(store), location: format!("file://{}", dir.display()) })
    }

    /// Objects in an S3-compatible bucket. TLS (an `https://` endpoint) runs on rustls
    /// with ring, installed here as the process's provider if none is.
    pub fn s3(config: &S3Config) -> Result<Self, BlobError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(Self { store: Arc::new(builder.build()?), location: format!("s3://{}", config.bucket) })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Streams `body` into object `key`, checking as it goes: at most `limit` bytes
    /// (refused as soon as one more arrives), not empty, and the content type
    /// ([`checked_type`] of `declared` and the first bytes). Returns what was stored;
    /// on any error nothing is left under `key`.
    pub async fn upload<E: std::fmt::Display>(
        &self,
        key: &str,
        body: impl Stream<Item = Result<Bytes, E>>,
        declared: &str,
        limit: u64,
    ) -> Result<Received, UploadError> {
        let path = Path::from(key);
        let mut body = std::pin::pin!(body);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        let mut content_type: Option<String> = None;
        // Held until PART_BYTES arrived; then a multipart upload takes over.
        let mut held: Vec<Bytes> = Vec::new();
        let mut multipart: Option<WriteMultipart> = None;
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(UploadError::TooLarge { limit });
                }
                if head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                    if head.len() == SNIFF_BYTES {
                        content_type = Some(checked_type(declared, &head)?);
                    }
                }
                hasher.update(&chunk);
                match &mut multipart {
                    Some(writer) => {
                        writer.wait_for_capacity(2).await.map_err(store_error)?;
                        writer.put(chunk);
                    }
                    None => {
                        held.push(chunk);
                        if size >= PART_BYTES as u64 {
                            let upload =
                                self.store.put_multipart(&path).await.map_err(store_error)?;
                            let mut writer =
                                WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                            for part in held.drain(..) {
                                writer.put(part);
                            }
                            multipart = Some(writer);
                        }
                    }
                }
            }
            if size == 0 {
                return Err(UploadError::Empty);
            }
            match content_type.take() {
                Some(t) => Ok(t),
                None => checked_type(declared, &head),
            }
        }
        .await;
        let content_type = match outcome {
            Ok(t) => t,
            Err(e) => {
                if let Some(writer) = multipart
                    && let Err(abort) = writer.abort().await
                {
                    tracing::warn!(key, error = %abort, "aborting a refused upload failed");
                }
                return Err(e);
            }
        };
        match multipart {
            Some(writer) => {
                writer.finish().await.map_err(store_error)?;
            }
            None => {
                let payload: PutPayload = held.into_iter().collect();
                self.store.put(&path, payload).await.map_err(store_error)?;
            }
        }
        Ok(Received { content_type, size, sha256: hex(&hasher.finalize()) })
    }

    /// The object's bytes, as a stream.
    pub async fn open(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, BlobError>> + Send + 'static, BlobError> {
        let found = self.store.get(&Path::from(key)).await?;
        Ok(found.into_stream().map_err(BlobError::from))
    }

    /// Deletes the object; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key in the store (for tests and operators checking what is there).
    pub async fn keys(&self) -> Result<Vec<String>, BlobError> {
        let listed: Vec<_> = self.store.list(None).try_collect().await?;
        Ok(listed.into_iter().map(|meta| meta.location.to_string()).collect())
    }

    /// Keys of the objects last written at or before `before`, as the store lists them (for
    /// the retention job's orphan sweep).
    pub fn keys_older_than(
        &self,
        before: std::time::SystemTime,
    ) -> impl Stream<Item = Result<String, BlobError>> + Send + 'static {
        let before = unix_millis(before);
        self.store.list(None).filter_map(move |meta| {
            let kept = match meta {
                Ok(meta) if meta.last_modified.timestamp_millis() <= before => {
                    Some(Ok(meta.location.to_string()))
                }
                Ok(_) => None,
                Err(e) => Some(Err(BlobError::from(e))),
            };
            std::future::ready(kept)
        })
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The key a new upload into `conversation` is stored under: the conversation, then 32
/// random hex digits (`random_hex`, from the caller's generator).
pub fn upload_key(conversation: i64, random_hex: &str) -> String {
    format!("c{conversation}/{random_hex}")
}

/// Whether `key` has the shape of [`upload_key`]'s keys: the orphan sweep leaves any
/// other object in the store alone.
pub fn is_upload_key(key: &str) -> bool {
    let Some((conversation, random)) = key.split_once('/') else { return false };
    let Some(id) = conversation.strip_prefix('c') else { return false };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 32
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

fn store_error(e: object_store::Error) -> UploadError {
    UploadError::Store(e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes read to recognise an image.
const SNIFF_BYTES: usize = 12;

/// The image type the bytes are, from their magic numbers, if one of [`IMAGE_TYPES`].
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The type an upload is stored and served with, from the type it declared and its
/// first bytes: a declared image type must be what the bytes are (else `TypeMismatch`);
/// no type or `application/octet-stream` becomes the image type the bytes are, if any;
/// [`SAFE_TYPES`] stay as declared; anything else (HTML, SVG, scripts) is stored as
/// `application/octet-stream`, so a browser never runs it from our origin.
pub fn checked_type(declared: &str, head: &[u8]) -> Result<String, UploadError> {
    let declared = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let found = sniff(head);
    if IMAGE_TYPES.contains(&declared.as_str()) {
        return match found {
            Some(t) if t == declared => Ok(declared),
            other => Err(UploadError::TypeMismatch {
                found: other.unwrap_or("not one of the image types").to_owned(),
                declared,
            }),
        };
    }
    if declared.is_empty() || declared == "application/octet-stream" {
        return Ok(found.unwrap_or("application/octet-stream").to_owned());
    }
    if SAFE_TYPES.contains(&declared.as_str()) {
        return Ok(declared);
    }
    Ok("application/octet-stream".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn declared_images_must_be_what_they_say() {
        assert_eq!(checked_type("image/png", PNG).ok().as_deref(), Some("image/png"));
        assert_eq!(checked_type("IMAGE/PNG; x=1", PNG).ok().as_deref(), Some("image/png"));
        assert!(matches!(
            checked_type("image/jpeg", PNG),
            Err(UploadError::TypeMismatch { found, .. }) if found == "image/png"
        ));
        assert!(matches!(
            checked_type("image/png", b"<html><script>"),
            Err(UploadError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn the_orphan_sweep_knows_upload_keys_only() {
        let key = upload_key(42, "0123456789abcdef0123456789abcdef");
        assert_eq!(key, "c42/0123456789abcdef0123456789abcdef");
        assert!(is_upload_key(&key));
        for other in [
            "c42/0123456789abcdef",
            "backups/0123456789abcdef0123456789abcdef",
            "c/0123456789abcdef0123456789abcdef",
            "c42/0123456789abcdef0123456789abcdef#1",
            "c42/0123456789abcdef0123456789abcdeg",
            "c4x/0123456789abcdef0123456789abcdef",
            "c42/x/0123456789abcdef0123456789abcd",
        ] {
            assert!(!is_upload_key(other), "{other}");
        }
    }

    #[test]
    fn other_types_are_served_safely() {
        assert_eq!(checked_type("", PNG).ok().as_deref(), Some("image/png"));
        assert_eq!(checked_type("text/plain", b"hello").ok().as_deref(), Some("text/plain"));
        for risky in ["text/html", "image/svg+xml", "application/javascript"] {
            assert_eq!(
                checked_type(risky, b"<svg onload=1>").ok().as_deref(),
                Some("application/octet-stream")
            );
        }
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a"), Some("image/gif"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
    }
}
