//! What the lifecycle jobs (garbage collection, retention, integrity checks)
//! and the project settings they obey need from the metadata store.
//!
//! Garbage collection works in two steps for each kind of garbage: find
//! candidates on a read snapshot (no lock held, so pushes and pulls go on),
//! then remove them in small write transactions that check each candidate's
//! condition again, so that a candidate a concurrent push made live again is
//! left alone. Three kinds, in the order a run collects them:
//!
//! 1. *Stale links*: a blob linked to a repository that no manifest of the
//!    repository references, linked (or released by its last manifest) before
//!    the cutoff: the layers of a push that never sent its manifest, or of
//!    deleted manifests.
//! 2. *Orphan manifests*: manifest contents no repository holds.
//! 3. *Orphan blobs*: blobs linked to no repository, stored before the
//!    cutoff, removed in three steps so that the single SQLite writer is
//!    never held while files go: one transaction deletes their rows and
//!    leaves each a tombstone (`blob_deletions`) marking its bytes as being
//!    removed; the caller removes the bytes; a later transaction (the one
//!    claiming the next batch) dates the tombstones from then. A push of such a blob waits while its bytes are
//!    being removed ([`crate::MetadataError::BlobRemovalPending`]), and one
//!    that stored the same bytes before they were removed notices
//!    ([`crate::MetadataError::BlobGone`]).
//!
//! Settings (quotas, immutability rules, the retention policy) are stored as
//! the policy crate's JSON; this crate keeps them and never interprets them.

use async_trait::async_trait;
use oci::{Digest, RepoName};

use crate::Result;

/// A link of a blob to a repository, as garbage collection pages through them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkKey {
    pub repository_id: i64,
    pub digest: Digest,
}

/// How much garbage a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub count: u64,
    pub bytes: u64,
}

/// Blob removals whose bytes the caller has removed, or tried to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndedRemovals {
    /// Every blob claimed, in any order.
    pub claimed: Vec<Digest>,
    /// Those whose bytes could not be removed, with their sizes.
    pub kept: Vec<(Digest, u64)>,
}

impl EndedRemovals {
    pub fn is_empty(&self) -> bool {
        self.claimed.is_empty() && self.kept.is_empty()
    }

    /// Adds `other`'s removals to these.
    pub fn extend(&mut self, other: EndedRemovals) {
        self.claimed.extend(other.claimed);
        self.kept.extend(other.kept);
    }
}

/// A manifest of a repository as retention and garbage collection see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphArtifact {
    pub digest: Digest,
    pub pushed_at_ms: i64,
    pub pulled_at_ms: Option<i64>,
    pub pull_count: u64,
    pub tags: Vec<String>,
    /// Manifests this one references (an index's children).
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
}

/// A repository with every manifest it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphRepository {
    pub name: RepoName,
    pub artifacts: Vec<GraphArtifact>,
}

/// A project's lifecycle settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectSettings {
    pub project: String,
    /// Storage limit in bytes; `None`: unlimited.
    pub quota_bytes: Option<u64>,
    /// Artifact limit; `None`: unlimited.
    pub quota_artifacts: Option<u64>,
    /// Percentage of a limit at which a `quota.warning` event is recorded.
    pub quota_warn_percent: u32,
    /// Immutability rules (JSON list).
    pub immutability: String,
    /// Retention policy (JSON), if one is set.
    pub retention: Option<String>,
    /// Cron expression for scheduled retention runs.
    pub retention_schedule: Option<String>,
}

/// What a project uses, counted exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    pub bytes: u64,
    pub artifacts: u64,
}

/// Which lifecycle job a run was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunKind {
    Gc,
    Retention,
    Integrity,
}

impl RunKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunKind::Gc => "gc",
            RunKind::Retention => "retention",
            RunKind::Integrity => "integrity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [RunKind::Gc, RunKind::Retention, RunKind::Integrity]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A run about to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRun {
    pub kind: RunKind,
    pub project: Option<String>,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub dry_run: bool,
    pub requested_by: String,
    pub started_at_ms: i64,
}

impl NewRun {
    /// The run as recorded when it started, with the id the store gave it.
    pub fn started(self, id: i64) -> Run {
        Run {
            id,
            kind: self.kind,
            project: self.project,
            trigger: self.trigger,
            dry_run: self.dry_run,
            requested_by: self.requested_by,
            status: "running".to_owned(),
            started_at_ms: self.started_at_ms,
            finished_at_ms: None,
            summary: "{}".to_owned(),
            items: "[]".to_owned(),
            error: None,
        }
    }
}

/// A run, started or finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub kind: RunKind,
    pub project: Option<String>,
    pub trigger: String,
    pub dry_run: bool,
    pub requested_by: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// JSON object of counts.
    pub summary: String,
    /// JSON list of items (deleted artifacts, problems found).
    pub items: String,
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub succeeded: bool,
    pub finished_at_ms: i64,
    pub summary: String,
    pub items: String,
    pub error: Option<String>,
}

