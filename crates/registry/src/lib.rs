//! The registry's use cases: push and pull blobs and manifests, mount, delete,
//! tag, list, and answer the referrers API.
//!
//! [`Registry`] enforces the invariants that span storage and metadata: a blob
//! is linked to a repository only after the blob store has verified it; a
//! manifest is parsed, its digest checked and its references resolved before it
//! is stored; every change is recorded with its actor. Each operation takes the
//! [`auth::Grant`] for the action it performs.
//!
//! What this crate must not do: know HTTP, SQL or any storage backend. It sees
//! only the [`storage::BlobStore`] and [`metadata::MetaStore`] traits.

mod blobs;
mod discovery;
mod error;
pub mod gc;
mod history;
pub mod integrity;
mod manifests;
mod promote;
mod pulls;
pub mod retention;
pub mod rules;
mod uploads;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use auth::{Grant, GrantedAction};
use metadata::{Change, MetaStore};
use storage::BlobStore;

pub use blobs::MountOutcome;
pub use discovery::{Page, ReferrerPage, TagPage};
pub use error::RegistryError;
pub use history::{RolledBack, TagMovement};
pub use manifests::{AcceptedTypes, PushedManifest};
pub use promote::Promoted;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Size limits on what clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted, in bytes (the spec asks for at least 4 MiB).
    pub max_manifest_bytes: u64,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Most tags one manifest push may set (`?tag=` parameters plus the reference).
    pub max_tags_per_push: usize,
    /// Most entries in one page of tags, repositories or referrers.
    pub max_page_entries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 64 * 1024 * 1024 * 1024,
            max_tags_per_push: 100,
            max_page_entries: 100_000,
        }
    }
}

/// The registry: blob store and metadata store, used together.
#[derive(Clone, Debug)]
pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    limits: Limits,
    pulls: Arc<pulls::PullTimes>,
    rules: Arc<rules::RulesCache>,
    /// The runtime this registry was made on, which serves requests:
    /// lifecycle runs work on a low-priority runtime of their own and send
    /// their write transactions here ([`Registry::in_foreground`]).
    foreground: Option<tokio::runtime::Handle>,
}

