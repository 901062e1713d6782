//! The backend test suite: every [`MetaStore`] must pass these.

use std::sync::Arc;

use bytes::Bytes;
use oci::{Digest, DigestAlgorithm, RepoName, Tag};

use crate::{
    Change, EventKind, MetaStore, MetadataError, MissingReference, NewManifest, StorageUsage,
};
use crate::{DeleteGuard, StoredBytes};

#[path = "identity_tests.rs"]
mod identity;
pub use identity::*;

#[path = "lifecycle_tests.rs"]
mod lifecycle;
pub use lifecycle::*;

#[path = "webhook_tests.rs"]
mod webhook;
pub use webhook::*;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn digest(s: &str) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, s.as_bytes())
}

fn change() -> Change {
    Change {
        actor: "tester".into(),
        at_ms: 1_700_000_000_000,
    }
}

/// A manifest whose body is `name`, referencing `blobs` and `children`.
fn manifest(
    r: &RepoName,
    name: &str,
    blobs: &[(&Digest, u64)],
    children: &[(&Digest, u64)],
    tags: &[&str],
) -> NewManifest {
    NewManifest {
        repository: r.clone(),
        digest: digest(name),
        media_type: oci::media_type::OCI_IMAGE_MANIFEST.into(),
        body: Bytes::copy_from_slice(name.as_bytes()),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: blobs.iter().map(|(d, s)| ((*d).clone(), *s)).collect(),
        manifests: children.iter().map(|(d, s)| ((*d).clone(), *s)).collect(),
        tags: tags.iter().map(|t| tag(t)).collect(),
        immutable_tags: Vec::new(),
    }
}

