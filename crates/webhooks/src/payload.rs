//! Webhook events made from outbox events, and their bodies in the two
//! payload formats.
//!
//! The outbox records changes at a finer grain than webhooks report them: a
//! push by tag writes `manifest.pushed` and then `tag.created` (or
//! `tag.moved`) in one transaction. [`group`] folds the tag events of one
//! push into its `artifact.pushed` (and those of one delete into its
//! `artifact.deleted`), while they still make their own `tag.*` events.
//!
//! Formats:
//! - `harbor`: Harbor's default JSON payload (`type`, `occur_at` in Unix
//!   seconds, `operator`, `event_data.resources[]` and
//!   `event_data.repository`), so that receivers written for Harbor (Argo CD
//!   Image Updater, Flux, Kargo) work unchanged. The first resource's `tag`
//!   is the first tag, or the digest for a push by digest, as Harbor does;
//!   further tags follow as further resources. Events Harbor has no type for
//!   use the names of Harbor's internal topics (`CREATE_TAG`, `DELETE_TAG`)
//!   or new ones in the same style (`MOVE_TAG`, `SIGNATURE_ADDED`).
//! - `cloudevents`: CloudEvents 1.0, structured JSON mode. `type` is
//!   `wharf.<event type>`, `source` `/projects/<project>/webhooks/<policy
//!   id>`, `id` `<outbox event id>-<event type>` (the same on every attempt
//!   and redelivery, so receivers can drop duplicates), `subject` the
//!   artifact reference, `data` wharf's own description of the event.

use std::fmt;

use metadata::webhooks::OutboxEvent;
use metadata::{EventKind, webhooks::WebhookPolicy};
use serde_json::{Value, json};

/// What a policy can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    ArtifactPushed,
    ArtifactPulled,
    ArtifactDeleted,
    TagCreated,
    TagMoved,
    TagDeleted,
    QuotaWarning,
    QuotaExceeded,
    SignatureAdded,
    RetentionFinished,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::ArtifactPushed,
        EventType::ArtifactPulled,
        EventType::ArtifactDeleted,
        EventType::TagCreated,
        EventType::TagMoved,
        EventType::TagDeleted,
        EventType::QuotaWarning,
        EventType::QuotaExceeded,
        EventType::SignatureAdded,
        EventType::RetentionFinished,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::ArtifactPushed => "artifact.pushed",
            EventType::ArtifactPulled => "artifact.pulled",
            EventType::ArtifactDeleted => "artifact.deleted",
            EventType::TagCreated => "tag.created",
            EventType::TagMoved => "tag.moved",
            EventType::TagDeleted => "tag.deleted",
            EventType::QuotaWarning => "quota.warning",
            EventType::QuotaExceeded => "quota.exceeded",
            EventType::SignatureAdded => "signature.added",
            EventType::RetentionFinished => "retention.finished",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Harbor's `type` for this event.
    const fn harbor(self) -> &'static str {
        match self {
            EventType::ArtifactPushed => "PUSH_ARTIFACT",
            EventType::ArtifactPulled => "PULL_ARTIFACT",
            EventType::ArtifactDeleted => "DELETE_ARTIFACT",
            EventType::TagCreated => "CREATE_TAG",
            EventType::TagMoved => "MOVE_TAG",
            EventType::TagDeleted => "DELETE_TAG",
            EventType::QuotaWarning => "QUOTA_WARNING",
            EventType::QuotaExceeded => "QUOTA_EXCEED",
            EventType::SignatureAdded => "SIGNATURE_ADDED",
            EventType::RetentionFinished => "TAG_RETENTION",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Harbor,
    CloudEvents,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "harbor" => Some(Format::Harbor),
            "cloudevents" => Some(Format::CloudEvents),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Harbor => "harbor",
            Format::CloudEvents => "cloudevents",
        }
    }

    /// The `Content-Type` of a body in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Harbor => "application/json",
            Format::CloudEvents => "application/cloudevents+json; charset=utf-8",
        }
    }
}

/// One webhook event, made from one or more outbox events of one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The outbox event it comes from (the first of its change).
    pub event_id: i64,
    pub kind: EventType,
    pub project: String,
    pub project_public: bool,
    pub repository: String,
    pub repository_created_at_ms: Option<i64>,
    pub digest: Option<String>,
    pub tags: Vec<String>,
    pub previous_digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    /// For `signature.added`: the signed manifest.
    pub subject: Option<String>,
    pub actor: String,
    pub occurred_at_ms: i64,
    /// For `retention.finished`: the run's id, outcome and summary.
    pub detail: Option<Value>,
}

