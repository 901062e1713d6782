// The `WebhookStore` implementation of an SQL backend: policies, dispatch of
// the outbox and deliveries. Included by each SQL backend (see `sql/mod.rs`).

use async_trait::async_trait;
use sqlx::Row as _;

use super::{Conn, Row, Store, event_from_row};
use crate::sql::write_tx;
use crate::webhooks::{
    Advanced, AttemptNext, AttemptOutcome, Delivery, DeliveryStatus, NewDelivery, OutboxEvent,
    Step, WebhookPolicy, WebhookSpec, WebhookStore,
};
use crate::{MetadataError, Result};

const POLICY_COLUMNS: &str = "w.id, p.name AS project, w.name, w.url, w.events, w.format,
     w.auth_header, w.secret, w.skip_tls_verify, w.enabled, w.created_at, w.updated_at";

const DELIVERY_COLUMNS: &str = "d.id, d.policy_id, d.event_id, d.event_type, d.body, d.status,
     d.attempts, d.next_attempt_at, d.response_code, d.error, d.latency_ms, d.created_at,
     d.finished_at";

fn policy_from_row(row: &Row) -> Result<WebhookPolicy> {
    let events: String = row.try_get("events")?;
    let skip: i64 = row.try_get("skip_tls_verify")?;
    let enabled: i64 = row.try_get("enabled")?;
    Ok(WebhookPolicy {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        spec: WebhookSpec {
            name: row.try_get("name")?,
            url: row.try_get("url")?,
            events: events.split_whitespace().map(str::to_owned).collect(),
            format: row.try_get("format")?,
            auth_header: row.try_get("auth_header")?,
            secret: row.try_get("secret")?,
            skip_tls_verify: skip != 0,
            enabled: enabled != 0,
        },
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn delivery_from_row(row: &Row) -> Result<Delivery> {
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    let code: Option<i64> = row.try_get("response_code")?;
    let latency: Option<i64> = row.try_get("latency_ms")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        policy_id: row.try_get("policy_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        body: row.try_get("body")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            MetadataError::Backend(format!("unknown delivery status {status:?}").into())
        })?,
        attempts: attempts as u32,
        next_attempt_at_ms: row.try_get("next_attempt_at")?,
        response_code: code.map(|c| c as u16),
        error: row.try_get("error")?,
        latency_ms: latency.map(|l| l as u64),
        created_at_ms: row.try_get("created_at")?,
        finished_at_ms: row.try_get("finished_at")?,
    })
}

async fn policy_by_id(conn: &mut Conn, project: &str, id: i64) -> Result<Option<WebhookPolicy>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {POLICY_COLUMNS} FROM webhook_policies w JOIN projects p ON p.id = w.project_id
         WHERE p.name = $1 AND w.id = $2"
    )))
    .bind(project)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(policy_from_row).transpose()
}

async fn project_id(conn: &mut Conn, name: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| MetadataError::ProjectUnknown(name.to_owned()))
}

