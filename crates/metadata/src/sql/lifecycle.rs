// The `LifecycleStore` implementation of an SQL backend: garbage-collection
// candidates and sweeps, the artifact graph retention evaluates, project
// settings and usage, and the record of lifecycle runs. Included by each SQL
// backend (see `sql/mod.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use oci::{Digest, RepoName};
use sqlx::Row as _;

use super::{Conn, EventRecord, FOR_UPDATE, Row, Store, add_usage, record_event, usage_of};
use crate::identity::{Listed, Page};
use crate::lifecycle::{
    EndedRemovals, GraphArtifact, GraphRepository, LifecycleStore, LinkKey, NewRun, ProjectSettings,
    ProjectUsage, Run, RunKind, RunOutcome, Swept,
};
use crate::model::{Change, EventKind};
use crate::sql::{now_ms, stored_digest, stored_name, write_tx};
use crate::{MetadataError, Result};

const PROJECT_SETTINGS: &str = "SELECT name, quota_bytes, quota_artifacts, quota_warn_percent,
     immutability, retention, retention_schedule FROM projects";

fn settings_from_row(row: &Row) -> Result<ProjectSettings> {
    let quota_bytes: Option<i64> = row.try_get(1)?;
    let quota_artifacts: Option<i64> = row.try_get(2)?;
    let warn: i64 = row.try_get(3)?;
    Ok(ProjectSettings {
        project: row.try_get(0)?,
        quota_bytes: quota_bytes.map(|v| v as u64),
        quota_artifacts: quota_artifacts.map(|v| v as u64),
        quota_warn_percent: warn as u32,
        immutability: row.try_get(4)?,
        retention: row.try_get(5)?,
        retention_schedule: row.try_get(6)?,
    })
}

const RUN_COLUMNS: &str = "id, kind, project, trigger, dry_run, requested_by, status, started_at,
     finished_at, summary, items, error";

fn run_from_row(row: &Row) -> Result<Run> {
    let kind: String = row.try_get(1)?;
    let dry_run: i64 = row.try_get(4)?;
    Ok(Run {
        id: row.try_get(0)?,
        kind: RunKind::parse(&kind).ok_or_else(|| {
            MetadataError::Backend(format!("unknown run kind {kind:?} in the database").into())
        })?,
        project: row.try_get(2)?,
        trigger: row.try_get(3)?,
        dry_run: dry_run != 0,
        requested_by: row.try_get(5)?,
        status: row.try_get(6)?,
        started_at_ms: row.try_get(7)?,
        finished_at_ms: row.try_get(8)?,
        summary: row.try_get(9)?,
        items: row.try_get(10)?,
        error: row.try_get(11)?,
    })
}

fn digest_sizes(rows: Vec<Row>) -> Result<Vec<(Digest, u64)>> {
    rows.iter()
        .map(|row| {
            let digest: String = row.try_get(0)?;
            let size: i64 = row.try_get(1)?;
            Ok((stored_digest(&digest)?, size as u64))
        })
        .collect()
}

/// Candidates a sweep handles per statement. Each binds one or two
/// parameters; SQLite takes at most 32,766 per statement.
const SWEEP_CHUNK: usize = 500;

