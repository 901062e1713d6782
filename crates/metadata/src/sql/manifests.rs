// Manifests, tags and referrers. Included by each SQL backend (see `sql/mod.rs`).

use bytes::Bytes;
use oci::{Digest, RepoName, Tag};
use sqlx::Row;

use super::{
    Conn, EventRecord, Held, Pool, Row as DbRow, add_usage, ensure_repository,
    held_elsewhere_in_project, record_event, repository,
};
use crate::error::MissingReference;
use crate::model::{
    Change, DeleteGuard, EventKind, NewManifest, PutManifestOutcome, Referrer, StoredManifest,
    TagChange,
};
use crate::sql::stored_digest;
use crate::{MetadataError, Result};

const REFERENCE_BLOB: i64 = 0;
const REFERENCE_MANIFEST: i64 = 1;

pub(super) async fn put_manifest(
    conn: &mut Conn,
    m: &NewManifest,
    change: &Change,
) -> Result<PutManifestOutcome> {
    let ids = ensure_repository(conn, &m.repository, change).await?;
    let repo_id = ids.id;

    let mut missing = Vec::new();
    for (digest, declared) in &m.blobs {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository_id = $1 AND rb.digest = $2",
        )
        .bind(repo_id)
        .bind(digest.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        check_reference(
            &mut missing,
            digest,
            *declared,
            size,
            MissingReference::Blob,
        );
    }
    for (digest, declared) in &m.manifests {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT c.size FROM manifests m JOIN manifest_contents c ON c.digest = m.digest
             WHERE m.repository_id = $1 AND m.digest = $2",
        )
        .bind(repo_id)
        .bind(digest.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        check_reference(
            &mut missing,
            digest,
            *declared,
            size,
            MissingReference::Manifest,
        );
    }
    if !missing.is_empty() {
        // Dropping the transaction rolls back the repository row too.
        return Err(MetadataError::MissingReferences(missing));
    }

    sqlx::query(
        "INSERT INTO manifest_contents
             (digest, media_type, size, body, subject, artifact_type, annotations, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(m.digest.as_str())
    .bind(&m.media_type)
    .bind(m.body.len() as i64)
    .bind(&m.body[..])
    .bind(m.subject.as_ref().map(Digest::as_str))
    .bind(m.artifact_type.as_deref())
    .bind(m.annotations.as_deref())
    .bind(change.at_ms)
    .execute(&mut *conn)
    .await?;
    let references = m
        .blobs
        .iter()
        .map(|(d, _)| (d, REFERENCE_BLOB))
        .chain(m.manifests.iter().map(|(d, _)| (d, REFERENCE_MANIFEST)));
    for (target, kind) in references {
        sqlx::query(
            "INSERT INTO manifest_references (manifest_digest, target_digest, kind) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(m.digest.as_str())
        .bind(target.as_str())
        .bind(kind)
        .execute(&mut *conn)
        .await?;
    }
    let created = sqlx::query(
        "INSERT INTO manifests (repository_id, digest, subject, pushed_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repo_id)
    .bind(m.digest.as_str())
    .bind(m.subject.as_ref().map(Digest::as_str))
    .bind(change.at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if created {
        sqlx::query(
            "UPDATE repository_blobs SET refs = refs + 1
             WHERE repository_id = $1 AND digest IN
                 (SELECT target_digest FROM manifest_references WHERE manifest_digest = $2 AND kind = 0)",
        )
        .bind(repo_id)
        .bind(m.digest.as_str())
        .execute(&mut *conn)
        .await?;
        let shared = held_elsewhere_in_project(conn, Held::Manifest, ids, m.digest.as_str()).await?;
        let bytes = if shared { 0 } else { m.body.len() as i64 };
        add_usage(conn, ids.project_id, &m.repository, bytes, 1, change).await?;
    }
    let pushed = EventRecord {
        repository: m.repository.as_str(),
        digest: Some(&m.digest),
        media_type: Some(&m.media_type),
        size: Some(m.body.len() as u64),
        ..Default::default()
    };
    record_event(conn, EventKind::ManifestPushed, pushed, change).await?;

    let mut tags = Vec::with_capacity(m.tags.len());
    for tag in &m.tags {
        if tags.iter().any(|t: &TagChange| &t.tag == tag) {
            continue;
        }
        let previous: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        let previous = previous.as_deref().map(stored_digest).transpose()?;
        // Refused here, before the tag moves; the whole push rolls back.
        if previous.as_ref().is_some_and(|p| p != &m.digest) && m.immutable_tags.contains(tag) {
            return Err(MetadataError::TagImmutable {
                tag: tag.as_str().to_owned(),
            });
        }
        if previous.as_ref() != Some(&m.digest) {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository_id, name)
                 DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(m.digest.as_str())
            .bind(change.at_ms)
            .execute(&mut *conn)
            .await?;
            let kind = if previous.is_some() {
                EventKind::TagMoved
            } else {
                EventKind::TagCreated
            };
            let event = EventRecord {
                repository: m.repository.as_str(),
                digest: Some(&m.digest),
                tag: Some(tag.as_str()),
                previous_digest: previous.as_ref(),
                media_type: Some(&m.media_type),
                size: Some(m.body.len() as u64),
            };
            record_event(conn, kind, event, change).await?;
        }
        tags.push(TagChange {
            tag: tag.clone(),
            previous,
        });
    }
    Ok(PutManifestOutcome { created, tags })
}

fn check_reference(
    missing: &mut Vec<MissingReference>,
    digest: &Digest,
    declared: u64,
    actual: Option<i64>,
    absent: fn(Digest) -> MissingReference,
) {
    match actual {
        None => missing.push(absent(digest.clone())),
        Some(actual) if actual as u64 != declared => missing.push(MissingReference::SizeMismatch {
            digest: digest.clone(),
            declared,
            actual: actual as u64,
        }),
        Some(_) => {}
    }
}

fn stored_manifest(row: &DbRow) -> Result<StoredManifest> {
    let digest: String = row.try_get(0)?;
    let body: Vec<u8> = row.try_get(2)?;
    Ok(StoredManifest {
        digest: stored_digest(&digest)?,
        media_type: row.try_get(1)?,
        body: Bytes::from(body),
    })
}

pub(super) async fn by_digest(
    pool: &Pool,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<StoredManifest>> {
    let row = sqlx::query(
        "SELECT c.digest, c.media_type, c.body FROM manifests m
         JOIN repositories r ON r.id = m.repository_id
         JOIN manifest_contents c ON c.digest = m.digest
         WHERE r.name = $1 AND m.digest = $2",
    )
    .bind(repo.as_str())
    .bind(digest.as_str())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(stored_manifest).transpose()
}

pub(super) async fn by_tag(
    pool: &Pool,
    repo: &RepoName,
    tag: &Tag,
) -> Result<Option<StoredManifest>> {
    let row = sqlx::query(
        "SELECT c.digest, c.media_type, c.body FROM tags t
         JOIN repositories r ON r.id = t.repository_id
         JOIN manifest_contents c ON c.digest = t.digest
         WHERE r.name = $1 AND t.name = $2",
    )
    .bind(repo.as_str())
    .bind(tag.as_str())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(stored_manifest).transpose()
}

pub(super) async fn delete_manifest(
    conn: &mut Conn,
    repo: &RepoName,
    digest: &Digest,
    guard: &DeleteGuard<'_>,
    change: &Change,
) -> Result<()> {
    let ids = repository(conn, repo)
        .await?
        .ok_or(MetadataError::RepositoryUnknown)?;
    let repo_id = ids.id;
    let row = sqlx::query(
        "SELECT c.media_type, c.size FROM manifests m JOIN manifest_contents c ON c.digest = m.digest
         WHERE m.repository_id = $1 AND m.digest = $2",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| MetadataError::ManifestUnknown(digest.clone()))?;
    let media_type: String = row.try_get(0)?;
    let size: i64 = row.try_get(1)?;

    // The kind is written out: only then may the planner use the index on
    // targets, which holds no other kind.
    let index: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT r.manifest_digest FROM manifest_references r
         JOIN manifests m ON m.digest = r.manifest_digest
         WHERE m.repository_id = $1 AND r.target_digest = $2 AND r.kind = {REFERENCE_MANIFEST}
           AND r.manifest_digest <> $2
         LIMIT 1"
    )))
    .bind(repo_id)
    .bind(digest.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(index) = index {
        return Err(MetadataError::ManifestInUse {
            manifest: digest.clone(),
            index: stored_digest(&index)?,
        });
    }

    let mut current: Vec<String> =
        sqlx::query_scalar("SELECT name FROM tags WHERE repository_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest.as_str())
            .fetch_all(&mut *conn)
            .await?;
    if let Some(tag) = current.iter().find(|t| (guard.immutable)(t)) {
        return Err(MetadataError::TagImmutable { tag: tag.clone() });
    }
    if let Some(expected) = guard.expected_tags {
        let mut expected = expected.to_vec();
        expected.sort();
        current.sort();
        if expected != current {
            return Err(MetadataError::Changed(digest.clone()));
        }
    }
    let tags: Vec<String> = sqlx::query_scalar(
        "DELETE FROM tags WHERE repository_id = $1 AND digest = $2 RETURNING name",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .fetch_all(&mut *conn)
    .await?;
    for tag in &tags {
        let event = EventRecord {
            repository: repo.as_str(),
            digest: Some(digest),
            tag: Some(tag),
            ..Default::default()
        };
        record_event(conn, EventKind::TagDeleted, event, change).await?;
    }
    sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
        .bind(repo_id)
        .bind(digest.as_str())
        .execute(&mut *conn)
        .await?;
    let shared = held_elsewhere_in_project(conn, Held::Manifest, ids, digest.as_str()).await?;
    let bytes = if shared { 0 } else { size };
    add_usage(conn, ids.project_id, repo, -bytes, -1, change).await?;
    // The blobs it referenced stay linked. For those it was the last manifest
    // to reference, garbage collection's grace period counts from now, so
    // that a push reusing them (which saw them present and did not upload
    // them again) is not harmed.
    sqlx::query(
        "UPDATE repository_blobs
         SET refs = refs - 1, linked_at = CASE WHEN refs = 1 THEN $3 ELSE linked_at END
         WHERE repository_id = $1 AND digest IN
             (SELECT target_digest FROM manifest_references WHERE manifest_digest = $2 AND kind = 0)",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .bind(change.at_ms)
    .execute(&mut *conn)
    .await?;
    let event = EventRecord {
        repository: repo.as_str(),
        digest: Some(digest),
        media_type: Some(&media_type),
        size: Some(size as u64),
        ..Default::default()
    };
    record_event(conn, EventKind::ManifestDeleted, event, change).await
}

pub(super) async fn delete_tag(
    conn: &mut Conn,
    repo: &RepoName,
    tag: &Tag,
    change: &Change,
) -> Result<()> {
    let repo_id = repository(conn, repo)
        .await?
        .ok_or(MetadataError::RepositoryUnknown)?
        .id;
    let digest: Option<String> = sqlx::query_scalar(
        "DELETE FROM tags WHERE repository_id = $1 AND name = $2 RETURNING digest",
    )
    .bind(repo_id)
    .bind(tag.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let digest = stored_digest(&digest.ok_or(MetadataError::TagUnknown)?)?;
    let event = EventRecord {
        repository: repo.as_str(),
        digest: Some(&digest),
        tag: Some(tag.as_str()),
        ..Default::default()
    };
    record_event(conn, EventKind::TagDeleted, event, change).await
}

pub(super) async fn referrers(
    pool: &Pool,
    repo: &RepoName,
    subject: &Digest,
    artifact_type: Option<&str>,
    after: Option<&Digest>,
    limit: u32,
) -> Result<Vec<Referrer>> {
    let rows = sqlx::query(
        "SELECT c.digest, c.media_type, c.size, c.artifact_type, c.annotations FROM manifests m
         JOIN repositories r ON r.id = m.repository_id
         JOIN manifest_contents c ON c.digest = m.digest
         WHERE r.name = $1 AND m.subject = $2 AND (CAST($3 AS TEXT) IS NULL OR c.artifact_type = $3) AND m.digest > $4
         ORDER BY m.digest LIMIT $5",
    )
    .bind(repo.as_str())
    .bind(subject.as_str())
    .bind(artifact_type)
    .bind(after.map_or("", Digest::as_str))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let digest: String = row.try_get(0)?;
            let size: i64 = row.try_get(2)?;
            Ok(Referrer {
                digest: stored_digest(&digest)?,
                media_type: row.try_get(1)?,
                size: size as u64,
                artifact_type: row.try_get(3)?,
                annotations: row.try_get(4)?,
            })
        })
        .collect()
}
