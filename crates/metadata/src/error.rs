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

/// What a refused push would have exceeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub project: String,
    pub resource: QuotaResource,
    pub limit: u64,
    /// Usage before the push.
    pub usage: u64,
    /// What the push would add.
    pub needed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaResource {
    /// Bytes of storage.
    Storage,
    /// Number of artifacts (manifests).
    Artifacts,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let QuotaExceeded {
            project,
            limit,
            usage,
            needed,
            ..
        } = self;
        match self.resource {
            QuotaResource::Storage => write!(
                f,
                "project {project:?} storage quota exceeded: {usage} of {limit} bytes used, this push needs {needed} more; \
                 delete artifacts (their layers are freed by the next garbage collection after the grace period) \
                 or ask a system administrator to raise the limit"
            ),
            QuotaResource::Artifacts => write!(
                f,
                "project {project:?} artifact quota exceeded: {usage} of {limit} artifacts, this push adds {needed}; \
                 delete artifacts or ask a system administrator to raise the limit"
            ),
        }
    }
}

/// Metadata failures, in domain terms.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("repository not found")]
    RepositoryUnknown,
    #[error("project {0:?} does not exist")]
    ProjectUnknown(String),
    /// A name (project, user, robot, membership) that must be unique is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// A user, robot, member or key that the request names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change would break a rule of the data (a project that still holds
    /// repositories cannot be deleted).
    #[error("{0}")]
    Refused(String),
    /// A listing asked for something the store cannot do (an unknown sort field).
    #[error("{0}")]
    Invalid(String),
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
    /// The change would overwrite, re-point or remove a tag that the
    /// project's immutability rules protect.
    #[error("tag {tag} is immutable: it cannot be moved or deleted")]
    TagImmutable { tag: String },
    /// The manifest's tags changed since the caller decided to delete it
    /// (a guarded delete, as retention and garbage collection make).
    #[error("manifest {0} changed since it was chosen for deletion")]
    Changed(Digest),
    /// The push would take the project past a quota.
    #[error("{0}")]
    QuotaExceeded(QuotaExceeded),
    /// Garbage collection deleted this blob's bytes after the caller stored
    /// them: they must be checked (or sent) again before the blob is linked.
    #[error("blob {digest} was deleted by garbage collection while it was being stored")]
    BlobGone {
        digest: Digest,
        /// When the deletion happened (ms since the Unix epoch): bytes found
        /// present now were stored after it.
        deleted_at_ms: i64,
    },
    /// Garbage collection is removing this blob's bytes right now; once it
    /// is done, a link is checked against [`MetadataError::BlobGone`].
    #[error("garbage collection is removing blob {0}; try again in a moment")]
    BlobRemovalPending(Digest),
    #[error("the manifest references content the repository does not have")]
    MissingReferences(Vec<MissingReference>),
    /// The database cannot be reached, is overloaded, or timed out; the
    /// request may succeed later. Nothing of it was written, except when the
    /// connection broke during the commit itself: then the database may have
    /// applied it, and a retry finds it done.
    #[error("metadata database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("metadata backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl MetadataError {
    /// Whether the database aborted a transaction because it conflicted with
    /// a concurrent one (serialization failure or deadlock); running the
    /// transaction again is the remedy.
    pub(crate) fn is_transaction_conflict(&self) -> bool {
        let MetadataError::Unavailable(source) = self else {
            return false;
        };
        source
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|e| e.code())
            .is_some_and(|code| matches!(&*code, "40001" | "40P01"))
    }
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            MetadataError::Unavailable(Box::new(e))
        } else {
            MetadataError::Backend(Box::new(e))
        }
    }
}

/// Failures that say nothing about the request and may pass: the connection
/// or the pool, an overloaded or restarting server, a statement timeout, a
/// transaction conflict that outlived its retries.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db)
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some() =>
        {
            db.code().is_some_and(|code| {
                // SQLSTATE class 08: connection exception; 53: insufficient
                // resources; 57: operator intervention (shutdown, statement
                // timeout); 40001/40P01: serialization failure, deadlock.
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || matches!(&*code, "40001" | "40P01")
            })
        }
        // SQLite result codes: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with
        // their extended codes in the upper bits.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<u32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}