/// `$first, $first+1, …`: `count` parameters.
fn parameters(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, $first+1), …`: `count` pairs of parameters, for links bound as
/// (repository id, digest).
fn link_pairs(first: usize, count: usize) -> String {
    (0..count)
        .map(|k| format!("(${}, ${})", first + 2 * k, first + 2 * k + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A link a sweep removes.
struct StaleLink {
    repository_id: i64,
    digest: String,
    size: i64,
    project_id: i64,
    repository: String,
}

/// Removes the links of `chunk` still stale: one statement finds them, one
/// per repository deletes them, one finds which of their blobs their
/// projects still link elsewhere; each project's usage then drops by the
/// blobs it no longer links, once per blob.
async fn remove_stale_chunk(
    conn: &mut Conn,
    chunk: &[LinkKey],
    cutoff_ms: i64,
    change: &Change,
) -> Result<Swept> {
    // Joined from the list, each link is looked up by its key; a blob
    // shared by many repositories is not read once per repository.
    let mut find = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH k (repository_id, digest) AS (VALUES {})
         SELECT rb.repository_id, rb.digest, b.size, r.project_id, r.name FROM k
         JOIN repository_blobs rb ON rb.repository_id = k.repository_id AND rb.digest = k.digest
         JOIN repositories r ON r.id = rb.repository_id
         JOIN blobs b ON b.digest = rb.digest
         WHERE rb.refs = 0 AND rb.linked_at < $1",
        link_pairs(2, chunk.len())
    )))
    .bind(cutoff_ms);
    for link in chunk {
        find = find.bind(link.repository_id).bind(link.digest.as_str());
    }
    let mut stale = find
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(StaleLink {
                repository_id: row.try_get(0)?,
                digest: row.try_get(1)?,
                size: row.try_get(2)?,
                project_id: row.try_get(3)?,
                repository: row.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if stale.is_empty() {
        return Ok(Swept::default());
    }
    // A chunk's links are a few repositories' each.
    stale.sort_by(|a, b| (a.repository_id, &a.digest).cmp(&(b.repository_id, &b.digest)));
    for group in stale.chunk_by(|a, b| a.repository_id == b.repository_id) {
        let mut delete = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest IN ({})",
            parameters(2, group.len())
        )))
        .bind(group[0].repository_id);
        for link in group {
            delete = delete.bind(link.digest.as_str());
        }
        delete.execute(&mut *conn).await?;
    }

    let blobs: Vec<&str> = stale
        .iter()
        .map(|l| l.digest.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut held = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT r.project_id, h.digest FROM repository_blobs h
         JOIN repositories r ON r.id = h.repository_id
         WHERE h.digest IN ({})",
        parameters(1, blobs.len())
    )));
    for digest in &blobs {
        held = held.bind(*digest);
    }
    let held: HashSet<(i64, String)> = held
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_>>()?;
    // Per project: bytes released, and a repository of it to name.
    let mut released: BTreeMap<i64, (i64, &str)> = BTreeMap::new();
    let mut counted: HashSet<(i64, &str)> = HashSet::new();
    let mut swept = Swept::default();
    for link in &stale {
        swept.count += 1;
        swept.bytes += link.size as u64;
        let key = (link.project_id, link.digest.clone());
        if !held.contains(&key) && counted.insert((link.project_id, link.digest.as_str())) {
            let entry = released
                .entry(link.project_id)
                .or_insert((0, link.repository.as_str()));
            entry.0 += link.size;
        }
    }
    for (project_id, (bytes, repository)) in released {
        let repository = stored_name(repository)?;
        add_usage(conn, project_id, &repository, -bytes, 0, change).await?;
    }
    Ok(swept)
}

/// Removes the manifest contents of `chunk` still held by no repository.
async fn remove_orphan_manifest_chunk(
    conn: &mut Conn,
    chunk: &[Digest],
    cutoff_ms: i64,
) -> Result<Swept> {
    let mut find = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT c.digest, c.size FROM manifest_contents c
         WHERE c.digest IN ({}) AND c.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = c.digest)",
        parameters(2, chunk.len())
    )))
    .bind(cutoff_ms);
    for digest in chunk {
        find = find.bind(digest.as_str());
    }
    let orphans = digest_sizes(find.fetch_all(&mut *conn).await?)?;
    if orphans.is_empty() {
        return Ok(Swept::default());
    }
    let list = parameters(1, orphans.len());
    for table in [
        "manifest_references WHERE manifest_digest",
        "manifest_contents WHERE digest",
    ] {
        let mut delete =
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} IN ({list})")));
        for (digest, _) in &orphans {
            delete = delete.bind(digest.as_str());
        }
        delete.execute(&mut *conn).await?;
    }
    Ok(Swept {
        count: orphans.len() as u64,
        bytes: orphans.iter().map(|(_, size)| size).sum(),
    })
}

/// Claims the blobs of `chunk` still linked to no repository for removal:
/// deletes their rows and leaves tombstones saying their bytes are being
/// removed. Returns them in digest order.
async fn claim_orphan_blob_chunk(
    conn: &mut Conn,
    chunk: &[Digest],
    cutoff_ms: i64,
) -> Result<Vec<(Digest, u64)>> {
    // PostgreSQL locks the rows first: a push linking one of them waits for
    // this commit, then finds the tombstone. SQLite's single writer already
    // keeps every push out until this transaction ends.
    let candidates: Vec<String> = if FOR_UPDATE.is_empty() {
        chunk.iter().map(|d| d.as_str().to_owned()).collect()
    } else {
        let mut find = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "SELECT b.digest FROM blobs b
             WHERE b.digest IN ({}) AND b.created_at < $1
               AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest){FOR_UPDATE}",
            parameters(2, chunk.len())
        )))
        .bind(cutoff_ms);
        for digest in chunk {
            find = find.bind(digest.as_str());
        }
        find.fetch_all(&mut *conn).await?
    };
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Checked (again, on PostgreSQL, on a fresh snapshot: a link committed
    // while the lock above waited for its push keeps the blob).
    let mut delete = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM blobs WHERE digest IN ({}) AND created_at < $1
           AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest)
         RETURNING digest, size",
        parameters(2, candidates.len())
    )))
    .bind(cutoff_ms);
    for digest in &candidates {
        delete = delete.bind(digest.as_str());
    }
    let mut claimed = digest_sizes(delete.fetch_all(&mut *conn).await?)?;
    claimed.sort();
    mark_removing(conn, claimed.iter().map(|(d, _)| d)).await?;
    Ok(claimed)
}

/// Ends the removals of `ended` (see `LifecycleStore::finish_blob_removals`).
async fn end_removals(conn: &mut Conn, ended: &EndedRemovals) -> Result<()> {
    // Taken after the bytes are gone: a push that stored them before this
    // moment is asked to check them.
    let deleted_at = now_ms();
    for chunk in ended.claimed.chunks(SWEEP_CHUNK) {
        let mut finish = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE blob_deletions SET deleted_at = $1, removing = 0 WHERE digest IN ({})",
            parameters(2, chunk.len())
        )))
        .bind(deleted_at);
        for digest in chunk {
            finish = finish.bind(digest.as_str());
        }
        finish.execute(&mut *conn).await?;
    }
    // Created at 0: garbage for the next collection at once.
    for chunk in ended.kept.chunks(SWEEP_CHUNK) {
        let rows = (0..chunk.len())
            .map(|k| format!("(${}, ${}, 0)", 2 * k + 1, 2 * k + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let mut record = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO blobs (digest, size, created_at) VALUES {rows}
             ON CONFLICT (digest) DO NOTHING"
        )));
        for (digest, size) in chunk {
            record = record.bind(digest.as_str()).bind(*size as i64);
        }
        record.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Leaves a tombstone for each of `digests` saying its bytes are being
/// removed, from now.
async fn mark_removing<'a>(
    conn: &mut Conn,
    digests: impl ExactSizeIterator<Item = &'a Digest>,
) -> Result<()> {
    if digests.len() == 0 {
        return Ok(());
    }
    let tombstones = (0..digests.len())
        .map(|k| format!("(${}, $1, 1)", k + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let mut record = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO blob_deletions (digest, deleted_at, removing) VALUES {tombstones}
         ON CONFLICT (digest) DO UPDATE SET deleted_at = excluded.deleted_at, removing = 1"
    )))
    .bind(now_ms());
    for digest in digests {
        record = record.bind(digest.as_str());
    }
    record.execute(&mut *conn).await?;
    Ok(())
}

/// Claims those of `chunk` no row records: a row of this transaction's own
/// for each (a push recording one waits for this commit: SQLite's single
/// writer, PostgreSQL's unique index on an uncommitted row), a tombstone
/// saying its bytes are being removed, and the row deleted again.
async fn claim_unrecorded_chunk(conn: &mut Conn, chunk: &[Digest]) -> Result<Vec<Digest>> {
    let rows = (0..chunk.len())
        .map(|k| format!("(${}, 0, 0)", k + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let mut claim = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO blobs (digest, size, created_at) VALUES {rows}
         ON CONFLICT (digest) DO NOTHING RETURNING digest"
    )));
    for digest in chunk {
        claim = claim.bind(digest.as_str());
    }
    let mut claimed = claim
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|d| stored_digest(d))
        .collect::<Result<Vec<_>>>()?;
    claimed.sort();
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    mark_removing(conn, claimed.iter()).await?;
    let mut delete = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM blobs WHERE digest IN ({})",
        parameters(1, claimed.len())
    )));
    for digest in &claimed {
        delete = delete.bind(digest.as_str());
    }
    delete.execute(&mut *conn).await?;
    Ok(claimed)
}

#[async_trait]
impl LifecycleStore for Store {
    async fn stale_links(
        &self,
        cutoff_ms: i64,
        after: Option<&LinkKey>,
        limit: u32,
    ) -> Result<Vec<LinkKey>> {
        let (after_id, after_digest) = after.map_or((i64::MIN, ""), |k| (k.repository_id, k.digest.as_str()));
        let rows = sqlx::query(
            "SELECT repository_id, digest FROM repository_blobs
             WHERE refs = 0 AND linked_at < $1
               AND (repository_id > $2 OR (repository_id = $2 AND digest > $3))
             ORDER BY repository_id, digest LIMIT $4",
        )
        .bind(cutoff_ms)
        .bind(after_id)
        .bind(after_digest)
        .bind(i64::from(limit))
        .fetch_all(self.lifecycle_readers().await?)
        .await?;
        rows.iter()
            .map(|row| {
                let digest: String = row.try_get(1)?;
                Ok(LinkKey {
                    repository_id: row.try_get(0)?,
                    digest: stored_digest(&digest)?,
                })
            })
            .collect()
    }

    async fn remove_stale_links(&self, links: &[LinkKey], cutoff_ms: i64) -> Result<Swept> {
        if links.is_empty() {
            return Ok(Swept::default());
        }
        write_tx!(self, |tx| {
            let change = Change {
                actor: "system:gc".to_owned(),
                at_ms: now_ms(),
            };
            let mut swept = Swept::default();
            for chunk in links.chunks(SWEEP_CHUNK) {
                let s = remove_stale_chunk(&mut tx, chunk, cutoff_ms, &change).await?;
                swept.count += s.count;
                swept.bytes += s.bytes;
            }
            swept
        })
    }

    async fn orphan_manifests(
        &self,
        cutoff_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(
            "SELECT c.digest, c.size FROM manifest_contents c
             WHERE c.created_at < $1 AND c.digest > $2
               AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = c.digest)
             ORDER BY c.digest LIMIT $3",
        )
        .bind(cutoff_ms)
        .bind(after.map_or("", Digest::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.lifecycle_readers().await?)
        .await?;
        digest_sizes(rows)
    }

    async fn remove_orphan_manifests(&self, digests: &[Digest], cutoff_ms: i64) -> Result<Swept> {
        if digests.is_empty() {
            return Ok(Swept::default());
        }
        write_tx!(self, |tx| {
            let mut swept = Swept::default();
            for chunk in digests.chunks(SWEEP_CHUNK) {
                let s = remove_orphan_manifest_chunk(&mut tx, chunk, cutoff_ms).await?;
                swept.count += s.count;
                swept.bytes += s.bytes;
            }
            swept
        })
    }

    async fn orphan_blobs(
        &self,
        cutoff_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(super::ORPHAN_BLOBS)
        .bind(cutoff_ms)
        .bind(after.map_or("", Digest::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.lifecycle_readers().await?)
        .await?;
        digest_sizes(rows)
    }

    async fn claim_orphan_blobs(
        &self,
        digests: &[Digest],
        cutoff_ms: i64,
        ended: &EndedRemovals,
    ) -> Result<Vec<(Digest, u64)>> {
        if digests.is_empty() && ended.is_empty() {
            return Ok(Vec::new());
        }
        write_tx!(self, |tx| {
            end_removals(&mut tx, ended).await?;
            let mut claimed = Vec::new();
            for chunk in digests.chunks(SWEEP_CHUNK) {
                claimed.extend(claim_orphan_blob_chunk(&mut tx, chunk, cutoff_ms).await?);
            }
            claimed
        })
    }

    async fn finish_blob_removals(&self, ended: &EndedRemovals) -> Result<()> {
        if ended.is_empty() {
            return Ok(());
        }
        write_tx!(self, |tx| end_removals(&mut tx, ended).await?)
    }

    async fn unrecorded_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut unrecorded = Vec::new();
        for chunk in digests.chunks(SWEEP_CHUNK) {
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "SELECT digest FROM blobs WHERE digest IN ({})",
                parameters(1, chunk.len())
            )));
            for d in chunk {
                query = query.bind(d.as_str());
            }
            let recorded: HashSet<String> =
                query.fetch_all(self.lifecycle_readers().await?).await?.into_iter().collect();
            unrecorded.extend(chunk.iter().filter(|d| !recorded.contains(d.as_str())).cloned());
        }
        Ok(unrecorded)
    }

    async fn claim_unrecorded_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        write_tx!(self, |tx| {
            let mut claimed = Vec::new();
            for chunk in digests.chunks(SWEEP_CHUNK) {
                claimed.extend(claim_unrecorded_chunk(&mut tx, chunk).await?);
            }
            claimed
        })
    }

    async fn prune_blob_deletions(&self, before_ms: i64) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM blob_deletions WHERE deleted_at < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    async fn blobs_page(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        // Only blobs some repository links: an unlinked one is garbage that
        // the next collection removes.
        let rows = sqlx::query(
            "SELECT b.digest, b.size FROM blobs b
             WHERE b.digest > $1
               AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
             ORDER BY b.digest LIMIT $2",
        )
        .bind(after.map_or("", Digest::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.lifecycle_readers().await?)
        .await?;
        digest_sizes(rows)
    }

    async fn blob_recorded(&self, digest: &Digest) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(self.readers())
            .await?;
        Ok(found.is_some())
    }

    async fn artifact_graph(&self, project: Option<&str>) -> Result<Vec<GraphRepository>> {
        // Three reads in one snapshot: manifests, tags, index children.
        let mut tx = self.lifecycle_readers().await?.begin_with(super::SNAPSHOT).await?;
        let scope = "JOIN repositories r ON r.id = m.repository_id
                     JOIN projects p ON p.id = r.project_id
                     WHERE (CAST($1 AS TEXT) IS NULL OR p.name = $1)";
        let manifests = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.id, r.name, m.digest, m.pushed_at, m.pulled_at, m.pull_count, m.subject
             FROM manifests m {scope}"
        )))
        .bind(project)
        .fetch_all(&mut *tx)
        .await?;
        let mut repos: Vec<GraphRepository> = Vec::new();
        let mut repo_index: HashMap<i64, usize> = HashMap::new();
        let mut artifact_index: HashMap<(i64, String), usize> = HashMap::new();
        for row in &manifests {
            let repo_id: i64 = row.try_get(0)?;
            let slot = match repo_index.get(&repo_id) {
                Some(&slot) => slot,
                None => {
                    let name: String = row.try_get(1)?;
                    repos.push(GraphRepository {
                        name: stored_name(&name)?,
                        artifacts: Vec::new(),
                    });
                    repo_index.insert(repo_id, repos.len() - 1);
                    repos.len() - 1
                }
            };
            let digest: String = row.try_get(2)?;
            let pull_count: i64 = row.try_get(5)?;
            let subject: Option<String> = row.try_get(6)?;
            let artifacts = &mut repos[slot].artifacts;
            artifacts.push(GraphArtifact {
                digest: stored_digest(&digest)?,
                pushed_at_ms: row.try_get(3)?,
                pulled_at_ms: row.try_get(4)?,
                pull_count: pull_count as u64,
                tags: Vec::new(),
                children: Vec::new(),
                subject: subject.as_deref().map(stored_digest).transpose()?,
            });
            artifact_index.insert((repo_id, digest), artifacts.len() - 1);
        }
        let tags = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT m.repository_id, m.digest, m.name FROM tags m {scope}"
        )))
        .bind(project)
        .fetch_all(&mut *tx)
        .await?;
        for row in &tags {
            let repo_id: i64 = row.try_get(0)?;
            let digest: String = row.try_get(1)?;
            let (Some(&slot), Some(&at)) = (
                repo_index.get(&repo_id),
                artifact_index.get(&(repo_id, digest)),
            ) else {
                continue;
            };
            repos[slot].artifacts[at].tags.push(row.try_get(2)?);
        }
        let children = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT m.repository_id, m.digest, x.target_digest FROM manifests m
             JOIN manifest_references x ON x.manifest_digest = m.digest AND x.kind = 1
             {scope}"
        )))
        .bind(project)
        .fetch_all(&mut *tx)
        .await?;
        for row in &children {
            let repo_id: i64 = row.try_get(0)?;
            let digest: String = row.try_get(1)?;
            let child: String = row.try_get(2)?;
            let (Some(&slot), Some(&at)) = (
                repo_index.get(&repo_id),
                artifact_index.get(&(repo_id, digest)),
            ) else {
                continue;
            };
            repos[slot].artifacts[at].children.push(stored_digest(&child)?);
        }
        tx.commit().await?;
        repos.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(repos)
    }

    async fn project_settings(&self, project: &str) -> Result<Option<ProjectSettings>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{PROJECT_SETTINGS} WHERE name = $1")))
            .bind(project)
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(settings_from_row).transpose()
    }

    async fn set_project_settings(&self, settings: &ProjectSettings) -> Result<()> {
        write_tx!(self, |tx| {
            let updated = sqlx::query(
                "UPDATE projects SET quota_bytes = $2, quota_artifacts = $3, quota_warn_percent = $4,
                     immutability = $5, retention = $6, retention_schedule = $7, updated_at = $8
                 WHERE name = $1",
            )
            .bind(&settings.project)
            .bind(settings.quota_bytes.map(|v| v as i64))
            .bind(settings.quota_artifacts.map(|v| v as i64))
            .bind(i64::from(settings.quota_warn_percent))
            .bind(&settings.immutability)
            .bind(settings.retention.as_deref())
            .bind(settings.retention_schedule.as_deref())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(MetadataError::ProjectUnknown(settings.project.clone()));
            }
        })
    }

    async fn retention_projects(&self) -> Result<Vec<ProjectSettings>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PROJECT_SETTINGS} WHERE retention IS NOT NULL ORDER BY name"
        )))
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(settings_from_row).collect()
    }

    async fn project_usage(&self, project: &str) -> Result<Option<ProjectUsage>> {
        let mut conn = self.readers().acquire().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
            .bind(project)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(id) = id else { return Ok(None) };
        let (bytes, artifacts) = usage_of(&mut conn, id).await?;
        Ok(Some(ProjectUsage {
            bytes: bytes.max(0) as u64,
            artifacts: artifacts.max(0) as u64,
        }))
    }

    async fn start_run(&self, run: &NewRun) -> Result<i64> {
        write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO lifecycle_runs (kind, project, trigger, dry_run, requested_by, status, started_at)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6) RETURNING id",
            )
            .bind(run.kind.as_str())
            .bind(run.project.as_deref())
            .bind(&run.trigger)
            .bind(i64::from(run.dry_run))
            .bind(&run.requested_by)
            .bind(run.started_at_ms)
            .fetch_one(&mut *tx)
            .await?;
            id
        })
    }

    async fn finish_run(&self, id: i64, outcome: &RunOutcome) -> Result<()> {
        write_tx!(self, |tx| {
            sqlx::query(
                "UPDATE lifecycle_runs SET status = $2, finished_at = $3, summary = $4, items = $5, error = $6
                 WHERE id = $1",
            )
            .bind(id)
            .bind(if outcome.succeeded { "succeeded" } else { "failed" })
            .bind(outcome.finished_at_ms)
            .bind(&outcome.summary)
            .bind(&outcome.items)
            .bind(outcome.error.as_deref())
            .execute(&mut *tx)
            .await?;
            // The end of a real retention run is an event of its project.
            let summary: serde_json::Value =
                serde_json::from_str(&outcome.summary).unwrap_or_default();
            let detail = serde_json::json!({
                "run_id": id,
                "succeeded": outcome.succeeded,
                "summary": summary,
                "error": outcome.error,
            });
            sqlx::query(
                "INSERT INTO events (kind, repository, actor, occurred_at, dispatched, detail)
                 SELECT 'retention.finished', r.project, r.requested_by, $2,
                     CASE WHEN EXISTS (SELECT 1 FROM webhook_policies w
                         JOIN projects p ON p.id = w.project_id
                         WHERE p.name = r.project AND w.enabled = 1) THEN 0 ELSE 1 END,
                     $3
                 FROM lifecycle_runs r
                 WHERE r.id = $1 AND r.kind = 'retention' AND r.dry_run = 0
                   AND r.project IS NOT NULL",
            )
            .bind(id)
            .bind(outcome.finished_at_ms)
            .bind(detail.to_string())
            .execute(&mut *tx)
            .await?;
        })
    }

    async fn run(&self, id: i64) -> Result<Option<Run>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM lifecycle_runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn runs(&self, kind: RunKind, project: Option<&str>, page: Page) -> Result<Listed<Run>> {
        let filter = "WHERE kind = $1 AND (CAST($2 AS TEXT) IS NULL OR project = $2)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM lifecycle_runs {filter}"
        )))
        .bind(kind.as_str())
        .bind(project)
        .fetch_one(self.readers())
        .await?;
        let columns = RUN_COLUMNS.replace("items", "'[]' AS items");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM lifecycle_runs {filter} ORDER BY id DESC LIMIT $3 OFFSET $4"
        )))
        .bind(kind.as_str())
        .bind(project)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(self.readers())
        .await?;
        Ok(Listed {
            items: rows.iter().map(run_from_row).collect::<Result<_>>()?,
            total: total as u64,
        })
    }

    async fn abandon_runs(&self, kind: RunKind, project: Option<&str>) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query(
                "UPDATE lifecycle_runs SET status = 'failed', finished_at = $3,
                     error = 'the node running it stopped before it finished'
                 WHERE status = 'running' AND kind = $1 AND (CAST($2 AS TEXT) IS NULL OR project = $2)",
            )
            .bind(kind.as_str())
            .bind(project)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
    }

    async fn prune_runs(&self, before_ms: i64) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM lifecycle_runs WHERE status <> 'running' AND started_at < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    async fn record_quota_exceeded(
        &self,
        repository: &RepoName,
        usage: u64,
        change: &Change,
    ) -> Result<()> {
        write_tx!(self, |tx| {
            let event = EventRecord {
                repository: repository.as_str(),
                size: Some(usage),
                ..Default::default()
            };
            record_event(&mut tx, EventKind::QuotaExceeded, event, change).await?;
        })
    }
}
