//! The embedded SQLite backend (WAL mode).
//!
//! Writes go through a pool of exactly one connection and run in `BEGIN
//! IMMEDIATE` transactions: SQLite admits one writer at a time, and a single
//! writer connection turns lock contention into an orderly queue instead of
//! `SQLITE_BUSY` retries. Reads use a separate pool of read-only connections,
//! which WAL mode never blocks behind the writer.
//!
//! The writer never checkpoints (`wal_autocheckpoint = 0`): by default the
//! commit that takes the write-ahead log past 1,000 pages copies them into
//! the database file and fsyncs it, while every other write waits behind it,
//! and does so again a thousand pages later even when those pages are the
//! same few. A background task instead runs a passive checkpoint on a
//! connection of its own every `CHECKPOINT_EVERY`, beside the writer: pages
//! written many times in that interval reach the file once. (Replaying one
//! garbage collection's link sweep on the 1,000,000-blob benchmark
//! database, 16 transactions, the process wrote 1.75 GB with the default
//! and 190 MB without checkpoints.)
//!
//! A passive checkpoint never catches up with steady writes, and SQLite
//! starts the log over only once one has. So when the log holds more than
//! `RESTART_AFTER_FRAMES`, the task takes its turn as the writer and runs a
//! restarting checkpoint, which copies the little left and lets the next
//! write start the log over. Without it the log grew without end under the
//! lifecycle benchmark's steady load (600 MB in ten minutes), and every read
//! and write slowed as it looked pages up in a longer log.
//!
//! Lifecycle runs (garbage collection, retention, integrity checks) read
//! through connections of their own, opened by the first run that reads:
//! runs work on a low-priority runtime (the `jobs` crate), and each
//! connection's worker thread inherits the priority of the thread that
//! opened it, so their scans of the whole database take the processor only
//! when requests leave it idle, and never from the request readers' threads.
//!
//! The queries are shared with PostgreSQL (see `crate::sql`).

use std::path::PathBuf;
use std::sync::{Arc, Weak};
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
    Migration {
        version: 6,
        name: "gc_writes",
        sql: include_str!("../../migrations/sqlite/0006_gc_writes.sql"),
    },
    Migration {
        version: 7,
        name: "webhooks",
        sql: include_str!("../../migrations/sqlite/0007_webhooks.sql"),
    },
];

/// The writer is the only connection that writes, so migrations need no lock.
const MIGRATION_LOCK: &str = "SELECT 1";
const MIGRATION_BEGIN: &str = "BEGIN IMMEDIATE";

const LIST_REPOSITORIES: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM
     (SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2)";

const LIST_TAGS: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM
     (SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3)";

