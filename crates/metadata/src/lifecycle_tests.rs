//! The lifecycle part of the backend suite: usage and quotas, garbage
//! collection's candidates and sweeps, tombstones, guarded deletes, runs.

use std::sync::Arc;

use super::*;
use crate::{
    DeleteGuard, EndedRemovals, LinkKey, NewRun, ProjectSettings, ProjectUsage, Pull,
    QuotaResource, RunKind, RunOutcome,
};

fn at(ms: i64) -> Change {
    Change {
        actor: "tester".into(),
        at_ms: ms,
    }
}

async fn usage(store: &dyn MetaStore, project: &str) -> ProjectUsage {
    store.project_usage(project).await.unwrap().unwrap()
}

async fn set_quota(
    store: &dyn MetaStore,
    project: &str,
    bytes: Option<u64>,
    artifacts: Option<u64>,
) {
    let mut settings = store.project_settings(project).await.unwrap().unwrap();
    settings.quota_bytes = bytes;
    settings.quota_artifacts = artifacts;
    store.set_project_settings(&settings).await.unwrap();
}

/// Garbage collection's removal of `d`, whose bytes all went: claim, then
/// finish.
async fn sweep_blob(store: &dyn MetaStore, d: &Digest, cutoff_ms: i64) {
    let claimed = store
        .claim_orphan_blobs(
            std::slice::from_ref(d),
            cutoff_ms,
            &EndedRemovals::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{d} was not claimed");
    store
        .finish_blob_removals(&ended(std::slice::from_ref(d), &[]))
        .await
        .unwrap();
}

fn ended(claimed: &[Digest], kept: &[(Digest, u64)]) -> EndedRemovals {
    EndedRemovals {
        claimed: claimed.to_vec(),
        kept: kept.to_vec(),
    }
}

pub async fn usage_counts_each_blob_once_per_project(store: &dyn MetaStore) {
    let (a, b, other) = (repo("team/a"), repo("team/b"), repo("acme/app"));
    let layer = digest("layer");
    let config = digest("config");
    assert_eq!(usage(store, "team").await, ProjectUsage::default());
    store
        .link_new_blob(&a, &layer, 1000, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    store
        .link_new_blob(&a, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    // The same layer in a second repository of the project: counted once.
    store
        .link_existing_blob(&b, &layer, &change())
        .await
        .unwrap();
    // In another project: counted there too.
    store
        .link_existing_blob(&other, &layer, &change())
        .await
        .unwrap();
    assert_eq!(usage(store, "team").await.bytes, 1010);
    assert_eq!(usage(store, "acme").await.bytes, 1000);

    let m = manifest(&a, "m1", &[(&layer, 1000), (&config, 10)], &[], &["v1"]);
    let m_size = m.body.len() as u64;
    store.put_manifest(m.clone(), &change()).await.unwrap();
    let mut in_b = m.clone();
    in_b.repository = b.clone();
    store
        .link_existing_blob(&b, &config, &change())
        .await
        .unwrap();
    store.put_manifest(in_b, &change()).await.unwrap();
    assert_eq!(
        usage(store, "team").await,
        ProjectUsage {
            bytes: 1010 + m_size,
            artifacts: 2
        }
    );
    // Deleting from one repository keeps the bytes the other still holds.
    store
        .delete_manifest(&b, &m.digest, &DeleteGuard::NONE, &change())
        .await
        .unwrap();
    assert_eq!(usage(store, "team").await.artifacts, 1);
    assert_eq!(usage(store, "team").await.bytes, 1010 + m_size);
    store.unlink_blob(&b, &layer, &change()).await.unwrap();
    assert_eq!(usage(store, "team").await.bytes, 1010 + m_size);
    store
        .delete_manifest(&a, &m.digest, &DeleteGuard::NONE, &change())
        .await
        .unwrap();
    assert_eq!(
        usage(store, "team").await,
        ProjectUsage {
            bytes: 1010,
            artifacts: 0
        }
    );
    assert_eq!(store.project_usage("nope").await.unwrap(), None);
}

pub async fn quotas_refuse_growth_past_the_limit(store: &dyn MetaStore) {
    let a = repo("team/a");
    set_quota(store, "team", Some(1200), Some(1)).await;
    store
        .link_new_blob(&a, &digest("l1"), 1000, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let refused = store
        .link_new_blob(&a, &digest("l2"), 600, StoredBytes::Unchecked, &change())
        .await
        .unwrap_err();
    let MetadataError::QuotaExceeded(q) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!((q.limit, q.usage, q.needed), (1200, 1000, 600));
    assert_eq!(q.resource, QuotaResource::Storage);
    let message = refused.to_string();
    assert!(
        message.contains("\"team\"") && message.contains("1000 of 1200"),
        "{message}"
    );
    // Nothing of the refused push stayed.
    assert_eq!(store.linked_blob(&a, &digest("l2")).await.unwrap(), None);
    assert_eq!(usage(store, "team").await.bytes, 1000);

    // Crossing 80 % (960 bytes) recorded a warning with the first link.
    let events = store.events_after(0, 1000).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::QuotaWarning)
            .count(),
        1
    );

    // The artifact count.
    store
        .put_manifest(
            manifest(&a, "m1", &[(&digest("l1"), 1000)], &[], &["v1"]),
            &change(),
        )
        .await
        .unwrap();
    let refused = store
        .put_manifest(
            manifest(&a, "m2", &[(&digest("l1"), 1000)], &[], &["v2"]),
            &change(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, MetadataError::QuotaExceeded(q) if q.resource == QuotaResource::Artifacts),
        "{refused:?}"
    );
    // Shrinking is never refused, and the limit can be lifted.
    set_quota(store, "team", Some(10), None).await;
    store
        .delete_manifest(&a, &digest("m1"), &DeleteGuard::NONE, &change())
        .await
        .unwrap();
    set_quota(store, "team", None, None).await;
    store
        .link_new_blob(&a, &digest("l2"), 600, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
}

pub async fn immutable_tags_and_guarded_deletes(store: &dyn MetaStore) {
    let a = repo("team/a");
    store
        .link_new_blob(&a, &digest("l"), 1, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let mut first = manifest(&a, "m1", &[(&digest("l"), 1)], &[], &["v1", "latest"]);
    first.immutable_tags = vec![tag("v1")];
    store.put_manifest(first.clone(), &change()).await.unwrap();
    // Pushing the same manifest to the immutable tag again is fine.
    store.put_manifest(first.clone(), &change()).await.unwrap();
    let mut second = manifest(&a, "m2", &[(&digest("l"), 1)], &[], &["v1"]);
    second.immutable_tags = vec![tag("v1")];
    assert!(matches!(
        store.put_manifest(second, &change()).await,
        Err(MetadataError::TagImmutable { tag }) if tag == "v1"
    ));
    let guard = DeleteGuard {
        immutable: &|t| t == "v1",
        expected_tags: None,
    };
    assert!(matches!(
        store
            .delete_manifest(&a, &first.digest, &guard, &change())
            .await,
        Err(MetadataError::TagImmutable { .. })
    ));
    // A guard naming other tags than the manifest has now refuses.
    let stale = ["latest".to_owned()];
    let guard = DeleteGuard {
        immutable: &|_| false,
        expected_tags: Some(&stale),
    };
    assert!(matches!(
        store
            .delete_manifest(&a, &first.digest, &guard, &change())
            .await,
        Err(MetadataError::Changed(_))
    ));
    let current = ["v1".to_owned(), "latest".to_owned()];
    let guard = DeleteGuard {
        immutable: &|_| false,
        expected_tags: Some(&current),
    };
    store
        .delete_manifest(&a, &first.digest, &guard, &change())
        .await
        .unwrap();
}

pub async fn garbage_is_found_and_swept(store: &dyn MetaStore) {
    let a = repo("team/a");
    let (kept, stale, orphan, young) = (
        digest("kept"),
        digest("stale"),
        digest("orphan"),
        digest("young"),
    );
    store
        .link_new_blob(&a, &kept, 10, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    store
        .link_new_blob(&a, &stale, 20, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    store
        .link_new_blob(&a, &young, 30, StoredBytes::Unchecked, &at(9_000))
        .await
        .unwrap();
    let m = manifest(&a, "m", &[(&kept, 10)], &[], &["v1"]);
    store.put_manifest(m, &at(1_000)).await.unwrap();
    // A blob whose only link goes with its manifest: its grace period
    // starts when the manifest is deleted.
    store
        .link_new_blob(&a, &orphan, 40, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    let gone = manifest(&a, "gone", &[(&orphan, 40)], &[], &[]);
    store.put_manifest(gone.clone(), &at(1_000)).await.unwrap();
    store
        .delete_manifest(&a, &gone.digest, &DeleteGuard::NONE, &at(6_000))
        .await
        .unwrap();

    let cutoff = 5_000;
    let links = store.stale_links(cutoff, None, 100).await.unwrap();
    assert_eq!(
        links.iter().map(|l| &l.digest).collect::<Vec<_>>(),
        vec![&stale],
        "only the old unreferenced link"
    );
    // Paging: nothing after the last key.
    assert!(
        store
            .stale_links(cutoff, links.last(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stale_links(7_000, None, 100).await.unwrap().len(), 2);

    // A link made live again between finding and sweeping stays.
    let revived = LinkKey {
        repository_id: links[0].repository_id,
        digest: kept.clone(),
    };
    let swept = store
        .remove_stale_links(&[links[0].clone(), revived], cutoff)
        .await
        .unwrap();
    assert_eq!((swept.count, swept.bytes), (1, 20));
    assert_eq!(store.linked_blob(&a, &stale).await.unwrap(), None);
    assert_eq!(
        usage(store, "team").await.bytes,
        10 + 30 + 40 + 1 /* "m" */
    );

    // The manifest contents nobody holds.
    let orphans = store.orphan_manifests(7_000, None, 100).await.unwrap();
    assert_eq!(orphans, vec![(gone.digest.clone(), gone.body.len() as u64)]);
    let swept = store
        .remove_orphan_manifests(&[gone.digest.clone(), digest("m")], 7_000)
        .await
        .unwrap();
    assert_eq!(swept.count, 1);

    // Blobs no repository links: the stale one now.
    let blobs = store.orphan_blobs(cutoff, None, 100).await.unwrap();
    assert_eq!(blobs, vec![(stale.clone(), 20)]);
    let claimed = store
        .claim_orphan_blobs(
            &[stale.clone(), kept.clone(), stale.clone()],
            cutoff,
            &EndedRemovals::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed, vec![(stale.clone(), 20)]);
    assert!(!store.blob_recorded(&stale).await.unwrap());
    assert!(store.blob_recorded(&kept).await.unwrap());
    // While the bytes are being removed, a push of the blob waits.
    assert!(matches!(
        store
            .link_new_blob(&a, &stale, 20, StoredBytes::Unchecked, &change())
            .await,
        Err(MetadataError::BlobRemovalPending(d)) if d == stale
    ));

    // The next batch's claim ends the removal of the one before.
    store.unlink_blob(&a, &young, &change()).await.unwrap();
    let claimed = store
        .claim_orphan_blobs(
            std::slice::from_ref(&young),
            10_000,
            &ended(std::slice::from_ref(&stale), &[]),
        )
        .await
        .unwrap();
    assert_eq!(claimed, vec![(young.clone(), 30)]);
    assert!(!store.blob_recorded(&stale).await.unwrap());
    // A push that stored the bytes before they went is asked to send them
    // again, no longer to wait.
    assert!(matches!(
        store
            .link_new_blob(&a, &stale, 20, StoredBytes::WrittenAt(1), &change())
            .await,
        Err(MetadataError::BlobGone { digest, .. }) if digest == stale
    ));
    assert!(!store.blob_recorded(&stale).await.unwrap());

    // A blob whose bytes could not be removed is recorded again, garbage
    // for the next collection.
    store
        .finish_blob_removals(&ended(std::slice::from_ref(&young), &claimed))
        .await
        .unwrap();
    assert!(store.blob_recorded(&young).await.unwrap());
    assert_eq!(
        store.orphan_blobs(1, None, 100).await.unwrap(),
        vec![(young.clone(), 30)]
    );
}

/// Regression for batched sweeps: two stale links of one blob in one
/// project, removed together, release its bytes once; a blob the project
/// still links elsewhere keeps its bytes counted.
pub async fn sweeps_release_each_blob_once_per_project(store: &dyn MetaStore) {
    let (a, b, c, other) = (
        repo("team/a"),
        repo("team/b"),
        repo("team/c"),
        repo("acme/app"),
    );
    let (shared, kept) = (digest("shared"), digest("kept"));
    store
        .link_new_blob(&a, &shared, 100, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    store
        .link_existing_blob(&b, &shared, &at(1_000))
        .await
        .unwrap();
    store
        .link_existing_blob(&other, &shared, &at(1_000))
        .await
        .unwrap();
    // `c` keeps `kept` with a manifest; `a` links it with none.
    store
        .link_new_blob(&c, &kept, 7, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    store
        .link_existing_blob(&a, &kept, &at(1_000))
        .await
        .unwrap();
    let m = manifest(&c, "m", &[(&kept, 7)], &[], &["v1"]);
    store.put_manifest(m, &at(1_000)).await.unwrap();
    let before = usage(store, "team").await.bytes;

    let links = store.stale_links(5_000, None, 100).await.unwrap();
    assert_eq!(links.len(), 4, "{links:?}");
    let swept = store.remove_stale_links(&links, 5_000).await.unwrap();
    assert_eq!((swept.count, swept.bytes), (4, 3 * 100 + 7));
    assert_eq!(usage(store, "team").await.bytes, before - 100);
    assert_eq!(usage(store, "acme").await.bytes, 0);
    assert_eq!(store.linked_blob(&c, &kept).await.unwrap(), Some(7));
    assert!(
        store
            .stale_links(5_000, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn tombstones_catch_pushes_racing_a_sweep(store: &dyn MetaStore) {
    let a = repo("team/a");
    let d = digest("raced");
    store
        .link_new_blob(&a, &d, 5, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    store.unlink_blob(&a, &d, &at(1_000)).await.unwrap();
    sweep_blob(store, &d, 2_000).await;
    let deleted_at = crate::sql::now_ms();
    // A push that stored the bytes before the sweep removed them.
    assert!(matches!(
        store
            .link_new_blob(
                &a,
                &d,
                5,
                StoredBytes::WrittenAt(deleted_at - 60_000),
                &change()
            )
            .await,
        Err(MetadataError::BlobGone { .. })
    ));
    assert_eq!(store.linked_blob(&a, &d).await.unwrap(), None);
    // One that checked the bytes afterwards links.
    store
        .link_new_blob(&a, &d, 5, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    assert_eq!(store.linked_blob(&a, &d).await.unwrap(), Some(5));
    // Long after, the tombstone is forgotten.
    assert_eq!(store.prune_blob_deletions(deleted_at + 1).await.unwrap(), 1);
}

/// Bytes nothing recorded: found, claimed with a tombstone, and a recorded
/// blob among them is left alone.
pub async fn unrecorded_bytes_are_removed_with_a_tombstone(store: &dyn MetaStore) {
    let a = repo("team/a");
    let (recorded, stray) = (digest("recorded"), digest("stray"));
    store
        .link_new_blob(&a, &recorded, 5, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let both = [recorded.clone(), stray.clone()];
    assert_eq!(
        store.unrecorded_blobs(&both).await.unwrap(),
        vec![stray.clone()]
    );
    let push_now = || async {
        let written = StoredBytes::WrittenAt(crate::sql::now_ms());
        store.link_new_blob(&a, &stray, 9, written, &change()).await
    };
    let claimed = store.claim_unrecorded_blobs(&both).await.unwrap();
    assert_eq!(claimed, vec![stray.clone()]);
    assert!(store.blob_recorded(&recorded).await.unwrap());
    assert!(!store.blob_recorded(&stray).await.unwrap());
    // A push recording the bytes while they are being removed waits.
    assert!(matches!(
        push_now().await,
        Err(MetadataError::BlobRemovalPending(_))
    ));
    store
        .finish_blob_removals(&ended(&claimed, &[]))
        .await
        .unwrap();
    assert!(!store.blob_recorded(&stray).await.unwrap());
    // A push that stored the same bytes just before is asked to check them.
    assert!(matches!(
        push_now().await,
        Err(MetadataError::BlobGone { .. })
    ));
}

/// The interleaving the GC stress test found: a push is told its blob was
/// deleted (an earlier collection), finds the bytes present, and before it
/// links again a second collection deletes them. The second link must be
/// refused too; it used to go through unchecked and leave a link to
/// nothing.
pub async fn a_deletion_between_the_check_and_the_link_is_caught(store: &dyn MetaStore) {
    let a = repo("team/a");
    let d = digest("raced twice");
    // First life, first collection.
    store
        .link_new_blob(&a, &d, 5, StoredBytes::Unchecked, &at(1_000))
        .await
        .unwrap();
    store.unlink_blob(&a, &d, &at(1_000)).await.unwrap();
    sweep_blob(store, &d, 2_000).await;
    // The push: refused, with the deletion's time.
    let written = crate::sql::now_ms();
    let Err(MetadataError::BlobGone { deleted_at_ms, .. }) = store
        .link_new_blob(&a, &d, 5, StoredBytes::WrittenAt(written), &change())
        .await
    else {
        panic!("a push racing a deletion was not refused");
    };
    // The push finds the bytes present; meanwhile the blob lives again
    // (another push) and a second collection removes it.
    let b = repo("team/b");
    store
        .link_new_blob(&b, &d, 5, StoredBytes::Unchecked, &at(3_000))
        .await
        .unwrap();
    store.unlink_blob(&b, &d, &at(3_000)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    sweep_blob(store, &d, crate::sql::now_ms() + 1).await;
    assert!(!store.blob_recorded(&d).await.unwrap());
    // Its link after the check is refused: the bytes it saw are gone.
    assert!(matches!(
        store
            .link_new_blob(
                &a,
                &d,
                5,
                StoredBytes::PresentAfter(deleted_at_ms),
                &change()
            )
            .await,
        Err(MetadataError::BlobGone { .. })
    ));
    assert_eq!(store.linked_blob(&a, &d).await.unwrap(), None);
}

pub async fn artifact_graph_and_pull_counts(store: &dyn MetaStore) {
    let a = repo("team/a");
    let l = digest("l");
    store
        .link_new_blob(&a, &l, 1, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let child = manifest(&a, "child", &[(&l, 1)], &[], &[]);
    store.put_manifest(child.clone(), &change()).await.unwrap();
    let index = manifest(
        &a,
        "index",
        &[],
        &[(&child.digest, child.body.len() as u64)],
        &["v1", "latest"],
    );
    store.put_manifest(index.clone(), &change()).await.unwrap();
    let mut sig = manifest(&a, "sig", &[(&l, 1)], &[], &[]);
    sig.subject = Some(index.digest.clone());
    store.put_manifest(sig.clone(), &change()).await.unwrap();
    store
        .record_pulls(&[
            Pull {
                repository: a.clone(),
                digest: index.digest.clone(),
                at_ms: 7,
                count: 3,
                actor: "puller".to_owned(),
            },
            Pull {
                repository: a.clone(),
                digest: index.digest.clone(),
                at_ms: 5,
                count: 2,
                actor: "puller".to_owned(),
            },
        ])
        .await
        .unwrap();

    let graph = store.artifact_graph(Some("team")).await.unwrap();
    assert_eq!(graph.len(), 1);
    assert_eq!(graph[0].name, a);
    let find = |d: &Digest| graph[0].artifacts.iter().find(|x| &x.digest == d).unwrap();
    let i = find(&index.digest);
    let mut tags = i.tags.clone();
    tags.sort();
    assert_eq!(tags, vec!["latest", "v1"]);
    assert_eq!(i.children, vec![child.digest.clone()]);
    assert_eq!((i.pulled_at_ms, i.pull_count), (Some(7), 5));
    assert_eq!(find(&sig.digest).subject.as_ref(), Some(&index.digest));
    assert!(find(&child.digest).tags.is_empty());
    assert!(store.artifact_graph(Some("acme")).await.unwrap().is_empty());
    assert_eq!(store.artifact_graph(None).await.unwrap().len(), 1);
}

pub async fn settings_and_runs(store: &dyn MetaStore) {
    let settings = store.project_settings("team").await.unwrap().unwrap();
    assert_eq!(settings.quota_bytes, None);
    assert_eq!(settings.quota_warn_percent, 80);
    assert_eq!(settings.immutability, "[]");
    let changed = ProjectSettings {
        retention: Some(r#"{"rules":[]}"#.into()),
        retention_schedule: Some("0 3 * * *".into()),
        immutability: r#"[{"x":1}]"#.into(),
        ..settings
    };
    store.set_project_settings(&changed).await.unwrap();
    assert_eq!(
        store.project_settings("team").await.unwrap().unwrap(),
        changed
    );
    assert_eq!(store.retention_projects().await.unwrap(), vec![changed]);
    assert!(matches!(
        store
            .set_project_settings(&ProjectSettings {
                project: "nope".into(),
                immutability: "[]".into(),
                ..ProjectSettings::default()
            })
            .await,
        Err(MetadataError::ProjectUnknown(_))
    ));

    let run = NewRun {
        kind: RunKind::Retention,
        project: Some("team".into()),
        trigger: "manual".into(),
        dry_run: true,
        requested_by: "admin".into(),
        started_at_ms: 1_000,
    };
    let first = store.start_run(&run).await.unwrap();
    let second = store
        .start_run(&NewRun {
            started_at_ms: 9_000,
            ..run.clone()
        })
        .await
        .unwrap();
    store
        .finish_run(
            first,
            &RunOutcome {
                succeeded: true,
                finished_at_ms: 2_000,
                summary: r#"{"deleted":1}"#.into(),
                items: r#"[{"digest":"x"}]"#.into(),
                error: None,
            },
        )
        .await
        .unwrap();
    let got = store.run(first).await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_str(), got.items.as_str()),
        ("succeeded", r#"[{"digest":"x"}]"#)
    );
    let listed = store
        .runs(
            RunKind::Retention,
            Some("team"),
            crate::identity::Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items[0].id, second, "newest first");
    assert_eq!(listed.items[1].items, "[]", "listings leave items out");
    assert!(
        store
            .runs(RunKind::Gc, None, crate::identity::Page::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // A run whose node died is marked failed.
    assert_eq!(store.abandon_runs(RunKind::Gc, None).await.unwrap(), 0);
    assert_eq!(
        store
            .abandon_runs(RunKind::Retention, Some("team"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.run(second).await.unwrap().unwrap().status, "failed");
    assert_eq!(store.prune_runs(10_000).await.unwrap(), 2);
}

/// Two nodes push blobs into one project with a storage quota at once:
/// the limit holds exactly and usage matches what was linked.
pub async fn racing_pushes_respect_the_quota(one: Arc<dyn MetaStore>, two: Arc<dyn MetaStore>) {
    set_quota(one.as_ref(), "team", Some(5 * 100), None).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let r = repo(&format!("team/r{}", i % 3));
            store
                .link_new_blob(
                    &r,
                    &digest(&format!("b{i}")),
                    100,
                    StoredBytes::Unchecked,
                    &change(),
                )
                .await
        }));
    }
    let mut linked = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => linked += 1,
            Err(MetadataError::QuotaExceeded(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(linked, 5, "exactly as many as fit");
    assert_eq!(usage(one.as_ref(), "team").await.bytes, 500);
}
