//! Streaming writes: bodies cut into the parts of multipart uploads while
//! they are hashed, whole blobs verified on their way to their final key,
//! and copies too large for one CopyObject.

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, ObjectStoreExt};
use oci::{Digest, DigestAlgorithm, DigestHasher};

use super::S3BlobStore;
use super::client::{io_error, is_not_found, storage_error};
use super::parts::{MAX_PARTS, PartBuffer, full_part_size};
use super::state::{PartRecord, SessionState};
use crate::error::StorageError;
use crate::stream::ByteStream;
use crate::upload::UploadId;

/// Bytes hashed between two yields to the async scheduler (as in `fs`).
const HASH_SLICE: usize = 64 * 1024;

impl S3BlobStore {
    /// Starts `upload`'s multipart upload unless it has one. A session
    /// records the new upload id in its state before any part is sent.
    pub(super) async fn ensure_multipart(
        &self,
        upload: &mut Multipart,
    ) -> Result<MultipartId, StorageError> {
        if let Some(id) = &upload.id {
            return Ok(id.clone());
        }
        let id = self
            .client
            .create_multipart(&upload.key)
            .await
            .map_err(storage_error)?;
        if let Some((session, state)) = &upload.record_in {
            let mut state = state.clone();
            state.multipart = Some(id.clone());
            if let Err(e) = self.save_state(*session, &state).await {
                self.abort(&upload.key, &id).await;
                return Err(e);
            }
        }
        upload.id = Some(id.clone());
        Ok(id)
    }

    /// Sends one part; the future owns what it needs, so it can run while
    /// the next part streams in.
    pub(super) fn send_part(
        &self,
        key: Path,
        upload_id: MultipartId,
        index: usize,
        payload: object_store::PutPayload,
    ) -> BoxFuture<'static, Result<PartRecord, StorageError>> {
        let client = self.bulk.clone();
        Box::pin(async move {
            let size = payload.content_length() as u64;
            let part = client
                .put_part(&key, &upload_id, index, payload)
                .await
                .map_err(storage_error)?;
            Ok(PartRecord {
                etag: part.content_id,
                size,
            })
        })
    }

    /// Streams `intake` into full parts of `upload`, numbered from `first`
    /// (0-based), sending each part while the next one streams in. Returns
    /// the parts sent; the bytes after them stay in `buffer`.
    pub(super) async fn stream_parts(
        &self,
        intake: &mut Intake,
        buffer: &mut PartBuffer,
        upload: &mut Multipart,
        first: usize,
    ) -> Result<Vec<PartRecord>, StorageError> {
        let mut sent = Vec::new();
        let mut sending: Option<BoxFuture<'static, Result<PartRecord, StorageError>>> = None;
        loop {
            let index = first + sent.len() + usize::from(sending.is_some());
            let target = full_part_size(self.part_size, index);
            let fill = intake.fill(buffer, target);
            let ended = match sending.take() {
                Some(send) => {
                    let (part, ended) = futures_util::future::try_join(send, fill).await?;
                    sent.push(part);
                    ended
                }
                None => fill.await?,
            };
            if ended {
                return Ok(sent);
            }
            if index + 1 >= MAX_PARTS {
                return Err(StorageError::backend(std::io::Error::other(
                    "blob needs more than the 10,000 parts of one multipart upload",
                )));
            }
            let upload_id = self.ensure_multipart(upload).await?;
            sending =
                Some(self.send_part(upload.key.clone(), upload_id, index, buffer.take(target)));
        }
    }

    /// Sends `rest` as the last part (if any bytes) and completes `upload`.
    pub(super) async fn complete(
        &self,
        upload: &mut Multipart,
        mut parts: Vec<PartRecord>,
        rest: PartBuffer,
    ) -> Result<(), StorageError> {
        let upload_id = self.ensure_multipart(upload).await?;
        if !rest.is_empty() {
            let index = parts.len();
            let part = self
                .send_part(
                    upload.key.clone(),
                    upload_id.clone(),
                    index,
                    rest.into_payload(),
                )
                .await?;
            parts.push(part);
        }
        let parts = parts
            .into_iter()
            .map(|p| PartId { content_id: p.etag })
            .collect();
        self.bulk
            .complete_multipart(&upload.key, &upload_id, parts)
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// Aborts a multipart upload, best effort: an abandoned upload costs
    /// storage but is never visible.
    pub(super) async fn abort(&self, key: &Path, upload_id: &MultipartId) {
        if let Err(e) = self.client.abort_multipart(key, upload_id).await
            && !is_not_found(&e)
        {
            tracing::warn!(key = %key, error = %e, "could not abort a multipart upload");
        }
    }

    /// Streams a whole blob to its final key, verifying it on the way; stores
    /// nothing unless it checks.
    pub(super) async fn put_verified(
        &self,
        expected: &Digest,
        body: ByteStream,
        max_size: u64,
    ) -> Result<u64, StorageError> {
        let mut intake = Intake::new(
            body,
            Some(DigestHasher::new(expected.algorithm())),
            0,
            max_size,
        );
        let mut upload = Multipart::new(self.blob_key(expected));
        let outcome = self.put_streamed(&mut intake, &mut upload, expected).await;
        if outcome.is_err()
            && let Some(upload_id) = &upload.id
        {
            self.abort(&upload.key, upload_id).await;
        }
        outcome
    }

    async fn put_streamed(
        &self,
        intake: &mut Intake,
        upload: &mut Multipart,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let mut buffer = PartBuffer::default();
        let parts = self.stream_parts(intake, &mut buffer, upload, 0).await?;
        let actual = intake.finish_hash();
        if actual.as_ref() != Some(expected) {
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual: actual.unwrap_or_else(|| expected.clone()),
            });
        }
        let size = intake.total;
        if upload.id.is_none() {
            self.bulk
                .put(&upload.key, buffer.into_payload())
                .await
                .map_err(storage_error)?;
            return Ok(size);
        }
        match self.complete(upload, parts, buffer).await {
            Ok(()) => Ok(size),
            // Another writer of the same blob may have completed first (Garage
            // then aborts this upload): the blob is stored either way.
            Err(e) => match self.client.head(&upload.key).await {
                Ok(meta) if meta.size == size => {
                    if let Some(upload_id) = upload.id.take() {
                        self.abort(&upload.key, &upload_id).await;
                    }
                    Ok(size)
                }
                _ => Err(e),
            },
        }
    }

    /// Copies an object too large for CopyObject by streaming it into a
    /// multipart upload to `to`.
    pub(super) async fn copy_streamed(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let got = self.client.get(from).await.map_err(storage_error)?;
        let body: ByteStream = Box::pin(got.into_stream().map_err(io_error));
        let mut intake = Intake::new(body, None, 0, u64::MAX);
        intake.body_error = StorageError::Backend;
        let mut upload = Multipart::new(to.clone());
        let mut buffer = PartBuffer::default();
        let outcome = async {
            let parts = self
                .stream_parts(&mut intake, &mut buffer, &mut upload, 0)
                .await?;
            self.complete(&mut upload, parts, buffer).await
        }
        .await;
        if outcome.is_err()
            && let Some(upload_id) = &upload.id
        {
            self.abort(&upload.key, upload_id).await;
        }
        outcome
    }

    pub(super) async fn hash_object(
        &self,
        key: &Path,
        algorithm: DigestAlgorithm,
    ) -> Result<Digest, StorageError> {
        let mut stream = self
            .client
            .get(key)
            .await
            .map_err(storage_error)?
            .into_stream();
        let mut hasher = DigestHasher::new(algorithm);
        while let Some(chunk) = stream.next().await {
            hash(&mut hasher, &chunk.map_err(storage_error)?).await;
        }
        Ok(hasher.finish())
    }
}