/// Blobs no repository links, created before `$1`, after `$2` in digest
/// order, at most `$3`. SQLite runs a nested loop for `NOT EXISTS`, a lookup
/// in the links' digest index per blob; an `EXCEPT` of the two ordered
/// scans it merges, one pass over each (about 2x faster over the benchmark's
/// 1,000,000 blobs).
const ORPHAN_BLOBS: &str = "SELECT b.digest, b.size FROM blobs b JOIN
     (SELECT digest FROM blobs WHERE digest > $2 AND created_at < $1
      EXCEPT SELECT digest FROM repository_blobs WHERE digest > $2
      ORDER BY digest LIMIT $3) o ON o.digest = b.digest
     ORDER BY b.digest";

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
mod webhooks {
    include!("../sql/webhooks.rs");
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

/// How often the background checkpoint runs; see the module documentation.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Pages in the write-ahead log (about 16 MB) beyond which the background
/// checkpoint restarts it.
const RESTART_AFTER_FRAMES: i64 = 4096;

/// How long a restarting checkpoint waits, holding off writes, for readers
/// of older snapshots to finish; it gives up then and tries again at the
/// next round.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// Read connections lifecycle runs may hold at once: a collection reads its
/// next batch while it claims one.
const LIFECYCLE_READERS: u32 = 2;

/// How long a write waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The size the write-ahead log file is cut back to when it starts over.
const LOG_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct SqliteMetaStore {
    /// Exactly one connection; see the module documentation.
    writer: Pool,
    /// Read-only connections.
    readers: Pool,
    /// One connection, for the background checkpoint.
    checkpointer: Pool,
    /// Read-only connections for lifecycle runs; see the module documentation.
    lifecycle_readers: Arc<tokio::sync::OnceCell<Pool>>,
    /// How read-only connections are opened.
    read_only: Arc<SqliteConnectOptions>,
    /// The checkpoint task ends once every clone of the store is dropped.
    _alive: Arc<()>,
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
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .statement_cache_capacity(256)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768")
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", LOG_SIZE_LIMIT.to_string());
        // No ping before each use: a connection here is a worker thread on a
        // local file, which does not go stale as a network connection does,
        // and the ping is one more hand-off between threads per transaction.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        migrate(&writer).await?;
        let read_only = base.clone().read_only(true);
        let readers = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(read_only.clone())
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base)
            .await?;
        let alive = Arc::new(());
        tokio::spawn(checkpoints(
            checkpointer.clone(),
            writer.clone(),
            Arc::downgrade(&alive),
        ));
        Ok(SqliteMetaStore {
            writer,
            readers,
            checkpointer,
            lifecycle_readers: Arc::default(),
            read_only: Arc::new(read_only),
            _alive: alive,
        })
    }

    fn readers(&self) -> &Pool {
        &self.readers
    }

    async fn lifecycle_readers(&self) -> Result<&Pool> {
        self.lifecycle_readers
            .get_or_try_init(|| async {
                // Connections open as they are first needed, from the
                // acquiring (lifecycle) task: never from a request's thread.
                Ok(SqlitePoolOptions::new()
                    .max_connections(LIFECYCLE_READERS)
                    .min_connections(0)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with(SqliteConnectOptions::clone(&self.read_only)))
            })
            .await
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

    /// Dates from now the blob removals a dead process left unfinished (see
    /// `blob_deletions`), for a server starting on the embedded database:
    /// nothing removes those bytes any more, and a push of them would
    /// otherwise wait until the removal counts as abandoned.
    pub async fn finish_interrupted_removals(&self) -> Result<u64> {
        let finished = sqlx::query(
            "UPDATE blob_deletions SET deleted_at = $1, removing = 0 WHERE removing <> 0",
        )
        .bind(crate::sql::now_ms())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(finished)
    }

    /// Closes the pools, waiting for connections to finish; the writer,
    /// closing last, checkpoints the whole log.
    pub async fn close(&self) {
        self.checkpointer.close().await;
        if let Some(lifecycle) = self.lifecycle_readers.get() {
            lifecycle.close().await;
        }
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// The background checkpoint: a passive one, which copies what no reader
/// still needs and never waits for the writer or a reader, and when the log
/// has grown long, a restarting one; see the module documentation.
async fn checkpoints(pool: Pool, writer: Pool, alive: Weak<()>) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.upgrade().is_none() || pool.is_closed() || writer.is_closed() {
            return;
        }
        match checkpoint(&pool, &writer).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                // Once per minute of failures, not every second.
                if failures % 60 == 1 {
                    tracing::warn!(error = %e, "checkpointing the database's write-ahead log failed");
                }
            }
        }
    }
}

async fn checkpoint(pool: &Pool, writer: &Pool) -> Result<()> {
    use sqlx::Row as _;
    // (busy, pages in the log, pages copied)
    let passive = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    let log: i64 = passive.try_get(1)?;
    if log <= RESTART_AFTER_FRAMES {
        return Ok(());
    }
    // The writer's own connection, taken in turn like any write: a
    // checkpoint waiting for the write lock would wait for ever under steady
    // writes, and writes would queue behind it.
    let mut conn = writer.acquire().await?;
    let timeout = |wait: Duration| format!("PRAGMA busy_timeout = {}", wait.as_millis());
    sqlx::query(sqlx::AssertSqlSafe(timeout(RESTART_WAIT)))
        .execute(&mut *conn)
        .await?;
    // Busy (a row saying so, not an error) when a reader outlasted the wait.
    let restarted = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
        .execute(&mut *conn)
        .await;
    let restored = sqlx::query(sqlx::AssertSqlSafe(timeout(BUSY_TIMEOUT)))
        .execute(&mut *conn)
        .await;
    if restored.is_err() {
        // Never hand back a writer that gives up after 100 ms.
        conn.detach();
    }
    restarted?;
    restored?;
    Ok(())
}

async fn begin_write(pool: &Pool) -> Result<Transaction<'static, Db>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}
