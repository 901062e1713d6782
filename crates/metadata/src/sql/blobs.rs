// Blob records and their links to repositories. Included by each SQL backend
// (see `sql/mod.rs`).

use oci::{Digest, RepoName};

use super::{
    Conn, EventRecord, FOR_SHARE, Held, Pool, RepositoryIds, add_usage, ensure_repository,
    held_elsewhere_in_project, record_event, repository,
};
use crate::model::{Change, EventKind, StoredBytes};
use crate::{MetadataError, Result};

pub(super) async fn linked_blob(
    pool: &Pool,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>> {
    let size: Option<i64> = sqlx::query_scalar(
        "SELECT b.size FROM repository_blobs rb
         JOIN repositories r ON r.id = rb.repository_id
         JOIN blobs b ON b.digest = rb.digest
         WHERE r.name = $1 AND rb.digest = $2",
    )
    .bind(repo.as_str())
    .bind(digest.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(size.map(|s| s as u64))
}

pub(super) async fn link_new_blob(
    conn: &mut Conn,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
    stored: StoredBytes,
    change: &Change,
) -> Result<()> {
    let ids = ensure_repository(conn, repo, change).await?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(size as i64)
    .bind(change.at_ms)
    .execute(&mut *conn)
    .await?;
    // The row is held from here on (SQLite's single writer; PostgreSQL's
    // share lock, which waits for a sweep that locked it first): a deletion
    // of these bytes has either committed its tombstone, visible below, or
    // cannot start before this link commits.
    let held: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT size FROM blobs WHERE digest = $1{FOR_SHARE}"
    )))
    .bind(digest.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let tombstone: Option<(i64, i64)> =
        sqlx::query_as("SELECT deleted_at, removing FROM blob_deletions WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let deleted = match tombstone {
        Some((since, removing)) if removing != 0 => {
            if since > crate::sql::now_ms() - crate::sql::ABANDONED_REMOVAL_MS {
                return Err(MetadataError::BlobRemovalPending(digest.clone()));
            }
            // Its node died; the bytes went, if at all, within this time.
            Some(since + crate::sql::ABANDONED_REMOVAL_MS)
        }
        other => other.map(|(at, _)| at),
    };
    // Bytes stored before garbage collection removed them are gone, even
    // though the store said the put succeeded.
    let gone = match (stored, deleted) {
        (StoredBytes::Unchecked, _) => false,
        (_, None) => held.is_none(),
        (StoredBytes::WrittenAt(at), Some(d)) => d >= at - crate::sql::CLOCK_SKEW_MS,
        (StoredBytes::PresentAfter(seen), Some(d)) => d > seen,
    };
    if gone || held.is_none() {
        return Err(MetadataError::BlobGone {
            digest: digest.clone(),
            deleted_at_ms: deleted.unwrap_or(change.at_ms),
        });
    }
    insert_link(conn, repo, ids, digest, size, change).await?;
    record_event(
        conn,
        EventKind::BlobPushed,
        blob_event(repo, digest, Some(size)),
        change,
    )
    .await
}

fn blob_event<'a>(repo: &'a RepoName, digest: &'a Digest, size: Option<u64>) -> EventRecord<'a> {
    EventRecord {
        repository: repo.as_str(),
        digest: Some(digest),
        size,
        ..Default::default()
    }
}

pub(super) async fn link_existing_blob(
    conn: &mut Conn,
    repo: &RepoName,
    digest: &Digest,
    change: &Change,
) -> Result<u64> {
    let size: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
        .bind(digest.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let size = size.ok_or_else(|| MetadataError::BlobUnknown(digest.clone()))? as u64;
    let ids = ensure_repository(conn, repo, change).await?;
    insert_link(conn, repo, ids, digest, size, change).await?;
    record_event(
        conn,
        EventKind::BlobMounted,
        blob_event(repo, digest, Some(size)),
        change,
    )
    .await?;
    Ok(size)
}

/// Links a blob to a repository; a blob new to the repository's project is
/// charged to the project's usage (and checked against its quota).
async fn insert_link(
    conn: &mut Conn,
    repo: &RepoName,
    ids: RepositoryIds,
    digest: &Digest,
    size: u64,
    change: &Change,
) -> Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(ids.id)
    .bind(digest.as_str())
    .bind(change.at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted && !held_elsewhere_in_project(conn, Held::Blob, ids, digest.as_str()).await? {
        add_usage(conn, ids.project_id, repo, size as i64, 0, change).await?;
    }
    Ok(())
}

/// Removes a link, releasing the blob's bytes from the project's usage when
/// no other repository of the project links it. False if there was no link.
pub(super) async fn delete_link(
    conn: &mut Conn,
    repo: &RepoName,
    ids: RepositoryIds,
    digest: &str,
    change: &Change,
) -> Result<bool> {
    let size: Option<i64> = sqlx::query_scalar(
        "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2
         RETURNING (SELECT size FROM blobs WHERE digest = $2)",
    )
    .bind(ids.id)
    .bind(digest)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(size) = size else {
        return Ok(false);
    };
    if !held_elsewhere_in_project(conn, Held::Blob, ids, digest).await? {
        add_usage(conn, ids.project_id, repo, -size, 0, change).await?;
    }
    Ok(true)
}

pub(super) async fn unlink_blob(
    conn: &mut Conn,
    repo: &RepoName,
    digest: &Digest,
    change: &Change,
) -> Result<()> {
    let ids = repository(conn, repo)
        .await?
        .ok_or(MetadataError::RepositoryUnknown)?;
    // `refs` says whether a manifest of the repository uses the blob; which
    // one is looked for only then, through the repository's manifests.
    let user: Option<String> = sqlx::query_scalar(
        "SELECT m.digest FROM repository_blobs rb
         JOIN manifests m ON m.repository_id = rb.repository_id
         JOIN manifest_references r
           ON r.manifest_digest = m.digest AND r.kind = 0 AND r.target_digest = rb.digest
         WHERE rb.repository_id = $1 AND rb.digest = $2 AND rb.refs > 0
         LIMIT 1",
    )
    .bind(ids.id)
    .bind(digest.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(manifest) = user {
        return Err(MetadataError::BlobInUse {
            blob: digest.clone(),
            manifest: crate::sql::stored_digest(&manifest)?,
        });
    }
    if !delete_link(conn, repo, ids, digest.as_str(), change).await? {
        return Err(MetadataError::BlobNotLinked(digest.clone()));
    }
    record_event(
        conn,
        EventKind::BlobDeleted,
        blob_event(repo, digest, None),
        change,
    )
    .await
}
