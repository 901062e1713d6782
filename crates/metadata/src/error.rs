use oci::Digest;

/// A reference in a pushed manifest that its repository cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingReference {
    /// A config or layer blob not linked to the repository.
    Blob(Digest),
    /// A child manifest not in the repository.
    Manifest(Digest),
    /// Present, but of another size than the descriptor says.
    SizeMismatch {
        digest: Digest,
        declared: u64,
        actual: u64,
    },
}

impl MissingReference {
    pub fn digest(&self) -> &Digest {
        match self {
            MissingReference::Blob(d) | MissingReference::Manifest(d) => d,
            MissingReference::SizeMismatch { digest, .. } => digest,
        }
    }
}

/// Metadata failures, in domain terms.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("repository not found")]
    RepositoryUnknown,
    #[error("blob {0} is not held by the registry")]
    BlobUnknown(Digest),
    #[error("blob {0} is not linked to the repository")]
    BlobNotLinked(Digest),
    #[error("blob {blob} is still referenced by manifest {manifest}; delete the manifest first")]
    BlobInUse { blob: Digest, manifest: Digest },
    #[error("manifest {0} is not in the repository")]
    ManifestUnknown(Digest),
    #[error("manifest {manifest} is still referenced by index {index}; delete the index first")]
    ManifestInUse { manifest: Digest, index: Digest },
    #[error("tag not found")]
    TagUnknown,
    #[error("the manifest references content the repository does not have")]
    MissingReferences(Vec<MissingReference>),
    #[error("metadata backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        MetadataError::Backend(Box::new(e))
    }
}
