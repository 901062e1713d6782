//! The PostgreSQL backend, for several wharf nodes sharing one database.
//!
//! Every write runs in a `SERIALIZABLE` transaction: PostgreSQL then commits
//! only what some one-at-a-time order of the transactions could have produced,
//! and aborts the rest with a serialization failure, which [`write_tx!`] runs
//! again. That is what keeps the invariants of [`crate::MetaStore`] when two
//! nodes push the same tag, link the same blob, or delete what another is
//! pushing at the same moment: the checks and the writes of one transaction
//! are never interleaved with another's. Reads use the same pool at the
//! default `READ COMMITTED` level; each read is one statement.
//!
//! Outbox event ids come from an identity column: they are unique and grow,
//! but concurrent transactions may commit them out of order, so a consumer
//! must not treat the highest id it saw as a watermark.
//!
//! The queries are shared with SQLite (see `crate::sql`).
//!
//! [`write_tx!`]: crate::sql

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};

use crate::sql::Migration;
use crate::{MetadataError, Result};

type Db = Postgres;
type Conn = PgConnection;
type Row = PgRow;
type Pool = sqlx::Pool<Db>;
type Store = PostgresMetaStore;

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry_core",
        sql: include_str!("../../migrations/postgres/0001_registry_core.sql"),
    },
    Migration {
        version: 2,
        name: "leases",
        sql: include_str!("../../migrations/postgres/0002_leases.sql"),
    },
    Migration {
        version: 3,
        name: "identity",
        sql: include_str!("../../migrations/postgres/0003_identity.sql"),
    },
    Migration {
        version: 4,
        name: "pull_times",
        sql: include_str!("../../migrations/postgres/0004_pull_times.sql"),
    },
    Migration {
        version: 5,
        name: "lifecycle",
        sql: include_str!("../../migrations/postgres/0005_lifecycle.sql"),
    },
    Migration {
        version: 6,
        name: "gc_writes",
        sql: include_str!("../../migrations/postgres/0006_gc_writes.sql"),
    },
    Migration {
        version: 7,
        name: "webhooks",
        sql: include_str!("../../migrations/postgres/0007_webhooks.sql"),
    },
];

/// Nodes starting together take turns applying migrations: the first applies
/// them, the others wait for it and then find nothing left to do. The key is
/// an arbitrary constant ("wharf" in ASCII).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(521644565094)";
/// `READ COMMITTED`: every statement after the lock sees the schema as the
/// node before left it.
const MIGRATION_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

const LIST_REPOSITORIES: &str = "SELECT string_agg(name, chr(10) ORDER BY name) FROM
     (SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2) AS page";

const LIST_TAGS: &str = "SELECT string_agg(name, chr(10) ORDER BY name) FROM
     (SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3) AS page";

/// One snapshot for the whole export.
const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Blobs no repository links, created before `$1`, after `$2` in digest
/// order, at most `$3` (an anti-join, which PostgreSQL stops at the limit).
const ORPHAN_BLOBS: &str = "SELECT b.digest, b.size FROM blobs b
     WHERE b.created_at < $1 AND b.digest > $2
       AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
     ORDER BY b.digest LIMIT $3";

/// Locks the rows a garbage-collection sweep is about to delete, so that a
/// push linking one of them waits for the sweep's commit.
const FOR_UPDATE: &str = " FOR UPDATE";

/// Waits for such a sweep and keeps the row until the linking transaction
/// commits.
const FOR_SHARE: &str = " FOR SHARE";

/// Identity columns take copied ids as given; their sequences must then be
/// moved past the largest, or the next insert would collide.
fn identity_reset(table: &str, column: &str) -> Option<String> {
    Some(format!(
        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
         COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
    ))
}

mod common {
    include!("../sql/common.rs");
}
mod blobs {
    include!("../sql/blobs.rs");
}
mod manifests {
    include!("../sql/manifests.rs");
}
mod store {
    include!("../sql/store.rs");
}
mod listing {
    include!("../sql/listing.rs");
}
mod identity {
    include!("../sql/identity.rs");
}
mod browse {
    include!("../sql/browse.rs");
}
mod transfer {
    include!("../sql/transfer.rs");
}
mod lifecycle {
    include!("../sql/lifecycle.rs");
}
mod webhooks {
    include!("../sql/webhooks.rs");
}

use common::{
    EventRecord, Held, RepositoryIds, add_usage, ensure_repository, event_from_row,
    held_elsewhere_in_project, migrate, record_event, repository, repository_id, usage_of,
};

/// How to reach the PostgreSQL store.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?sslmode=...`
    pub url: String,
    /// Connections this node keeps at most.
    pub max_connections: u32,
    /// How long a request waits for a connection (or for the database to
    /// answer a new connection) before it fails as unavailable.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run before the database cancels it.
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    /// The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct PostgresMetaStore {
    pool: Pool,
}

impl PostgresMetaStore {
    /// Connects and applies pending migrations.
    pub async fn open(options: &PostgresOptions) -> Result<Self> {
        let store = Self::connect(options).await?;
        migrate(&store.pool).await?;
        Ok(store)
    }

    /// Connects without touching the schema (for `wharf migrate`, which then
    /// calls [`PostgresMetaStore::migrate`]).
    pub async fn connect(options: &PostgresOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| {
                MetadataError::Backend(
                    format!("database.url is not a valid PostgreSQL URL: {}", redact(e)).into(),
                )
            })?
            .application_name("wharf")
            .statement_cache_capacity(256)
            .options([(
                "statement_timeout",
                format!("{}", options.statement_timeout.as_millis()),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_with(connect)
            .await?;
        Ok(PostgresMetaStore { pool })
    }

    /// Applies pending migrations (safe to run from several nodes at once).
    pub async fn migrate(&self) -> Result<()> {
        migrate(&self.pool).await
    }

    fn readers(&self) -> &Pool {
        &self.pool
    }

    /// The same pool: the queries run in the database server, whatever the
    /// priority of the thread that sends them.
    async fn lifecycle_readers(&self) -> Result<&Pool> {
        Ok(&self.pool)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Db>> {
        begin_write(&self.pool).await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn begin_write(pool: &Pool) -> Result<Transaction<'static, Db>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await?)
}

/// A URL parse error may quote the URL; keep only its kind.
fn redact(e: sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "malformed URL or unknown option",
        _ => "unreadable",
    }
}