impl WebhookEvent {
    /// Deliveries of one policy with the same key go out in order: the
    /// artifact's digest, or the tag, within the repository.
    pub fn ordering_key(&self) -> String {
        match (&self.digest, self.tags.first()) {
            (Some(d), _) => format!("{}@{d}", self.repository),
            (None, Some(t)) => format!("{}:{t}", self.repository),
            (None, None) => self.repository.clone(),
        }
    }

    /// `repository:tag` (the first tag) or `repository@digest`.
    fn reference(&self) -> String {
        match (self.tags.first(), &self.digest) {
            (Some(tag), _) => format!("{}:{tag}", self.repository),
            (None, Some(digest)) => format!("{}@{digest}", self.repository),
            (None, None) => self.repository.clone(),
        }
    }
}

/// Media types of signature manifests (as artifact types or config types).
const SIGNATURE_TYPES: [&str; 2] = [
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.cncf.notary.signature",
];

/// A tag cosign gives a signature it stores without the referrers API:
/// `sha256-<hex>.sig`, naming the signed digest.
fn cosign_signature_tag(tag: &str) -> Option<String> {
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// The key of the change an outbox event belongs to.
fn change_key(e: &OutboxEvent) -> (&str, Option<&str>, &str, i64) {
    let ev = &e.event;
    (
        ev.repository.as_str(),
        ev.digest.as_ref().map(|d| d.as_str()),
        ev.actor.as_str(),
        ev.occurred_at_ms,
    )
}

/// How many of `events` (a full page read from the outbox) can be grouped
/// now: all but the trailing events of the last change, which may go on in
/// the next page, unless the page holds nothing else.
pub fn complete_prefix(events: &[OutboxEvent]) -> usize {
    let Some(last) = events.last() else { return 0 };
    let key = change_key(last);
    let tail = events
        .iter()
        .rev()
        .take_while(|e| change_key(e) == key)
        .count();
    if tail == events.len() {
        events.len()
    } else {
        events.len() - tail
    }
}

/// The webhook events of `events` (outbox events in id order).
pub fn group(events: &[OutboxEvent]) -> Vec<WebhookEvent> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let ev = &e.event;
        let same_change = |other: &&OutboxEvent| change_key(other) == change_key(e);
        let base = |kind: EventType| WebhookEvent {
            event_id: ev.id,
            kind,
            project: ev
                .repository
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            project_public: e.project_public,
            repository: ev.repository.clone(),
            repository_created_at_ms: e.repository_created_at_ms,
            digest: ev.digest.as_ref().map(|d| d.to_string()),
            tags: ev.tag.iter().cloned().collect(),
            previous_digest: ev.previous_digest.as_ref().map(|d| d.to_string()),
            media_type: ev.media_type.clone(),
            size: ev.size,
            subject: None,
            actor: ev.actor.clone(),
            occurred_at_ms: ev.occurred_at_ms,
            detail: ev
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        };
        match ev.kind {
            EventKind::ManifestPushed => {
                let mut pushed = base(EventType::ArtifactPushed);
                pushed.tags = events[i + 1..]
                    .iter()
                    .filter(same_change)
                    .filter(|t| matches!(t.event.kind, EventKind::TagCreated | EventKind::TagMoved))
                    .filter_map(|t| t.event.tag.clone())
                    .collect();
                let typed_signature = e.subject.is_some()
                    && e.artifact_type
                        .as_deref()
                        .is_some_and(|t| SIGNATURE_TYPES.contains(&t));
                let tagged_signature = pushed.tags.iter().find_map(|t| cosign_signature_tag(t));
                if typed_signature || tagged_signature.is_some() {
                    let mut signed = pushed.clone();
                    signed.kind = EventType::SignatureAdded;
                    signed.subject = e.subject.clone().or(tagged_signature);
                    out.push(pushed);
                    out.push(signed);
                } else {
                    out.push(pushed);
                }
            }
            EventKind::ManifestDeleted => {
                let mut deleted = base(EventType::ArtifactDeleted);
                deleted.tags = events[..i]
                    .iter()
                    .filter(same_change)
                    .filter(|t| t.event.kind == EventKind::TagDeleted)
                    .filter_map(|t| t.event.tag.clone())
                    .collect();
                out.push(deleted);
            }
            EventKind::ManifestPulled => out.push(base(EventType::ArtifactPulled)),
            EventKind::TagCreated => out.push(base(EventType::TagCreated)),
            EventKind::TagMoved => out.push(base(EventType::TagMoved)),
            EventKind::TagDeleted => out.push(base(EventType::TagDeleted)),
            EventKind::QuotaWarning => out.push(base(EventType::QuotaWarning)),
            EventKind::QuotaExceeded => out.push(base(EventType::QuotaExceeded)),
            EventKind::RetentionFinished => out.push(base(EventType::RetentionFinished)),
            EventKind::BlobPushed | EventKind::BlobMounted | EventKind::BlobDeleted => {}
        }
    }
    out
}

