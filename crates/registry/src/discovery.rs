//! Listing tags and repositories, and the referrers API.

use auth::{Grant, Pull, Viewer};
use metadata::Referrer;
use oci::{Digest, RepoName, Tag};

use crate::{Registry, RegistryError, Result};

/// Referrers returned per page. A page stays well under the 4 MiB manifest
/// size clients are prepared for.
const REFERRERS_PAGE: u32 = 1000;

/// `n` and `last` of a listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<u32>,
    pub last: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPage {
    pub tags: Vec<Tag>,
    /// Set when more tags follow: the `last` for the next page.
    pub next_last: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerPage {
    pub referrers: Vec<Referrer>,
    /// Set when more referrers follow: the cursor for the next page.
    pub next: Option<Digest>,
}

impl Registry {
    pub async fn list_tags(&self, grant: &Grant<Pull>, page: &Page) -> Result<TagPage> {
        let repo = grant.repository();
        let limit = page
            .n
            .unwrap_or(self.limits.max_page_entries)
            .min(self.limits.max_page_entries);
        let fetched = self
            .meta
            .list_tags(repo, page.last.as_deref(), limit.saturating_add(1))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.clone()))?;
        let (tags, next_last) = split_page(fetched, limit, |t| t.as_str().to_owned());
        Ok(TagPage { tags, next_last })
    }

    /// Repositories the viewer may see, in byte order.
    pub async fn catalog(
        &self,
        viewer: &Viewer,
        page: &Page,
    ) -> Result<(Vec<RepoName>, Option<String>)> {
        let limit = page
            .n
            .unwrap_or(self.limits.max_page_entries)
            .min(self.limits.max_page_entries);
        let mut visible = Vec::new();
        let mut after = page.last.clone();
        // Fetch in batches until the page (plus one, to know whether more
        // follow) is full of repositories this viewer may see.
        let batch = limit.saturating_add(1).clamp(1, 1000);
        loop {
            let names = self.meta.list_repositories(after.as_deref(), batch).await?;
            let exhausted = (names.len() as u32) < batch;
            after = names.last().map(|n| n.as_str().to_owned());
            visible.extend(names.into_iter().filter(|n| viewer.may_see(n)));
            if exhausted || visible.len() as u32 > limit {
                break;
            }
        }
        Ok(split_page(visible, limit, |r| r.as_str().to_owned()))
    }

    /// Manifests in the repository whose subject is `subject`.
    pub async fn referrers(
        &self,
        grant: &Grant<Pull>,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
    ) -> Result<ReferrerPage> {
        let fetched = self
            .meta
            .referrers(
                grant.repository(),
                subject,
                artifact_type,
                after,
                REFERRERS_PAGE + 1,
            )
            .await?;
        let (referrers, next) = split_page(fetched, REFERRERS_PAGE, |r| r.digest.clone());
        Ok(ReferrerPage { referrers, next })
    }
}

/// Cuts a list fetched with one extra entry down to `limit`, returning the
/// cursor for the next page when the extra entry shows that more follow.
fn split_page<T, C>(
    mut items: Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> C,
) -> (Vec<T>, Option<C>) {
    if items.len() as u32 > limit {
        items.truncate(limit as usize);
        let next = items.last().map(&cursor);
        (items, next)
    } else {
        (items, None)
    }
}