/// The lifecycle part of the metadata store; see the module documentation.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Links no manifest of their repository references, linked before
    /// `cutoff_ms`, in key order after `after`, at most `limit`.
    async fn stale_links(
        &self,
        cutoff_ms: i64,
        after: Option<&LinkKey>,
        limit: u32,
    ) -> Result<Vec<LinkKey>>;

    /// Removes those of `links` that are still stale, releasing their
    /// projects' usage; one transaction.
    async fn remove_stale_links(&self, links: &[LinkKey], cutoff_ms: i64) -> Result<Swept>;

    /// Manifest contents no repository holds, created before `cutoff_ms`.
    async fn orphan_manifests(
        &self,
        cutoff_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>>;

    /// Removes those of `digests` still held by no repository; one transaction.
    async fn remove_orphan_manifests(&self, digests: &[Digest], cutoff_ms: i64) -> Result<Swept>;

    /// Blobs linked to no repository, stored before `cutoff_ms`.
    async fn orphan_blobs(
        &self,
        cutoff_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>>;

    /// Ends the removals of `ended` (as [`LifecycleStore::finish_blob_removals`]
    /// does), then claims those of `digests` still linked to no repository
    /// and stored before `cutoff_ms` for removal: deletes their rows and
    /// leaves each a tombstone saying its bytes are being removed, until
    /// their removal ends. One transaction, so that a collection commits once
    /// per batch. Returns the claimed blobs with their sizes.
    async fn claim_orphan_blobs(
        &self,
        digests: &[Digest],
        cutoff_ms: i64,
        ended: &EndedRemovals,
    ) -> Result<Vec<(Digest, u64)>>;

    /// Ends removals claimed before: the tombstones of `ended.claimed`, whose
    /// bytes the caller removed or tried to, now date from this moment. The
    /// blobs of `ended.kept`, whose bytes could not be removed, are recorded
    /// again, linked to nothing, so that the next collection tries again.
    async fn finish_blob_removals(&self, ended: &EndedRemovals) -> Result<()>;

    /// Forgets tombstones older than `before_ms`.
    async fn prune_blob_deletions(&self, before_ms: i64) -> Result<u64>;

    /// Which of `digests` have no record at all: bytes in the blob store
    /// nothing recorded (a node killed between storing and recording).
    async fn unrecorded_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Claims for removal those of `digests` still unrecorded, as
    /// [`LifecycleStore::claim_orphan_blobs`] does (a push recording one of
    /// them meanwhile waits for the claim, then for the removal).
    async fn claim_unrecorded_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Every blob linked to some repository, in digest order after `after`
    /// (unlinked blobs are garbage awaiting collection).
    async fn blobs_page(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>>;

    /// Whether the registry holds a blob row for `digest` (linked or not).
    async fn blob_recorded(&self, digest: &Digest) -> Result<bool>;

    /// Every repository of `project` (all projects when `None`) with its
    /// manifests, their tags, children and subjects.
    async fn artifact_graph(&self, project: Option<&str>) -> Result<Vec<GraphRepository>>;

    async fn project_settings(&self, project: &str) -> Result<Option<ProjectSettings>>;

    /// Stores a project's settings (the project must exist).
    async fn set_project_settings(&self, settings: &ProjectSettings) -> Result<()>;

    /// Settings of the projects that have a retention policy.
    async fn retention_projects(&self) -> Result<Vec<ProjectSettings>>;

    /// A project's usage; `None` if the project does not exist.
    async fn project_usage(&self, project: &str) -> Result<Option<ProjectUsage>>;

    async fn start_run(&self, run: &NewRun) -> Result<i64>;

    async fn finish_run(&self, id: i64, outcome: &RunOutcome) -> Result<()>;

    async fn run(&self, id: i64) -> Result<Option<Run>>;

    /// Runs of one kind (and project), newest first, with empty `items`.
    async fn runs(
        &self,
        kind: RunKind,
        project: Option<&str>,
        page: crate::identity::Page,
    ) -> Result<crate::identity::Listed<Run>>;

    /// Marks the runs of `kind` (and `project`) still `running` as failed:
    /// called by the holder of the job's lease, so their node stopped mid-run.
    async fn abandon_runs(&self, kind: RunKind, project: Option<&str>) -> Result<u64>;

    /// Forgets finished runs older than `before_ms`.
    async fn prune_runs(&self, before_ms: i64) -> Result<u64>;

    /// Records a refused push's `quota.exceeded` event (the push's own
    /// transaction was rolled back).
    async fn record_quota_exceeded(
        &self,
        repository: &RepoName,
        usage: u64,
        change: &crate::Change,
    ) -> Result<()>;
}
