//! Upload sessions in the bucket: their state, appends, finishing, removal.

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use oci::{Digest, DigestHasher};

use super::S3BlobStore;
use super::client::{is_not_found, storage_error};
use super::parts::{PartBuffer, Remainder, remainder};
use super::state::{SessionState, TailRecord, new_tail_name};
use super::write::{Intake, Multipart, hash};
use crate::error::StorageError;
use crate::stream::ByteStream;
use crate::upload::{UploadId, UploadScope};

/// Where a finished session's content is before it gets its final key.
enum Source {
    /// Small content, in memory.
    Bytes(Bytes),
    /// An object of the session.
    Object(Path),
}

impl S3BlobStore {
    pub(super) async fn load_state(
        &self,
        id: UploadId,
        scope: &UploadScope,
    ) -> Result<SessionState, StorageError> {
        let bytes = match self.client.get(&self.state_key(id)).await {
            Ok(got) => got.bytes().await.map_err(storage_error)?,
            Err(e) if is_not_found(&e) => return Err(StorageError::UploadNotFound),
            Err(e) => return Err(storage_error(e)),
        };
        let state = SessionState::parse(&bytes)?;
        if state.scope != scope.0 {
            return Err(StorageError::UploadNotFound);
        }
        Ok(state)
    }

    /// A session's state whatever its scope (for purging); `None` if the
    /// session has no state object.
    pub(super) async fn load_any_state(
        &self,
        id: UploadId,
    ) -> Result<Option<SessionState>, StorageError> {
        match self.client.get(&self.state_key(id)).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(storage_error)?;
                Ok(Some(SessionState::parse(&bytes)?))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    pub(super) async fn save_state(
        &self,
        id: UploadId,
        state: &SessionState,
    ) -> Result<(), StorageError> {
        self.client
            .put(&self.state_key(id), state.to_json()?.into())
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// A whole small object (a tail), read into memory.
    pub(super) async fn object_bytes(&self, key: &Path) -> Result<Bytes, StorageError> {
        match self.client.get(key).await {
            Ok(got) => got.bytes().await.map_err(storage_error),
            Err(e) if is_not_found(&e) => Err(StorageError::backend(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("object {key} named by an upload session is missing"),
            ))),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Appends `body` to a session. Returns the state to record and, with
    /// `keep_rest` (when finishing), the bytes after the last part, still in
    /// memory; without it they become the new tail object. Writes no state
    /// except to record a new multipart upload.
    pub(super) async fn append_locked(
        &self,
        id: UploadId,
        state: &SessionState,
        at: Option<u64>,
        body: ByteStream,
        max_size: u64,
        keep_rest: bool,
    ) -> Result<(SessionState, PartBuffer), StorageError> {
        if let Some(at) = at
            && at != state.offset
        {
            return Err(StorageError::UploadOffsetMismatch {
                offset: state.offset,
                given: at,
            });
        }
        let mut body = body.peekable();
        if std::pin::Pin::new(&mut body).peek().await.is_none() {
            return Ok((state.clone(), PartBuffer::default()));
        }
        let mut buffer = PartBuffer::default();
        if let Some(tail) = &state.tail {
            buffer.push(self.object_bytes(&self.tail_key(id, tail)).await?);
        }
        let mut intake = Intake::new(
            Box::pin(body),
            Some(state.hasher()?),
            state.offset,
            max_size,
        );
        let mut upload = Multipart {
            key: self.data_key(id),
            id: state.multipart.clone(),
            record_in: Some((id, state.clone())),
        };
        let mut sent = self
            .stream_parts(&mut intake, &mut buffer, &mut upload, state.parts.len())
            .await?;
        if intake.total == state.offset {
            // Only empty chunks: nothing changes.
            return Ok((state.clone(), PartBuffer::default()));
        }
        let mut next = state.clone();
        next.tail = None;
        if !keep_rest {
            let index = state.parts.len() + sent.len();
            match remainder(self.part_size, index, buffer.len()) {
                Remainder::Nothing => {}
                Remainder::Part => {
                    let upload_id = self.ensure_multipart(&mut upload).await?;
                    let len = buffer.len();
                    let payload = buffer.take(len);
                    sent.push(
                        self.send_part(upload.key.clone(), upload_id, index, payload)
                            .await?,
                    );
                }
                Remainder::Tail => {
                    let tail = TailRecord {
                        name: new_tail_name(),
                        size: buffer.len(),
                    };
                    let payload = std::mem::take(&mut buffer).into_payload();
                    self.bulk
                        .put(&self.tail_key(id, &tail), payload)
                        .await
                        .map_err(storage_error)?;
                    next.tail = Some(tail);
                }
            }
        }
        next.multipart = upload.id;
        next.parts.extend(sent);
        next.offset = intake.total;
        if let Some(hasher) = &intake.hasher {
            next.set_hasher(hasher);
        }
        Ok((next, buffer))
    }

    /// Verifies a session's content against `expected` and stores it under
    /// its digest. `rest` holds bytes after the state's parts and tail.
    /// Clears `state.multipart` once that upload is completed.
    pub(super) async fn finish_locked(
        &self,
        id: UploadId,
        state: &mut SessionState,
        rest: PartBuffer,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let size = state.offset;
        let same_algorithm = state.algorithm()? == expected.algorithm();
        if same_algorithm {
            let actual = state.hasher()?.finish();
            if &actual != expected {
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let source = if let Some(upload_id) = state.multipart.clone() {
            let mut last = PartBuffer::default();
            if let Some(tail) = &state.tail {
                last.push(self.object_bytes(&self.tail_key(id, tail)).await?);
            }
            last.extend(rest);
            let mut upload = Multipart {
                key: self.data_key(id),
                id: Some(upload_id),
                record_in: None,
            };
            self.complete(&mut upload, state.parts.clone(), last)
                .await?;
            state.multipart = None;
            Source::Object(upload.key)
        } else if rest.is_empty() {
            match &state.tail {
                Some(tail) => Source::Object(self.tail_key(id, tail)),
                None => Source::Bytes(Bytes::new()),
            }
        } else {
            // Without parts, everything is smaller than one part.
            let mut bytes = BytesMut::new();
            if let Some(tail) = &state.tail {
                bytes.extend_from_slice(&self.object_bytes(&self.tail_key(id, tail)).await?);
            }
            for chunk in rest.into_payload() {
                bytes.extend_from_slice(&chunk);
            }
            Source::Bytes(bytes.freeze())
        };
        if !same_algorithm {
            let actual = match &source {
                Source::Bytes(bytes) => {
                    let mut hasher = DigestHasher::new(expected.algorithm());
                    hash(&mut hasher, bytes).await;
                    hasher.finish()
                }
                Source::Object(key) => self.hash_object(key, expected.algorithm()).await?,
            };
            if &actual != expected {
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let target = self.blob_key(expected);
        match self.client.head(&target).await {
            Ok(meta) if meta.size == size => return Ok(size),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(storage_error(e)),
        }
        match source {
            Source::Bytes(bytes) => {
                self.bulk
                    .put(&target, bytes.into())
                    .await
                    .map_err(storage_error)?;
            }
            Source::Object(key) if size <= self.copy_limit => {
                self.bulk.copy(&key, &target).await.map_err(storage_error)?;
            }
            Source::Object(key) => self.copy_streamed(&key, &target).await?,
        }
        Ok(size)
    }

    /// Removes a session: aborts its multipart upload, deletes its state
    /// (from then on the session is gone) and then every other object of it.
    pub(super) async fn remove_session(
        &self,
        id: UploadId,
        state: &SessionState,
    ) -> Result<(), StorageError> {
        if let Some(upload_id) = &state.multipart {
            match self
                .client
                .abort_multipart(&self.data_key(id), upload_id)
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        match self.client.delete(&self.state_key(id)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(storage_error(e)),
        }
        self.remove_leftovers(id).await
    }

    /// Removes every object of a session's folder.
    pub(super) async fn remove_leftovers(&self, id: UploadId) -> Result<(), StorageError> {
        let leftovers = self
            .client
            .list(Some(&self.session_dir(id)))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.client.delete_stream(leftovers);
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        Ok(())
    }
}
