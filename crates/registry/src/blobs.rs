//! Blob reads, deletes, mounts and whole-blob pushes.

use std::time::Duration;

use auth::{Delete, Grant, Pull, Push};
use bytes::Bytes;
use metadata::{MetadataError, StoredBytes};
use oci::{Digest, RepoName};
use storage::{BlobRead, ByteStream, RangeRequest};

use crate::{Registry, RegistryError, Result, change};

/// How many repositories holding a blob are considered when a client mounts
/// without naming the source.
const AUTOMOUNT_CANDIDATES: u32 = 50;

/// How long a push waits for garbage collection to finish removing the
/// bytes of the blob it links, and how often it looks at first.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);
const REMOVAL_POLL: Duration = Duration::from_millis(20);

/// The result of a mount request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob is now linked to the repository.
    Mounted { size: u64 },
    /// The blob could not be mounted; the client should upload it.
    NotMounted,
}

impl Registry {
    /// Size of a blob the repository may read. Manifests are content too, and
    /// are found here by digest as well (as in Distribution, where they are blobs).
    pub async fn blob_size(&self, grant: &Grant<Pull>, digest: &Digest) -> Result<u64> {
        self.meta
            .content_size(grant.repository(), digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// A URL the client may download a blob from directly, when the blob
    /// store offers one (presigned object store URLs) and the repository may
    /// read the blob. `None` otherwise: the blob is then read with
    /// [`Registry::read_blob`]. Manifests are never redirected.
    pub async fn blob_redirect(
        &self,
        grant: &Grant<Pull>,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let Some(url) = self.blobs.redirect_url(digest).await? else {
            return Ok(None);
        };
        if self
            .meta
            .linked_blob(grant.repository(), digest)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        Ok(Some(url))
    }

    /// Streams a blob the repository may read, or a range of it.
    pub async fn read_blob(
        &self,
        grant: &Grant<Pull>,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead> {
        let repo = grant.repository();
        if self.meta.linked_blob(repo, digest).await?.is_some() {
            return self.blobs.read(digest, range).await.map_err(|e| match e {
                storage::StorageError::BlobNotFound(d) => {
                    tracing::error!(digest = %d, repository = %repo, "blob is linked but missing from the blob store");
                    RegistryError::BlobUnknown(d)
                }
                other => other.into(),
            });
        }
        let manifest = self
            .meta
            .manifest_by_digest(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        let size = manifest.size();
        let range = match range {
            None => None,
            Some(r) => Some(
                r.resolve(size)
                    .ok_or(RegistryError::RangeNotSatisfiable { size })?,
            ),
        };
        let bytes = match range {
            Some(r) => manifest.body.slice(r.start as usize..=r.end as usize),
            None => manifest.body,
        };
        Ok(BlobRead {
            size,
            range,
            body: single_chunk(bytes),
        })
    }

    /// Removes the blob from the repository. The bytes stay until garbage
    /// collection finds no repository using them.
    pub async fn delete_blob(&self, grant: &Grant<Delete>, digest: &Digest) -> Result<()> {
        match self
            .meta
            .unlink_blob(grant.repository(), digest, &change(grant))
            .await
        {
            Ok(()) => Ok(()),
            Err(MetadataError::RepositoryUnknown | MetadataError::BlobNotLinked(_)) => {
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
            Err(e @ MetadataError::BlobInUse { .. }) => Err(RegistryError::InUse(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Links a blob from another repository. With `from`, only that repository
    /// is considered; without it, any repository the principal may pull from.
    /// Guessing a digest grants nothing: the blob must be readable by the caller.
    pub async fn mount_blob(
        &self,
        grant: &Grant<Push>,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<MountOutcome> {
        let target = grant.repository();
        if let Some(size) = self.meta.linked_blob(target, digest).await? {
            return Ok(MountOutcome::Mounted { size });
        }
        let source_found = match from {
            Some(from) => {
                grant.may_pull(from) && self.meta.linked_blob(from, digest).await?.is_some()
            }
            None => self
                .meta
                .repositories_with_blob(digest, AUTOMOUNT_CANDIDATES)
                .await?
                .iter()
                .any(|r| grant.may_pull(r)),
        };
        if !source_found {
            return Ok(MountOutcome::NotMounted);
        }
        match self
            .meta
            .link_existing_blob(target, digest, &change(grant))
            .await
        {
            Ok(size) => Ok(MountOutcome::Mounted { size }),
            // Removed from the registry between the check and the link.
            Err(MetadataError::BlobUnknown(_)) => Ok(MountOutcome::NotMounted),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a whole blob sent in one request and links it to the repository.
    pub async fn push_blob(
        &self,
        grant: &Grant<Push>,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let size = self
            .blobs
            .put(digest, body, self.limits.max_blob_bytes)
            .await?;
        self.link_stored_blob(grant, digest, size).await?;
        Ok(size)
    }

    /// Links a blob the blob store just stored. If garbage collection deleted
    /// the same bytes meanwhile, they are checked: present (stored again since)
    /// they are linked, gone the client is asked to send them again. While a
    /// collection is removing them, the link waits for it to finish.
    pub(crate) async fn link_stored_blob(
        &self,
        grant: &Grant<Push>,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let change = change(grant);
        let repo = grant.repository();
        let gone = || {
            RegistryError::BlobUploadInvalid(format!(
                "garbage collection removed blob {digest} while it was being uploaded; \
                 upload it again"
            ))
        };
        let mut stored = StoredBytes::WrittenAt(change.at_ms);
        let mut checks = 0;
        let waiting_since = tokio::time::Instant::now();
        let mut pause = REMOVAL_POLL;
        let outcome = loop {
            match self
                .meta
                .link_new_blob(repo, digest, size, stored, &change)
                .await
            {
                // A collection deleted the blob around the time its bytes
                // were stored: link it only if they are there now and no
                // deletion came after this look (which the next attempt
                // checks, in the transaction that links).
                Err(MetadataError::BlobGone { deleted_at_ms, .. }) => {
                    checks += 1;
                    if checks > 3 || self.blobs.stat(digest).await? != Some(size) {
                        return Err(gone());
                    }
                    stored = StoredBytes::PresentAfter(deleted_at_ms);
                }
                // A batch's removal takes well under a second.
                Err(MetadataError::BlobRemovalPending(_)) => {
                    if waiting_since.elapsed() >= REMOVAL_WAIT {
                        return Err(RegistryError::RetryLater(format!(
                            "garbage collection is still removing blob {digest} after {} s; \
                             send the upload again in a few seconds",
                            REMOVAL_WAIT.as_secs()
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(REMOVAL_WAIT / 10);
                }
                other => break other,
            }
        };
        match outcome {
            Err(MetadataError::QuotaExceeded(q)) => Err(self.quota_refused(grant, q).await),
            other => Ok(other?),
        }
    }

    /// The error for a push a quota refused, after recording its event.
    pub(crate) async fn quota_refused(
        &self,
        grant: &Grant<Push>,
        exceeded: metadata::QuotaExceeded,
    ) -> RegistryError {
        if let Err(e) = self
            .meta
            .record_quota_exceeded(grant.repository(), exceeded.usage, &change(grant))
            .await
        {
            tracing::warn!(error = %e, "could not record a quota.exceeded event");
        }
        RegistryError::QuotaExceeded(exceeded.to_string())
    }
}

fn single_chunk(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}
