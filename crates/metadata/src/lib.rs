//! The metadata store: the single source of truth for repositories, manifests
//! (their exact bytes included), tags, referrers, blob links and the outbox of
//! domain events ([`MetaStore`]); and for projects, users, memberships,
//! robots, token signing keys and the audit log ([`IdentityStore`]).
//!
//! Invariants every backend keeps:
//! - A repository reads only the blobs linked to it; links are created by a push
//!   or a mount and removed by a delete.
//! - A manifest is stored only if every blob and child manifest it references is
//!   present in its repository, checked in the same transaction that stores it
//!   (the subject is the exception: referrers may arrive before their subject).
//! - Every change records its events in the outbox in the same transaction, so
//!   an event exists exactly when its change does.
//! - Every repository belongs to the project its first path component names;
//!   a repository is created only in an existing project, and a project that
//!   holds repositories cannot be deleted.
//!
//! What this crate must not do: talk HTTP, touch blob bytes, or decide policy.
//!
//! Backends: [`SqliteMetaStore`] (embedded, the default) and
//! [`PostgresMetaStore`] (shared by several nodes); they run the same queries
//! (`sql/`). Every backend must pass the suite in `tests.rs`.

mod error;
pub mod identity;
mod lifecycle;
mod model;
mod postgres;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;
mod transfer;
pub mod webhooks;

use async_trait::async_trait;
use oci::{Digest, RepoName, Tag};

pub use error::{MetadataError, MissingReference, QuotaExceeded, QuotaResource};
pub use identity::IdentityStore;
pub use lifecycle::{
    EndedRemovals, GraphArtifact, GraphRepository, LifecycleStore, LinkKey, NewRun,
    ProjectSettings, ProjectUsage, Run, RunKind, RunOutcome, Swept,
};
pub use model::{
    ArtifactFilter, ArtifactInfo, Change, DeleteGuard, Event, EventKind, NewManifest, Pull,
    PutManifestOutcome, Referrer, RepositoryFilter, RepositoryInfo, StorageUsage, StoredBytes,
    StoredManifest, TagChange, TagInfo,
};
pub use postgres::{PostgresMetaStore, PostgresOptions};
pub use sqlite::{SqliteMetaStore, SqliteOptions};
pub use transfer::{Transfer, TransferItem, TransferReport, copy_database};
pub use webhooks::WebhookStore;

pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// Repository, manifest, tag, referrer and blob-link metadata.
#[async_trait]
pub trait MetaStore:
    LifecycleStore + WebhookStore + Send + Sync + std::fmt::Debug + 'static
{
    /// Whether the store can answer queries (for readiness probes).
    async fn ping(&self) -> Result<()>;

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;

    /// Repository names in byte order, after `after`, at most `limit`.
    async fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Vec<RepoName>>;

    /// Size of a blob if it is linked to `repo`.
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;

    /// Size of the content `digest` names in `repo`, if the repository may
    /// read it: a linked blob, or a manifest (manifests are content too).
    async fn content_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;

    /// Repositories a blob is linked to (at most `limit`), for mounting a blob
    /// whose source the client did not name.
    async fn repositories_with_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<RepoName>>;

    /// Records a blob that was just stored and links it to `repo` (creating the
    /// repository on its first push), charging it to the project's usage.
    /// `stored` says when the bytes were stored or last seen: if garbage
    /// collection deleted the blob after that, the bytes may be gone and the
    /// link is refused with [`MetadataError::BlobGone`]; check that they are
    /// present, then link again with [`StoredBytes::PresentAfter`] that
    /// deletion, which refuses again only if another deletion came since.
    /// While garbage collection is removing the blob's bytes the link is
    /// refused with [`MetadataError::BlobRemovalPending`]: try again shortly.
    async fn link_new_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        stored: StoredBytes,
        change: &Change,
    ) -> Result<()>;

    /// Links a blob the registry already holds to `repo` (a mount). Fails with
    /// [`MetadataError::BlobUnknown`] if the blob is not held any more.
    async fn link_existing_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        change: &Change,
    ) -> Result<u64>;

    /// Removes a blob's link to `repo`. Refused while a manifest of the
    /// repository references the blob.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, change: &Change) -> Result<()>;

    /// Stores a manifest and points its tags at it, atomically.
    async fn put_manifest(
        &self,
        manifest: NewManifest,
        change: &Change,
    ) -> Result<PutManifestOutcome>;

    /// A manifest of `repo` by digest.
    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>>;

    /// The manifest a tag of `repo` points at.
    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>>;

    /// Deletes a manifest from `repo` with every tag pointing at it. Refused
    /// while an index of the repository references it, and when `guard`'s
    /// conditions do not hold.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        guard: &DeleteGuard<'_>,
        change: &Change,
    ) -> Result<()>;

    /// Deletes one tag; the manifest stays.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, change: &Change) -> Result<()>;

    /// Tags of `repo` in byte order, after `after`, at most `limit`; `None` if
    /// the repository does not exist.
    async fn list_tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<Tag>>>;

    /// Manifests of `repo` whose subject is `subject`, optionally only those of
    /// one artifact type, in push order, after the referrer `after`, at most `limit`.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<Referrer>>;

    /// The movements of a tag (`tag.created`, `tag.moved`, `tag.deleted`
    /// events), newest first, with ids below `before` if given.
    async fn tag_history(
        &self,
        repo: &RepoName,
        tag: &Tag,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>>;

    /// Every manifest a tag stopped pointing at since `since_ms` (the tag
    /// moved away from it, or was deleted), in `project`'s repositories or
    /// in all: what a rollback may go back to.
    async fn tagged_since(
        &self,
        project: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<(RepoName, Digest)>>;

    /// Outbox events with an id greater than `after_id`, oldest first.
    async fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>>;

    /// Number and total size of the blobs the registry holds.
    async fn storage_usage(&self) -> Result<StorageUsage>;

    /// Takes the lease `name` for `holder` until `until_ms`, or renews it, if
    /// it is free, expired at `now_ms`, or already `holder`'s. True when
    /// `holder` holds it afterwards. Background work runs under a lease, so
    /// that of several nodes exactly one does each piece; nodes' clocks must
    /// agree to well within a lease's length.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool>;

    /// Gives up a lease `holder` holds (nothing happens if it does not).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// The repositories of a project, with counts and times. Sortable by
    /// `name`, `created_at`, `pushed_at`, `pulled_at`, `artifact_count`.
    async fn list_repositories_in(
        &self,
        project: &str,
        filter: &RepositoryFilter,
        sort: &identity::Sort,
        page: identity::Page,
    ) -> Result<identity::Listed<RepositoryInfo>>;

    /// The manifests of a repository with their tags, newest push first;
    /// `None` if the repository does not exist. Sortable by `pushed_at`,
    /// `pulled_at`, `size`, `digest`.
    async fn list_artifacts(
        &self,
        repo: &RepoName,
        filter: &ArtifactFilter,
        sort: &identity::Sort,
        page: identity::Page,
    ) -> Result<Option<identity::Listed<ArtifactInfo>>>;

    /// The tags of a repository with their manifests and times, by name;
    /// `None` if the repository does not exist. `name` filters names
    /// containing it. Sortable by `name`, `pushed_at`, `pulled_at`.
    async fn list_tag_info(
        &self,
        repo: &RepoName,
        name: Option<&str>,
        sort: &identity::Sort,
        page: identity::Page,
    ) -> Result<Option<identity::Listed<TagInfo>>>;

    /// Records when manifests were last pulled (batched by the caller);
    /// a manifest that is gone is skipped, an older time never overwrites a
    /// newer one.
    async fn record_pulls(&self, pulls: &[Pull]) -> Result<()>;
}
