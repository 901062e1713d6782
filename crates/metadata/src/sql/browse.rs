// Browsing for the management API: the repositories of a project, the
// artifacts and tags of a repository with sizes and times, and pull times.
// Included by each SQL backend (see `sql/mod.rs`).

use oci::RepoName;
use sqlx::Row as _;

use super::listing::{Conditions, audited, bind_values, list, order_by};
use super::{Row, Store, repository_id};
use crate::identity::{Listed, Page, Sort};
use crate::model::{ArtifactFilter, ArtifactInfo, Pull, RepositoryFilter, RepositoryInfo, TagInfo};
use crate::sql::{Value, stored_digest, stored_name, write_tx};
use crate::Result;

const REPOSITORY_COLUMNS: &str = "r.name, r.created_at,
     (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id) AS artifact_count,
     (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id) AS tag_count,
     (SELECT MAX(m.pushed_at) FROM manifests m WHERE m.repository_id = r.id) AS pushed_at,
     (SELECT MAX(m.pulled_at) FROM manifests m WHERE m.repository_id = r.id) AS pulled_at
     FROM repositories r JOIN projects p ON p.id = r.project_id";

fn repository_from_row(row: &Row) -> Result<RepositoryInfo> {
    let name: String = row.try_get("name")?;
    Ok(RepositoryInfo {
        name: stored_name(&name)?,
        artifact_count: row.try_get::<i64, _>("artifact_count")? as u64,
        tag_count: row.try_get::<i64, _>("tag_count")? as u64,
        created_at_ms: row.try_get("created_at")?,
        pushed_at_ms: row.try_get("pushed_at")?,
        pulled_at_ms: row.try_get("pulled_at")?,
    })
}

/// The manifest's size plus what it references directly.
const ARTIFACT_COLUMNS: &str = "m.digest, c.media_type, c.artifact_type, m.subject, m.pushed_at, m.pulled_at,
     CAST(c.size
        + COALESCE((SELECT SUM(b.size) FROM manifest_references x JOIN blobs b ON b.digest = x.target_digest
                    WHERE x.manifest_digest = m.digest AND x.kind = 0), 0)
        + COALESCE((SELECT SUM(cc.size) FROM manifest_references x JOIN manifest_contents cc ON cc.digest = x.target_digest
                    WHERE x.manifest_digest = m.digest AND x.kind = 1), 0) AS BIGINT) AS size
     FROM manifests m JOIN manifest_contents c ON c.digest = m.digest";

fn artifact_from_row(row: &Row) -> Result<ArtifactInfo> {
    let digest: String = row.try_get("digest")?;
    let subject: Option<String> = row.try_get("subject")?;
    Ok(ArtifactInfo {
        digest: stored_digest(&digest)?,
        media_type: row.try_get("media_type")?,
        artifact_type: row.try_get("artifact_type")?,
        size: row.try_get::<i64, _>("size")? as u64,
        subject: subject.as_deref().map(stored_digest).transpose()?,
        pushed_at_ms: row.try_get("pushed_at")?,
        pulled_at_ms: row.try_get("pulled_at")?,
        tags: Vec::new(),
    })
}

const TAG_COLUMNS: &str = "t.name, t.digest, t.updated_at, m.pulled_at
     FROM tags t JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest";

fn tag_from_row(row: &Row) -> Result<TagInfo> {
    let digest: String = row.try_get("digest")?;
    Ok(TagInfo {
        name: row.try_get("name")?,
        digest: stored_digest(&digest)?,
        pushed_at_ms: row.try_get("updated_at")?,
        pulled_at_ms: row.try_get("pulled_at")?,
    })
}

