//! The artifact store ("Cellar" in the product description): where uploaded function code and
//! the artifacts compiled from it live, in a local directory or in any S3-compatible bucket,
//! through the `object_store` crate. The API role writes blobs, the packager reads them and
//! writes artifacts, workers on other machines read artifacts: this store and the metadata
//! store are all these roles share.
//!
//! Keys, under the store's prefix:
//! - `blobs/<sha256>`: uploaded code, content-addressed by the SHA-256 of its bytes. Every
//!   upload is checked against its key while it streams, so a key never holds other bytes.
//! - `artifacts/<sha256>/<compat:016x>.fnvm`: the artifact compiled from that blob by a machine
//!   whose [`fnvm_abi::artifact::compat_hash`] is `compat`; machines that would not accept each
//!   other's code never share an artifact.
//!
//! Every write is all-or-nothing: a reader sees the whole object under its key or nothing.
//! Single writes are atomic in S3 and, locally, go to a staging file that is renamed into place;
//! a large blob is a multipart upload, which S3 publishes only when it is completed and the
//! local store writes to a staging file renamed on completion.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Once};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::AsyncReadExt;

/// Blobs larger than this are uploaded in parts of [`PART_SIZE`], so that an upload holds at
/// most a few parts in memory instead of the whole file; smaller ones in one request, which
/// costs fewer round trips.
pub const MULTIPART_THRESHOLD: u64 = 8 << 20;

/// The size of each part of a multipart upload but the last. S3 refuses parts under 5 MiB
/// (except the last one) and some S3-compatible stores want all parts the same size.
const PART_SIZE: usize = 8 << 20;

/// Parts of one multipart upload in flight at once: enough to overlap reading the file with
/// sending, while bounding the memory of an upload to about (this + 1) * [`PART_SIZE`].
const PARTS_IN_FLIGHT: usize = 2;

/// Why the artifact store could not be opened or an operation on it failed. Messages name keys
/// and locations, never credentials.
#[derive(Debug, Error)]
pub enum ArtifactStoreError {
    /// The store's URL is not a local path, `file:///…` or `s3://bucket[/prefix]`.
    #[error("artifact store URL {url:?}: {reason}")]
    BadUrl {
        /// The URL, without any user information it had.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The local store's directory could not be created.
    #[error("artifact store: creating the directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store could not be set up (a local directory that cannot be used, an S3 setting
    /// that is invalid or missing).
    #[error("artifact store: opening {location}: {source}")]
    Open {
        /// The store, as [`ArtifactStore::describe`] would name it.
        location: String,
        /// The error.
        source: object_store::Error,
    },
    /// An S3 endpoint is plain `http://` without `AWS_ALLOW_HTTP` (or
    /// [`S3Options::allow_http`]): refused when opening rather than on every request.
    #[error(
        "artifact store: the S3 endpoint {endpoint} is plain HTTP; set AWS_ALLOW_HTTP=true to \
         allow it (for a server on loopback)"
    )]
    PlainHttp {
        /// The endpoint.
        endpoint: String,
    },
    /// A blob's name is not a SHA-256 in 64 lowercase hexadecimal digits. It becomes part of a
    /// key (a path in the local store), so nothing else is accepted.
    #[error("artifact store: {value:?} is not a SHA-256 (64 lowercase hexadecimal digits)")]
    BadSha256 {
        /// The refused name, cut to 80 characters.
        value: String,
    },
    /// The file to upload as a blob could not be read.
    #[error("artifact store: reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file to upload as a blob does not hash to the blob's name (it changed after it was
    /// hashed, or the name is wrong); nothing was stored.
    #[error("artifact store: the file for {key} has SHA-256 {actual}; nothing was stored")]
    ContentMismatch {
        /// The key the blob was to be stored under.
        key: String,
        /// The SHA-256 of what was read.
        actual: String,
    },
    /// Storing an object failed; nothing was stored under the key.
    #[error("artifact store: storing {key}: {source}")]
    Put {
        /// The key.
        key: String,
        /// The error.
        source: object_store::Error,
    },
    /// Reading an object failed (other than by its absence).
    #[error("artifact store: reading {key}: {source}")]
    Get {
        /// The key.
        key: String,
        /// The error.
        source: object_store::Error,
    },
    /// Asking whether an object exists failed.
    #[error("artifact store: looking up {key}: {source}")]
    Head {
        /// The key.
        key: String,
        /// The error.
        source: object_store::Error,
    },
    /// Listing the objects under a prefix failed.
    #[error("artifact store: listing {prefix}: {source}")]
    List {
        /// The prefix.
        prefix: String,
        /// The error.
        source: object_store::Error,
    },
    /// Deleting an object failed.
    #[error("artifact store: deleting {key}: {source}")]
    Delete {
        /// The key (or the prefix whose objects were being deleted).
        key: String,
        /// The error.
        source: object_store::Error,
    },
}

