//! What the SQL backends share.
//!
//! SQLite and PostgreSQL run the same queries: every statement here is written
//! in the SQL both accept, with `$1`-style parameters (sqlx's SQLite driver
//! reads them as positions too). The few statements that differ are constants
//! of each backend module (`LIST_REPOSITORIES`, `LIST_TAGS`, the schema).
//!
//! The query code is written once, in `common.rs`, `blobs.rs`, `manifests.rs`
//! and `store.rs` of this folder, and each backend compiles it against its own
//! driver types with `include!`: the backend module defines `Db`, `Conn`,
//! `Row`, `Pool` and `Store`, then includes the files in submodules. A single
//! function generic over `sqlx::Database` would need a dozen higher-ranked
//! bounds repeated on every function; the include keeps the code plain and the
//! types concrete, so each backend is checked and optimised as if written by hand.
//!
//! Writes run through [`write_tx!`]: the transaction is run again when the
//! database aborted it as a serialization failure or deadlock, which is how
//! PostgreSQL's `SERIALIZABLE` isolation reports that two concurrent writers
//! could not both commit as if one ran after the other. SQLite has one writer
//! and never reports either.

use std::str::FromStr;
use std::time::Duration;

use oci::{Digest, RepoName, Tag};

use crate::{MetadataError, Result};

/// A schema migration, applied in order at open. Never edit one that shipped;
/// add a new one.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// How often a conflicting write transaction is run again before the caller
/// gets [`MetadataError::Unavailable`].
pub(crate) const MAX_ATTEMPTS: u32 = 12;

