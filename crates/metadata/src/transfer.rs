//! Whole-database copy between backends, for `wharf migrate-data`.
//!
//! The source streams every table's rows out of one read snapshot; the
//! destination inserts them, with their ids and times, in one transaction that
//! commits only when the source has sent the last row. An interrupted copy
//! leaves the destination as empty as it was, so it can simply run again.

use async_trait::async_trait;
use oci::Digest;
use tokio::sync::mpsc;

use crate::Result;
use crate::sql::Value;

/// What flows from the source to the destination: the rows of the table at
/// an index of the schema's table list, then the end.
#[derive(Debug)]
pub struct TransferItem(pub(crate) Item);

#[derive(Debug)]
pub(crate) enum Item {
    Row {
        table: usize,
        values: Vec<Value>,
    },
    /// Every row was sent; the destination may commit.
    End,
}

/// Rows copied per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferReport {
    pub tables: Vec<(&'static str, u64)>,
}

impl TransferReport {
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// A metadata database that can be copied whole, from or into.
#[async_trait]
pub trait Transfer: Send + Sync + std::fmt::Debug {
    /// Sends every row of every table, from one consistent snapshot, then
    /// the end. Returns Ok early if the receiving side has gone.
    async fn export(&self, out: mpsc::Sender<TransferItem>) -> Result<()>;

    /// Inserts what `input` brings into this (empty) database, committing
    /// only when the end arrives.
    async fn import(&self, input: mpsc::Receiver<TransferItem>) -> Result<TransferReport>;

    /// The blobs the database records, in digest order after `after`, at most
    /// `limit`: the bytes a copy must move between blob stores.
    async fn blobs(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>>;
}

/// Copies every row of `from` into `to`, which must hold no data.
pub async fn copy_database(from: &dyn Transfer, to: &dyn Transfer) -> Result<TransferReport> {
    let (tx, rx) = mpsc::channel(256);
    let (exported, imported) = tokio::join!(from.export(tx), to.import(rx));
    // An export that failed says why; one that stopped because the
    // destination gave up returns Ok, and the destination's error says why.
    exported?;
    imported
}
