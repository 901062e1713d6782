//! Upload sessions: start, status, chunks, finish, cancel.

use auth::{Grant, Push};
use oci::{Digest, DigestAlgorithm};
use storage::{ByteStream, UploadId, UploadScope, UploadStatus};

use crate::{Registry, RegistryError, Result};

fn scope(grant: &Grant<Push>) -> UploadScope {
    UploadScope::new(grant.repository().as_str())
}

impl Registry {
    /// Starts an upload session in the grant's repository.
    pub async fn start_upload(
        &self,
        grant: &Grant<Push>,
        algorithm: DigestAlgorithm,
    ) -> Result<UploadStatus> {
        Ok(self.blobs.start_upload(&scope(grant), algorithm).await?)
    }

    pub async fn upload_status(&self, grant: &Grant<Push>, id: UploadId) -> Result<UploadStatus> {
        Ok(self.blobs.upload_status(id, &scope(grant)).await?)
    }

    /// Appends a chunk; `at` is where the client says it starts.
    pub async fn append_upload(
        &self,
        grant: &Grant<Push>,
        id: UploadId,
        at: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        Ok(self
            .blobs
            .append_upload(id, &scope(grant), at, body, self.limits.max_blob_bytes)
            .await?)
    }

    /// Closes a session: appends the optional final chunk, verifies the whole
    /// blob against `digest`, stores it and links it to the repository.
    pub async fn finish_upload(
        &self,
        grant: &Grant<Push>,
        id: UploadId,
        digest: &Digest,
        final_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<u64> {
        let size = self
            .blobs
            .finish_upload(
                id,
                &scope(grant),
                digest,
                final_chunk,
                self.limits.max_blob_bytes,
            )
            .await?;
        self.link_stored_blob(grant, digest, size).await?;
        Ok(size)
    }

    pub async fn cancel_upload(&self, grant: &Grant<Push>, id: UploadId) -> Result<()> {
        match self.blobs.cancel_upload(id, &scope(grant)).await {
            Ok(()) => Ok(()),
            Err(storage::StorageError::UploadNotFound) => Err(RegistryError::BlobUploadUnknown),
            Err(e) => Err(e.into()),
        }
    }
}