/// How to reach an S3-compatible service, given explicitly rather than through the `AWS_*`
/// environment variables that [`ArtifactStore::open`] reads (tests, which run in parallel in one
/// process, cannot each set process-wide variables). Unset fields fall back to object_store's
/// defaults: region `us-east-1`, AWS's own endpoint, instance credentials.
#[derive(Clone, Default)]
pub struct S3Options {
    /// The service's URL, e.g. `http://127.0.0.1:59000`; AWS when unset.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Whether a plain `http://` endpoint is accepted (meant for a server on loopback).
    pub allow_http: bool,
}

/// Shows which settings are present, never the credentials themselves.
impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "******");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint.as_deref().map(redact_userinfo))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("session_token", &secret(&self.session_token))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The artifact store: blobs (uploaded code) and compiled artifacts, in a local directory or an
/// S3-compatible bucket. Cheap to clone: clones share one client (and its connection pool).
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Where this store's keys start in the bucket (empty for the local store, whose directory
    /// is the root).
    prefix: Path,
    /// What [`ArtifactStore::describe`] returns.
    description: Arc<str>,
}

/// Names the store by its location only: the client's own `Debug` would show its whole
/// configuration.
impl fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArtifactStore")
            .field(&self.description)
            .finish()
    }
}

/// Where a store's URL points.
enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: Path },
}

impl ArtifactStore {
    /// Opens the store at `url`: a local directory (a plain path or `file:///abs/dir`, created
    /// if missing) or `s3://bucket/optional/prefix`. For S3 the endpoint, region and
    /// credentials come from the usual AWS variables: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`),
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and
    /// `AWS_ALLOW_HTTP=true` for a plain-http endpoint on loopback (and the other `AWS_*`
    /// variables object_store knows, e.g. for container or web-identity credentials).
    pub fn open(url: &str) -> Result<ArtifactStore, ArtifactStoreError> {
        match parse_url(url)? {
            Location::Local(dir) => Self::local(&dir),
            Location::S3 { bucket, prefix } => {
                Self::s3_from_builder(AmazonS3Builder::from_env(), bucket, prefix)
            }
        }
    }