/// The body of `event` for `policy` in `format`. `registry_host` is the
/// registry's address as clients name it (`registry.example.com:5000`).
pub fn render(
    event: &WebhookEvent,
    policy: &WebhookPolicy,
    format: Format,
    registry_host: &str,
) -> String {
    let body = match format {
        Format::Harbor => harbor(event, registry_host),
        Format::CloudEvents => cloudevent(event, policy, registry_host),
    };
    body.to_string()
}

fn harbor(event: &WebhookEvent, registry_host: &str) -> Value {
    let name = event
        .repository
        .split_once('/')
        .map_or(event.repository.as_str(), |(_, rest)| rest);
    let mut repository = json!({
        "name": name,
        "namespace": event.project,
        "repo_full_name": event.repository,
        "repo_type": if event.project_public { "public" } else { "private" },
    });
    if let Some(created) = event.repository_created_at_ms {
        repository["date_created"] = json!(created.div_euclid(1000));
    }
    let mut data = json!({ "repository": repository });
    let resource = |tag: Option<&str>| {
        let mut r = serde_json::Map::new();
        if let Some(digest) = &event.digest {
            r.insert("digest".into(), json!(digest));
        }
        match (tag, &event.digest) {
            (Some(tag), _) => {
                r.insert("tag".into(), json!(tag));
                r.insert(
                    "resource_url".into(),
                    json!(format!("{registry_host}/{}:{tag}", event.repository)),
                );
            }
            (None, Some(digest)) => {
                r.insert("tag".into(), json!(digest));
                r.insert(
                    "resource_url".into(),
                    json!(format!("{registry_host}/{}@{digest}", event.repository)),
                );
            }
            (None, None) => {}
        }
        Value::Object(r)
    };
    match event.kind {
        EventType::RetentionFinished => {
            // Harbor's shape: counts, the project and the result.
            let detail = event.detail.clone().unwrap_or_default();
            let summary = &detail["summary"];
            let succeeded = detail["succeeded"].as_bool() == Some(true);
            data = json!({
                "retention": {
                    "total": summary["artifacts"],
                    "retained": summary["kept"],
                    "deleted": summary["deleted"],
                    "project_name": event.project,
                    "retention_policy_id": detail["run_id"],
                    "result": if succeeded { "SUCCESS" } else { "FAILED" },
                }
            });
        }
        EventType::QuotaWarning | EventType::QuotaExceeded => {
            let used = event.size.unwrap_or_default();
            data["custom_attributes"] = json!({
                "Details": match event.kind {
                    EventType::QuotaWarning =>
                        format!("quota usage of project {} reached its warning threshold: {used} bytes used", event.project),
                    _ => format!("a push to {} was refused: it would exceed the quota of project {}", event.repository, event.project),
                }
            });
        }
        _ => {
            let resources: Vec<Value> = if event.tags.is_empty() {
                vec![resource(None)]
            } else {
                event.tags.iter().map(|t| resource(Some(t))).collect()
            };
            data["resources"] = Value::Array(resources);
        }
    }
    json!({
        "type": event.kind.harbor(),
        "occur_at": event.occurred_at_ms.div_euclid(1000),
        "operator": event.actor,
        "event_data": data,
    })
}

