//! Online garbage collection, driven by the metadata store.
//!
//! Nothing is locked for the length of a run and the registry stays
//! writable: each step pages through candidates on a read snapshot, then
//! removes a batch in one short write transaction that checks every
//! candidate again (see `metadata::LifecycleStore`). What is younger than the
//! grace period is never a candidate, so an in-flight push (layers uploaded,
//! manifest not yet sent) is never harmed. The steps, in order:
//!
//! 1. with `delete_untagged`, untagged manifests that nothing keeps (no tag,
//!    no index or subject that is kept, pushed before the grace period), each
//!    deleted the way a client's DELETE is, with its events;
//! 2. blob links no manifest of their repository references, made (or
//!    released by their last manifest) before the grace period;
//! 3. manifest contents no repository holds;
//! 4. blobs linked to no repository, in batches: their rows go first (with
//!    tombstones that hold off pushes of the same blobs), then their bytes,
//!    so that no write transaction waits on the blob store; the transaction
//!    claiming one batch also ends the removal of the batch before;
//! 5. upload sessions untouched for `upload_max_age`.
//!
//! A dry run takes the same steps and counts what each would remove, without
//! removing it (a blob counts when every one of its links would go).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use metadata::{DeleteGuard, EndedRemovals, LinkKey, MetadataError};
use oci::Digest;
use serde::Serialize;

use crate::{Registry, Result, now_ms, system_change};

/// How a collection runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcOptions {
    /// What is younger than this is never collected.
    pub grace: Duration,
    /// Also delete manifests that have no tag and that nothing kept refers to.
    pub delete_untagged: bool,
    /// Count without removing.
    pub dry_run: bool,
    /// Upload sessions nobody wrote to for this long are abandoned.
    pub upload_max_age: Duration,
    /// Manifests a tag stopped pointing at within this long stay (a tag can
    /// be rolled back to them); retention keeps them too.
    pub tag_history: Duration,
    /// Candidates read per page and handled per write transaction (blobs
    /// take two: one claims them, one ends their removal). Fewer, larger
    /// transactions finish sooner on a busy registry, where each waits its
    /// turn behind the pushes queued for the single writer.
    pub batch: u32,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            delete_untagged: false,
            dry_run: false,
            upload_max_age: Duration::from_secs(24 * 3600),
            tag_history: Duration::from_secs(24 * 3600),
            batch: 2000,
        }
    }
}

/// What a collection removed (or, dry, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub untagged_manifests: u64,
    pub stale_links: u64,
    pub manifests: u64,
    pub manifest_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub uploads: u64,
    /// Problems met on the way; the run went on past each.
    pub errors: Vec<String>,
}

impl GcReport {
    /// Bytes freed in the stores.
    pub fn bytes_freed(&self) -> u64 {
        self.blob_bytes + self.manifest_bytes
    }
}

/// One untagged manifest a collection deleted (or would delete).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectedManifest {
    pub repository: String,
    pub digest: String,
}

impl Registry {
    /// Runs one garbage collection; see the module documentation.
    pub async fn collect_garbage(
        &self,
        options: &GcOptions,
    ) -> Result<(GcReport, Vec<CollectedManifest>)> {
        let started = now_ms();
        let cutoff = started - options.grace.as_millis() as i64;
        let mut report = GcReport::default();
        let mut step = std::time::Instant::now();
        let mut finished = |name: &str, report: &GcReport| {
            tracing::info!(
                step = name,
                seconds = step.elapsed().as_secs_f64(),
                dry_run = options.dry_run,
                ?report,
                "garbage collection step finished"
            );
            step = std::time::Instant::now();
        };
        let untagged = if options.delete_untagged {
            let tagged_after = started - options.tag_history.as_millis() as i64;
            self.collect_untagged(cutoff, tagged_after, options.dry_run, &mut report)
                .await?
        } else {
            Vec::new()
        };
        finished("untagged manifests", &report);
        let doomed_links = self.collect_links(cutoff, options, &mut report).await?;
        finished("stale links", &report);
        self.collect_manifests(cutoff, options, &mut report).await?;
        finished("manifests", &report);
        self.collect_blobs(cutoff, options, doomed_links, &mut report)
            .await?;
        finished("blobs", &report);
        let upload_cutoff = started - options.upload_max_age.as_millis() as i64;
        if !options.dry_run {
            match self.blobs.purge_uploads(upload_cutoff).await {
                Ok(n) => report.uploads = n,
                Err(e) => report
                    .errors
                    .push(format!("abandoning stale upload sessions: {e}")),
            }
            // Tombstones matter for seconds; an hour is plenty.
            let before = started - 3_600_000;
            self.in_foreground(move |this| async move {
                Ok(this.meta.prune_blob_deletions(before).await?)
            })
            .await?;
        }
        Ok((report, untagged))
    }

