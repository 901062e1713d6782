//! Values passed to and returned by a [`crate::MetaStore`].

use bytes::Bytes;
use oci::{Digest, RepoName, Tag};

/// What a push knows of the bytes it links, checked against garbage
/// collection's deletions of the same blob (`blob_deletions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredBytes {
    /// Nothing to check: the bytes are known to be there (a copy between
    /// stores, tests). A removal of the blob still in progress refuses the
    /// link all the same.
    Unchecked,
    /// The blob store finished storing them at this time (ms since the Unix
    /// epoch). A deletion up to the allowed clock skew before that may have
    /// removed them (or the file the store found already in place).
    WrittenAt(i64),
    /// They were found present after the deletion recorded at this time:
    /// only a later deletion can have removed them.
    PresentAfter(i64),
}

/// Who made a change and when; recorded with its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The principal's name (`anonymous` when unauthenticated).
    pub actor: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A manifest to store, already parsed and verified by the registry.
#[derive(Clone, Debug)]
pub struct NewManifest {
    pub repository: RepoName,
    pub digest: Digest,
    pub media_type: String,
    /// The exact bytes the client pushed.
    pub body: Bytes,
    pub subject: Option<Digest>,
    /// `artifactType` as the referrers API shows it.
    pub artifact_type: Option<String>,
    /// The manifest's annotations as a JSON object, for referrer descriptors.
    pub annotations: Option<String>,
    /// Config and layer blobs that must be linked to the repository, with the
    /// sizes their descriptors declare.
    pub blobs: Vec<(Digest, u64)>,
    /// Child manifests that must be in the repository, with declared sizes.
    pub manifests: Vec<(Digest, u64)>,
    /// Tags to point at this manifest.
    pub tags: Vec<Tag>,
    /// Those of `tags` the project's immutability rules protect: the push is
    /// refused if one of them already points at another manifest.
    pub immutable_tags: Vec<Tag>,
}

/// What storing a manifest changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutManifestOutcome {
    /// False when the repository already had this manifest.
    pub created: bool,
    pub tags: Vec<TagChange>,
}

/// A tag pointed at a manifest, and where it pointed before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagChange {
    pub tag: Tag,
    pub previous: Option<Digest>,
}

/// A stored manifest with its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

impl StoredManifest {
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }
}

/// One entry of a referrers list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    /// JSON object text, if the manifest has annotations.
    pub annotations: Option<String>,
}

/// What kind of change an [`Event`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    BlobPushed,
    BlobMounted,
    BlobDeleted,
    ManifestPushed,
    ManifestDeleted,
    TagCreated,
    TagMoved,
    TagDeleted,
    /// A push took a project's usage past its quota's warning threshold.
    QuotaWarning,
    /// A push was refused because it would exceed a quota.
    QuotaExceeded,
    /// Pulls of a manifest, one event per manifest and pull flush; recorded
    /// only while an enabled webhook policy of its project asks for them.
    ManifestPulled,
    /// A retention run (not a dry run) of a project ended: `repository` is
    /// the project, `detail` the run's id, outcome and summary.
    RetentionFinished,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::BlobPushed => "blob.pushed",
            EventKind::BlobMounted => "blob.mounted",
            EventKind::BlobDeleted => "blob.deleted",
            EventKind::ManifestPushed => "manifest.pushed",
            EventKind::ManifestDeleted => "manifest.deleted",
            EventKind::TagCreated => "tag.created",
            EventKind::TagMoved => "tag.moved",
            EventKind::TagDeleted => "tag.deleted",
            EventKind::QuotaWarning => "quota.warning",
            EventKind::QuotaExceeded => "quota.exceeded",
            EventKind::ManifestPulled => "manifest.pulled",
            EventKind::RetentionFinished => "retention.finished",
        }
    }

    /// Whether webhooks may be about events of this kind: those wait in
    /// the outbox for the dispatcher (blob events do not), when a webhook
    /// policy of their project is enabled.
    pub const fn dispatched(self) -> bool {
        !matches!(
            self,
            EventKind::BlobPushed | EventKind::BlobMounted | EventKind::BlobDeleted
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            EventKind::BlobPushed,
            EventKind::BlobMounted,
            EventKind::BlobDeleted,
            EventKind::ManifestPushed,
            EventKind::ManifestDeleted,
            EventKind::TagCreated,
            EventKind::TagMoved,
            EventKind::TagDeleted,
            EventKind::QuotaWarning,
            EventKind::QuotaExceeded,
            EventKind::ManifestPulled,
            EventKind::RetentionFinished,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A domain event from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Increasing; consumers remember the last id they handled.
    pub id: i64,
    pub kind: EventKind,
    pub repository: String,
    pub digest: Option<Digest>,
    pub tag: Option<String>,
    /// For a moved tag, the digest it pointed at before.
    pub previous_digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub actor: String,
    pub occurred_at_ms: i64,
    /// JSON, for events that need more than the columns.
    pub detail: Option<String>,
}

/// Blob storage held by the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StorageUsage {
    pub blobs: u64,
    pub bytes: u64,
}

/// A repository as the management API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub name: RepoName,
    pub artifact_count: u64,
    pub tag_count: u64,
    pub created_at_ms: i64,
    /// The newest manifest push, if any manifest is left.
    pub pushed_at_ms: Option<i64>,
    /// The newest pull of any of its manifests.
    pub pulled_at_ms: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepositoryFilter {
    /// Names containing this (case-insensitive).
    pub name: Option<String>,
    /// Only these repositories (full names): what a caller with repository
    /// grants only may see.
    pub only: Option<Vec<String>>,
}

/// A manifest (image, index or artifact) of a repository, with its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// The manifest and what it references directly (config and layers, or
    /// child manifests), in bytes.
    pub size: u64,
    pub subject: Option<Digest>,
    pub pushed_at_ms: i64,
    pub pulled_at_ms: Option<i64>,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactFilter {
    /// Only artifacts with (true) or without (false) tags.
    pub tagged: Option<bool>,
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
}

/// A tag and the manifest it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    pub name: String,
    pub digest: Digest,
    /// When the tag was last pointed at its manifest.
    pub pushed_at_ms: i64,
    /// When its manifest was last pulled.
    pub pulled_at_ms: Option<i64>,
}

/// Pulls of a manifest, for [`crate::MetaStore::record_pulls`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    pub repository: RepoName,
    pub digest: Digest,
    /// The newest pull.
    pub at_ms: i64,
    /// How many pulls since the last record.
    pub count: u64,
    /// Who pulled last.
    pub actor: String,
}

/// Conditions a delete of a manifest must meet, checked in its transaction.
pub struct DeleteGuard<'a> {
    /// Tags that may not be removed: the delete is refused with
    /// [`crate::MetadataError::TagImmutable`] if the manifest carries one.
    pub immutable: &'a (dyn Fn(&str) -> bool + Send + Sync),
    /// The tags the caller saw: the delete is refused with
    /// [`crate::MetadataError::Changed`] if the manifest's tags differ now
    /// (retention and garbage collection decide on a snapshot).
    pub expected_tags: Option<&'a [String]>,
}

impl DeleteGuard<'_> {
    /// No conditions: what a client's DELETE in a project without
    /// immutability rules needs.
    pub const NONE: DeleteGuard<'static> = DeleteGuard {
        immutable: &|_| false,
        expected_tags: None,
    };
}

impl std::fmt::Debug for DeleteGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeleteGuard")
            .field("expected_tags", &self.expected_tags)
            .finish_non_exhaustive()
    }
}