/// A multipart upload to `key`, started when its first part is ready.
pub(super) struct Multipart {
    pub key: Path,
    pub id: Option<MultipartId>,
    /// The session (and its state as recorded) that must record the upload's
    /// id before a part is sent, so that a crash never loses track of it.
    pub record_in: Option<(UploadId, SessionState)>,
}

impl Multipart {
    pub fn new(key: Path) -> Self {
        Multipart {
            key,
            id: None,
            record_in: None,
        }
    }
}

/// A body being received: hashed, counted and limited on the way in.
pub(super) struct Intake {
    body: ByteStream,
    pub hasher: Option<DigestHasher>,
    /// Bytes before this body plus those received so far.
    pub total: u64,
    max_size: u64,
    /// What a failing body means: the client's body broke (the default), or
    /// the store's own stream did.
    pub body_error: fn(std::io::Error) -> StorageError,
}

impl Intake {
    pub fn new(
        body: ByteStream,
        hasher: Option<DigestHasher>,
        already: u64,
        max_size: u64,
    ) -> Self {
        Intake {
            body,
            hasher,
            total: already,
            max_size,
            body_error: StorageError::Body,
        }
    }

    /// Receives into `buffer` until it holds `target` bytes (returns
    /// `false`) or the body ends (returns `true`).
    async fn fill(&mut self, buffer: &mut PartBuffer, target: u64) -> Result<bool, StorageError> {
        while buffer.len() < target {
            match self.body.next().await {
                None => return Ok(true),
                Some(Err(e)) => return Err((self.body_error)(e)),
                Some(Ok(chunk)) => {
                    self.total += chunk.len() as u64;
                    if self.total > self.max_size {
                        return Err(StorageError::TooLarge {
                            limit: self.max_size,
                        });
                    }
                    if let Some(hasher) = &mut self.hasher {
                        hash(hasher, &chunk).await;
                    }
                    buffer.push(chunk);
                }
            }
        }
        Ok(false)
    }

    fn finish_hash(&mut self) -> Option<Digest> {
        self.hasher.take().map(DigestHasher::finish)
    }
}

/// Hashes `bytes` in slices of [`HASH_SLICE`] with a yield between them, so a
/// large chunk never holds an async worker for long.
pub(super) async fn hash(hasher: &mut DigestHasher, bytes: &[u8]) {
    let mut slices = bytes.chunks(HASH_SLICE).peekable();
    while let Some(slice) = slices.next() {
        hasher.update(slice);
        if slices.peek().is_some() {
            tokio::task::yield_now().await;
        }
    }
}