fn cloudevent(event: &WebhookEvent, policy: &WebhookPolicy, registry_host: &str) -> Value {
    let mut data = json!({
        "project": event.project,
        "repository": event.repository,
        "tags": event.tags,
        "actor": event.actor,
    });
    let optional = [
        ("digest", event.digest.as_ref().map(|d| json!(d))),
        (
            "previous_digest",
            event.previous_digest.as_ref().map(|d| json!(d)),
        ),
        ("media_type", event.media_type.as_ref().map(|m| json!(m))),
        ("size", event.size.map(|s| json!(s))),
        ("subject", event.subject.as_ref().map(|s| json!(s))),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            data[key] = value;
        }
    }
    if event.digest.is_some() {
        data["resource_url"] = json!(format!("{registry_host}/{}", event.reference_for_url()));
    }
    if let Some(detail) = &event.detail {
        data["run"] = detail.clone();
    }
    json!({
        "specversion": "1.0",
        "id": format!("{}-{}", event.event_id, event.kind),
        "source": format!("/projects/{}/webhooks/{}", event.project, policy.id),
        "type": format!("wharf.{}", event.kind),
        "subject": event.reference(),
        "time": policy::schedule::rfc3339_ms(event.occurred_at_ms),
        "datacontenttype": "application/json",
        "operator": event.actor,
        "data": data,
    })
}

impl WebhookEvent {
    /// `repository@digest` when the digest is known, else the reference.
    fn reference_for_url(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}", self.repository),
            None => self.reference(),
        }
    }
}

#[cfg(test)]
mod tests {
    use metadata::Event;

    use super::*;

    const A: &str = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4";
    const B: &str = "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14";

    fn outbox(id: i64, kind: EventKind, digest: &str, tag: Option<&str>, at: i64) -> OutboxEvent {
        OutboxEvent {
            event: Event {
                id,
                kind,
                repository: "harbor/alpine".into(),
                digest: Some(oci::Digest::parse(digest).unwrap()),
                tag: tag.map(str::to_owned),
                previous_digest: None,
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                size: Some(527),
                actor: "alice".into(),
                occurred_at_ms: at,
                detail: None,
            },
            project_id: Some(2),
            project_public: false,
            repository_created_at_ms: Some(1_680_501_893_000),
            artifact_type: None,
            subject: None,
        }
    }

