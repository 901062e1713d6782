//! `wharf migrate-data`: copy a whole registry from one pair of stores to
//! another, for example from the embedded SQLite + directory to PostgreSQL +
//! S3, or back.
//!
//! Blobs go first, each streamed from the source and verified against its
//! digest as the destination stores it (blobs already there are skipped, so
//! an interrupted run can run again). The metadata follows in one
//! transaction: the destination shows nothing until every row is in, and
//! never a tag or manifest whose blobs are missing. The source's data is
//! only read (its schema is first brought up to date, as `wharf migrate`
//! would); stop writes to it (take its nodes down) for the duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use futures_util::{TryStreamExt, stream};
use metadata::TransferReport;
use oci::Digest;
use storage::BlobStore;

use crate::config::Config;
use crate::stores::{self, Metadata};

/// Blobs copied at once.
const PARALLEL_BLOBS: usize = 4;
/// Blobs listed per page of the source database.
const PAGE: u32 = 1000;

/// What a copy moved.
#[derive(Debug)]
pub struct Summary {
    pub blobs_copied: u64,
    pub blobs_present: u64,
    pub bytes_copied: u64,
    pub rows: TransferReport,
}

/// Copies everything from the stores of `from` into the stores of `to`.
pub async fn run(from: &Config, to: &Config) -> anyhow::Result<Summary> {
    let source_meta = Metadata::open_existing(from).await.context("source")?;
    let source_blobs = stores::open_blobs(from).await.context("source")?;
    let empty = source_meta.transfer().blobs(None, 1).await?.is_empty()
        && source_meta
            .store()
            .list_repositories(None, 1)
            .await?
            .is_empty();
    anyhow::ensure!(
        !empty,
        "the source registry holds nothing; check the database and storage of --from"
    );
    let target_meta = Metadata::open(to).await.context("destination")?;
    let target_blobs = stores::open_blobs(to).await.context("destination")?;

    let copied = AtomicU64::new(0);
    let present = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let mut after: Option<Digest> = None;
    loop {
        let page = source_meta
            .transfer()
            .blobs(after.as_ref(), PAGE)
            .await
            .context("cannot list the source's blobs")?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        stream::iter(page.into_iter().map(Ok::<_, anyhow::Error>))
            .try_for_each_concurrent(PARALLEL_BLOBS, |(digest, size)| {
                let (source, target) = (source_blobs.clone(), target_blobs.clone());
                let (copied, present, bytes) = (&copied, &present, &bytes);
                async move {
                    if copy_blob(&source, &target, &digest, size).await? {
                        copied.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(size, Ordering::Relaxed);
                    } else {
                        present.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            })
            .await?;
        tracing::info!(
            copied = copied.load(Ordering::Relaxed),
            already_present = present.load(Ordering::Relaxed),
            "blobs"
        );
    }

    let rows = metadata::copy_database(source_meta.transfer(), target_meta.transfer())
        .await
        .context("cannot copy the metadata")?;
    source_meta.close().await;
    target_meta.close().await;
    Ok(Summary {
        blobs_copied: copied.into_inner(),
        blobs_present: present.into_inner(),
        bytes_copied: bytes.into_inner(),
        rows,
    })
}

/// Copies one blob unless the destination has it; true if it was copied.
async fn copy_blob(
    source: &Arc<dyn BlobStore>,
    target: &Arc<dyn BlobStore>,
    digest: &Digest,
    size: u64,
) -> anyhow::Result<bool> {
    if target.stat(digest).await? == Some(size) {
        return Ok(false);
    }
    let read = source.read(digest, None).await.with_context(|| {
        format!("the source database lists blob {digest}, but its blob store cannot read it")
    })?;
    let stored = target
        .put(digest, read.body, size)
        .await
        .with_context(|| format!("cannot copy blob {digest}"))?;
    anyhow::ensure!(
        stored == size,
        "blob {digest} has {stored} bytes, the database says {size}"
    );
    Ok(true)
}
