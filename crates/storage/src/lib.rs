//! Content-addressed blob storage and blob upload sessions.
//!
//! A [`BlobStore`] holds bytes under their digest and nothing else: it knows
//! digests, sizes and byte ranges, and nothing of repositories, tags or users
//! (the metadata store decides which repository may read which blob). Bodies are
//! streams, never whole buffers.
//!
//! Invariant: a blob becomes readable only after its digest has been verified
//! while it streamed in; a crash at any point leaves either no blob or the whole
//! verified blob. Upload sessions carry the hasher state with them, so a session
//! resumes after a restart without reading its bytes again.
//!
//! Backends, each passing the suite in `tests.rs`:
//! - [`FsBlobStore`]: a local directory, the default. Its large reads are
//!   file-backed chunks ([`mapped`]) that a connection may send with `sendfile(2)`.
//! - [`S3BlobStore`]: an S3-compatible bucket shared by several nodes; upload
//!   sessions live in the bucket, so any node continues any session, and blob
//!   downloads may be redirected to presigned URLs.

mod error;
mod fs;
pub mod mapped;
mod range;
mod s3;
mod stream;
#[cfg(test)]
mod tests;
mod upload;

use async_trait::async_trait;
use oci::{Digest, DigestAlgorithm};

pub use error::StorageError;

/// A blob as the store's listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedBlob {
    pub digest: Digest,
    pub size: u64,
    /// When it was last written, in ms since the Unix epoch.
    pub modified_ms: i64,
}

/// Makes ring the process's TLS crypto provider, wharf's only one: HTTP
/// clients on rustls (the S3 client, and any reqwest client in the same
/// process) need one installed. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

pub use fs::FsBlobStore;
pub use range::{ByteRange, RangeRequest};
pub use s3::{S3BlobStore, S3Config, S3RedirectConfig};
pub use stream::{BlobRead, ByteStream};
pub use upload::{UploadId, UploadScope, UploadStatus};

/// Content-addressed bytes and the sessions that produce them.
///
/// `scope` arguments are opaque labels chosen by the caller when a session starts
/// (the registry uses the repository name); a session is only visible under the
/// scope it was started with, so an upload id leaked from one repository is
/// useless in another.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Size of a stored blob, or `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Streams a stored blob, or the requested range of it.
    async fn read(
        &self,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead, StorageError>;

    /// Stores a whole blob from one stream, verifying it against `expected`.
    /// Returns its size. Nothing is left behind when verification fails.
    async fn put(
        &self,
        expected: &Digest,
        body: ByteStream,
        max_size: u64,
    ) -> Result<u64, StorageError>;

    /// Removes a stored blob. Removing an absent blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Blobs the store holds, in digest order after `after`, at most
    /// `limit`: what garbage collection compares with the metadata store to
    /// find bytes nothing recorded (a node killed between storing a blob and
    /// recording it).
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ListedBlob>, StorageError>;

    /// Removes many stored blobs (garbage collection's batches); returns
    /// those now absent, whether removed or absent already. A blob that
    /// could not be removed is left out and logged.
    async fn delete_many(&self, digests: &[Digest]) -> Vec<Digest> {
        let mut gone = Vec::with_capacity(digests.len());
        for digest in digests {
            match self.delete(digest).await {
                Ok(()) => gone.push(digest.clone()),
                Err(e) => tracing::warn!(%digest, error = %e, "could not remove a blob"),
            }
        }
        gone
    }

    /// Abandons the upload sessions nobody wrote to since `before_ms`
    /// (milliseconds since the Unix epoch) and frees what they hold;
    /// sessions busy in this process are skipped. Returns how many went.
    async fn purge_uploads(&self, before_ms: i64) -> Result<u64, StorageError>;

    /// Starts an upload session hashing with `algorithm`.
    async fn start_upload(
        &self,
        scope: &UploadScope,
        algorithm: DigestAlgorithm,
    ) -> Result<UploadStatus, StorageError>;

    /// Bytes received so far by a session.
    async fn upload_status(
        &self,
        id: UploadId,
        scope: &UploadScope,
    ) -> Result<UploadStatus, StorageError>;

    /// Appends a chunk. If `at` is given it must equal the session's current
    /// offset ([`StorageError::UploadOffsetMismatch`] otherwise). A failed or
    /// truncated chunk leaves the session as it was before the call.
    async fn append_upload(
        &self,
        id: UploadId,
        scope: &UploadScope,
        at: Option<u64>,
        body: ByteStream,
        max_size: u64,
    ) -> Result<UploadStatus, StorageError>;

    /// Appends an optional final chunk, verifies the whole content against
    /// `expected` and makes it a stored blob. The session ends either way unless
    /// the final chunk itself was refused (offset mismatch or a broken body).
    async fn finish_upload(
        &self,
        id: UploadId,
        scope: &UploadScope,
        expected: &Digest,
        final_chunk: Option<(Option<u64>, ByteStream)>,
        max_size: u64,
    ) -> Result<u64, StorageError>;

    /// Abandons a session and frees what it holds.
    async fn cancel_upload(&self, id: UploadId, scope: &UploadScope) -> Result<(), StorageError>;

    /// Whether the store answers and can take writes, with one cheap request:
    /// the readiness check.
    async fn ping(&self) -> Result<(), StorageError>;

    /// A URL the client may download the blob from directly (an object
    /// store's presigned URL), or `None` when the store's bytes are served
    /// only through [`BlobStore::read`]. Says nothing about whether the blob
    /// exists, and grants access to whoever holds it: the caller decides
    /// first that the client may read the blob.
    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StorageError> {
        let _ = digest;
        Ok(None)
    }
}
