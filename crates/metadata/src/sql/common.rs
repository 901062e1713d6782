// Repository rows, the outbox and migrations. Included by each SQL backend
// (see `sql/mod.rs`).

use oci::{Digest, RepoName};
use sqlx::Row as _;

use super::{Conn, MIGRATION_BEGIN, MIGRATION_LOCK, MIGRATIONS, Pool, Row};
use crate::model::{Change, Event, EventKind};
use crate::sql::{now_ms, stored_digest};
use crate::{MetadataError, Result};

/// Applies pending migrations in one transaction. `MIGRATION_LOCK` makes
/// nodes that start together wait for each other instead of racing, and
/// `MIGRATION_BEGIN` lets each statement after the lock see what the node
/// before committed (a snapshot taken before the wait would not).
pub(super) async fn migrate(pool: &Pool) -> Result<()> {
    let mut tx = pool.begin_with(MIGRATION_BEGIN).await?;
    sqlx::query(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&newest) = applied.last()
        && newest > known
    {
        return Err(MetadataError::Backend(
            format!(
                "the database schema is at version {newest}, newer than this wharf knows ({known}); \
                 run a newer wharf"
            )
            .into(),
        ));
    }
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        tracing::info!(
            version = m.version,
            name = m.name,
            "applying metadata migration"
        );
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn repository_id(conn: &mut Conn, repo: &RepoName) -> Result<Option<i64>> {
    Ok(repository(conn, repo).await?.map(|r| r.id))
}

/// A repository's row ids: its own and its project's.
#[derive(Clone, Copy, Debug)]
pub(super) struct RepositoryIds {
    pub id: i64,
    pub project_id: i64,
}

pub(super) async fn repository(conn: &mut Conn, repo: &RepoName) -> Result<Option<RepositoryIds>> {
    let row = sqlx::query("SELECT id, project_id FROM repositories WHERE name = $1")
        .bind(repo.as_str())
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        Ok(RepositoryIds {
            id: row.try_get(0)?,
            project_id: row.try_get(1)?,
        })
    })
    .transpose()
}

/// The repository, creating it if this is its first push.
/// An existing repository is only read: writing its row on every push would
/// make all concurrent pushes to one repository conflict with each other.
pub(super) async fn ensure_repository(
    conn: &mut Conn,
    repo: &RepoName,
    change: &Change,
) -> Result<RepositoryIds> {
    if let Some(ids) = repository(conn, repo).await? {
        return Ok(ids);
    }
    // A repository lives in a project; the project must exist (checked in
    // this transaction, so a project deleted concurrently cannot be left
    // holding a repository).
    let project_id: i64 = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
        .bind(repo.project())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| MetadataError::ProjectUnknown(repo.project().to_owned()))?;
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at, project_id) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING
         RETURNING id",
    )
    .bind(repo.as_str())
    .bind(change.at_ms)
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    match created {
        Some(id) => Ok(RepositoryIds { id, project_id }),
        // Created by a concurrent transaction since the read above.
        None => repository(conn, repo)
            .await?
            .ok_or(MetadataError::RepositoryUnknown),
    }
}

/// An outbox row to write inside the current transaction.
#[derive(Default)]
pub(super) struct EventRecord<'a> {
    pub repository: &'a str,
    pub digest: Option<&'a Digest>,
    pub tag: Option<&'a str>,
    pub previous_digest: Option<&'a Digest>,
    pub media_type: Option<&'a str>,
    pub size: Option<u64>,
}

pub(super) async fn record_event(
    conn: &mut Conn,
    kind: EventKind,
    event: EventRecord<'_>,
    change: &Change,
) -> Result<()> {
    // An event waits for the webhook dispatcher only if a policy of its
    // project could want it: in a project without webhooks it is born
    // dispatched, and costs no later write.
    let project = event.repository.split('/').next().unwrap_or_default();
    sqlx::query(
        "INSERT INTO events (kind, repository, digest, tag, previous_digest, media_type, size, actor,
             occurred_at, dispatched)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
             CASE WHEN $10 = 1 AND EXISTS (SELECT 1 FROM webhook_policies w
                 JOIN projects p ON p.id = w.project_id WHERE p.name = $11 AND w.enabled = 1)
             THEN 0 ELSE 1 END)",
    )
    .bind(kind.as_str())
    .bind(event.repository)
    .bind(event.digest.map(Digest::as_str))
    .bind(event.tag)
    .bind(event.previous_digest.map(Digest::as_str))
    .bind(event.media_type)
    .bind(event.size.map(|s| s as i64))
    .bind(&change.actor)
    .bind(change.at_ms)
    .bind(i64::from(kind.dispatched()))
    .bind(project)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) fn event_from_row(row: &Row) -> Result<Event> {
    let kind: String = row.try_get("kind")?;
    let digest: Option<String> = row.try_get("digest")?;
    let previous: Option<String> = row.try_get("previous_digest")?;
    let size: Option<i64> = row.try_get("size")?;
    Ok(Event {
        id: row.try_get("id")?,
        kind: EventKind::parse(&kind).ok_or_else(|| {
            MetadataError::Backend(format!("unknown event kind {kind:?} in the outbox").into())
        })?,
        repository: row.try_get("repository")?,
        digest: digest.as_deref().map(stored_digest).transpose()?,
        tag: row.try_get("tag")?,
        previous_digest: previous.as_deref().map(stored_digest).transpose()?,
        media_type: row.try_get("media_type")?,
        size: size.map(|s| s as u64),
        actor: row.try_get("actor")?,
        occurred_at_ms: row.try_get("occurred_at")?,
        detail: row.try_get("detail")?,
    })
}

