//! Opening the stores the configuration selects: the metadata database
//! (SQLite or PostgreSQL) and the blob store (a directory or S3).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metadata::{
    IdentityStore, MetaStore, PostgresMetaStore, PostgresOptions, SqliteMetaStore, SqliteOptions,
    Transfer,
};
use storage::{BlobStore, FsBlobStore, S3BlobStore};

use crate::config::{Config, DatabaseKind};

/// An open metadata database of either kind.
#[derive(Clone, Debug)]
pub enum Metadata {
    Sqlite(SqliteMetaStore),
    Postgres(PostgresMetaStore),
}

impl Metadata {
    /// Connects to the configured database and applies pending migrations.
    pub async fn open(config: &Config) -> anyhow::Result<Metadata> {
        match config.database()? {
            DatabaseKind::Sqlite(path) => {
                let store = SqliteMetaStore::open(&SqliteOptions {
                    path: path.clone(),
                    readers: config.database.max_connections,
                    fsync_every_commit: config.database.fsync_every_commit,
                })
                .await
                .with_context(|| format!("cannot open the metadata database {}", path.display()))?;
                Ok(Metadata::Sqlite(store))
            }
            DatabaseKind::Postgres(url) => {
                let store = PostgresMetaStore::open(&postgres_options(config, url))
                    .await
                    .context("cannot open the PostgreSQL metadata database")?;
                Ok(Metadata::Postgres(store))
            }
        }
    }

    /// Like [`Metadata::open`], for a database that must exist already (the
    /// source of a copy): a mistyped SQLite path is an error, not a new,
    /// empty registry.
    pub async fn open_existing(config: &Config) -> anyhow::Result<Metadata> {
        if let DatabaseKind::Sqlite(path) = config.database()? {
            anyhow::ensure!(
                path.is_file(),
                "there is no metadata database at {}",
                path.display()
            );
        }
        Metadata::open(config).await
    }

    pub fn store(&self) -> Arc<dyn MetaStore> {
        match self {
            Metadata::Sqlite(s) => Arc::new(s.clone()),
            Metadata::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// The same database, for a whole-database copy.
    pub fn identity_store(&self) -> Arc<dyn IdentityStore> {
        match self {
            Metadata::Sqlite(s) => Arc::new(s.clone()),
            Metadata::Postgres(s) => Arc::new(s.clone()),
        }
    }

    pub fn transfer(&self) -> &dyn Transfer {
        match self {
            Metadata::Sqlite(s) => s,
            Metadata::Postgres(s) => s,
        }
    }

    /// Waits for connections in use, then closes them.
    pub async fn close(&self) {
        match self {
            Metadata::Sqlite(s) => s.close().await,
            Metadata::Postgres(s) => s.close().await,
        }
    }
}

fn postgres_options(config: &Config, url: String) -> PostgresOptions {
    PostgresOptions {
        url,
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_seconds),
        statement_timeout: Duration::from_secs(config.database.statement_timeout_seconds),
    }
}

/// Opens the configured blob store.
pub async fn open_blobs(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    if let Some(s3) = &config.storage.s3 {
        let store = S3BlobStore::open(s3).context("cannot use the S3 blob store")?;
        return Ok(Arc::new(store));
    }
    let dir = config.blob_dir();
    let store = FsBlobStore::open(&dir)
        .await
        .with_context(|| format!("cannot open the blob directory {}", dir.display()))?;
    Ok(Arc::new(store))
}
