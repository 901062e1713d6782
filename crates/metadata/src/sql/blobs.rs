// Blob records and their links to repositories. Included by each SQL backend
// (see `sql/mod.rs`).

use oci::{Digest, RepoName};

use super::{Conn, EventRecord, Pool, ensure_repository, record_event, repository_id};
use crate::model::{Change, EventKind};
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
    change: &Change,
) -> Result<()> {
    let repo_id = ensure_repository(conn, repo, change).await?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(size as i64)
    .bind(change.at_ms)
    .execute(&mut *conn)
    .await?;
    insert_link(conn, repo_id, digest, change).await?;
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
    let repo_id = ensure_repository(conn, repo, change).await?;
    insert_link(conn, repo_id, digest, change).await?;
    record_event(
        conn,
        EventKind::BlobMounted,
        blob_event(repo, digest, Some(size)),
        change,
    )
    .await?;
    Ok(size)
}

async fn insert_link(
    conn: &mut Conn,
    repo_id: i64,
    digest: &Digest,
    change: &Change,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .bind(change.at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn unlink_blob(
    conn: &mut Conn,
    repo: &RepoName,
    digest: &Digest,
    change: &Change,
) -> Result<()> {
    let repo_id = repository_id(conn, repo)
        .await?
        .ok_or(MetadataError::RepositoryUnknown)?;
    let user: Option<String> = sqlx::query_scalar(
        "SELECT r.manifest_digest FROM manifest_references r
         JOIN manifests m ON m.digest = r.manifest_digest
         WHERE m.repository_id = $1 AND r.target_digest = $2 AND r.kind = 0
         LIMIT 1",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(manifest) = user {
        return Err(MetadataError::BlobInUse {
            blob: digest.clone(),
            manifest: crate::sql::stored_digest(&manifest)?,
        });
    }
    let removed =
        sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    if removed == 0 {
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
