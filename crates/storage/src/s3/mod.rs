//! The S3 backend: blobs as objects in an S3-compatible bucket (AWS S3, MinIO,
//! Ceph RGW, Garage), shared by any number of wharf nodes.
//!
//! Layout under the configured prefix:
//! - `blobs/<algorithm>/<first two hex>/<hex>`: stored blobs, one object per
//!   digest however many repositories use it.
//! - `uploads/<uuid>/state.json`: an upload session's state.
//! - `uploads/<uuid>/data`: the key the session's multipart upload assembles.
//! - `uploads/<uuid>/tail-<uuid>`: bytes after the session's last part.
//!
//! A session's state records its scope, algorithm, offset and hasher state
//! (as in the filesystem backend), the id of its multipart upload, the parts
//! sent so far (etag and size; the part number is the position), and the name
//! of its tail object. S3 parts must be at least 5 MiB except the last, so an
//! append cuts what streams in into parts ([`parts`] has the sizes) and keeps
//! a remainder too small for a part as a tail object, which the next append
//! reads back in front of its own bytes. The state is rewritten only after
//! everything it names has been stored: an append that fails leaves it as it
//! was, and the parts that append sent are overwritten by the next one, which
//! numbers its parts from the state. Everything lives in the bucket, so a
//! session started on one node continues and finishes on any other.
//!
//! Why finishing copies: the digest of a chunked upload is known only at its
//! end, and an object cannot be renamed. The parts therefore assemble under
//! the session's own `data` key, and finishing copies that object to its
//! content-addressed key (server-side; beyond CopyObject's 5 GiB limit, as a
//! multipart upload streamed through this process) and deletes the session's
//! objects. The per-session key also keeps sessions apart on servers, such as
//! Garage, where completing a write to a key aborts every other unfinished
//! multipart upload to that key. A blob that arrives whole with its digest
//! (`put`, or a session's only chunk sent with the digest) goes straight to
//! its final key: one PUT when small, else a multipart upload completed only
//! once the digest has checked, and aborted otherwise.
//!
//! Nothing relies on conditional writes (Garage ignores them): keys are
//! content-addressed, so two writers of one blob write the same bytes.
//! Requests cut off mid-upload and abandoned sessions leave incomplete
//! multipart uploads behind; a bucket lifecycle rule that aborts those after
//! a day reclaims them.

mod client;
mod config;
mod parts;
mod state;
#[cfg(test)]
pub(crate) mod tests;
mod upload;
mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use oci::{Digest, DigestAlgorithm};

use self::client::{io_error, is_not_found, storage_error};
use self::parts::{MIB, PartBuffer};
use self::state::{SessionState, TailRecord};
use crate::error::StorageError;
use crate::range::RangeRequest;
use crate::stream::{BlobRead, ByteStream};
use crate::upload::{BusyGuard, BusySessions, UploadId, UploadScope, UploadStatus};
use crate::{BlobStore, ListedBlob};

pub use self::config::{S3Config, S3RedirectConfig};

/// S3's limit for a single CopyObject.
const COPY_LIMIT: u64 = 5 * 1024 * MIB;

/// Longest validity S3 accepts for a presigned URL: seven days.
const MAX_REDIRECT_EXPIRY_SECS: u64 = 7 * 24 * 3600;