pub async fn blob_links_isolate_repositories(store: &dyn MetaStore) {
    let (a, b) = (repo("team/a"), repo("team/b"));
    let layer = digest("layer");
    assert!(!store.repository_exists(&a).await.unwrap());
    store
        .link_new_blob(&a, &layer, 5, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    assert!(store.repository_exists(&a).await.unwrap());
    assert_eq!(store.linked_blob(&a, &layer).await.unwrap(), Some(5));
    assert_eq!(store.linked_blob(&b, &layer).await.unwrap(), None);
    assert_eq!(
        store.repositories_with_blob(&layer, 10).await.unwrap(),
        vec![a.clone()]
    );

    assert_eq!(
        store
            .link_existing_blob(&b, &layer, &change())
            .await
            .unwrap(),
        5
    );
    assert_eq!(store.linked_blob(&b, &layer).await.unwrap(), Some(5));
    assert!(matches!(
        store
            .link_existing_blob(&b, &digest("unknown"), &change())
            .await,
        Err(MetadataError::BlobUnknown(_))
    ));

    store.unlink_blob(&a, &layer, &change()).await.unwrap();
    assert_eq!(store.linked_blob(&a, &layer).await.unwrap(), None);
    assert_eq!(store.linked_blob(&b, &layer).await.unwrap(), Some(5));
    assert!(matches!(
        store.unlink_blob(&a, &layer, &change()).await,
        Err(MetadataError::BlobNotLinked(_))
    ));
    assert!(matches!(
        store
            .unlink_blob(&repo("nobody/here"), &layer, &change())
            .await,
        Err(MetadataError::RepositoryUnknown)
    ));
    assert_eq!(
        store.storage_usage().await.unwrap(),
        StorageUsage { blobs: 1, bytes: 5 }
    );
}

pub async fn manifests_require_their_references(store: &dyn MetaStore) {
    let r = repo("library/app");
    let config = digest("config");
    let layer = digest("layer");
    store
        .link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();

    let m = manifest(&r, "m1", &[(&config, 10), (&layer, 20)], &[], &["v1"]);
    match store.put_manifest(m.clone(), &change()).await {
        Err(MetadataError::MissingReferences(missing)) => {
            assert_eq!(missing, vec![MissingReference::Blob(layer.clone())]);
        }
        other => panic!("expected missing references, got {other:?}"),
    }
    // Nothing was stored by the refused push.
    assert_eq!(store.manifest_by_tag(&r, &tag("v1")).await.unwrap(), None);

    store
        .link_new_blob(&r, &layer, 21, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    match store.put_manifest(m.clone(), &change()).await {
        Err(MetadataError::MissingReferences(missing)) => assert_eq!(
            missing,
            vec![MissingReference::SizeMismatch {
                digest: layer.clone(),
                declared: 20,
                actual: 21
            }]
        ),
        other => panic!("expected a size mismatch, got {other:?}"),
    }

    // A blob linked only to another repository does not count.
    let other = repo("library/other");
    let foreign = digest("foreign");
    store
        .link_new_blob(&other, &foreign, 3, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let m = manifest(&r, "m2", &[(&config, 10), (&foreign, 3)], &[], &[]);
    assert!(matches!(
        store.put_manifest(m, &change()).await,
        Err(MetadataError::MissingReferences(v)) if v == vec![MissingReference::Blob(foreign.clone())]
    ));

    // A refused push to a new repository does not create it.
    let fresh = repo("fresh/repo");
    let m = manifest(&fresh, "m3", &[(&config, 10)], &[], &["x"]);
    assert!(store.put_manifest(m, &change()).await.is_err());
    assert!(!store.repository_exists(&fresh).await.unwrap());
}

pub async fn tags_move_and_list_in_order(store: &dyn MetaStore) {
    let r = repo("library/app");
    let config = digest("config");
    store
        .link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let m1 = manifest(&r, "m1", &[(&config, 10)], &[], &["v1", "latest"]);
    let out = store.put_manifest(m1.clone(), &change()).await.unwrap();
    assert!(out.created);
    assert!(out.tags.iter().all(|t| t.previous.is_none()));
    let again = store.put_manifest(m1.clone(), &change()).await.unwrap();
    assert!(!again.created);

    let m2 = manifest(&r, "m2", &[(&config, 10)], &[], &["latest", "B", "a", "_z"]);
    let out = store.put_manifest(m2.clone(), &change()).await.unwrap();
    let latest = out
        .tags
        .iter()
        .find(|t| t.tag.as_str() == "latest")
        .unwrap();
    assert_eq!(latest.previous.as_ref(), Some(&m1.digest));

    let got = store
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest, m2.digest);
    assert_eq!(got.body, m2.body);
    assert_eq!(got.media_type, oci::media_type::OCI_IMAGE_MANIFEST);
    assert_eq!(
        store
            .manifest_by_digest(&r, &m1.digest)
            .await
            .unwrap()
            .unwrap()
            .body,
        m1.body
    );
    assert_eq!(
        store
            .manifest_by_digest(&repo("library/other"), &m1.digest)
            .await
            .unwrap(),
        None
    );
    // Blobs and manifests both count as content a repository may read.
    assert_eq!(store.content_size(&r, &config).await.unwrap(), Some(10));
    assert_eq!(
        store.content_size(&r, &m1.digest).await.unwrap(),
        Some(m1.body.len() as u64)
    );
    let other = repo("library/other");
    assert_eq!(store.content_size(&other, &m1.digest).await.unwrap(), None);
    assert_eq!(
        store.content_size(&r, &digest("absent")).await.unwrap(),
        None
    );

    let all = store.list_tags(&r, None, 100).await.unwrap().unwrap();
    let names: Vec<&str> = all.iter().map(Tag::as_str).collect();
    assert_eq!(names, ["B", "_z", "a", "latest", "v1"]);
    let page = store.list_tags(&r, Some("_z"), 2).await.unwrap().unwrap();
    let names: Vec<&str> = page.iter().map(Tag::as_str).collect();
    assert_eq!(names, ["a", "latest"]);
    assert_eq!(
        store.list_tags(&repo("no/such"), None, 10).await.unwrap(),
        None
    );

    store.delete_tag(&r, &tag("v1"), &change()).await.unwrap();
    assert!(matches!(
        store.delete_tag(&r, &tag("v1"), &change()).await,
        Err(MetadataError::TagUnknown)
    ));
    assert_eq!(store.manifest_by_tag(&r, &tag("v1")).await.unwrap(), None);
    assert!(
        store
            .manifest_by_digest(&r, &m1.digest)
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn deletes_respect_references(store: &dyn MetaStore) {
    let r = repo("library/app");
    let config = digest("config");
    store
        .link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let child = manifest(&r, "child", &[(&config, 10)], &[], &["child"]);
    store.put_manifest(child.clone(), &change()).await.unwrap();
    let index = NewManifest {
        media_type: oci::media_type::OCI_IMAGE_INDEX.into(),
        ..manifest(&r, "index", &[], &[(&child.digest, 5)], &["multi"])
    };
    store.put_manifest(index.clone(), &change()).await.unwrap();

    assert!(matches!(
        store.unlink_blob(&r, &config, &change()).await,
        Err(MetadataError::BlobInUse { manifest, .. }) if manifest == child.digest
    ));
    assert!(matches!(
        store.delete_manifest(&r, &child.digest, &DeleteGuard::NONE, &change()).await,
        Err(MetadataError::ManifestInUse { index: i, .. }) if i == index.digest
    ));
    store
        .delete_manifest(&r, &index.digest, &DeleteGuard::NONE, &change())
        .await
        .unwrap();
    assert_eq!(
        store.manifest_by_tag(&r, &tag("multi")).await.unwrap(),
        None
    );
    store
        .delete_manifest(&r, &child.digest, &DeleteGuard::NONE, &change())
        .await
        .unwrap();
    assert_eq!(
        store.manifest_by_tag(&r, &tag("child")).await.unwrap(),
        None
    );
    assert_eq!(
        store.manifest_by_digest(&r, &child.digest).await.unwrap(),
        None
    );
    assert!(matches!(
        store
            .delete_manifest(&r, &child.digest, &DeleteGuard::NONE, &change())
            .await,
        Err(MetadataError::ManifestUnknown(_))
    ));
    store.unlink_blob(&r, &config, &change()).await.unwrap();
}

pub async fn referrers_by_subject_and_type(store: &dyn MetaStore) {
    let r = repo("library/app");
    let config = digest("config");
    store
        .link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    // The subject does not exist yet: referrers may come first.
    let subject = digest("subject-not-pushed-yet");
    let mut sig = manifest(&r, "sig", &[(&config, 10)], &[], &[]);
    sig.subject = Some(subject.clone());
    sig.artifact_type = Some("application/vnd.example.sig".into());
    sig.annotations = Some(r#"{"k":"v"}"#.into());
    let mut sbom = manifest(&r, "sbom", &[(&config, 10)], &[], &[]);
    sbom.subject = Some(subject.clone());
    sbom.artifact_type = Some("application/vnd.example.sbom".into());
    store.put_manifest(sig.clone(), &change()).await.unwrap();
    store.put_manifest(sbom.clone(), &change()).await.unwrap();

    let all = store
        .referrers(&r, &subject, None, None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let s = all.iter().find(|x| x.digest == sig.digest).unwrap();
    assert_eq!(s.annotations.as_deref(), Some(r#"{"k":"v"}"#));
    assert_eq!(s.size, 3);
    let only = store
        .referrers(
            &r,
            &subject,
            Some("application/vnd.example.sbom"),
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].digest, sbom.digest);

    let first = store.referrers(&r, &subject, None, None, 1).await.unwrap();
    let second = store
        .referrers(&r, &subject, None, Some(&first[0].digest), 1)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].digest, second[0].digest);
    assert!(
        store
            .referrers(&repo("other/repo"), &subject, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn changes_record_events(store: &dyn MetaStore) {
    let r = repo("library/app");
    let config = digest("config");
    store
        .link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let m1 = manifest(&r, "m1", &[(&config, 10)], &[], &["t"]);
    store.put_manifest(m1.clone(), &change()).await.unwrap();
    let m2 = manifest(&r, "m2", &[(&config, 10)], &[], &["t"]);
    store.put_manifest(m2.clone(), &change()).await.unwrap();
    store
        .delete_manifest(&r, &m2.digest, &DeleteGuard::NONE, &change())
        .await
        .unwrap();

    let events = store.events_after(0, 100).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::BlobPushed,
            EventKind::ManifestPushed,
            EventKind::TagCreated,
            EventKind::ManifestPushed,
            EventKind::TagMoved,
            EventKind::TagDeleted,
            EventKind::ManifestDeleted,
        ]
    );
    let moved = &events[4];
    assert_eq!(moved.previous_digest.as_ref(), Some(&m1.digest));
    assert_eq!(moved.digest.as_ref(), Some(&m2.digest));
    assert_eq!(moved.tag.as_deref(), Some("t"));
    assert_eq!(moved.actor, "tester");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let tail = store.events_after(events[4].id, 100).await.unwrap();
    assert_eq!(tail.len(), 2);
}

pub async fn catalog_pages(store: &dyn MetaStore) {
    for name in ["b/x", "a", "c", "a/b"] {
        store
            .link_new_blob(
                &repo(name),
                &digest("x"),
                1,
                StoredBytes::Unchecked,
                &change(),
            )
            .await
            .unwrap();
    }
    let all: Vec<String> = store
        .list_repositories(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(all, ["a", "a/b", "b/x", "c"]);
    let page: Vec<String> = store
        .list_repositories(Some("a/b"), 2)
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(page, ["b/x", "c"]);
}

/// Many writers at once end in a state one of their orders could produce.
pub async fn concurrent_writers(store: Arc<dyn MetaStore>) {
    let r = repo("library/app");
    let config = digest("config");
    store
        .link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let r = r.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let m = manifest(
                &r,
                &format!("m{i}"),
                &[(&config, 10)],
                &[],
                &["same", &format!("t{i}")],
            );
            store.put_manifest(m, &change()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let tags = store.list_tags(&r, None, 100).await.unwrap().unwrap();
    assert_eq!(tags.len(), 33);
    let same = store
        .manifest_by_tag(&r, &tag("same"))
        .await
        .unwrap()
        .unwrap();
    let moves = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.tag.as_deref() == Some("same"))
        .collect::<Vec<_>>();
    assert_eq!(moves.len(), 32);
    assert_eq!(moves.last().unwrap().digest.as_ref(), Some(&same.digest));
}

/// Two nodes push different manifests under the same tag at the same moment,
/// round after round: each round ends as one of the two orders would, with
/// the second push having seen the first.
pub async fn racing_tag_pushes(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let r = repo("race/tag");
    let config = digest("config");
    a.link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let mut current: Option<Digest> = None;
    for round in 0..20 {
        let ma = manifest(&r, &format!("a{round}"), &[(&config, 10)], &[], &["t"]);
        let mb = manifest(&r, &format!("b{round}"), &[(&config, 10)], &[], &["t"]);
        let (da, db) = (ma.digest.clone(), mb.digest.clone());
        let (oa, ob) = tokio::join!(
            spawn_on(
                &a,
                move |s| async move { s.put_manifest(ma, &change()).await }
            ),
            spawn_on(
                &b,
                move |s| async move { s.put_manifest(mb, &change()).await }
            ),
        );
        let (pa, pb) = (
            oa.unwrap().tags[0].previous.clone(),
            ob.unwrap().tags[0].previous.clone(),
        );
        let now = a
            .manifest_by_tag(&r, &tag("t"))
            .await
            .unwrap()
            .unwrap()
            .digest;
        if now == db {
            assert_eq!(
                (pa, pb),
                (current.clone(), Some(da)),
                "round {round}: a then b"
            );
        } else {
            assert_eq!(now, da);
            assert_eq!(
                (pb, pa),
                (current.clone(), Some(db)),
                "round {round}: b then a"
            );
        }
        current = Some(now);
    }
}

/// Two nodes push the same blob into the same new repository, and into two
/// different new repositories, at the same moment.
pub async fn racing_blob_links(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    for round in 0..20 {
        let layer = digest(&format!("layer{round}"));
        let (same, other) = (
            repo(&format!("race/same{round}")),
            repo(&format!("race/other{round}")),
        );
        let (la, lb) = (layer.clone(), layer.clone());
        let (sa, sb) = (same.clone(), same.clone());
        let (ra, rb) = tokio::join!(
            spawn_on(&a, move |s| async move {
                s.link_new_blob(&sa, &la, 7, StoredBytes::Unchecked, &change())
                    .await
            }),
            spawn_on(&b, move |s| async move {
                s.link_new_blob(&sb, &lb, 7, StoredBytes::Unchecked, &change())
                    .await
            }),
        );
        ra.unwrap();
        rb.unwrap();
        let (la, lb) = (layer.clone(), layer.clone());
        let other_b = other.clone();
        let (ra, rb) = tokio::join!(
            spawn_on(&a, move |s| async move {
                s.link_new_blob(
                    &repo(&format!("race/third{round}")),
                    &la,
                    7,
                    StoredBytes::Unchecked,
                    &change(),
                )
                .await
            }),
            spawn_on(&b, move |s| async move {
                s.link_new_blob(&other_b, &lb, 7, StoredBytes::Unchecked, &change())
                    .await
            }),
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(b.linked_blob(&same, &layer).await.unwrap(), Some(7));
        assert_eq!(b.linked_blob(&other, &layer).await.unwrap(), Some(7));
        assert_eq!(a.repositories_with_blob(&layer, 10).await.unwrap().len(), 3);
    }
    let usage = a.storage_usage().await.unwrap();
    assert_eq!(
        usage,
        StorageUsage {
            blobs: 20,
            bytes: 140
        }
    );
    assert_eq!(a.list_repositories(None, 100).await.unwrap().len(), 60);
}

/// A delete racing a push that needs what it deletes: never both succeed.
/// Unlinking a layer against a manifest that references it, and deleting a
/// child manifest against an index that references it.
pub async fn deletes_race_pushes(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let r = repo("race/delete");
    let (mut pushes_won, mut deletes_won) = (0, 0);
    for round in 0..20 {
        let layer = digest(&format!("layer{round}"));
        a.link_new_blob(&r, &layer, 3, StoredBytes::Unchecked, &change())
            .await
            .unwrap();
        let m = manifest(&r, &format!("m{round}"), &[(&layer, 3)], &[], &[]);
        let md = m.digest.clone();
        let (l, rr) = (layer.clone(), r.clone());
        let (push, delete) = tokio::join!(
            spawn_on(
                &a,
                move |s| async move { s.put_manifest(m, &change()).await }
            ),
            spawn_on(&b, move |s| async move {
                s.unlink_blob(&rr, &l, &change()).await
            }),
        );
        let stored = b.manifest_by_digest(&r, &md).await.unwrap().is_some();
        let linked = b.linked_blob(&r, &layer).await.unwrap().is_some();
        match (push, delete) {
            (Ok(_), Err(MetadataError::BlobInUse { .. })) => {
                assert!(stored && linked, "round {round}");
                pushes_won += 1;
            }
            (Err(MetadataError::MissingReferences(_)), Ok(())) => {
                assert!(!stored && !linked, "round {round}");
                deletes_won += 1;
            }
            other => panic!("round {round}: no serial order gives {other:?}"),
        }

        let child = manifest(&r, &format!("child{round}"), &[], &[], &[]);
        let cd = child.digest.clone();
        a.put_manifest(child, &change()).await.unwrap();
        let index = manifest(
            &r,
            &format!("index{round}"),
            &[],
            &[(&cd, child_size(round))],
            &[],
        );
        let id = index.digest.clone();
        let (c, rr) = (cd.clone(), r.clone());
        let (push, delete) = tokio::join!(
            spawn_on(&b, move |s| async move {
                s.put_manifest(index, &change()).await
            }),
            spawn_on(&a, move |s| async move {
                s.delete_manifest(&rr, &c, &DeleteGuard::NONE, &change())
                    .await
            }),
        );
        let index_stored = a.manifest_by_digest(&r, &id).await.unwrap().is_some();
        let child_stored = a.manifest_by_digest(&r, &cd).await.unwrap().is_some();
        match (push, delete) {
            (Ok(_), Err(MetadataError::ManifestInUse { .. })) => {
                assert!(index_stored && child_stored, "round {round}");
            }
            (Err(MetadataError::MissingReferences(_)), Ok(())) => {
                assert!(!index_stored && !child_stored, "round {round}");
            }
            other => panic!("round {round}: no serial order gives {other:?}"),
        }
    }
    assert_eq!(pushes_won + deletes_won, 20);
}

/// Of several nodes asking for one lease at once, exactly one gets it; it
/// stays theirs until it expires or is released.
pub async fn leases_have_one_holder(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let now = 1_000_000;
    for round in 0..10 {
        let name = format!("job{round}");
        let asks = (0..6).map(|i| {
            let (store, name) = (if i % 2 == 0 { a.clone() } else { b.clone() }, name.clone());
            tokio::spawn(async move {
                store
                    .acquire_lease(&name, &format!("node{i}"), now, now + 1000)
                    .await
                    .unwrap()
                    .then_some(i)
            })
        });
        let mut winners = Vec::new();
        for ask in asks {
            winners.extend(ask.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (winner, other) = (format!("node{}", winners[0]), "someone-else");
        assert!(
            a.acquire_lease(&name, &winner, now + 500, now + 1500)
                .await
                .unwrap()
        );
        assert!(
            !b.acquire_lease(&name, other, now + 1400, now + 2400)
                .await
                .unwrap()
        );
        assert!(
            b.acquire_lease(&name, other, now + 1500, now + 2500)
                .await
                .unwrap()
        );
        assert!(
            !a.acquire_lease(&name, &winner, now + 1600, now + 2600)
                .await
                .unwrap()
        );
        a.release_lease(&name, &winner).await.unwrap();
        assert!(
            !a.acquire_lease(&name, &winner, now + 1700, now + 2700)
                .await
                .unwrap()
        );
        b.release_lease(&name, other).await.unwrap();
        assert!(
            a.acquire_lease(&name, &winner, now + 1800, now + 2800)
                .await
                .unwrap()
        );
    }
}

/// Many pushes to one repository at once, through two nodes, with tags of
/// their own: none conflicts with another for good, all succeed.
pub async fn busy_repository(a: Arc<dyn MetaStore>, b: Arc<dyn MetaStore>) {
    let r = repo("busy/app");
    let config = digest("config");
    a.link_new_blob(&r, &config, 10, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let pushes = (0..64).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let m = manifest(
            &r,
            &format!("busy{i}"),
            &[(&config, 10)],
            &[],
            &[&format!("t{i:02}")],
        );
        tokio::spawn(async move { store.put_manifest(m, &change()).await })
    });
    for push in pushes {
        push.await.unwrap().unwrap();
    }
    assert_eq!(b.list_tags(&r, None, 100).await.unwrap().unwrap().len(), 64);
}

fn child_size(round: usize) -> u64 {
    format!("child{round}").len() as u64
}

/// Runs one store call on its own task, as another node's request would.
async fn spawn_on<T, F, Fut>(store: &Arc<dyn MetaStore>, f: F) -> T
where
    F: FnOnce(Arc<dyn MetaStore>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(f(store.clone())).await.unwrap()
}

/// Everything a client can observe of a store, for comparing copies.
async fn observable(store: &dyn MetaStore) -> Vec<String> {
    let mut seen = Vec::new();
    for r in store.list_repositories(None, 1000).await.unwrap() {
        seen.push(format!("repo {r}"));
        for t in store.list_tags(&r, None, 1000).await.unwrap().unwrap() {
            let m = store.manifest_by_tag(&r, &t).await.unwrap().unwrap();
            seen.push(format!(
                "tag {r}:{t} {} {} {:?}",
                m.digest, m.media_type, m.body
            ));
        }
        for subject in [digest("subject-not-pushed-yet")] {
            for x in store
                .referrers(&r, &subject, None, None, 1000)
                .await
                .unwrap()
            {
                seen.push(format!("referrer {r} {x:?}"));
            }
        }
        for name in ["config", "layer", "sig", "sbom", "m"] {
            let d = digest(name);
            if let Some(size) = store.content_size(&r, &d).await.unwrap() {
                seen.push(format!("content {r} {d} {size}"));
            }
        }
    }
    for e in store.events_after(0, 10_000).await.unwrap() {
        seen.push(format!("event {e:?}"));
    }
    seen.push(format!("usage {:?}", store.storage_usage().await.unwrap()));
    seen
}

/// Repositories as the registry core (schema version 2) left them.
const UPGRADE_FIXTURE: &str = "
    CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);
    INSERT INTO schema_migrations VALUES (1, 'registry_core', 0), (2, 'leases', 0);
    INSERT INTO repositories (name, created_at) VALUES
        ('library/old', 1), ('acme/app', 2), ('acme/team/tool', 3), ('solo', 4);
";

async fn check_upgraded<S: MetaStore + crate::IdentityStore>(store: &S) {
    let library = store.project("library").await.unwrap().unwrap();
    assert!(library.public);
    assert_eq!(library.repository_count, 1);
    let acme = store.project("acme").await.unwrap().unwrap();
    assert!(!acme.public, "projects made by the upgrade are private");
    assert_eq!(acme.repository_count, 2);
    assert_eq!(
        store
            .project("solo")
            .await
            .unwrap()
            .unwrap()
            .repository_count,
        1
    );
    // The old repositories keep working, and new ones land in their projects.
    for name in ["library/old", "acme/team/tool", "solo", "acme/new"] {
        store
            .link_new_blob(
                &repo(name),
                &digest(name),
                1,
                StoredBytes::Unchecked,
                &change(),
            )
            .await
            .unwrap();
        assert!(store.repository_exists(&repo(name)).await.unwrap());
    }
    assert_eq!(
        store
            .project("acme")
            .await
            .unwrap()
            .unwrap()
            .repository_count,
        3
    );
    assert!(
        store
            .delete_project("acme")
            .await
            .unwrap_err()
            .to_string()
            .contains("3 repositories")
    );
}

mod sqlite_backend {
    use super::*;
    use crate::{SqliteMetaStore, SqliteOptions};

    async fn store() -> (tempfile::TempDir, SqliteMetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            path: dir.path().join("meta.db"),
            readers: 4,
            fsync_every_commit: false,
        };
        let store = SqliteMetaStore::open(&options).await.unwrap();
        create_test_projects(&store).await;
        (dir, store)
    }

    macro_rules! suite {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = store().await;
                super::$name(&store).await;
            }
        )*};
    }
    suite!(
        blob_links_isolate_repositories,
        manifests_require_their_references,
        tags_move_and_list_in_order,
        deletes_respect_references,
        referrers_by_subject_and_type,
        changes_record_events,
        catalog_pages,
        projects_hold_repositories,
        project_listings_filter_sort_and_page,
        users_and_credentials,
        memberships_by_user_group_and_repository,
        robots_and_their_secrets,
        signing_keys_rotate,
        audit_log_and_login_failures,
        browsing_repositories_artifacts_and_tags,
        usage_counts_each_blob_once_per_project,
        quotas_refuse_growth_past_the_limit,
        immutable_tags_and_guarded_deletes,
        garbage_is_found_and_swept,
        sweeps_release_each_blob_once_per_project,
        tombstones_catch_pushes_racing_a_sweep,
        a_deletion_between_the_check_and_the_link_is_caught,
        unrecorded_bytes_are_removed_with_a_tombstone,
        artifact_graph_and_pull_counts,
        settings_and_runs,
        webhook_policies_and_deliveries,
        pull_events_only_for_projects_that_ask,
        tag_history_and_what_tags_pointed_at,
        a_step_claims_new_deliveries_in_order,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers() {
        let (_dir, store) = store().await;
        super::concurrent_writers(Arc::new(store)).await;
    }

    macro_rules! races {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = store().await;
                let store: Arc<dyn MetaStore> = Arc::new(store);
                super::$name(store.clone(), store).await;
            }
        )*};
    }
    races!(
        racing_tag_pushes,
        racing_blob_links,
        deletes_race_pushes,
        leases_have_one_holder,
        busy_repository,
        racing_pushes_respect_the_quota,
    );

    /// A database the registry core made (schema version 2, repositories
    /// without projects) is upgraded: every repository lands in a project.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upgrade_moves_repositories_into_projects() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::raw_sql(concat!(
            include_str!("../migrations/sqlite/0001_registry_core.sql"),
            include_str!("../migrations/sqlite/0002_leases.sql"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::raw_sql(UPGRADE_FIXTURE)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let store = SqliteMetaStore::open(&SqliteOptions {
            path,
            readers: 2,
            fsync_every_commit: false,
        })
        .await
        .unwrap();
        super::check_upgraded(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_keeps_data_and_skips_applied_migrations() {
        let (dir, store) = store().await;
        let r = repo("a/b");
        store
            .link_new_blob(&r, &digest("x"), 1, StoredBytes::Unchecked, &change())
            .await
            .unwrap();
        store.close().await;
        let options = SqliteOptions {
            path: dir.path().join("meta.db"),
            readers: 2,
            fsync_every_commit: true,
        };
        let again = SqliteMetaStore::open(&options).await.unwrap();
        assert_eq!(again.linked_blob(&r, &digest("x")).await.unwrap(), Some(1));
    }

    /// A removal its process never finished: the next start finishes it;
    /// without a restart, it counts as done once abandoned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unfinished_blob_removals_do_not_hold_pushes_forever() {
        use crate::LifecycleStore;
        use sqlx::Connection;
        let (dir, store) = store().await;
        let r = repo("a/b");
        let (d, e) = (digest("interrupted"), digest("abandoned"));
        for blob in [&d, &e] {
            store
                .link_new_blob(&r, blob, 1, StoredBytes::Unchecked, &change())
                .await
                .unwrap();
            store.unlink_blob(&r, blob, &change()).await.unwrap();
        }
        let claimed = store
            .claim_orphan_blobs(
                &[d.clone(), e.clone()],
                crate::sql::now_ms() + 1,
                &crate::EndedRemovals::default(),
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        let written = crate::sql::now_ms();
        assert!(matches!(
            store
                .link_new_blob(&r, &d, 1, StoredBytes::WrittenAt(written), &change())
                .await,
            Err(MetadataError::BlobRemovalPending(_))
        ));

        // Abandoned: the removal began long ago.
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("meta.db")),
        )
        .await
        .unwrap();
        sqlx::query("UPDATE blob_deletions SET deleted_at = deleted_at - $1 WHERE digest = $2")
            .bind(crate::sql::ABANDONED_REMOVAL_MS + 1)
            .bind(e.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        // A push that stored the bytes before the removal ended checks
        // them, then links; returns when the removal counted as done.
        let check_then_link = |blob: Digest| {
            let (store, r) = (&store, &r);
            async move {
                let Err(MetadataError::BlobGone { deleted_at_ms, .. }) = store
                    .link_new_blob(r, &blob, 1, StoredBytes::WrittenAt(written), &change())
                    .await
                else {
                    panic!("bytes stored before the removal of {blob} were not checked");
                };
                store
                    .link_new_blob(
                        r,
                        &blob,
                        1,
                        StoredBytes::PresentAfter(deleted_at_ms),
                        &change(),
                    )
                    .await
                    .unwrap();
                assert_eq!(store.linked_blob(r, &blob).await.unwrap(), Some(1));
                deleted_at_ms
            }
        };
        assert!(check_then_link(e).await < written);

        // Interrupted: finished when the server starts (both are).
        assert_eq!(store.finish_interrupted_removals().await.unwrap(), 2);
        assert_eq!(store.finish_interrupted_removals().await.unwrap(), 0);
        assert!(check_then_link(d).await >= written);
    }

    /// Under writes that never pause, the write-ahead log still starts over
    /// once it has grown past `RESTART_AFTER_FRAMES`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_steady_writes() {
        use std::io::Read;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (dir, store) = store().await;
        let store = Arc::new(store);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let r = repo(&format!("a/w{w}"));
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let d = digest(&format!("{w}-{i}"));
                        store
                            .link_new_blob(&r, &d, 1, StoredBytes::Unchecked, &change())
                            .await
                            .unwrap();
                        i += 1;
                    }
                })
            })
            .collect();
        // The log's header counts the times it started over (bytes 12-15).
        let wal = dir.path().join("meta.db-wal");
        let restarts = || {
            let mut header = [0u8; 16];
            std::fs::File::open(&wal)
                .and_then(|mut f| f.read_exact(&mut header))
                .ok()
                .map(|()| u32::from_be_bytes([header[12], header[13], header[14], header[15]]))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut first = None;
        loop {
            match (first, restarts()) {
                (None, Some(n)) => first = Some(n),
                (Some(f), Some(n)) if n > f => break,
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log never started over"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }

    /// Commits never checkpoint; the background task copies the log into
    /// the database file within a couple of seconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_checkpointed_in_the_background() {
        use sqlx::{Connection, Row};
        let (dir, store) = store().await;
        let r = repo("a/b");
        for i in 0..3000 {
            store
                .link_new_blob(
                    &r,
                    &digest(&format!("b{i}")),
                    1,
                    StoredBytes::Unchecked,
                    &change(),
                )
                .await
                .unwrap();
        }
        let wal = dir.path().join("meta.db-wal");
        // More than the 1,000 pages after which a commit would checkpoint
        // by itself.
        assert!(std::fs::metadata(&wal).unwrap().len() > 1000 * 4096);
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("meta.db"))
                .read_only(true),
        )
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Frames in the log, and frames already copied to the database.
            let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await;
            if let Ok(row) = row {
                let (log, copied): (i64, i64) = (row.get(1), row.get(2));
                if log > 0 && log == copied {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not checkpointed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        drop(store);
    }
}

/// The same suite against a real PostgreSQL server. Each test gets a database
/// of its own, created from `TEST_WHARF_POSTGRES_URL` (a URL of a role that may
/// create databases, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
/// Without it the tests say they were skipped, unless `CI=true`, where they fail.
#[allow(clippy::print_stderr)] // "skipped" notes for the test harness's output
mod postgres_backend {
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::postgres::PgConnection;

    use super::*;
    use crate::{PostgresMetaStore, PostgresOptions};

    /// A database that lives for one test.
    struct TestDb {
        admin_url: String,
        name: String,
    }

    impl TestDb {
        async fn create() -> Option<TestDb> {
            let Ok(admin_url) = std::env::var("TEST_WHARF_POSTGRES_URL") else {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true but TEST_WHARF_POSTGRES_URL is not set"
                );
                eprintln!("skipped: TEST_WHARF_POSTGRES_URL is not set");
                return None;
            };
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let name = format!(
                "wharf_test_{}_{}_{}",
                std::process::id(),
                crate::sql::now_ms(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            Some(TestDb { admin_url, name })
        }

        fn options(&self, max_connections: u32) -> PostgresOptions {
            let mut url = url_without_database(&self.admin_url);
            url.push('/');
            url.push_str(&self.name);
            PostgresOptions {
                url,
                max_connections,
                acquire_timeout: Duration::from_secs(10),
                statement_timeout: Duration::from_secs(30),
            }
        }

        async fn node(&self) -> PostgresMetaStore {
            let store = PostgresMetaStore::open(&self.options(8)).await.unwrap();
            create_test_projects(&store).await;
            store
        }

        async fn drop(self) {
            let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }

    /// `postgres://u@h:p/db?x=y` without `/db?x=y`.
    fn url_without_database(url: &str) -> String {
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        match url[after_scheme..].find('/') {
            Some(i) => url[..after_scheme + i].to_string(),
            None => url.split('?').next().unwrap_or(url).to_string(),
        }
    }

    macro_rules! suite {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = TestDb::create().await else { return };
                let store = db.node().await;
                super::$name(&store).await;
                store.close().await;
                db.drop().await;
            }
        )*};
    }
    suite!(
        blob_links_isolate_repositories,
        manifests_require_their_references,
        tags_move_and_list_in_order,
        deletes_respect_references,
        referrers_by_subject_and_type,
        changes_record_events,
        catalog_pages,
        projects_hold_repositories,
        project_listings_filter_sort_and_page,
        users_and_credentials,
        memberships_by_user_group_and_repository,
        robots_and_their_secrets,
        signing_keys_rotate,
        audit_log_and_login_failures,
        browsing_repositories_artifacts_and_tags,
        usage_counts_each_blob_once_per_project,
        quotas_refuse_growth_past_the_limit,
        immutable_tags_and_guarded_deletes,
        garbage_is_found_and_swept,
        sweeps_release_each_blob_once_per_project,
        tombstones_catch_pushes_racing_a_sweep,
        a_deletion_between_the_check_and_the_link_is_caught,
        unrecorded_bytes_are_removed_with_a_tombstone,
        artifact_graph_and_pull_counts,
        settings_and_runs,
        webhook_policies_and_deliveries,
        pull_events_only_for_projects_that_ask,
        tag_history_and_what_tags_pointed_at,
        a_step_claims_new_deliveries_in_order,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        super::concurrent_writers(Arc::new(db.node().await)).await;
        db.drop().await;
    }

    /// Two nodes: two stores with pools of their own on one database.
    macro_rules! races {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = TestDb::create().await else { return };
                let (a, b) = (db.node().await, db.node().await);
                super::$name(Arc::new(a), Arc::new(b)).await;
                db.drop().await;
            }
        )*};
    }
    races!(
        racing_tag_pushes,
        racing_blob_links,
        deletes_race_pushes,
        leases_have_one_holder,
        busy_repository,
        racing_pushes_respect_the_quota,
    );

    /// Nodes starting at once on an empty database: one applies the schema,
    /// the others wait for it, and all of them work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_together_migrate_once() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let options = db.options(2);
        let opens = (0..8).map(|_| {
            let options = options.clone();
            tokio::spawn(async move { PostgresMetaStore::open(&options).await })
        });
        let mut nodes = Vec::new();
        for open in opens {
            nodes.push(open.await.unwrap().unwrap());
        }
        create_test_projects(&nodes[0]).await;
        for (i, node) in nodes.iter().enumerate() {
            node.link_new_blob(
                &repo("a/b"),
                &digest(&i.to_string()),
                1,
                StoredBytes::Unchecked,
                &change(),
            )
            .await
            .unwrap();
        }
        let mut conn = PgConnection::connect(&options.url).await.unwrap();
        let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        assert_eq!(versions, crate::postgres::MIGRATIONS.len() as i64);
        for node in nodes {
            node.close().await;
        }
        db.drop().await;
    }

    /// SQLite to PostgreSQL and back: every tag, manifest, referrer, blob link
    /// and event arrives unchanged, and the copies keep working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copy_between_backends() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sqlite_at = |name: &str| crate::SqliteOptions {
            path: dir.path().join(name),
            readers: 2,
            fsync_every_commit: false,
        };
        let source = crate::SqliteMetaStore::open(&sqlite_at("source.db"))
            .await
            .unwrap();
        create_test_projects(&source).await;
        super::changes_record_events(&source).await;
        super::referrers_by_subject_and_type(&source).await;
        let expected = observable(&source).await;
        assert!(expected.len() > 10, "{expected:?}");

        let pg = db.node().await;
        let report = crate::copy_database(&source, &pg).await.unwrap();
        assert!(report.rows("events") > 0 && report.rows("manifest_contents") > 0);
        assert_eq!(observable(&pg).await, expected);
        let again = crate::copy_database(&source, &pg).await.unwrap_err();
        assert!(again.to_string().contains("already holds data"), "{again}");

        let back = crate::SqliteMetaStore::open(&sqlite_at("back.db"))
            .await
            .unwrap();
        crate::copy_database(&pg, &back).await.unwrap();
        assert_eq!(observable(&back).await, expected);

        // Ids continue after the copied ones in both.
        for store in [&pg as &dyn MetaStore, &back] {
            store
                .link_new_blob(
                    &repo("new/repo"),
                    &digest("new"),
                    1,
                    StoredBytes::Unchecked,
                    &change(),
                )
                .await
                .unwrap();
            assert!(store.repository_exists(&repo("new/repo")).await.unwrap());
        }
        pg.close().await;
        db.drop().await;
    }

    /// As the SQLite test of the same name: a registry-core database
    /// upgraded in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upgrade_moves_repositories_into_projects() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let options = db.options(2);
        let mut conn = PgConnection::connect(&options.url).await.unwrap();
        sqlx::raw_sql(concat!(
            include_str!("../migrations/postgres/0001_registry_core.sql"),
            include_str!("../migrations/postgres/0002_leases.sql"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::raw_sql(UPGRADE_FIXTURE)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let store = PostgresMetaStore::open(&options).await.unwrap();
        super::check_upgraded(&store).await;
        store.close().await;
        db.drop().await;
    }

    /// `sslmode=require` connects over TLS (the server's certificate need not
    /// chain to a known root in that mode, as with libpq).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connects_over_tls() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let mut options = db.options(2);
        options.url.push_str("?sslmode=require");
        let store = PostgresMetaStore::open(&options).await.unwrap();
        create_test_projects(&store).await;
        store
            .link_new_blob(
                &repo("tls/app"),
                &digest("x"),
                1,
                StoredBytes::Unchecked,
                &change(),
            )
            .await
            .unwrap();
        let mut conn = PgConnection::connect(&options.url).await.unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(encrypted);
        conn.close().await.unwrap();
        store.close().await;
        db.drop().await;
    }

    /// A database that is not there fails fast, as unavailable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_database_is_unavailable() {
        let options = PostgresOptions {
            url: "postgres://wharf:secret@127.0.0.1:9/none".into(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(2),
        };
        let started = std::time::Instant::now();
        let err = PostgresMetaStore::open(&options).await.unwrap_err();
        assert!(matches!(err, MetadataError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!format!("{err} {err:?}").contains("secret"));
    }
}