impl Store {
    pub(super) async fn browse_repositories(
        &self,
        project: &str,
        filter: &RepositoryFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<RepositoryInfo>> {
        let mut c = Conditions::default();
        c.add("p.name = ?", [Value::Text(project.to_owned())]);
        if let Some(name) = &filter.name {
            c.contains("r.name", name);
        }
        if let Some(only) = &filter.only {
            if only.is_empty() {
                c.add("1 = 0", []);
            } else {
                let marks = vec!["?"; only.len()].join(", ");
                c.add(
                    &format!("r.name IN ({marks})"),
                    only.iter().cloned().map(Value::Text),
                );
            }
        }
        let order = order_by(
            sort,
            &[
                ("name", "r.name"),
                ("created_at", "r.created_at"),
                ("pushed_at", "pushed_at"),
                ("pulled_at", "pulled_at"),
                ("artifact_count", "artifact_count"),
            ],
            "r.name",
            "r.id",
        )?;
        list(
            self.readers(),
            &format!("SELECT {REPOSITORY_COLUMNS}"),
            "SELECT COUNT(*) FROM repositories r JOIN projects p ON p.id = r.project_id",
            &c,
            &order,
            page,
            repository_from_row,
        )
        .await
    }

    pub(super) async fn browse_artifacts(
        &self,
        repo: &RepoName,
        filter: &ArtifactFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Option<Listed<ArtifactInfo>>> {
        let mut conn = self.readers().acquire().await?;
        let Some(id) = repository_id(&mut conn, repo).await? else {
            return Ok(None);
        };
        drop(conn);
        let mut c = Conditions::default();
        c.add("m.repository_id = ?", [Value::Int(id)]);
        match filter.tagged {
            Some(true) => c.add(
                "EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)",
                [],
            ),
            Some(false) => c.add(
                "NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)",
                [],
            ),
            None => {}
        }
        if let Some(media_type) = &filter.media_type {
            c.add("c.media_type = ?", [Value::Text(media_type.clone())]);
        }
        if let Some(artifact_type) = &filter.artifact_type {
            c.add("c.artifact_type = ?", [Value::Text(artifact_type.clone())]);
        }
        let order = order_by(
            sort,
            &[
                ("pushed_at", "m.pushed_at"),
                ("pulled_at", "m.pulled_at"),
                ("size", "size"),
                ("digest", "m.digest"),
            ],
            "m.pushed_at DESC",
            "m.digest",
        )?;
        let mut listed = list(
            self.readers(),
            &format!("SELECT {ARTIFACT_COLUMNS}"),
            "SELECT COUNT(*) FROM manifests m JOIN manifest_contents c ON c.digest = m.digest",
            &c,
            &order,
            page,
            artifact_from_row,
        )
        .await?;
        if !listed.items.is_empty() {
            let marks: Vec<String> = (0..listed.items.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT name, digest FROM tags WHERE repository_id = $1 AND digest IN ({}) ORDER BY name",
                marks.join(", ")
            );
            let digests = listed.items.iter().map(|a| Value::Text(a.digest.as_str().to_owned()));
            let values: Vec<Value> = std::iter::once(Value::Int(id)).chain(digests).collect();
            let rows = bind_values!(sqlx::query(audited(sql)), values)
                .fetch_all(self.readers())
                .await?;
            for row in rows {
                let name: String = row.try_get("name")?;
                let digest: String = row.try_get("digest")?;
                if let Some(a) = listed.items.iter_mut().find(|a| a.digest.as_str() == digest) {
                    a.tags.push(name);
                }
            }
        }
        Ok(Some(listed))
    }

    pub(super) async fn browse_tags(
        &self,
        repo: &RepoName,
        name: Option<&str>,
        sort: &Sort,
        page: Page,
    ) -> Result<Option<Listed<TagInfo>>> {
        let mut conn = self.readers().acquire().await?;
        let Some(id) = repository_id(&mut conn, repo).await? else {
            return Ok(None);
        };
        drop(conn);
        let mut c = Conditions::default();
        c.add("t.repository_id = ?", [Value::Int(id)]);
        if let Some(name) = name {
            c.contains("t.name", name);
        }
        let order = order_by(
            sort,
            &[
                ("name", "t.name"),
                ("pushed_at", "t.updated_at"),
                ("pulled_at", "m.pulled_at"),
            ],
            "t.name",
            "t.digest",
        )?;
        list(
            self.readers(),
            &format!("SELECT {TAG_COLUMNS}"),
            "SELECT COUNT(*) FROM tags t JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest",
            &c,
            &order,
            page,
            tag_from_row,
        )
        .await
        .map(Some)
    }

    pub(super) async fn write_pulls(&self, pulls: &[Pull]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        write_tx!(self, |tx| {
            for pull in pulls {
                sqlx::query(
                    "UPDATE manifests
                     SET pulled_at = CASE WHEN pulled_at IS NULL OR pulled_at < $1 THEN $1 ELSE pulled_at END,
                         pull_count = pull_count + $4
                     WHERE digest = $2
                       AND repository_id = (SELECT id FROM repositories WHERE name = $3)",
                )
                .bind(pull.at_ms)
                .bind(pull.digest.as_str())
                .bind(pull.repository.as_str())
                .bind(pull.count as i64)
                .execute(&mut *tx)
                .await?;
                // A pull event only for a project with a policy that asks.
                sqlx::query(
                    "INSERT INTO events (kind, repository, digest, actor, occurred_at, dispatched)
                     SELECT 'manifest.pulled', $1, $2, $3, $4, 0
                     WHERE EXISTS (SELECT 1 FROM webhook_policies w
                         JOIN repositories r ON r.project_id = w.project_id
                         WHERE r.name = $1 AND w.enabled = 1
                           AND (' ' || w.events || ' ') LIKE '% artifact.pulled %')",
                )
                .bind(pull.repository.as_str())
                .bind(pull.digest.as_str())
                .bind(&pull.actor)
                .bind(pull.at_ms)
                .execute(&mut *tx)
                .await?;
            }
        })
    }
}