/// A push past one of the project's limits fails with
/// [`MetadataError::QuotaExceeded`] (rolling back its transaction); one that
/// crosses the warning threshold records a `quota.warning` event.
async fn check_quota(
    conn: &mut Conn,
    project_id: i64,
    repo: &RepoName,
    bytes: i64,
    artifacts: i64,
    change: &Change,
) -> Result<()> {
    let row = sqlx::query(
        "SELECT name, quota_bytes, quota_artifacts, quota_warn_percent FROM projects WHERE id = $1",
    )
    .bind(project_id)
    .fetch_one(&mut *conn)
    .await?;
    let limits: (Option<i64>, Option<i64>) = (row.try_get(1)?, row.try_get(2)?);
    if limits.0.is_none() && limits.1.is_none() {
        return Ok(());
    }
    let name: String = row.try_get(0)?;
    let warn_percent: i64 = row.try_get(3)?;
    let (used_bytes, used_artifacts) = usage_of(conn, project_id).await?;
    let checks = [
        (crate::QuotaResource::Storage, limits.0, used_bytes, bytes),
        (crate::QuotaResource::Artifacts, limits.1, used_artifacts, artifacts),
    ];
    let mut warned = false;
    for (resource, limit, used, adding) in checks {
        let Some(limit) = limit.filter(|_| adding > 0) else {
            continue;
        };
        if used + adding > limit {
            return Err(MetadataError::QuotaExceeded(crate::QuotaExceeded {
                project: name,
                resource,
                limit: limit as u64,
                usage: used.max(0) as u64,
                needed: adding as u64,
            }));
        }
        let threshold = limit.saturating_mul(warn_percent) / 100;
        if !warned && used < threshold && used + adding >= threshold {
            warned = true;
            let event = EventRecord {
                repository: repo.as_str(),
                size: Some((used + adding) as u64),
                ..Default::default()
            };
            record_event(conn, EventKind::QuotaWarning, event, change).await?;
        }
    }
    Ok(())
}

/// Rows of `project_usage` per project; see the schema (0005_lifecycle).
const USAGE_SHARDS: i64 = 8;

/// What a project holds and counts once however many of its repositories
/// hold it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Held {
    /// A blob linked to a repository.
    Blob,
    /// A manifest in a repository.
    Manifest,
}

/// Whether a repository of the project other than `repo` holds `digest`.
pub(super) async fn held_elsewhere_in_project(
    conn: &mut Conn,
    held: Held,
    repo: RepositoryIds,
    digest: &str,
) -> Result<bool> {
    let sql = match held {
        Held::Blob => {
            "SELECT h.repository_id FROM repository_blobs h JOIN repositories r ON r.id = h.repository_id
             WHERE h.digest = $1 AND r.project_id = $2 AND h.repository_id <> $3 LIMIT 1"
        }
        Held::Manifest => {
            "SELECT h.repository_id FROM manifests h JOIN repositories r ON r.id = h.repository_id
             WHERE h.digest = $1 AND r.project_id = $2 AND h.repository_id <> $3 LIMIT 1"
        }
    };
    let found: Option<i64> = sqlx::query_scalar(sql)
        .bind(digest)
        .bind(repo.project_id)
        .bind(repo.id)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// A project's usage, summed over its rows.
pub(super) async fn usage_of(conn: &mut Conn, project_id: i64) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT), CAST(COALESCE(SUM(artifacts), 0) AS BIGINT)
         FROM project_usage WHERE project_id = $1",
    )
    .bind(project_id)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Adds to a project's usage in the current transaction; growth is checked
/// against the project's quotas first ([`check_quota`]). Shrinking is never
/// refused.
pub(super) async fn add_usage(
    conn: &mut Conn,
    project_id: i64,
    repo: &RepoName,
    bytes: i64,
    artifacts: i64,
    change: &Change,
) -> Result<()> {
    if bytes == 0 && artifacts == 0 {
        return Ok(());
    }
    if bytes > 0 || artifacts > 0 {
        check_quota(conn, project_id, repo, bytes, artifacts, change).await?;
    }
    // Any row will do; one picked from the clock's nanoseconds spreads
    // concurrent pushes over the rows.
    let shard = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::from(d.subsec_nanos()))
        % USAGE_SHARDS;
    sqlx::query(
        "INSERT INTO project_usage (project_id, shard, bytes, artifacts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (project_id, shard) DO UPDATE
         SET bytes = project_usage.bytes + excluded.bytes,
             artifacts = project_usage.artifacts + excluded.artifacts",
    )
    .bind(project_id)
    .bind(shard)
    .bind(bytes)
    .bind(artifacts)
    .execute(conn)
    .await?;
    Ok(())
}
