//! The webhook part of the backend suite: policies, dispatch of the outbox,
//! deliveries in order with claims, retries, redelivery and pruning.

use super::*;
use crate::webhooks::{AttemptNext, AttemptOutcome, DeliveryStatus, NewDelivery, WebhookSpec};

fn spec(name: &str, events: &[&str]) -> WebhookSpec {
    WebhookSpec {
        name: name.into(),
        url: "http://127.0.0.1:9/hook".into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        format: "harbor".into(),
        auth_header: Some("Bearer t".into()),
        secret: Some("0123456789abcdef".into()),
        skip_tls_verify: false,
        enabled: true,
    }
}

fn outcome(id: i64, next: AttemptNext) -> AttemptOutcome {
    AttemptOutcome {
        delivery_id: id,
        response_code: Some(503),
        error: Some("the target answered 503".into()),
        latency_ms: 7,
        next,
    }
}

pub async fn webhook_policies_and_deliveries(store: &dyn MetaStore) {
    // Policies: unique names per project, replaced whole, listed by name.
    let p = store
        .create_webhook("team", &spec("ci", &["artifact.pushed"]))
        .await
        .unwrap();
    assert_eq!(p.project, "team");
    assert_eq!(p.spec.events, ["artifact.pushed"]);
    assert!(matches!(
        store
            .create_webhook("team", &spec("ci", &["tag.created"]))
            .await,
        Err(MetadataError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_webhook("nope", &spec("ci", &["tag.created"]))
            .await,
        Err(MetadataError::ProjectUnknown(_))
    ));
    let other = store
        .create_webhook("team", &spec("audit", &["tag.created", "tag.moved"]))
        .await
        .unwrap();
    let mut changed = spec("ci", &["artifact.pushed", "artifact.deleted"]);
    changed.secret = None;
    let p = store
        .update_webhook("team", p.id, &changed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.spec.secret, None);
    assert_eq!(p.spec.events, ["artifact.pushed", "artifact.deleted"]);
    assert!(
        store
            .update_webhook("other", p.id, &changed)
            .await
            .unwrap()
            .is_none()
    );
    let names: Vec<String> = store
        .webhooks("team")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.spec.name)
        .collect();
    assert_eq!(names, ["audit", "ci"]);
    assert_eq!(store.enabled_webhooks().await.unwrap().len(), 2);

    // The outbox: manifest and tag events wait for dispatch, blob events do not.
    let r = repo("team/app");
    let layer = digest("webhook layer");
    store
        .link_new_blob(&r, &layer, 3, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    store
        .put_manifest(
            manifest(&r, "hooked", &[(&layer, 3)], &[], &["v1"]),
            &change(),
        )
        .await
        .unwrap();
    let waiting = store.events_to_dispatch(100).await.unwrap();
    let kinds: Vec<EventKind> = waiting.iter().map(|e| e.event.kind).collect();
    assert_eq!(kinds, [EventKind::ManifestPushed, EventKind::TagCreated]);
    assert_eq!(waiting[0].project_id, waiting[1].project_id);
    assert!(waiting[0].repository_created_at_ms.is_some());

    // Dispatch: deliveries made once, even when dispatched twice.
    let ids: Vec<i64> = waiting.iter().map(|e| e.event.id).collect();
    let delivery = |policy: i64, event: i64, key: &str| NewDelivery {
        policy_id: policy,
        event_id: event,
        event_type: "artifact.pushed".into(),
        ordering_key: key.into(),
        body: format!("{{\"event\":{event}}}"),
        claim: false,
    };
    let made = [
        delivery(p.id, ids[0], "team/app@a"),
        delivery(p.id, ids[1], "team/app@a"),
        delivery(p.id, ids[1] + 1000, "team/app@b"),
        delivery(other.id, ids[1], "team/app@a"),
    ];
    store.dispatch(&ids, &made, 1000).await.unwrap();
    store.dispatch(&ids, &made, 1000).await.unwrap();
    assert!(store.events_to_dispatch(100).await.unwrap().is_empty());
    let all = store.deliveries(p.id, None, None, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    // Due: the head of each policy and key; not yet due, not due.
    let due = store.due_deliveries(999, 100).await.unwrap();
    assert!(due.is_empty());
    let due = store.due_deliveries(1000, 100).await.unwrap();
    let heads: Vec<(i64, i64)> = due.iter().map(|d| (d.policy_id, d.event_id)).collect();
    assert_eq!(
        heads,
        [(p.id, ids[0]), (p.id, ids[1] + 1000), (other.id, ids[1])]
    );
    // Claims: taken once; a claimed delivery is not due; a lapsed claim is.
    let first = due[0].id;
    assert_eq!(
        store.claim_deliveries(&[first], 1000, 5000).await.unwrap(),
        [first]
    );
    assert!(
        store
            .claim_deliveries(&[first], 1001, 5000)
            .await
            .unwrap()
            .is_empty()
    );
    let due_of_p = |due: Vec<crate::webhooks::Delivery>| -> Vec<i64> {
        due.iter()
            .filter(|d| d.policy_id == p.id)
            .map(|d| d.event_id)
            .collect()
    };
    assert_eq!(
        due_of_p(store.due_deliveries(1001, 100).await.unwrap()),
        [ids[1] + 1000]
    );
    assert!(
        store
            .due_deliveries(5000, 100)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == first)
    );

    // A failed attempt: pending again, later; its successor still waits.
    store
        .finish_attempts(&[outcome(first, AttemptNext::RetryAt(8000))], 2000)
        .await
        .unwrap();
    let d = store.delivery(p.id, first).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.response_code, Some(503));
    assert_eq!(d.next_attempt_at_ms, 8000);
    assert_eq!(
        due_of_p(store.due_deliveries(7000, 100).await.unwrap()),
        [ids[1] + 1000]
    );
    // Succeeded: the next one of the key is due.
    store
        .finish_attempts(
            &[AttemptOutcome {
                response_code: Some(200),
                error: None,
                ..outcome(first, AttemptNext::Succeeded)
            }],
            9000,
        )
        .await
        .unwrap();
    let due = store.due_deliveries(9000, 100).await.unwrap();
    assert!(
        due.iter()
            .any(|d| d.policy_id == p.id && d.event_id == ids[1])
    );
    let done = store.delivery(p.id, first).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.attempts, done.finished_at_ms),
        (DeliveryStatus::Succeeded, 2, Some(9000))
    );

    // Failed for good, then redelivered: pending, due now, attempts from zero.
    let second = due
        .iter()
        .find(|d| d.policy_id == p.id && d.event_id == ids[1])
        .unwrap()
        .id;
    store
        .finish_attempts(&[outcome(second, AttemptNext::Failed)], 9100)
        .await
        .unwrap();
    let failed = store
        .deliveries(p.id, Some(DeliveryStatus::Failed), None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(!store.redeliver(p.id, first + 100_000, 9200).await.unwrap());
    assert!(store.redeliver(p.id, second, 9200).await.unwrap());
    assert!(
        !store.redeliver(p.id, second, 9200).await.unwrap(),
        "still pending"
    );
    let again = store.delivery(p.id, second).await.unwrap().unwrap();
    assert_eq!((again.status, again.attempts), (DeliveryStatus::Pending, 0));

    // Claims of a process that is gone are dropped.
    store
        .claim_deliveries(&[second], 9300, 99_999)
        .await
        .unwrap();
    assert_eq!(store.release_delivery_claims().await.unwrap(), 1);
    assert!(
        store
            .due_deliveries(9400, 100)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == second)
    );

    // Pruning takes ended deliveries only.
    assert_eq!(store.prune_deliveries(10_000).await.unwrap(), 1);
    assert!(store.delivery(p.id, first).await.unwrap().is_none());
    assert!(store.delivery(p.id, second).await.unwrap().is_some());

    // Deleting a policy deletes its deliveries; a disabled one is not due.
    assert!(store.delete_webhook("team", p.id).await.unwrap());
    assert!(!store.delete_webhook("team", p.id).await.unwrap());
    assert!(
        store
            .deliveries(p.id, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut off = spec("audit", &["tag.created"]);
    off.enabled = false;
    store.update_webhook("team", other.id, &off).await.unwrap();
    assert!(store.due_deliveries(99_999, 100).await.unwrap().is_empty());
    assert!(store.enabled_webhooks().await.unwrap().is_empty());
}

pub async fn pull_events_only_for_projects_that_ask(store: &dyn MetaStore) {
    let r = repo("team/pulled");
    let layer = digest("pulled layer");
    store
        .link_new_blob(&r, &layer, 3, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let m = manifest(&r, "pulled", &[(&layer, 3)], &[], &[]);
    store.put_manifest(m.clone(), &change()).await.unwrap();
    // No policy in the project: nothing waits for the dispatcher.
    assert!(store.events_to_dispatch(100).await.unwrap().is_empty());
    let pull = crate::Pull {
        repository: r.clone(),
        digest: m.digest.clone(),
        at_ms: 5,
        count: 2,
        actor: "puller".into(),
    };
    store
        .record_pulls(std::slice::from_ref(&pull))
        .await
        .unwrap();
    assert!(store.events_to_dispatch(100).await.unwrap().is_empty());
    store
        .create_webhook("team", &spec("pulls", &["artifact.pulled"]))
        .await
        .unwrap();
    store.record_pulls(&[pull]).await.unwrap();
    let waiting = store.events_to_dispatch(100).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].event.kind, EventKind::ManifestPulled);
    assert_eq!(waiting[0].event.actor, "puller");
    assert_eq!(waiting[0].event.digest.as_ref(), Some(&m.digest));
}