    fn policy() -> WebhookPolicy {
        WebhookPolicy {
            id: 15,
            project: "harbor".into(),
            spec: metadata::webhooks::WebhookSpec {
                name: "ci".into(),
                url: "http://127.0.0.1:9/".into(),
                events: vec!["artifact.pushed".into()],
                format: "harbor".into(),
                auth_header: None,
                secret: None,
                skip_tls_verify: false,
                enabled: true,
            },
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_push_by_tag_is_one_artifact_event_with_its_tags_and_a_tag_event_each() {
        let events = [
            outbox(1, EventKind::BlobPushed, B, None, 1000),
            outbox(2, EventKind::ManifestPushed, A, None, 2000),
            outbox(3, EventKind::TagCreated, A, Some("3.8"), 2000),
            outbox(4, EventKind::TagMoved, A, Some("latest"), 2000),
        ];
        let grouped = group(&events);
        let kinds: Vec<_> = grouped.iter().map(|e| (e.kind, e.tags.clone())).collect();
        assert_eq!(
            kinds,
            [
                (
                    EventType::ArtifactPushed,
                    vec!["3.8".into(), "latest".into()]
                ),
                (EventType::TagCreated, vec!["3.8".into()]),
                (EventType::TagMoved, vec!["latest".into()]),
            ]
        );
        assert_eq!(grouped[0].event_id, 2);
        assert_eq!(grouped[0].project, "harbor");
    }

    #[test]
    fn a_delete_carries_the_tags_it_removed() {
        let events = [
            outbox(7, EventKind::TagDeleted, A, Some("3.8"), 5000),
            outbox(8, EventKind::ManifestDeleted, A, None, 5000),
        ];
        let grouped = group(&events);
        assert_eq!(grouped[1].kind, EventType::ArtifactDeleted);
        assert_eq!(grouped[1].tags, ["3.8"]);
    }

    #[test]
    fn a_page_ends_before_a_change_that_may_go_on() {
        let events = [
            outbox(1, EventKind::ManifestPushed, B, None, 1000),
            outbox(2, EventKind::ManifestPushed, A, None, 2000),
            outbox(3, EventKind::TagCreated, A, Some("3.8"), 2000),
        ];
        assert_eq!(complete_prefix(&events), 1);
        assert_eq!(complete_prefix(&events[1..]), 2);
    }

    #[test]
    fn signatures_are_recognised_by_artifact_type_and_by_cosign_tag() {
        let mut referrer = outbox(1, EventKind::ManifestPushed, B, None, 1000);
        referrer.artifact_type = Some("application/vnd.dev.cosign.artifact.sig.v1+json".into());
        referrer.subject = Some(A.into());
        let grouped = group(&[referrer]);
        assert_eq!(grouped[1].kind, EventType::SignatureAdded);
        assert_eq!(grouped[1].subject.as_deref(), Some(A));

        let tag = format!("sha256-{}.sig", &A[7..]);
        let events = [
            outbox(1, EventKind::ManifestPushed, B, None, 1000),
            outbox(2, EventKind::TagCreated, B, Some(&tag), 1000),
        ];
        let grouped = group(&events);
        assert_eq!(grouped[1].kind, EventType::SignatureAdded);
        assert_eq!(grouped[1].subject.as_deref(), Some(A));
    }

    /// The shape of Harbor's documented `PUSH_ARTIFACT` example (pushed by
    /// digest, so `tag` holds the digest).
    #[test]
    fn harbor_payloads_have_harbors_shape() {
        let events = [outbox(
            2,
            EventKind::ManifestPushed,
            A,
            None,
            1_680_501_893_500,
        )];
        let event = &group(&events)[0];
        let body: Value =
            serde_json::from_str(&render(event, &policy(), Format::Harbor, "localhost")).unwrap();
        assert_eq!(
            body,
            json!({
                "type": "PUSH_ARTIFACT",
                "occur_at": 1_680_501_893,
                "operator": "alice",
                "event_data": {
                    "resources": [{
                        "digest": A,
                        "tag": A,
                        "resource_url": format!("localhost/harbor/alpine@{A}"),
                    }],
                    "repository": {
                        "date_created": 1_680_501_893,
                        "name": "alpine",
                        "namespace": "harbor",
                        "repo_full_name": "harbor/alpine",
                        "repo_type": "private",
                    },
                },
            })
        );
        let tagged = [
            outbox(2, EventKind::ManifestPushed, A, None, 0),
            outbox(3, EventKind::TagCreated, A, Some("3.8"), 0),
        ];
        let body: Value = serde_json::from_str(&render(
            &group(&tagged)[0],
            &policy(),
            Format::Harbor,
            "localhost",
        ))
        .unwrap();
        assert_eq!(body["event_data"]["resources"][0]["tag"], "3.8");
        assert_eq!(
            body["event_data"]["resources"][0]["resource_url"],
            "localhost/harbor/alpine:3.8"
        );
    }

    /// CloudEvents 1.0: the required attributes, non-empty; attribute names
    /// lowercase letters and digits; JSON data inline.
    #[test]
    fn cloudevents_have_the_required_attributes() {
        let events = [
            outbox(2, EventKind::ManifestPushed, A, None, 1_680_501_893_042),
            outbox(3, EventKind::TagCreated, A, Some("3.8"), 1_680_501_893_042),
        ];
        let event = &group(&events)[0];
        let body: Value =
            serde_json::from_str(&render(event, &policy(), Format::CloudEvents, "localhost"))
                .unwrap();
        let object = body.as_object().unwrap();
        for required in ["specversion", "id", "source", "type"] {
            assert!(
                object[required].as_str().is_some_and(|v| !v.is_empty()),
                "{required}"
            );
        }
        for name in object.keys() {
            assert!(
                name.len() <= 20
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{name}"
            );
        }
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], "2-artifact.pushed");
        assert_eq!(body["source"], "/projects/harbor/webhooks/15");
        assert_eq!(body["type"], "wharf.artifact.pushed");
        assert_eq!(body["subject"], "harbor/alpine:3.8");
        assert_eq!(body["time"], "2023-04-03T06:04:53.042Z");
        assert_eq!(body["datacontenttype"], "application/json");
        assert_eq!(body["data"]["digest"], A);
        assert_eq!(body["data"]["tags"], json!(["3.8"]));
        assert_eq!(
            body["data"]["resource_url"],
            format!("localhost/harbor/alpine@{A}")
        );
    }
}
