// The `MetaStore` implementation of an SQL backend. Included by each SQL
// backend (see `sql/mod.rs`): `Store` has `readers()` (the pool for reads) and
// `begin_write()` (a transaction for one write).

use async_trait::async_trait;
use oci::{Digest, RepoName, Tag};
use sqlx::Row as _;

use super::{LIST_REPOSITORIES, LIST_TAGS, Store, blobs, event_from_row, manifests, repository_id};
use crate::model::{
    Change, DeleteGuard, Event, NewManifest, PutManifestOutcome, Referrer, StorageUsage, StoredBytes,
    StoredManifest,
};
use crate::sql::{split_lines, stored_name, stored_tag, write_tx};
use crate::{MetaStore, Result};

#[async_trait]
impl MetaStore for Store {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.readers()).await?;
        Ok(())
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let mut conn = self.readers().acquire().await?;
        Ok(repository_id(&mut conn, repo).await?.is_some())
    }

    async fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Vec<RepoName>> {
        let names: Option<String> = sqlx::query_scalar(LIST_REPOSITORIES)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_one(self.readers())
            .await?;
        split_lines(names.as_deref()).map(stored_name).collect()
    }

    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        blobs::linked_blob(self.readers(), repo, digest).await
    }

    async fn content_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = $1 AND rb.digest = $2
             UNION ALL
             SELECT c.size FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             JOIN manifest_contents c ON c.digest = m.digest
             WHERE r.name = $1 AND m.digest = $2
             LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(self.readers())
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn repositories_with_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<RepoName>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await?;
        names.iter().map(|n| stored_name(n)).collect()
    }

    async fn link_new_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        stored: StoredBytes,
        change: &Change,
    ) -> Result<()> {
        write_tx!(self, |tx| blobs::link_new_blob(
            &mut tx,
            repo,
            digest,
            size,
            stored,
            change
        )
        .await?)
    }

    async fn link_existing_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        change: &Change,
    ) -> Result<u64> {
        write_tx!(self, |tx| blobs::link_existing_blob(
            &mut tx, repo, digest, change
        )
        .await?)
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, change: &Change) -> Result<()> {
        write_tx!(self, |tx| blobs::unlink_blob(&mut tx, repo, digest, change)
            .await?)
    }

    async fn put_manifest(
        &self,
        manifest: NewManifest,
        change: &Change,
    ) -> Result<PutManifestOutcome> {
        write_tx!(self, |tx| manifests::put_manifest(
            &mut tx, &manifest, change
        )
        .await?)
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        manifests::by_digest(self.readers(), repo, digest).await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>> {
        manifests::by_tag(self.readers(), repo, tag).await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        guard: &DeleteGuard<'_>,
        change: &Change,
    ) -> Result<()> {
        write_tx!(self, |tx| manifests::delete_manifest(
            &mut tx, repo, digest, guard, change
        )
        .await?)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, change: &Change) -> Result<()> {
        write_tx!(self, |tx| manifests::delete_tag(&mut tx, repo, tag, change)
            .await?)
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<Tag>>> {
        let mut conn = self.readers().acquire().await?;
        let Some(id) = repository_id(&mut conn, repo).await? else {
            return Ok(None);
        };
        let names: Option<String> = sqlx::query_scalar(LIST_TAGS)
            .bind(id)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_one(&mut *conn)
            .await?;
        split_lines(names.as_deref())
            .map(stored_tag)
            .collect::<Result<_>>()
            .map(Some)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<Referrer>> {
        manifests::referrers(self.readers(), repo, subject, artifact_type, after, limit).await
    }

    async fn tag_history(
        &self,
        repo: &RepoName,
        tag: &Tag,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT * FROM events
             WHERE repository = $1 AND tag = $2 AND id < $3
               AND kind IN ('tag.created', 'tag.moved', 'tag.deleted')
             ORDER BY id DESC LIMIT $4",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn tagged_since(
        &self,
        project: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<(RepoName, Digest)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT repository,
                    CASE WHEN kind = 'tag.moved' THEN previous_digest ELSE digest END AS left_digest
             FROM events
             WHERE tag IS NOT NULL AND occurred_at >= $1 AND kind IN ('tag.moved', 'tag.deleted')
               AND ($2 = '' OR substr(repository, 1, length($2) + 1) = $2 || '/')",
        )
        .bind(since_ms)
        .bind(project.unwrap_or(""))
        .fetch_all(self.readers())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(d) = row.try_get::<Option<String>, _>("left_digest")? {
                let repo = stored_name(&row.try_get::<String, _>("repository")?)?;
                out.push((repo, crate::sql::stored_digest(&d)?));
            }
        }
        Ok(out)
    }

    async fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(self.readers())
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn storage_usage(&self) -> Result<StorageUsage> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM blobs",
        )
        .fetch_one(self.readers())
        .await?;
        let n: i64 = row.try_get("n")?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok(StorageUsage {
            blobs: n as u64,
            bytes: bytes as u64,
        })
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        write_tx!(self, |tx| {
            let held: Option<String> = sqlx::query_scalar(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $4
                 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(until_ms)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            held.is_some()
        })
    }

    async fn list_repositories_in(
        &self,
        project: &str,
        filter: &crate::RepositoryFilter,
        sort: &crate::identity::Sort,
        page: crate::identity::Page,
    ) -> Result<crate::identity::Listed<crate::RepositoryInfo>> {
        self.browse_repositories(project, filter, sort, page).await
    }

    async fn list_artifacts(
        &self,
        repo: &RepoName,
        filter: &crate::ArtifactFilter,
        sort: &crate::identity::Sort,
        page: crate::identity::Page,
    ) -> Result<Option<crate::identity::Listed<crate::ArtifactInfo>>> {
        self.browse_artifacts(repo, filter, sort, page).await
    }

    async fn list_tag_info(
        &self,
        repo: &RepoName,
        name: Option<&str>,
        sort: &crate::identity::Sort,
        page: crate::identity::Page,
    ) -> Result<Option<crate::identity::Listed<crate::TagInfo>>> {
        self.browse_tags(repo, name, sort, page).await
    }

    async fn record_pulls(&self, pulls: &[crate::Pull]) -> Result<()> {
        self.write_pulls(pulls).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(&mut *tx)
                .await?;
        })
    }
}