pub async fn tag_history_and_what_tags_pointed_at(store: &dyn MetaStore) {
    let r = repo("team/hist");
    let layer = digest("history layer");
    store
        .link_new_blob(&r, &layer, 3, StoredBytes::Unchecked, &change())
        .await
        .unwrap();
    let at = |ms: i64| Change {
        actor: "mover".into(),
        at_ms: ms,
    };
    let one = manifest(&r, "release one", &[(&layer, 3)], &[], &["stable"]);
    let two = manifest(&r, "release two", &[(&layer, 3)], &[], &["stable"]);
    store.put_manifest(one.clone(), &at(1000)).await.unwrap();
    store.put_manifest(two.clone(), &at(2000)).await.unwrap();
    store
        .delete_tag(&r, &tag("stable"), &at(3000))
        .await
        .unwrap();

    let history = store
        .tag_history(&r, &tag("stable"), None, 10)
        .await
        .unwrap();
    let kinds: Vec<EventKind> = history.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::TagDeleted,
            EventKind::TagMoved,
            EventKind::TagCreated
        ]
    );
    assert_eq!(history[1].previous_digest.as_ref(), Some(&one.digest));
    assert_eq!(history[1].digest.as_ref(), Some(&two.digest));
    assert_eq!(history[1].actor, "mover");
    let older = store
        .tag_history(&r, &tag("stable"), Some(history[0].id), 1)
        .await
        .unwrap();
    assert_eq!(older[0].id, history[1].id);
    assert!(
        store
            .tag_history(&r, &tag("other"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let mut since = store.tagged_since(Some("team"), 1500).await.unwrap();
    since.sort_by(|a, b| a.1.cmp(&b.1));
    since.dedup();
    let mut expected = vec![
        (r.clone(), one.digest.clone()),
        (r.clone(), two.digest.clone()),
    ];
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(since, expected);
    assert!(
        store
            .tagged_since(Some("other"), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.tagged_since(Some("tea"), 0).await.unwrap().is_empty());
    // What the tag points at now is not history; what it left is.
    assert_eq!(
        store.tagged_since(Some("team"), 2500).await.unwrap(),
        [(r.clone(), two.digest.clone())]
    );
    assert!(store.tagged_since(None, 3001).await.unwrap().is_empty());
}

pub async fn a_step_claims_new_deliveries_in_order(store: &dyn MetaStore) {
    use crate::webhooks::Step;
    let p = store
        .create_webhook("team", &spec("step", &["artifact.pushed"]))
        .await
        .unwrap();
    let new = |event: i64, key: &str| NewDelivery {
        policy_id: p.id,
        event_id: event,
        event_type: "artifact.pushed".into(),
        ordering_key: key.into(),
        body: "{}".into(),
        claim: true,
    };
    // Two of one key and one of another: the first of each key is claimed.
    let made = [new(1, "a"), new(2, "a"), new(3, "b")];
    let step = Step {
        now_ms: 100,
        until_ms: 5000,
        deliveries: &made,
        ..Step::default()
    };
    let advanced = store.advance(&step).await.unwrap();
    let claimed: Vec<bool> = advanced.created.iter().map(|c| c.unwrap().1).collect();
    assert_eq!(claimed, [true, false, true]);
    // Made again: nothing new.
    let again = store.advance(&step).await.unwrap();
    assert!(again.created.iter().all(Option::is_none));
    // The first ends, and the second is claimed, in one step.
    let (first, second) = (
        advanced.created[0].unwrap().0,
        advanced.created[1].unwrap().0,
    );
    let ended = [AttemptOutcome {
        response_code: Some(200),
        error: None,
        ..outcome(first, AttemptNext::Succeeded)
    }];
    let step = Step {
        now_ms: 200,
        until_ms: 5000,
        outcomes: &ended,
        claims: &[second],
        ..Step::default()
    };
    assert_eq!(store.advance(&step).await.unwrap().claimed, [second]);
    let done = store.delivery(p.id, first).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Succeeded);
}
