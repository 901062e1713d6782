//! The embedded SQLite backend (WAL mode).
//!
//! Writes go through a pool of exactly one connection and run in `BEGIN
//! IMMEDIATE` transactions: SQLite admits one writer at a time, and a single
//! writer connection turns lock contention into an orderly queue instead of
//! `SQLITE_BUSY` retries. Reads use a separate pool of read-only connections,
//! which WAL mode never blocks behind the writer.
//!
//! The queries are shared with PostgreSQL (see `crate::sql`).

use std::path::PathBuf;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::sql::Migration;
use crate::{MetadataError, Result};

type Db = Sqlite;
type Conn = SqliteConnection;
type Row = SqliteRow;
type Pool = sqlx::Pool<Db>;
type Store = SqliteMetaStore;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry_core",
        sql: include_str!("../../migrations/sqlite/0001_registry_core.sql"),
    },
    Migration {
        version: 2,
        name: "leases",
        sql: include_str!("../../migrations/sqlite/0002_leases.sql"),
    },
    Migration {
        version: 3,
        name: "identity",
        sql: include_str!("../../migrations/sqlite/0003_identity.sql"),
    },
    Migration {
        version: 4,
        name: "pull_times",
        sql: include_str!("../../migrations/sqlite/0004_pull_times.sql"),
    },
    Migration {
        version: 5,
        name: "lifecycle",
        sql: include_str!("../../migrations/sqlite/0005_lifecycle.sql"),
    },
];

/// The writer is the only connection that writes, so migrations need no lock.
const MIGRATION_LOCK: &str = "SELECT 1";
const MIGRATION_BEGIN: &str = "BEGIN IMMEDIATE";

const LIST_REPOSITORIES: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM
     (SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2)";

const LIST_TAGS: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM
     (SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3)";

/// A read transaction sees one snapshot from its first read to its end.
const SNAPSHOT: &str = "BEGIN";

/// The single writer already excludes every other write.
const FOR_UPDATE: &str = "";
const FOR_SHARE: &str = "";

/// SQLite moves its row-id counters past inserted ids by itself.
fn identity_reset(_table: &str, _column: &str) -> Option<String> {
    None
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

use common::{
    EventRecord, Held, RepositoryIds, add_usage, ensure_repository, event_from_row,
    held_elsewhere_in_project, migrate, record_event, repository, repository_id, usage_of,
};

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
    writer: Pool,
    /// Read-only connections.
    readers: Pool,
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

    fn readers(&self) -> &Pool {
        &self.readers
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Db>> {
        begin_write(&self.writer).await
    }

    /// Drops every lease, for a server starting on the embedded database,
    /// which only it uses: what leases remain are a dead process's.
    pub async fn release_all_leases(&self) -> Result<()> {
        sqlx::query("DELETE FROM leases")
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Closes both pools, waiting for connections to finish (and checkpoint).
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

async fn begin_write(pool: &Pool) -> Result<Transaction<'static, Db>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}
