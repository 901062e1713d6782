use metadata::{MetadataError, MissingReference};
use oci::{Digest, RepoName};
use storage::StorageError;

/// Why a registry operation failed, in the terms a client can act on.
/// The `http` crate turns each into the spec's error code and status.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    #[error("upload session not found in this repository; start a new upload")]
    BlobUploadUnknown,
    #[error("{0}")]
    BlobUploadInvalid(String),
    /// A chunk did not start where the upload stands.
    #[error(
        "chunk out of order: the upload has {offset} bytes, so the next chunk must start at byte {offset}"
    )]
    UploadOutOfOrder { offset: u64 },
    #[error("another request is writing to this upload; check its status and resume after it")]
    UploadBusy,
    #[error("requested range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("blob is larger than this registry's limit of {limit} bytes")]
    BlobTooLarge { limit: u64 },
    #[error("manifest is larger than this registry's limit of {limit} bytes")]
    ManifestTooLarge { limit: u64 },
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references {} blob(s) or manifest(s) this repository does not have: {}", .0.len(), list_missing(.0))]
    ManifestBlobUnknown(Vec<MissingReference>),
    #[error("{0}")]
    ManifestUnknown(String),
    #[error("repository {0} not found")]
    NameUnknown(RepoName),
    #[error(
        "project {0:?} does not exist: a repository lives in the project its first path \
         component names; create the project first (wharf project create {0}) or push to \
         an existing one, such as library"
    )]
    ProjectUnknown(String),
    #[error("{0}")]
    TooManyTags(String),
    /// A listing asked for something that cannot be done (an unknown sort field).
    #[error("{0}")]
    InvalidRequest(String),
    /// The change would break content that other content still needs.
    #[error("{0}")]
    InUse(String),
    /// The push would take the project past a quota (the message names the
    /// project, the limit and the usage).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The change would overwrite, move or delete an immutable tag.
    #[error("{0}")]
    TagImmutable(String),
    /// The request met work in progress (garbage collection removing the
    /// same blob) and may succeed if sent again shortly; nothing of it was
    /// written. The message says what it waited for.
    #[error("{0}")]
    RetryLater(String),
    /// A shared dependency (metadata database, object store) cannot be
    /// reached or timed out; nothing of the request was written.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn list_missing(missing: &[MissingReference]) -> String {
    missing
        .iter()
        .map(|m| m.digest().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<MetadataError> for RegistryError {
    /// Only backend failures are expected to pass through this conversion; the
    /// operations translate the domain variants they can meet themselves.
    fn from(e: MetadataError) -> Self {
        match e {
            e @ MetadataError::Unavailable(_) => RegistryError::Unavailable(Box::new(e)),
            MetadataError::ProjectUnknown(project) => RegistryError::ProjectUnknown(project),
            MetadataError::Invalid(why) => RegistryError::InvalidRequest(why),
            MetadataError::QuotaExceeded(q) => RegistryError::QuotaExceeded(q.to_string()),
            MetadataError::TagImmutable { tag } => RegistryError::TagImmutable(format!(
                "tag {tag} is immutable in this project: it cannot be overwritten, moved or \
                 deleted (the project's immutability rules protect it)"
            )),
            e => RegistryError::Internal(Box::new(e)),
        }
    }
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::BlobNotFound(d) => RegistryError::BlobUnknown(d),
            StorageError::UploadNotFound => RegistryError::BlobUploadUnknown,
            StorageError::UploadOffsetMismatch { offset, .. } => {
                RegistryError::UploadOutOfOrder { offset }
            }
            StorageError::UploadBusy => RegistryError::UploadBusy,
            StorageError::DigestMismatch { expected, actual } => RegistryError::DigestInvalid(
                format!("uploaded content has digest {actual}, not the {expected} given"),
            ),
            StorageError::TooLarge { limit } => RegistryError::BlobTooLarge { limit },
            StorageError::RangeNotSatisfiable { size } => {
                RegistryError::RangeNotSatisfiable { size }
            }
            StorageError::Body(e) => RegistryError::BlobUploadInvalid(format!(
                "the request body ended early or did not match its declared length ({e}); \
                 nothing from this request was kept"
            )),
            e @ StorageError::Unavailable(_) => RegistryError::Unavailable(Box::new(e)),
            e @ StorageError::Backend(_) => RegistryError::Internal(Box::new(e)),
        }
    }
}