    /// Opens the store at `url` (`s3://bucket/optional/prefix`) with the settings in `options`,
    /// ignoring the `AWS_*` variables.
    pub fn s3_with(url: &str, options: &S3Options) -> Result<ArtifactStore, ArtifactStoreError> {
        let Location::S3 { bucket, prefix } = parse_url(url)? else {
            return Err(ArtifactStoreError::BadUrl {
                url: redact_userinfo(url),
                reason: "expected s3://bucket[/prefix]",
            });
        };
        let mut builder = AmazonS3Builder::new().with_allow_http(options.allow_http);
        let settings = [
            (AmazonS3ConfigKey::Endpoint, &options.endpoint),
            (AmazonS3ConfigKey::Region, &options.region),
            (AmazonS3ConfigKey::AccessKeyId, &options.access_key_id),
            (
                AmazonS3ConfigKey::SecretAccessKey,
                &options.secret_access_key,
            ),
            (AmazonS3ConfigKey::Token, &options.session_token),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                builder = builder.with_config(key, value);
            }
        }
        Self::s3_from_builder(builder, bucket, prefix)
    }

    /// Opens the store in the local directory `dir`, created if missing. Writes are fsynced
    /// (file and directory) before they return: once the metadata store records a blob, a
    /// crash must not leave it empty.
    pub fn local(dir: &FsPath) -> Result<ArtifactStore, ArtifactStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| ArtifactStoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        // Named by its canonical path, the one LocalFileSystem roots itself at.
        let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let description = format!("local:{}", shown.display());
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|source| ArtifactStoreError::Open {
                location: description.clone(),
                source,
            })?
            // Deleting a blob's last artifact removes its directory, so that directories do
            // not pile up for blobs long gone.
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(ArtifactStore {
            store: Arc::new(store),
            prefix: Path::ROOT,
            description: description.into(),
        })
    }

    /// Finishes an S3 store: the bucket, the plain-http check, the TLS provider.
    fn s3_from_builder(
        builder: AmazonS3Builder,
        bucket: String,
        prefix: Path,
    ) -> Result<ArtifactStore, ArtifactStoreError> {
        let builder = builder.with_bucket_name(&bucket);
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .map(|e| redact_userinfo(&e));
        if let Some(endpoint) = &endpoint {
            let allow_http = builder
                .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                .is_some_and(|v| is_truthy(&v));
            if endpoint.to_ascii_lowercase().starts_with("http://") && !allow_http {
                return Err(ArtifactStoreError::PlainHttp {
                    endpoint: endpoint.clone(),
                });
            }
        }
        let mut description = format!("s3://{bucket}");
        if !prefix.is_root() {
            description = format!("{description}/{prefix}");
        }
        if let Some(endpoint) = &endpoint {
            description = format!("{description} at {endpoint}");
        }
        install_tls_provider();
        let store = builder.build().map_err(|source| ArtifactStoreError::Open {
            location: description.clone(),
            source,
        })?;
        Ok(ArtifactStore {
            store: Arc::new(store),
            prefix,
            description: description.into(),
        })
    }

    /// The store's location for logs: `local:/path` or `s3://bucket/prefix` (with ` at
    /// ENDPOINT` for a service other than AWS). Never a credential.
    pub fn describe(&self) -> String {
        self.description.to_string()
    }

    /// Stores the blob named `sha256` from `file`, a local file the caller has hashed. The file
    /// is streamed (in parts above [`MULTIPART_THRESHOLD`], so a large upload is never held in
    /// memory whole) and hashed again on the way: if it does not hash to `sha256`, nothing is
    /// stored and [`ArtifactStoreError::ContentMismatch`] is returned. All-or-nothing: a reader
    /// never sees part of a blob. Idempotent: a blob already there (same size) is not sent
    /// again.
    pub async fn put_blob(&self, sha256: &str, file: &FsPath) -> Result<(), ArtifactStoreError> {
        let key = self.blob_key(sha256)?;
        let read_error = |source| ArtifactStoreError::ReadFile {
            path: file.to_path_buf(),
            source,
        };
        let mut input = tokio::fs::File::open(file).await.map_err(read_error)?;
        let size = input.metadata().await.map_err(read_error)?.len();
        // Same key, same bytes: what is there was checked against its name when it was stored.
        // The size comparison only guards against an object some other writer left.
        match self.store.head(&key).await {
            Ok(meta) if meta.size == size => return Ok(()),
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(ArtifactStoreError::Head {
                    key: key.to_string(),
                    source,
                })
            }
        }
        if size <= MULTIPART_THRESHOLD {
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            input.read_to_end(&mut data).await.map_err(read_error)?;
            check_content(&key, sha256, Sha256::digest(&data).into())?;
            self.store
                .put(&key, PutPayload::from(data))
                .await
                .map_err(|source| ArtifactStoreError::Put {
                    key: key.to_string(),
                    source,
                })?;
            return Ok(());
        }
        let upload =
            self.store
                .put_multipart(&key)
                .await
                .map_err(|source| ArtifactStoreError::Put {
                    key: key.to_string(),
                    source,
                })?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        match send_parts(&mut upload, &mut input, file, &key, sha256).await {
            Ok(()) => upload
                .finish()
                .await
                .map(drop)
                .map_err(|source| ArtifactStoreError::Put {
                    key: key.to_string(),
                    source,
                }),
            Err(e) => {
                // Best effort: an upload that is never completed is never visible; aborting
                // frees its parts (S3 keeps them, billed, until aborted or a lifecycle rule
                // removes them) or the local staging file.
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    /// The blob named `sha256`, or `None` if there is none.
    pub async fn get_blob(&self, sha256: &str) -> Result<Option<Bytes>, ArtifactStoreError> {
        let key = self.blob_key(sha256)?;
        self.get(&key).await
    }

    /// Whether the blob named `sha256` is stored.
    pub async fn has_blob(&self, sha256: &str) -> Result<bool, ArtifactStoreError> {
        let key = self.blob_key(sha256)?;
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(ArtifactStoreError::Head {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Deletes the blob named `sha256` and every artifact compiled from it. A blob or artifact
    /// already gone is not an error. The artifacts go first, so that a blob found absent has
    /// no artifacts left behind by a delete that failed half-way (calling this again finishes
    /// it).
    pub async fn delete_blob(&self, sha256: &str) -> Result<(), ArtifactStoreError> {
        let key = self.blob_key(sha256)?;
        let artifacts = self.artifacts_prefix(sha256)?;
        let listed = self
            .store
            .list(Some(&artifacts))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(listed);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(ArtifactStoreError::Delete {
                        key: artifacts.to_string(),
                        source,
                    })
                }
            }
        }
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(ArtifactStoreError::Delete {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Stores the artifact compiled from the blob `sha256` by a machine whose
    /// [`fnvm_abi::artifact::compat_hash`] is `compat`, replacing any there (an artifact is a
    /// function of the blob and `compat`, so any two are interchangeable). All-or-nothing, like
    /// blobs; a large one goes in parts too, so that no single request has to carry it whole
    /// within the client's request timeout.
    pub async fn put_artifact(
        &self,
        sha256: &str,
        compat: u64,
        artifact: Bytes,
    ) -> Result<(), ArtifactStoreError> {
        let key = self.artifact_key(sha256, compat)?;
        let put_error = |source| ArtifactStoreError::Put {
            key: key.to_string(),
            source,
        };
        if artifact.len() as u64 <= MULTIPART_THRESHOLD {
            return self
                .store
                .put(&key, PutPayload::from(artifact))
                .await
                .map(drop)
                .map_err(put_error);
        }
        let upload = self.store.put_multipart(&key).await.map_err(put_error)?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut rest = artifact;
        while !rest.is_empty() {
            if let Err(source) = upload.wait_for_capacity(PARTS_IN_FLIGHT).await {
                // Best effort, as in put_blob.
                let _ = upload.abort().await;
                return Err(put_error(source));
            }
            // Parts are slices of the artifact, not copies.
            let part = rest.split_to(rest.len().min(PART_SIZE));
            upload.put(part);
        }
        upload.finish().await.map(drop).map_err(put_error)
    }

    /// The artifact compiled from the blob `sha256` for machines whose compat hash is
    /// `compat`, or `None` if there is none.
    pub async fn get_artifact(
        &self,
        sha256: &str,
        compat: u64,
    ) -> Result<Option<Bytes>, ArtifactStoreError> {
        let key = self.artifact_key(sha256, compat)?;
        self.get(&key).await
    }

    /// The whole object at `key`, or `None` if absent.
    async fn get(&self, key: &Path) -> Result<Option<Bytes>, ArtifactStoreError> {
        let get_error = |source| ArtifactStoreError::Get {
            key: key.to_string(),
            source,
        };
        match self.store.get(key).await {
            Ok(result) => result.bytes().await.map(Some).map_err(get_error),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(get_error(source)),
        }
    }

    fn blob_key(&self, sha256: &str) -> Result<Path, ArtifactStoreError> {
        check_sha256(sha256)?;
        Ok(self.prefix.clone().join("blobs").join(sha256))
    }

    fn artifacts_prefix(&self, sha256: &str) -> Result<Path, ArtifactStoreError> {
        check_sha256(sha256)?;
        Ok(self.prefix.clone().join("artifacts").join(sha256))
    }

    fn artifact_key(&self, sha256: &str, compat: u64) -> Result<Path, ArtifactStoreError> {
        Ok(self
            .artifacts_prefix(sha256)?
            .join(format!("{compat:016x}.fnvm").as_str()))
    }
}

/// Reads `input` in parts of [`PART_SIZE`] into `upload`, at most [`PARTS_IN_FLIGHT`] parts
/// being sent at once, and checks that what was read hashes to `sha256`.
async fn send_parts(
    upload: &mut WriteMultipart,
    input: &mut tokio::fs::File,
    path: &FsPath,
    key: &Path,
    sha256: &str,
) -> Result<(), ArtifactStoreError> {
    let mut hasher = Sha256::new();
    loop {
        let part = read_part(input, path).await?;
        if part.is_empty() {
            break;
        }
        hasher.update(&part);
        upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|source| ArtifactStoreError::Put {
                key: key.to_string(),
                source,
            })?;
        // A whole PART_SIZE chunk becomes one part at once, without copying.
        let last = part.len() < PART_SIZE;
        upload.put(part);
        if last {
            break;
        }
    }
    check_content(key, sha256, hasher.finalize().into())
}

/// Reads up to [`PART_SIZE`] bytes: fewer only at the end of the file.
async fn read_part(
    input: &mut tokio::fs::File,
    path: &FsPath,
) -> Result<Bytes, ArtifactStoreError> {
    let mut buf = vec![0; PART_SIZE];
    let mut filled = 0;
    while filled < buf.len() {
        let n = input.read(&mut buf[filled..]).await.map_err(|source| {
            ArtifactStoreError::ReadFile {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

/// Fails with [`ArtifactStoreError::ContentMismatch`] unless `digest` is the SHA-256 named
/// `sha256` (already checked to be 64 lowercase hex digits).
fn check_content(key: &Path, sha256: &str, digest: [u8; 32]) -> Result<(), ArtifactStoreError> {
    let actual = hex(&digest);
    if actual == sha256 {
        Ok(())
    } else {
        Err(ArtifactStoreError::ContentMismatch {
            key: key.to_string(),
            actual,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// A blob's name must be 64 lowercase hex digits: it becomes a path segment (a file name in the
/// local store), and one spelling per hash keeps content addressing exact.
fn check_sha256(value: &str) -> Result<(), ArtifactStoreError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ArtifactStoreError::BadSha256 {
            value: value.chars().take(80).collect(),
        })
    }
}

/// Parses a store URL: `s3://bucket[/prefix]`, `file:///abs/dir`, or a plain path.
fn parse_url(url: &str) -> Result<Location, ArtifactStoreError> {
    let bad = |reason| ArtifactStoreError::BadUrl {
        url: redact_userinfo(url),
        reason,
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket (expected s3://bucket[/prefix])"));
        }
        // The characters S3 allows in bucket names (and not '@', so no credentials).
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(bad(
                "a bucket name has only letters, digits, '.', '-' and '_'",
            ));
        }
        if prefix.contains(['?', '#']) {
            return Err(bad("no query or fragment in an s3:// URL"));
        }
        let prefix = Path::parse(prefix).map_err(|_| {
            bad("the prefix has an empty segment, '.', '..' or a control character")
        })?;
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix,
        })
    } else if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad("expected file:///absolute/path"));
        }
        Ok(Location::Local(PathBuf::from(rest)))
    } else if url.contains("://") {
        Err(bad("unsupported scheme (a path, file:/// or s3://)"))
    } else if url.is_empty() {
        Err(bad("empty"))
    } else {
        Ok(Location::Local(PathBuf::from(url)))
    }
}

/// `url` without the `user:password@` part of its authority, if any.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The values object_store reads as true in its settings.
fn is_truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "1" | "true" | "on" | "yes" | "y"
    )
}

/// Makes ring rustls's process-wide crypto provider, unless one is installed already. The S3
/// client's TLS (reqwest with rustls) is built without a provider of its own so that the build
/// does not pull in aws-lc-rs (a large C library; ring, smaller, is the one object_store signs
/// requests with here), and rustls then uses the process default.
fn install_tls_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider was installed first: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s3 = |url| match parse_url(url) {
            Ok(Location::S3 { bucket, prefix }) => Some((bucket, prefix.to_string())),
            _ => None,
        };
        assert_eq!(s3("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(s3("s3://b/"), Some(("b".into(), "".into())));
        assert_eq!(s3("s3://b/x/y/"), Some(("b".into(), "x/y".into())));
        for bad in [
            "s3://",
            "s3:///x",
            "s3://b/x//y",
            "s3://b/../y",
            "s3://b/x?y",
            "s3://key:secret@b/x",
            "ftp://h/x",
            "file://relative",
            "",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ArtifactStoreError::BadUrl { .. })),
                "{bad}"
            );
        }
        let local = |url| match parse_url(url) {
            Ok(Location::Local(p)) => Some(p),
            _ => None,
        };
        assert_eq!(local("file:///a/b"), Some(PathBuf::from("/a/b")));
        assert_eq!(local("rel/dir"), Some(PathBuf::from("rel/dir")));
    }

    #[test]
    fn errors_never_show_userinfo() {
        let err = parse_url("https://key:secret@host/x")
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(redact_userinfo("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(redact_userinfo("http://u:p@h:1/a"), "http://***@h:1/a");
    }

    #[test]
    fn sha256_names() {
        let ok = "0123456789abcdef".repeat(4);
        assert!(check_sha256(&ok).is_ok());
        for bad in [
            ok.to_uppercase(),
            ok[1..].to_string(),
            format!("{ok}0"),
            format!("../{}", &ok[3..]),
            String::new(),
        ] {
            assert!(check_sha256(&bad).is_err(), "{bad}");
        }
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