/// Waits before running a conflicting transaction again: exponential from
/// 1 ms, capped at 100 ms, with jitter so that the two losers of a conflict
/// do not collide again in lockstep.
pub(crate) async fn conflict_backoff(attempt: u32) {
    let base_us = 1000u64 << attempt.min(7);
    let cap_us = base_us.min(100_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let jitter_us = nanos % (cap_us / 2 + 1);
    tokio::time::sleep(Duration::from_micros(cap_us / 2 + jitter_us)).await;
}

/// Runs `$body` inside a write transaction of `$store` (which has an async
/// `begin_write`), with `$tx` bound to the transaction, and commits. A
/// transaction the database aborted as a conflict runs again from the start.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            let result: $crate::Result<_> = async {
                let mut $tx = $store.begin_write().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if e.is_transaction_conflict() && attempt < $crate::sql::MAX_ATTEMPTS => {
                    attempt += 1;
                    $crate::sql::conflict_backoff(attempt).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use write_tx;

/// How far apart two nodes' clocks may be for the blob tombstone check
/// (`blob_deletions`): a push is checked again when garbage collection
/// deleted its blob up to this long before the push says it stored it.
pub(crate) const CLOCK_SKEW_MS: i64 = 10_000;

/// How long a removal of blob bytes may stay unfinished (a tombstone with
/// `removing` set) before it is taken for the work of a node that died: a
/// push then counts the bytes as removed this long after the removal began.
/// A removal takes seconds; the embedded database finishes a dead process's
/// removals when it opens.
pub(crate) const ABANDONED_REMOVAL_MS: i64 = 600_000;

pub(crate) fn now_ms() -> i64 {
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

pub(crate) fn stored_name(s: &str) -> Result<RepoName> {
    RepoName::parse(s).map_err(|e| {
        MetadataError::Backend(format!("corrupt repository name {s:?} in the database: {e}").into())
    })
}

pub(crate) fn stored_tag(s: &str) -> Result<Tag> {
    Tag::parse(s).map_err(|e| {
        MetadataError::Backend(format!("corrupt tag {s:?} in the database: {e}").into())
    })
}

/// Long listings come back as one newline-joined value (names and tags cannot
/// contain a newline): the SQLite driver hands every row to another thread, and
/// one row instead of thousands is what makes a 10,000-tag listing fast.
pub(crate) fn split_lines(joined: Option<&str>) -> impl Iterator<Item = &str> {
    joined.unwrap_or("").split('\n').filter(|s| !s.is_empty())
}

/// A column's type in both schemas (SQLite `INTEGER`/PostgreSQL `BIGINT`,
/// `TEXT`, SQLite `BLOB`/PostgreSQL `BYTEA`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ColumnType {
    Int,
    Text,
    Bytes,
}

/// A table as a whole-database copy sees it.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnType)],
    /// The primary key, so rows come out in a stable order.
    pub order_by: &'static str,
    /// An identity column whose counter must follow the copied ids.
    pub identity: Option<&'static str>,
}

/// Every table of the schema, parents before children (foreign keys hold
/// at each insert). A new migration that adds a table adds it here, unless
/// its rows mean nothing in another database: `leases` (held by the nodes of
/// one deployment, for seconds), `login_failures` (minutes of throttling)
/// and `blob_deletions` (tombstones of the source's blob store, kept for an
/// hour) are left out on purpose.
pub(crate) const TABLES: &[Table] = {
    use ColumnType::{Bytes, Int, Text};
    &[
        Table {
            name: "projects",
            columns: &[
                ("id", Int),
                ("name", Text),
                ("public", Int),
                ("description", Text),
                ("labels", Text),
                ("created_at", Int),
                ("updated_at", Int),
                ("quota_bytes", Int),
                ("quota_artifacts", Int),
                ("quota_warn_percent", Int),
                ("immutability", Text),
                ("retention", Text),
                ("retention_schedule", Text),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "project_usage",
            columns: &[
                ("project_id", Int),
                ("shard", Int),
                ("bytes", Int),
                ("artifacts", Int),
            ],
            order_by: "project_id, shard",
            identity: None,
        },
        Table {
            name: "repositories",
            columns: &[
                ("id", Int),
                ("name", Text),
                ("created_at", Int),
                ("project_id", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "blobs",
            columns: &[("digest", Text), ("size", Int), ("created_at", Int)],
            order_by: "digest",
            identity: None,
        },
        Table {
            name: "repository_blobs",
            columns: &[
                ("repository_id", Int),
                ("digest", Text),
                ("linked_at", Int),
                ("refs", Int),
            ],
            order_by: "repository_id, digest",
            identity: None,
        },
        Table {
            name: "manifest_contents",
            columns: &[
                ("id", Int),
                ("digest", Text),
                ("media_type", Text),
                ("size", Int),
                ("body", Bytes),
                ("subject", Text),
                ("artifact_type", Text),
                ("annotations", Text),
                ("created_at", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "manifest_references",
            columns: &[
                ("manifest_digest", Text),
                ("target_digest", Text),
                ("kind", Int),
            ],
            order_by: "manifest_digest, kind, target_digest",
            identity: None,
        },
        Table {
            name: "manifests",
            columns: &[
                ("repository_id", Int),
                ("digest", Text),
                ("subject", Text),
                ("pushed_at", Int),
                ("pulled_at", Int),
                ("pull_count", Int),
            ],
            order_by: "repository_id, digest",
            identity: None,
        },
        Table {
            name: "tags",
            columns: &[
                ("repository_id", Int),
                ("name", Text),
                ("digest", Text),
                ("updated_at", Int),
            ],
            order_by: "repository_id, name",
            identity: None,
        },
        Table {
            name: "events",
            columns: &[
                ("id", Int),
                ("kind", Text),
                ("repository", Text),
                ("digest", Text),
                ("tag", Text),
                ("previous_digest", Text),
                ("media_type", Text),
                ("size", Int),
                ("actor", Text),
                ("occurred_at", Int),
                ("detail", Text),
                ("dispatched", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "webhook_policies",
            columns: &[
                ("id", Int),
                ("project_id", Int),
                ("name", Text),
                ("url", Text),
                ("events", Text),
                ("format", Text),
                ("auth_header", Text),
                ("secret", Text),
                ("skip_tls_verify", Int),
                ("enabled", Int),
                ("created_at", Int),
                ("updated_at", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "webhook_deliveries",
            columns: &[
                ("id", Int),
                ("policy_id", Int),
                ("event_id", Int),
                ("event_type", Text),
                ("ordering_key", Text),
                ("body", Text),
                ("status", Text),
                ("attempts", Int),
                ("next_attempt_at", Int),
                ("locked_until", Int),
                ("response_code", Int),
                ("error", Text),
                ("latency_ms", Int),
                ("created_at", Int),
                ("finished_at", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "users",
            columns: &[
                ("id", Int),
                ("name", Text),
                ("email", Text),
                ("full_name", Text),
                ("source", Text),
                ("external_id", Text),
                ("password_hash", Text),
                ("admin", Int),
                ("disabled", Int),
                ("credentials_changed_at", Int),
                ("last_login_at", Int),
                ("created_at", Int),
                ("updated_at", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "user_groups",
            columns: &[("user_id", Int), ("group_name", Text)],
            order_by: "user_id, group_name",
            identity: None,
        },
        Table {
            name: "project_members",
            columns: &[
                ("id", Int),
                ("project_id", Int),
                ("user_id", Int),
                ("group_name", Text),
                ("repository", Text),
                ("role", Text),
                ("created_at", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "robots",
            columns: &[
                ("id", Int),
                ("name", Text),
                ("project_id", Int),
                ("description", Text),
                ("secret_hash", Text),
                ("permissions", Text),
                ("expires_at", Int),
                ("disabled", Int),
                ("credentials_changed_at", Int),
                ("created_by", Text),
                ("created_at", Int),
                ("updated_at", Int),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "signing_keys",
            columns: &[
                ("id", Text),
                ("secret", Bytes),
                ("created_at", Int),
                ("retired_at", Int),
            ],
            order_by: "id",
            identity: None,
        },
        Table {
            name: "audit_log",
            columns: &[
                ("id", Int),
                ("occurred_at", Int),
                ("actor", Text),
                ("address", Text),
                ("operation", Text),
                ("resource_type", Text),
                ("resource", Text),
                ("project", Text),
                ("success", Int),
                ("detail", Text),
            ],
            order_by: "id",
            identity: Some("id"),
        },
        Table {
            name: "lifecycle_runs",
            columns: &[
                ("id", Int),
                ("kind", Text),
                ("project", Text),
                ("trigger", Text),
                ("dry_run", Int),
                ("requested_by", Text),
                ("status", Text),
                ("started_at", Int),
                ("finished_at", Int),
                ("summary", Text),
                ("items", Text),
                ("error", Text),
            ],
            order_by: "id",
            identity: Some("id"),
        },
    ]
};

/// One column value in neutral form.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}