/// Tags considered when a listing is filtered by pattern or sorted by
/// version (in memory).
pub const MAX_SORTED_TAGS: u32 = 100_000;

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>, limits: Limits) -> Self {
        Registry {
            blobs,
            meta,
            limits,
            pulls: Arc::default(),
            rules: Arc::default(),
            foreground: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Runs `work` (made from a clone of the registry) on the runtime that
    /// serves requests, when called from another. For what requests may
    /// wait on: a write transaction holds the database's writer or row
    /// locks, and a blob claimed for removal holds up a push of the same
    /// bytes; a low-priority thread holding either while it waits for the
    /// processor would hold up pushes. If the caller stops waiting, the work
    /// still runs to its end.
    pub(crate) async fn in_foreground<T, F>(&self, work: impl FnOnce(Registry) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let work = work(self.clone());
        match &self.foreground {
            Some(foreground)
                if tokio::runtime::Handle::try_current()
                    .is_ok_and(|current| current.id() != foreground.id()) =>
            {
                foreground
                    .spawn(work)
                    .await
                    .map_err(|e| RegistryError::Internal(Box::new(e)))?
            }
            _ => work.await,
        }
    }

    /// Notes that a manifest was pulled (written later by [`Self::flush_pulls`]).
    pub fn note_pull(&self, grant: &Grant<auth::Pull>, digest: &oci::Digest) {
        let change = change(grant);
        self.pulls
            .note(grant.repository(), digest, change.at_ms, 1, &change.actor);
    }

    /// Writes the pull times noted since the last flush; on failure they are
    /// kept for the next one.
    pub async fn flush_pulls(&self) -> Result<()> {
        let pulls = self.pulls.take();
        if let Err(e) = self.meta.record_pulls(&pulls).await {
            self.pulls.restore(pulls);
            return Err(e.into());
        }
        Ok(())
    }

    /// The repositories of a project, for the management API (which has
    /// checked that the caller may read them).
    pub async fn list_repositories(
        &self,
        project: &str,
        filter: &metadata::RepositoryFilter,
        sort: &metadata::identity::Sort,
        page: metadata::identity::Page,
    ) -> Result<metadata::identity::Listed<metadata::RepositoryInfo>> {
        Ok(self
            .meta
            .list_repositories_in(project, filter, sort, page)
            .await?)
    }

    /// The artifacts of a repository with their tags, for the management
    /// API (which has checked that the caller may read them).
    pub async fn list_artifacts(
        &self,
        repo: &oci::RepoName,
        filter: &metadata::ArtifactFilter,
        sort: &metadata::identity::Sort,
        page: metadata::identity::Page,
    ) -> Result<metadata::identity::Listed<metadata::ArtifactInfo>> {
        self.meta
            .list_artifacts(repo, filter, sort, page)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.clone()))
    }

    /// The tags of a repository with times, for the management API: those
    /// containing `name` and matching `pattern`, sorted by `sort`'s field
    /// (`name`, `pushed_at`, `pulled_at`, or `semver`: semantic-version
    /// precedence, tags that are not versions after the versions, by name).
    /// With a pattern or by version, the first [`MAX_SORTED_TAGS`] tags by
    /// name are considered.
    pub async fn list_tag_info(
        &self,
        repo: &oci::RepoName,
        name: Option<&str>,
        pattern: Option<&policy::Pattern>,
        sort: &metadata::identity::Sort,
        page: metadata::identity::Page,
    ) -> Result<metadata::identity::Listed<metadata::TagInfo>> {
        use metadata::identity::{Listed, Page, Sort};
        let semver = sort.field.as_deref() == Some("semver");
        if !semver && pattern.is_none() {
            return self
                .meta
                .list_tag_info(repo, name, sort, page)
                .await?
                .ok_or_else(|| RegistryError::NameUnknown(repo.clone()));
        }
        let by = Sort {
            field: if semver { None } else { sort.field.clone() },
            descending: sort.descending && !semver,
        };
        let all = Page {
            offset: 0,
            limit: MAX_SORTED_TAGS,
        };
        let mut tags = self
            .meta
            .list_tag_info(repo, name, &by, all)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.clone()))?
            .items;
        if let Some(p) = pattern {
            tags.retain(|t| p.matches(&t.name));
        }
        if semver {
            let mut keyed: Vec<_> = tags
                .into_iter()
                .map(|t| (policy::semver::Version::parse_tag(&t.name), t))
                .collect();
            keyed.sort_by(|(va, a), (vb, b)| match (va, vb) {
                (Some(va), Some(vb)) => {
                    let order = va.cmp(vb).then_with(|| a.name.cmp(&b.name));
                    if sort.descending {
                        order.reverse()
                    } else {
                        order
                    }
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.name.cmp(&b.name),
            });
            tags = keyed.into_iter().map(|(_, t)| t).collect();
        }
        let total = tags.len() as u64;
        let items = tags
            .into_iter()
            .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
            .take(page.limit as usize)
            .collect();
        Ok(Listed { items, total })
    }

    /// A project's lifecycle settings (quotas, immutability, retention).
    pub async fn project_settings(
        &self,
        project: &str,
    ) -> Result<Option<metadata::ProjectSettings>> {
        Ok(self.meta.project_settings(project).await?)
    }

    /// Stores a project's lifecycle settings (validated by the caller).
    pub async fn set_project_settings(&self, settings: &metadata::ProjectSettings) -> Result<()> {
        let outcome = self.meta.set_project_settings(settings).await;
        self.rules.forget(&settings.project);
        Ok(outcome?)
    }

    /// Webhook policies and deliveries (the management API's).
    pub fn webhook_store(&self) -> &dyn metadata::WebhookStore {
        &*self.meta
    }

    /// A project's usage, counted exactly.
    pub async fn project_usage(&self, project: &str) -> Result<Option<metadata::ProjectUsage>> {
        Ok(self.meta.project_usage(project).await?)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether both stores answer.
    pub async fn ready(&self) -> Result<()> {
        self.meta.ping().await?;
        self.blobs.ping().await?;
        Ok(())
    }
}

/// Who and when, for the metadata records of a change made under `grant`.
fn change<A: GrantedAction>(grant: &Grant<A>) -> Change {
    system_change(grant.principal().actor_name())
}

/// A change made by `actor` now (lifecycle jobs act as `system:...`).
fn system_change(actor: &str) -> Change {
    Change {
        actor: actor.to_owned(),
        at_ms: now_ms(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