/// Stores `deliveries` (claiming those asked for that are the only pending
/// one of their policy and key) and marks `events` dispatched.
async fn dispatch_in(
    conn: &mut Conn,
    events: &[i64],
    deliveries: &[NewDelivery],
    now_ms: i64,
    until_ms: i64,
) -> Result<Vec<Option<(i64, bool)>>> {
    let mut created = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        // The policy may have been deleted since it was read.
        let row = sqlx::query(
            "INSERT INTO webhook_deliveries (policy_id, event_id, event_type, ordering_key,
                 body, status, attempts, next_attempt_at, created_at, locked_until)
             SELECT $1, $2, $3, $4, $5, 'pending', 0, $6, $6,
                 CASE WHEN $7 = 1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                     WHERE e.status = 'pending' AND e.policy_id = $1 AND e.ordering_key = $4)
                 THEN $8 END
             WHERE EXISTS (SELECT 1 FROM webhook_policies WHERE id = $1)
             ON CONFLICT (policy_id, event_id, event_type) DO NOTHING
             RETURNING id, locked_until",
        )
        .bind(d.policy_id)
        .bind(d.event_id)
        .bind(&d.event_type)
        .bind(&d.ordering_key)
        .bind(&d.body)
        .bind(now_ms)
        .bind(i64::from(d.claim))
        .bind(until_ms)
        .fetch_optional(&mut *conn)
        .await?;
        created.push(match row {
            None => None,
            Some(row) => {
                let locked: Option<i64> = row.try_get("locked_until")?;
                Some((row.try_get("id")?, locked.is_some()))
            }
        });
    }
    for id in events {
        sqlx::query("UPDATE events SET dispatched = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(created)
}

async fn claim_in(conn: &mut Conn, ids: &[i64], now_ms: i64, until_ms: i64) -> Result<Vec<i64>> {
    let mut claimed = Vec::with_capacity(ids.len());
    for &id in ids {
        let taken = sqlx::query(
            "UPDATE webhook_deliveries SET locked_until = $1
             WHERE id = $2 AND status = 'pending'
               AND (locked_until IS NULL OR locked_until <= $3)",
        )
        .bind(until_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if taken {
            claimed.push(id);
        }
    }
    Ok(claimed)
}

async fn finish_in(conn: &mut Conn, outcomes: &[AttemptOutcome], now_ms: i64) -> Result<()> {
    for outcome in outcomes {
        let (status, next, finished) = match outcome.next {
            AttemptNext::Succeeded => (DeliveryStatus::Succeeded, now_ms, Some(now_ms)),
            AttemptNext::Failed => (DeliveryStatus::Failed, now_ms, Some(now_ms)),
            AttemptNext::RetryAt(at) => (DeliveryStatus::Pending, at, None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1,
                 next_attempt_at = $2, locked_until = NULL, response_code = $3, error = $4,
                 latency_ms = $5, finished_at = $6
             WHERE id = $7 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(next)
        .bind(outcome.response_code.map(i64::from))
        .bind(outcome.error.as_deref())
        .bind(outcome.latency_ms as i64)
        .bind(finished)
        .bind(outcome.delivery_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl WebhookStore for Store {
    async fn create_webhook(&self, project: &str, spec: &WebhookSpec) -> Result<WebhookPolicy> {
        let now = crate::sql::now_ms();
        write_tx!(self, |tx| {
            let project_id = project_id(&mut tx, project).await?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO webhook_policies (project_id, name, url, events, format, auth_header,
                     secret, skip_tls_verify, enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                 ON CONFLICT (project_id, name) DO NOTHING RETURNING id",
            )
            .bind(project_id)
            .bind(&spec.name)
            .bind(&spec.url)
            .bind(spec.events.join(" "))
            .bind(&spec.format)
            .bind(spec.auth_header.as_deref())
            .bind(spec.secret.as_deref())
            .bind(i64::from(spec.skip_tls_verify))
            .bind(i64::from(spec.enabled))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Err(MetadataError::Conflict(format!(
                    "webhook {:?} in project {project:?}",
                    spec.name
                )));
            };
            policy_by_id(&mut tx, project, id)
                .await?
                .ok_or_else(|| MetadataError::NotFound(format!("webhook {id}")))?
        })
    }

    async fn update_webhook(
        &self,
        project: &str,
        id: i64,
        spec: &WebhookSpec,
    ) -> Result<Option<WebhookPolicy>> {
        let now = crate::sql::now_ms();
        write_tx!(self, |tx| {
            if policy_by_id(&mut tx, project, id).await?.is_none() {
                return Ok(None);
            }
            let renamed_onto: Option<i64> = sqlx::query_scalar(
                "SELECT w.id FROM webhook_policies w JOIN projects p ON p.id = w.project_id
                 WHERE p.name = $1 AND w.name = $2 AND w.id <> $3",
            )
            .bind(project)
            .bind(&spec.name)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if renamed_onto.is_some() {
                return Err(MetadataError::Conflict(format!(
                    "webhook {:?} in project {project:?}",
                    spec.name
                )));
            }
            sqlx::query(
                "UPDATE webhook_policies SET name = $1, url = $2, events = $3, format = $4,
                     auth_header = $5, secret = $6, skip_tls_verify = $7, enabled = $8,
                     updated_at = $9
                 WHERE id = $10",
            )
            .bind(&spec.name)
            .bind(&spec.url)
            .bind(spec.events.join(" "))
            .bind(&spec.format)
            .bind(spec.auth_header.as_deref())
            .bind(spec.secret.as_deref())
            .bind(i64::from(spec.skip_tls_verify))
            .bind(i64::from(spec.enabled))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            policy_by_id(&mut tx, project, id).await?
        })
    }

    async fn webhooks(&self, project: &str) -> Result<Vec<WebhookPolicy>> {
        let mut conn = self.readers().acquire().await?;
        project_id(&mut conn, project).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLUMNS} FROM webhook_policies w JOIN projects p ON p.id = w.project_id
             WHERE p.name = $1 ORDER BY w.name"
        )))
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn webhook(&self, project: &str, id: i64) -> Result<Option<WebhookPolicy>> {
        let mut conn = self.readers().acquire().await?;
        policy_by_id(&mut conn, project, id).await
    }

    async fn delete_webhook(&self, project: &str, id: i64) -> Result<bool> {
        write_tx!(self, |tx| {
            if policy_by_id(&mut tx, project, id).await?.is_none() {
                return Ok(false);
            }
            sqlx::query("DELETE FROM webhook_deliveries WHERE policy_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM webhook_policies WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            true
        })
    }

    async fn enabled_webhooks(&self) -> Result<Vec<WebhookPolicy>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLUMNS} FROM webhook_policies w JOIN projects p ON p.id = w.project_id
             WHERE w.enabled = 1 ORDER BY w.id"
        )))
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn events_to_dispatch(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT e.*, r.project_id AS project_id, p.public AS project_public,
                    r.created_at AS repository_created_at,
                    c.artifact_type AS artifact_type, c.subject AS subject
             FROM (SELECT * FROM events WHERE dispatched = 0 ORDER BY id LIMIT $1) e
             LEFT JOIN repositories r ON r.name = e.repository
             LEFT JOIN projects p ON p.id = r.project_id
             LEFT JOIN manifest_contents c ON c.digest = e.digest AND e.kind = 'manifest.pushed'
             ORDER BY e.id",
        )
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|row| {
                let public: Option<i64> = row.try_get("project_public")?;
                Ok(OutboxEvent {
                    event: event_from_row(row)?,
                    project_id: row.try_get("project_id")?,
                    project_public: public.is_some_and(|p| p != 0),
                    repository_created_at_ms: row.try_get("repository_created_at")?,
                    artifact_type: row.try_get("artifact_type")?,
                    subject: row.try_get("subject")?,
                })
            })
            .collect()
    }

    async fn advance(&self, step: &Step<'_>) -> Result<Advanced> {
        write_tx!(self, |tx| {
            finish_in(&mut tx, step.outcomes, step.now_ms).await?;
            let created =
                dispatch_in(&mut tx, step.events, step.deliveries, step.now_ms, step.until_ms)
                    .await?;
            let claimed = claim_in(&mut tx, step.claims, step.now_ms, step.until_ms).await?;
            Advanced { claimed, created }
        })
    }

    async fn dispatch(
        &self,
        events: &[i64],
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<()> {
        write_tx!(self, |tx| {
            dispatch_in(&mut tx, events, deliveries, now_ms, now_ms).await?;
        })
    }

    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
             JOIN webhook_policies w ON w.id = d.policy_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
               AND (d.locked_until IS NULL OR d.locked_until <= $1)
               AND w.enabled = 1
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                   WHERE e.status = 'pending' AND e.policy_id = d.policy_id
                     AND e.ordering_key = d.ordering_key AND e.id < d.id)
             ORDER BY d.id LIMIT $2"
        )))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn claim_deliveries(&self, ids: &[i64], now_ms: i64, until_ms: i64) -> Result<Vec<i64>> {
        write_tx!(self, |tx| { claim_in(&mut tx, ids, now_ms, until_ms).await? })
    }

    async fn finish_attempts(&self, outcomes: &[AttemptOutcome], now_ms: i64) -> Result<()> {
        write_tx!(self, |tx| { finish_in(&mut tx, outcomes, now_ms).await? })
    }

    async fn deliveries(
        &self,
        policy_id: i64,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
             WHERE d.policy_id = $1 AND d.id < $2 AND ($3 = '' OR d.status = $3)
             ORDER BY d.id DESC LIMIT $4"
        )))
        .bind(policy_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(status.map_or("", DeliveryStatus::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn delivery(&self, policy_id: i64, id: i64) -> Result<Option<Delivery>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.policy_id = $1 AND d.id = $2"
        )))
        .bind(policy_id)
        .bind(id)
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn redeliver(&self, policy_id: i64, id: i64, now_ms: i64) -> Result<bool> {
        write_tx!(self, |tx| {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                     next_attempt_at = $1, locked_until = NULL, finished_at = NULL
                 WHERE policy_id = $2 AND id = $3 AND status <> 'pending'",
            )
            .bind(now_ms)
            .bind(policy_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        })
    }

    async fn release_delivery_claims(&self) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query(
                "UPDATE webhook_deliveries SET locked_until = NULL WHERE locked_until IS NOT NULL",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
    }

    async fn prune_deliveries(&self, before_ms: i64) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query(
                "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND finished_at < $1",
            )
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
    }
}
