use oci::Digest;

/// Storage failures, in domain terms. Backend failures are
/// [`StorageError::Unavailable`] when they may pass, else [`StorageError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} is not stored")]
    BlobNotFound(Digest),
    #[error("upload session not found")]
    UploadNotFound,
    #[error(
        "chunk starts at byte {given} but the upload has {offset} bytes; chunks must be sent in order"
    )]
    UploadOffsetMismatch { offset: u64, given: u64 },
    #[error("another request is writing to this upload; retry when it has finished")]
    UploadBusy,
    #[error("content has digest {actual}, not the expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob is larger than the configured limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The request body failed (the client went away or sent a truncated body).
    #[error("request body ended early: {0}")]
    Body(#[source] std::io::Error),
    /// The backend did not answer, timed out, or answered with a server
    /// error or throttling: worth retrying later.
    #[error("storage backend unavailable: {0}")]
    Unavailable(#[source] std::io::Error),
    #[error("storage backend failure: {0}")]
    Backend(#[source] std::io::Error),
}

impl StorageError {
    pub(crate) fn backend(e: impl Into<std::io::Error>) -> Self {
        StorageError::Backend(e.into())
    }
}
