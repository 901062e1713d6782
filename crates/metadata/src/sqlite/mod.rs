//! The embedded SQLite backend (WAL mode).
//!
//! Writes go through a pool of exactly one connection and run in `BEGIN
//! IMMEDIATE` transactions: SQLite admits one writer at a time, and a single
//! writer connection turns lock contention into an orderly queue instead of
//! `SQLITE_BUSY` retries. Reads use a separate pool of read-only connections,
//! which WAL mode never blocks behind the writer.

mod blobs;
mod manifests;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use oci::{Digest, RepoName, Tag};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::model::{
    Change, Event, EventKind, NewManifest, PutManifestOutcome, Referrer, StorageUsage,
    StoredManifest,
};
use crate::{MetaStore, MetadataError, Result};

/// Schema migrations, applied in order at open. Never edit one that shipped;
/// add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "registry_core",
    include_str!("../../migrations/sqlite/0001_registry_core.sql"),
)];

/// How to open the SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// Read-only connections in the read pool.
    pub readers: u32,
    /// `synchronous = FULL` (fsync at every commit) when true, `NORMAL` (a
    /// power loss may undo the last commits, never corrupt) when false.
    pub fsync_every_commit: bool,
}

#[derive(Clone, Debug)]
pub struct SqliteMetaStore {
    /// Exactly one connection; see the module documentation.
    writer: SqlitePool,
    /// Read-only connections.
    readers: SqlitePool,
}

impl SqliteMetaStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(options: &SqliteOptions) -> Result<Self> {
        if let Some(parent) = options.path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| MetadataError::Backend(Box::new(e)))?;
        }
        let base = SqliteConnectOptions::new()
            .filename(&options.path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.fsync_every_commit {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .statement_cache_capacity(256)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        migrate(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.read_only(true))
            .await?;
        Ok(SqliteMetaStore { writer, readers })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes both pools, waiting for connections to finish (and checkpoint).
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
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
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tracing::info!(version, name, "applying metadata migration");
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(version)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses a digest read back from the database; a failure means the row is corrupt.
pub(crate) fn stored_digest(s: &str) -> Result<Digest> {
    Digest::from_str(s).map_err(|e| {
        MetadataError::Backend(format!("corrupt digest {s:?} in the database: {e}").into())
    })
}

/// Long listings come back as one newline-joined value (names and tags cannot
/// contain a newline): the driver hands every row to another thread, and one
/// row instead of thousands is what makes a 10,000-tag listing fast.
fn split_lines(joined: Option<&str>) -> impl Iterator<Item = &str> {
    joined.unwrap_or("").split('\n').filter(|s| !s.is_empty())
}

fn stored_name(s: &str) -> Result<RepoName> {
    RepoName::parse(s).map_err(|e| {
        MetadataError::Backend(format!("corrupt repository name {s:?} in the database: {e}").into())
    })
}

fn stored_tag(s: &str) -> Result<Tag> {
    Tag::parse(s).map_err(|e| {
        MetadataError::Backend(format!("corrupt tag {s:?} in the database: {e}").into())
    })
}

pub(crate) async fn repository_id(
    conn: &mut SqliteConnection,
    repo: &RepoName,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repo.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// The repository's id, creating the repository if this is its first push.
pub(crate) async fn ensure_repository(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    change: &Change,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET name = excluded.name
         RETURNING id",
    )
    .bind(repo.as_str())
    .bind(change.at_ms)
    .fetch_one(conn)
    .await?)
}

/// An outbox row to write inside the current transaction.
#[derive(Default)]
pub(crate) struct EventRecord<'a> {
    pub repository: &'a str,
    pub digest: Option<&'a Digest>,
    pub tag: Option<&'a str>,
    pub previous_digest: Option<&'a Digest>,
    pub media_type: Option<&'a str>,
    pub size: Option<u64>,
}

pub(crate) async fn record_event(
    conn: &mut SqliteConnection,
    kind: EventKind,
    event: EventRecord<'_>,
    change: &Change,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (kind, repository, digest, tag, previous_digest, media_type, size, actor, occurred_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(conn)
    .await?;
    Ok(())
}

fn event_from_row(row: &SqliteRow) -> Result<Event> {
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
    })
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let mut conn = self.readers.acquire().await?;
        Ok(repository_id(&mut conn, repo).await?.is_some())
    }

    async fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Vec<RepoName>> {
        let names: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(name, char(10) ORDER BY name) FROM
                 (SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?)",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_one(&self.readers)
        .await?;
        split_lines(names.as_deref()).map(stored_name).collect()
    }

    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        blobs::linked_blob(&self.readers, repo, digest).await
    }

    async fn content_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = ? AND rb.digest = ?
             UNION ALL
             SELECT c.size FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             JOIN manifest_contents c ON c.digest = m.digest
             WHERE r.name = ? AND m.digest = ?
             LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.readers)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn repositories_with_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<RepoName>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = ? ORDER BY r.name LIMIT ?",
        )
        .bind(digest.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        names.iter().map(|n| stored_name(n)).collect()
    }

    async fn link_new_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        change: &Change,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        blobs::link_new_blob(&mut tx, repo, digest, size, change).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_existing_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        change: &Change,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let size = blobs::link_existing_blob(&mut tx, repo, digest, change).await?;
        tx.commit().await?;
        Ok(size)
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, change: &Change) -> Result<()> {
        let mut tx = self.begin_write().await?;
        blobs::unlink_blob(&mut tx, repo, digest, change).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        manifest: NewManifest,
        change: &Change,
    ) -> Result<PutManifestOutcome> {
        let mut tx = self.begin_write().await?;
        let outcome = manifests::put_manifest(&mut tx, &manifest, change).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        manifests::by_digest(&self.readers, repo, digest).await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>> {
        manifests::by_tag(&self.readers, repo, tag).await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        change: &Change,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        manifests::delete_manifest(&mut tx, repo, digest, change).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, change: &Change) -> Result<()> {
        let mut tx = self.begin_write().await?;
        manifests::delete_tag(&mut tx, repo, tag, change).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<Tag>>> {
        let mut conn = self.readers.acquire().await?;
        let Some(id) = repository_id(&mut conn, repo).await? else {
            return Ok(None);
        };
        let names: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(name, char(10) ORDER BY name) FROM
                 (SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?)",
        )
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
        manifests::referrers(&self.readers, repo, subject, artifact_type, after, limit).await
    }

    async fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?")
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn storage_usage(&self) -> Result<StorageUsage> {
        let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM blobs")
            .fetch_one(&self.readers)
            .await?;
        let n: i64 = row.try_get("n")?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok(StorageUsage {
            blobs: n as u64,
            bytes: bytes as u64,
        })
    }
}