    async fn collect_untagged(
        &self,
        cutoff: i64,
        tagged_after: i64,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<Vec<CollectedManifest>> {
        let graph = self.meta.artifact_graph(None).await?;
        let recent = self.recently_tagged(None, tagged_after).await?;
        let doomed = crate::retention::untagged_garbage(&graph, cutoff, &recent);
        let mut collected = Vec::new();
        for (repo, digest) in doomed {
            if !dry_run {
                let (repo, digest) = (repo.clone(), digest.clone());
                let deleted = self
                    .in_foreground(move |this| async move {
                        let guard = DeleteGuard {
                            immutable: &|_| false,
                            expected_tags: Some(&[]),
                        };
                        Ok(this
                            .meta
                            .delete_manifest(&repo, &digest, &guard, &system_change("system:gc"))
                            .await)
                    })
                    .await?;
                match deleted {
                    Ok(()) => {}
                    // Tagged, deleted, or newly referenced since the snapshot.
                    Err(
                        MetadataError::Changed(_)
                        | MetadataError::ManifestUnknown(_)
                        | MetadataError::RepositoryUnknown
                        | MetadataError::ManifestInUse { .. },
                    ) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            report.untagged_manifests += 1;
            collected.push(CollectedManifest {
                repository: repo.to_string(),
                digest: digest.to_string(),
            });
        }
        Ok(collected)
    }

    /// Step 2; returns, for a dry run, the links it would remove per blob.
    async fn collect_links(
        &self,
        cutoff: i64,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> Result<HashMap<Digest, u64>> {
        let mut doomed: HashMap<Digest, u64> = HashMap::new();
        let mut after: Option<LinkKey> = None;
        loop {
            let page = self
                .meta
                .stale_links(cutoff, after.as_ref(), options.batch)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() == options.batch as usize;
            if options.dry_run {
                report.stale_links += page.len() as u64;
                for link in &page {
                    *doomed.entry(link.digest.clone()).or_default() += 1;
                }
            } else {
                let swept = self
                    .in_foreground(move |this| async move {
                        Ok(this.meta.remove_stale_links(&page, cutoff).await?)
                    })
                    .await?;
                report.stale_links += swept.count;
            }
            if !full {
                break;
            }
        }
        Ok(doomed)
    }

    async fn collect_manifests(
        &self,
        cutoff: i64,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .orphan_manifests(cutoff, after.as_ref(), options.batch)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            if options.dry_run {
                report.manifests += page.len() as u64;
                report.manifest_bytes += page.iter().map(|(_, size)| size).sum::<u64>();
            } else {
                let digests: Vec<Digest> = page.iter().map(|(d, _)| d.clone()).collect();
                let swept = self
                    .in_foreground(move |this| async move {
                        Ok(this.meta.remove_orphan_manifests(&digests, cutoff).await?)
                    })
                    .await?;
                report.manifests += swept.count;
                report.manifest_bytes += swept.bytes;
            }
            if page.len() < options.batch as usize {
                break;
            }
        }
        Ok(())
    }

    /// Step 4; a dry run counts, besides, the blobs step 2 would orphan.
    async fn collect_blobs(
        &self,
        cutoff: i64,
        options: &GcOptions,
        doomed_links: HashMap<Digest, u64>,
        report: &mut GcReport,
    ) -> Result<()> {
        if !options.dry_run {
            return self
                .remove_orphan_blobs(cutoff, options.batch, report)
                .await;
        }
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .orphan_blobs(cutoff, after.as_ref(), options.batch)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            report.blobs += page.len() as u64;
            report.blob_bytes += page.iter().map(|(_, size)| size).sum::<u64>();
            if page.len() < options.batch as usize {
                break;
            }
        }
        // Blobs whose every link step 2 would remove become garbage in the
        // same run.
        for (digest, links) in &doomed_links {
            let holders = self
                .meta
                .repositories_with_blob(digest, (*links as u32).saturating_add(1))
                .await?;
            if holders.len() as u64 <= *links
                && let Some(size) = self.blobs.stat(digest).await?
            {
                report.blobs += 1;
                report.blob_bytes += size;
            }
        }
        Ok(())
    }

    /// Step 4, pipelined: while one batch's bytes are removed, the next
    /// batch is found and claimed, in a transaction that also ends the
    /// removal of the batch before; one commit per batch.
    async fn remove_orphan_blobs(
        &self,
        cutoff: i64,
        batch: u32,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut after: Option<Digest> = None;
        let mut removing: Vec<(Digest, u64)> = Vec::new();
        let mut ended = EndedRemovals::default();
        let mut more = true;
        while more {
            let claim_next = async {
                let page = self
                    .meta
                    .orphan_blobs(cutoff, after.as_ref(), batch)
                    .await?;
                more = page.len() == batch as usize;
                let digests: Vec<Digest> = page.into_iter().map(|(d, _)| d).collect();
                let candidates = digests.len();
                let last = digests.last().cloned();
                let ended = std::mem::take(&mut ended);
                let claimed = self
                    .in_foreground(move |this| async move {
                        Ok(this
                            .meta
                            .claim_orphan_blobs(&digests, cutoff, &ended)
                            .await?)
                    })
                    .await?;
                if claimed.len() < candidates {
                    tracing::debug!(
                        candidates,
                        claimed = claimed.len(),
                        "some garbage blobs were linked again"
                    );
                }
                Ok::<_, crate::RegistryError>((last, claimed))
            };
            let (removed, next) = tokio::join!(self.remove_bytes(&removing), claim_next);
            let (last, claimed) = next?;
            ended = removed.count(report);
            after = last;
            removing = claimed;
        }
        ended.extend(self.remove_bytes(&removing).await.count(report));
        self.finish_removals(ended).await
    }

    async fn finish_removals(&self, ended: EndedRemovals) -> Result<()> {
        self.in_foreground(
            move |this| async move { Ok(this.meta.finish_blob_removals(&ended).await?) },
        )
        .await
    }

    /// Removes the bytes of blobs claimed for removal; the caller then ends
    /// their removal, which records again those whose bytes are still there.
    async fn remove_bytes(&self, claimed: &[(Digest, u64)]) -> RemovedBytes {
        if claimed.is_empty() {
            return RemovedBytes::default();
        }
        let digests: Vec<Digest> = claimed.iter().map(|(d, _)| d.clone()).collect();
        // In the foreground: a push of the same bytes waits for this removal.
        let gone: HashSet<Digest> = {
            let digests = digests.clone();
            self.in_foreground(
                move |this| async move { Ok(this.blobs.delete_many(&digests).await) },
            )
            .await
            .map(|gone| gone.into_iter().collect())
            .unwrap_or_default()
        };
        let mut removed = RemovedBytes::default();
        for (digest, size) in claimed {
            if gone.contains(digest) {
                removed.count += 1;
                removed.bytes += size;
            } else {
                removed.ended.kept.push((digest.clone(), *size));
            }
        }
        removed.ended.claimed = digests;
        removed
    }
}

/// What [`Registry::remove_bytes`] removed.
#[derive(Default)]
struct RemovedBytes {
    ended: EndedRemovals,
    count: u64,
    bytes: u64,
}

impl RemovedBytes {
    /// Adds the blobs and bytes removed to `report`; returns the removals to end.
    fn count(self, report: &mut GcReport) -> EndedRemovals {
        report.blobs += self.count;
        report.blob_bytes += self.bytes;
        self.ended
    }
}

impl Registry {
    /// Removes bytes the blob store holds that nothing records, last written
    /// more than `grace` ago: left by a node killed between storing a blob
    /// and recording it. Returns how many blobs and bytes went (or, dry,
    /// would go). The listing is the blob store's, so this reads every
    /// blob's name; the weekly integrity check runs it.
    pub async fn sweep_unrecorded_blobs(
        &self,
        grace: Duration,
        dry_run: bool,
    ) -> Result<(u64, u64)> {
        const PAGE: usize = 1000;
        let cutoff = now_ms() - grace.as_millis() as i64;
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut after: Option<Digest> = None;
        loop {
            let page = self.blobs.list_blobs(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let old: Vec<Digest> = page
                .iter()
                .filter(|b| b.modified_ms < cutoff)
                .map(|b| b.digest.clone())
                .collect();
            let unrecorded = self.meta.unrecorded_blobs(&old).await?;
            if !unrecorded.is_empty() {
                if dry_run {
                    let sized = page.iter().filter(|b| unrecorded.contains(&b.digest));
                    for blob in sized {
                        count += 1;
                        bytes += blob.size;
                    }
                } else {
                    let claimed: HashSet<Digest> = self
                        .in_foreground(move |this| async move {
                            Ok(this.meta.claim_unrecorded_blobs(&unrecorded).await?)
                        })
                        .await?
                        .into_iter()
                        .collect();
                    let sized: Vec<(Digest, u64)> = page
                        .iter()
                        .filter(|b| claimed.contains(&b.digest))
                        .map(|b| (b.digest.clone(), b.size))
                        .collect();
                    let removed = self.remove_bytes(&sized).await;
                    let (n, size) = (removed.count, removed.bytes);
                    self.finish_removals(removed.ended).await?;
                    if n > 0 {
                        tracing::info!(
                            blobs = n,
                            bytes = size,
                            "removed stored blobs that nothing recorded"
                        );
                    }
                    count += n;
                    bytes += size;
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok((count, bytes))
    }
}