pub struct S3BlobStore {
    /// For small requests: a stalled store fails them within seconds.
    client: Arc<AmazonS3>,
    /// For sending parts and blobs and copying them: the same store, with
    /// the time a large transfer needs.
    bulk: Arc<AmazonS3>,
    bucket: String,
    /// The configured prefix; every key of this store is under it.
    root: Path,
    /// Configured part size in bytes (see [`parts`]).
    part_size: u64,
    /// How long presigned URLs live, when downloads are redirected.
    redirect_expiry: Option<Duration>,
    /// Objects up to this size are copied server-side in one request.
    copy_limit: u64,
    /// Upload sessions a request of this process is working on right now. A
    /// second request on the same session is refused rather than interleaved.
    /// Nodes do not see each other's: a client sends one session's chunks one
    /// after the other, and S3 refuses to complete parts whose etags changed.
    busy: BusySessions,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.root.as_ref())
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Checks the configuration and prepares the client. Makes no request:
    /// [`BlobStore::ping`] tells whether the store answers.
    pub fn open(config: &S3Config) -> Result<Self, StorageError> {
        let invalid = |message: String| {
            StorageError::backend(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("S3 configuration: {message}"),
            ))
        };
        if !(5..=5 * 1024).contains(&config.part_size_mib) {
            return Err(invalid(format!(
                "`part_size_mib` must be between 5 and 5120, not {}",
                config.part_size_mib
            )));
        }
        let redirect_expiry = if config.redirect.enabled {
            let secs = config.redirect.expiry_secs;
            if !(1..=MAX_REDIRECT_EXPIRY_SECS).contains(&secs) {
                return Err(invalid(format!(
                    "`redirect.expiry_secs` must be between 1 and {MAX_REDIRECT_EXPIRY_SECS}, not {secs}"
                )));
            }
            Some(Duration::from_secs(secs))
        } else {
            None
        };
        let prefix = config.prefix.as_deref().unwrap_or("").trim_matches('/');
        let root = Path::parse(prefix).map_err(|e| {
            invalid(format!(
                "`prefix` {prefix:?} is not a valid key prefix: {e}"
            ))
        })?;
        Ok(S3BlobStore {
            client: Arc::new(client::build(config, client::REQUEST_READ_TIMEOUT)?),
            bulk: Arc::new(client::build(config, client::TRANSFER_READ_TIMEOUT)?),
            bucket: config.bucket.clone(),
            root,
            part_size: config.part_size_mib * MIB,
            redirect_expiry,
            copy_limit: COPY_LIMIT,
            busy: BusySessions::default(),
        })
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        // A Digest is `<sha256|sha512>:<lowercase hex>`: every part is a plain key segment.
        let encoded = digest.encoded();
        self.root
            .clone()
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&encoded[..2])
            .join(encoded)
    }

    fn session_dir(&self, id: UploadId) -> Path {
        self.root.clone().join("uploads").join(id.to_string())
    }

    fn state_key(&self, id: UploadId) -> Path {
        self.session_dir(id).join("state.json")
    }

    fn data_key(&self, id: UploadId) -> Path {
        self.session_dir(id).join("data")
    }

    fn tail_key(&self, id: UploadId, tail: &TailRecord) -> Path {
        self.session_dir(id).join(tail.name.as_str())
    }

    fn claim(&self, id: UploadId) -> Result<BusyGuard, StorageError> {
        self.busy.claim(id)
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match self.client.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead, StorageError> {
        let key = self.blob_key(digest);
        let not_found = |e: object_store::Error| {
            if is_not_found(&e) {
                StorageError::BlobNotFound(digest.clone())
            } else {
                storage_error(e)
            }
        };
        // A range is resolved against the size first, so that it means
        // exactly what it means for every other backend.
        let (options, range) = match range {
            None => (GetOptions::default(), None),
            Some(requested) => {
                let size = self.client.head(&key).await.map_err(not_found)?.size;
                let resolved = requested
                    .resolve(size)
                    .ok_or(StorageError::RangeNotSatisfiable { size })?;
                let options = GetOptions {
                    range: Some(GetRange::Bounded(resolved.start..resolved.end + 1)),
                    ..GetOptions::default()
                };
                (options, Some(resolved))
            }
        };
        let got = self
            .client
            .get_opts(&key, options)
            .await
            .map_err(not_found)?;
        let size = got.meta.size;
        let body: ByteStream = Box::pin(got.into_stream().map_err(io_error));
        Ok(BlobRead { size, range, body })
    }

    async fn put(
        &self,
        expected: &Digest,
        body: ByteStream,
        max_size: u64,
    ) -> Result<u64, StorageError> {
        self.put_verified(expected, body, max_size).await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match self.client.delete(&self.blob_key(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn start_upload(
        &self,
        scope: &UploadScope,
        algorithm: DigestAlgorithm,
    ) -> Result<UploadStatus, StorageError> {
        let id = UploadId::random();
        let state = SessionState::new(&scope.0, algorithm);
        self.save_state(id, &state).await?;
        state.status(id)
    }

    async fn upload_status(
        &self,
        id: UploadId,
        scope: &UploadScope,
    ) -> Result<UploadStatus, StorageError> {
        self.load_state(id, scope).await?.status(id)
    }

    async fn append_upload(
        &self,
        id: UploadId,
        scope: &UploadScope,
        at: Option<u64>,
        body: ByteStream,
        max_size: u64,
    ) -> Result<UploadStatus, StorageError> {
        let _guard = self.claim(id)?;
        let state = self.load_state(id, scope).await?;
        let (next, _) = self
            .append_locked(id, &state, at, body, max_size, false)
            .await?;
        if next.offset == state.offset {
            return next.status(id);
        }
        if let Err(e) = self.save_state(id, &next).await {
            if let Some(tail) = &next.tail {
                let _ = self.client.delete(&self.tail_key(id, tail)).await;
            }
            return Err(e);
        }
        if let Some(old) = &state.tail
            && next.tail.as_ref() != Some(old)
        {
            let _ = self.client.delete(&self.tail_key(id, old)).await;
        }
        next.status(id)
    }

    async fn finish_upload(
        &self,
        id: UploadId,
        scope: &UploadScope,
        expected: &Digest,
        final_chunk: Option<(Option<u64>, ByteStream)>,
        max_size: u64,
    ) -> Result<u64, StorageError> {
        let _guard = self.claim(id)?;
        let state = self.load_state(id, scope).await?;
        let (mut state, rest) = match final_chunk {
            None => (state, PartBuffer::default()),
            Some((at, body))
                if state.offset == 0
                    && state.multipart.is_none()
                    && state.algorithm()? == expected.algorithm() =>
            {
                // The whole blob in one request, with its digest: straight to
                // its key. Only a digest that does not match ends the session.
                if let Some(at) = at
                    && at != 0
                {
                    return Err(StorageError::UploadOffsetMismatch {
                        offset: 0,
                        given: at,
                    });
                }
                let outcome = self.put_verified(expected, body, max_size).await;
                if matches!(outcome, Ok(_) | Err(StorageError::DigestMismatch { .. }))
                    && let Err(e) = self.remove_session(id, &state).await
                {
                    tracing::warn!(upload = %id, error = %e, "could not remove a finished upload session");
                }
                return outcome;
            }
            Some((at, body)) => {
                self.append_locked(id, &state, at, body, max_size, true)
                    .await?
            }
        };
        let outcome = self.finish_locked(id, &mut state, rest, expected).await;
        if let Err(e) = self.remove_session(id, &state).await {
            tracing::warn!(upload = %id, error = %e, "could not remove a finished upload session");
        }
        outcome
    }

    async fn cancel_upload(&self, id: UploadId, scope: &UploadScope) -> Result<(), StorageError> {
        let _guard = self.claim(id)?;
        let state = self.load_state(id, scope).await?;
        self.remove_session(id, &state).await
    }

    async fn delete_many(&self, digests: &[Digest]) -> Vec<Digest> {
        use futures_util::StreamExt;
        // DeleteObjects requests of up to 1,000 keys each.
        let keys: Vec<Result<Path, object_store::Error>> =
            digests.iter().map(|d| Ok(self.blob_key(d))).collect();
        let by_key: std::collections::HashMap<Path, &Digest> =
            digests.iter().map(|d| (self.blob_key(d), d)).collect();
        let mut outcomes = self
            .client
            .delete_stream(futures_util::stream::iter(keys).boxed());
        let mut gone = Vec::with_capacity(digests.len());
        let mut failed = 0usize;
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(key) => {
                    if let Some(d) = by_key.get(&key) {
                        gone.push((*d).clone());
                    }
                }
                Err(e) if is_not_found(&e) => {
                    if let object_store::Error::NotFound { path, .. } = &e
                        && let Some(d) = by_key.get(&Path::from(path.as_str()))
                    {
                        gone.push((*d).clone());
                    }
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "could not remove a blob");
                }
            }
        }
        if failed > 0 {
            tracing::warn!(
                failed,
                "some blobs were not removed; the next collection tries again"
            );
        }
        gone
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, StorageError> {
        let blobs = self.root.clone().join("blobs");
        // Keys are `blobs/<algorithm>/<two hex digits>/<hex>`, so S3's key
        // order is digest order and `start-after` pages through it.
        let listing = match after {
            Some(after) => self
                .client
                .list_with_offset(Some(&blobs), &self.blob_key(after)),
            None => self.client.list(Some(&blobs)),
        };
        let mut listing = listing;
        let mut listed = Vec::new();
        while listed.len() < limit
            && let Some(meta) = listing.try_next().await.map_err(storage_error)?
        {
            let parts: Vec<String> = meta
                .location
                .prefix_match(&blobs)
                .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect())
                .unwrap_or_default();
            let [algorithm, _, hex] = parts.as_slice() else {
                continue;
            };
            let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                continue;
            };
            listed.push(ListedBlob {
                digest,
                size: meta.size,
                modified_ms: meta.last_modified.timestamp_millis(),
            });
        }
        Ok(listed)
    }

    async fn purge_uploads(&self, before_ms: i64) -> Result<u64, StorageError> {
        let uploads = self.root.clone().join("uploads");
        let listed: Vec<object_store::ObjectMeta> = self
            .client
            .list(Some(&uploads))
            .try_collect()
            .await
            .map_err(storage_error)?;
        // A session is alive while any of its objects is recent (the state
        // is rewritten by every append).
        let mut newest: std::collections::HashMap<UploadId, i64> = std::collections::HashMap::new();
        for meta in &listed {
            let Some(id) = meta
                .location
                .prefix_match(&uploads)
                .and_then(|mut parts| parts.next())
                .and_then(|part| UploadId::parse(part.as_ref()))
            else {
                continue;
            };
            let at = meta.last_modified.timestamp_millis();
            let entry = newest.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
        let mut purged = 0;
        for (id, at) in newest {
            if at >= before_ms {
                continue;
            }
            let Ok(_guard) = self.claim(id) else { continue };
            match self.load_any_state(id).await? {
                Some(state) => self.remove_session(id, &state).await?,
                None => self.remove_leftovers(id).await?,
            }
            purged += 1;
        }
        Ok(purged)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let prefix = (!self.root.as_ref().is_empty()).then(|| format!("{}/", self.root));
        let options = PaginatedListOptions {
            max_keys: Some(1),
            ..PaginatedListOptions::default()
        };
        self.client
            .list_paginated(prefix.as_deref(), options)
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StorageError> {
        let Some(expiry) = self.redirect_expiry else {
            return Ok(None);
        };
        let url = self
            .client
            .signed_url(Method::GET, &self.blob_key(digest), expiry)
            .await
            .map_err(storage_error)?;
        Ok(Some(url.to_string()))
    }
}
