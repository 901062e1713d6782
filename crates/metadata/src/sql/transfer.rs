// Whole-database copy (see `transfer.rs`). Included by each SQL backend (see
// `sql/mod.rs`); the backend provides `SNAPSHOT` (how to begin a consistent
// read transaction) and `identity_reset` (how an identity counter is moved
// past copied ids, if it must be).

use async_trait::async_trait;
use futures_util::TryStreamExt;
use oci::Digest;
use sqlx::Row as _;
use tokio::sync::mpsc;

use super::{Row, SNAPSHOT, Store, identity_reset};
use crate::sql::{ColumnType, TABLES, Table, Value, stored_digest};
use crate::transfer::{Item, Transfer, TransferItem, TransferReport};
use crate::{MetadataError, Result};

fn select_all(table: &Table) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        table.name,
        table.order_by
    )
}

fn insert_one(table: &Table) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        columns.join(", "),
        params.join(", ")
    )
}

fn values(table: &Table, row: &Row) -> Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            Ok(match kind {
                ColumnType::Int => row
                    .try_get::<Option<i64>, _>(i)?
                    .map_or(Value::Null, Value::Int),
                ColumnType::Text => row
                    .try_get::<Option<String>, _>(i)?
                    .map_or(Value::Null, Value::Text),
                ColumnType::Bytes => row
                    .try_get::<Option<Vec<u8>>, _>(i)?
                    .map_or(Value::Null, Value::Bytes),
            })
        })
        .collect()
}

/// The source's channel closed before the end: the export failed, and
/// reports why itself.
fn source_stopped() -> MetadataError {
    MetadataError::Backend("the source stopped before sending every row".into())
}

#[async_trait]
impl Transfer for Store {
    async fn export(&self, out: mpsc::Sender<TransferItem>) -> Result<()> {
        let mut tx = self.readers().begin_with(SNAPSHOT).await?;
        for (index, table) in TABLES.iter().enumerate() {
            // Table and column names are the constants above, never input.
            let sql = sqlx::AssertSqlSafe(select_all(table));
            let mut rows = sqlx::query(sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let item = Item::Row {
                    table: index,
                    values: values(table, &row)?,
                };
                if out.send(TransferItem(item)).await.is_err() {
                    // The destination gave up; its error says why.
                    return Ok(());
                }
            }
        }
        if out.send(TransferItem(Item::End)).await.is_err() {
            return Ok(());
        }
        tx.rollback().await?;
        Ok(())
    }

    async fn import(&self, mut input: mpsc::Receiver<TransferItem>) -> Result<TransferReport> {
        let mut tx = self.begin_write().await?;
        let held: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM repositories) + (SELECT COUNT(*) FROM blobs)
                  + (SELECT COUNT(*) FROM manifest_contents) + (SELECT COUNT(*) FROM events)
                  + (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM robots)
                  + (SELECT COUNT(*) FROM project_members) + (SELECT COUNT(*) FROM audit_log)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if held > 0 {
            return Err(MetadataError::Backend(
                "the destination database already holds data; copy into an empty one".into(),
            ));
        }
        // What a new database holds before anyone used it (the `library`
        // project the schema creates, the signing key a first start made)
        // gives way to the source's.
        for seeded in ["project_usage", "projects", "signing_keys"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {seeded}")))
                .execute(&mut *tx)
                .await?;
        }
        let inserts: Vec<String> = TABLES.iter().map(insert_one).collect();
        let mut counts = vec![0u64; TABLES.len()];
        loop {
            let Some(TransferItem(item)) = input.recv().await else {
                // Dropping `tx` rolls everything back.
                return Err(source_stopped());
            };
            let (table, values) = match item {
                Item::Row { table, values } => (table, values),
                Item::End => break,
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(inserts[table].as_str()));
            for ((_, kind), value) in TABLES[table].columns.iter().zip(values) {
                // A NULL is bound with its column's type: PostgreSQL checks it.
                query = match (value, kind) {
                    (Value::Null, ColumnType::Int) => query.bind(None::<i64>),
                    (Value::Null, ColumnType::Text) => query.bind(None::<String>),
                    (Value::Null, ColumnType::Bytes) => query.bind(None::<Vec<u8>>),
                    (Value::Int(v), _) => query.bind(v),
                    (Value::Text(v), _) => query.bind(v),
                    (Value::Bytes(v), _) => query.bind(v),
                };
            }
            query.execute(&mut *tx).await?;
            counts[table] += 1;
        }
        for table in TABLES {
            if let Some(sql) = table
                .identity
                .and_then(|column| identity_reset(table.name, column))
            {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(TransferReport {
            tables: TABLES.iter().map(|t| t.name).zip(counts).collect(),
        })
    }

    async fn blobs(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(
            "SELECT digest, size FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
        )
        .bind(after.map_or("", Digest::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|row| {
                let digest: String = row.try_get(0)?;
                let size: i64 = row.try_get(1)?;
                Ok((stored_digest(&digest)?, size as u64))
            })
            .collect()
    }
}
