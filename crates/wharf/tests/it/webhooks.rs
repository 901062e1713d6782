//! Webhooks end to end: policies through the management API, deliveries to
//! a real HTTP receiver (an axum server in the test) that records every
//! request and can be told to fail, in Harbor's payload and in CloudEvents.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Mutex;
use wharf::config::Config;

use crate::common::*;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    /// Whether the receiver answered 2xx.
    accepted: bool,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests still to refuse with 503.
    refuse: Arc<AtomicU32>,
}

impl Receiver {
    /// Serves on 127.0.0.1; returns the URL to post to.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    async fn accepted(&self) -> Vec<Received> {
        let all = self.received.lock().await;
        all.iter().filter(|r| r.accepted).cloned().collect()
    }

    /// Waits until `n` requests were accepted; returns them.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.accepted().await;
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let refuse = r
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    r.received.lock().await.push(Received {
        headers,
        body: body.to_vec(),
        accepted: !refuse,
    });
    if refuse {
        AxumStatus::SERVICE_UNAVAILABLE
    } else {
        AxumStatus::OK
    }
}

async fn api(base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    api_at(base, method, path, body).await
}

async fn create(base: &str, project: &str, body: Value) -> Value {
    let (status, policy) = api(
        base,
        Method::POST,
        &format!("/projects/{project}/webhooks"),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{policy}");
    policy
}

fn quick_retries(config: &mut Config) {
    config.webhooks.retry_base_seconds = 1;
    config.webhooks.retry_max_seconds = 1;
    config.webhooks.timeout_seconds = 2;
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

const SECRET: &str = "a-shared-secret-of-some-length";

#[tokio::test]
async fn pushes_and_deletes_arrive_in_harbor_and_cloudevents_formats() {
    let s =
        TestServer::start_with(|c| c.webhooks.registry_host = "registry.example.com".into()).await;
    let (harbor, cloud) = (Receiver::default(), Receiver::default());
    let harbor_url = harbor.start().await;
    let cloud_url = cloud.start().await;
    let h = create(
        &s.base,
        "library",
        json!({
            "name": "argo", "url": harbor_url,
            "events": ["artifact.pushed", "artifact.deleted"],
            "auth_header": "Bearer receiver-token", "secret": SECRET,
        }),
    )
    .await;
    // Secrets are write-only.
    assert_eq!(h["auth_header_set"], true);
    assert_eq!(h["secret_set"], true);
    assert!(h.get("secret").is_none() && h.get("auth_header").is_none());
    assert_eq!(h["format"], "harbor");
    create(
        &s.base,
        "library",
        json!({
            "name": "events", "url": cloud_url, "format": "cloudevents",
            "events": ["artifact.pushed", "tag.created", "artifact.deleted"],
        }),
    )
    .await;

    let (_, digest) = s.push_image("library/app", "1.0", &[b"layer one"]).await;
    let response = s
        .delete(&format!("/v2/library/app/manifests/{digest}"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Harbor's payload, signed, with the header as given, push before delete.
    let got = harbor.wait_for(2).await;
    let push = got[0].json();
    assert_eq!(push["type"], "PUSH_ARTIFACT", "{push}");
    assert_eq!(push["operator"], "admin");
    assert!(push["occur_at"].as_i64().unwrap() > 1_700_000_000);
    let resource = &push["event_data"]["resources"][0];
    assert_eq!(resource["digest"], digest.as_str());
    assert_eq!(resource["tag"], "1.0");
    assert_eq!(
        resource["resource_url"],
        "registry.example.com/library/app:1.0"
    );
    let repository = &push["event_data"]["repository"];
    assert_eq!(repository["namespace"], "library");
    assert_eq!(repository["name"], "app");
    assert_eq!(repository["repo_full_name"], "library/app");
    assert_eq!(repository["repo_type"], "public");
    assert_eq!(got[0].header("content-type"), "application/json");
    assert_eq!(got[0].header("authorization"), "Bearer receiver-token");
    assert_eq!(got[0].header("x-wharf-event"), "artifact.pushed");
    assert_eq!(
        got[0].header("x-wharf-signature-256"),
        format!("sha256={}", hmac_hex(SECRET, &got[0].body))
    );
    let delete = got[1].json();
    assert_eq!(delete["type"], "DELETE_ARTIFACT");
    assert_eq!(delete["event_data"]["resources"][0]["tag"], "1.0");
    assert_eq!(
        delete["event_data"]["resources"][0]["digest"],
        digest.as_str()
    );

    // CloudEvents, structured mode, no signature without a secret.
    let got = cloud.wait_for(3).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "wharf.artifact.pushed",
            "wharf.tag.created",
            "wharf.artifact.deleted"
        ]
    );
    let event = got[0].json();
    assert!(
        got[0]
            .header("content-type")
            .starts_with("application/cloudevents+json")
    );
    assert!(got[0].header("x-wharf-signature-256").is_empty());
    assert!(got[0].header("authorization").is_empty());
    assert_eq!(event["specversion"], "1.0");
    assert!(
        event["source"]
            .as_str()
            .unwrap()
            .starts_with("/projects/library/webhooks/")
    );
    assert!(!event["id"].as_str().unwrap().is_empty());
    assert_eq!(event["subject"], "library/app:1.0");
    assert_eq!(event["data"]["digest"], digest.as_str());
    assert_eq!(event["data"]["tags"], json!(["1.0"]));
    assert!(event["time"].as_str().unwrap().ends_with('Z'));

    // The delivery log.
    let (status, log) = api(
        &s.base,
        Method::GET,
        &format!("/projects/library/webhooks/{}/deliveries", h["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for d in items {
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["response_code"], 200);
        assert!(d["latency_ms"].is_u64());
    }
    assert_eq!(items[0]["event_type"], "artifact.deleted");
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_in_order_until_it_recovers() {
    let s = TestServer::start_with(quick_retries).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    receiver.refuse.store(3, Ordering::SeqCst);
    let policy = create(
        &s.base,
        "library",
        json!({"name": "flaky", "url": url, "events": ["artifact.pushed", "artifact.deleted"]}),
    )
    .await;
    let (_, digest) = s.push_image("library/app", "2.0", &[b"layer two"]).await;
    s.delete(&format!("/v2/library/app/manifests/{digest}"))
        .await;

    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].json()["type"], "PUSH_ARTIFACT");
    assert_eq!(got[1].json()["type"], "DELETE_ARTIFACT");
    // Every refused request was the push: the delete waited behind it.
    let all = receiver.received.lock().await.clone();
    assert_eq!(all.len(), 5, "{all:?}");
    for refused in all.iter().filter(|r| !r.accepted) {
        assert_eq!(refused.json()["type"], "PUSH_ARTIFACT");
        // The same body every time.
        assert_eq!(refused.body, got[0].body);
    }
    let (_, log) = api(
        &s.base,
        Method::GET,
        &format!("/projects/library/webhooks/{}/deliveries", policy["id"]),
        None,
    )
    .await;
    let push = &log["items"][1];
    assert_eq!(push["event_type"], "artifact.pushed");
    assert_eq!(push["status"], "succeeded");
    assert_eq!(push["attempts"], 4);
}

#[tokio::test]
async fn a_dead_target_holds_up_no_one_and_failed_deliveries_can_be_sent_again() {
    let s = TestServer::start_with(|c| {
        quick_retries(c);
        c.webhooks.max_attempts = 2;
    })
    .await;
    let live = Receiver::default();
    let live_url = live.start().await;
    let dead_url = format!("http://127.0.0.1:{}/hook", free_port());
    let dead = create(
        &s.base,
        "library",
        json!({"name": "dead", "url": dead_url, "events": ["artifact.pushed"]}),
    )
    .await;
    create(
        &s.base,
        "library",
        json!({"name": "live", "url": live_url, "events": ["artifact.pushed"]}),
    )
    .await;
    let started = Instant::now();
    s.push_image("library/app", "3.0", &[b"layer three"]).await;
    live.wait_for(1).await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // Two attempts a second apart, then failed.
    let deliveries = format!("/projects/library/webhooks/{}/deliveries", dead["id"]);
    let failed = loop {
        let (_, log) = api(&s.base, Method::GET, &deliveries, None).await;
        if log["items"][0]["status"] == "failed" {
            break log["items"][0].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["attempts"], 2);
    assert!(failed["response_code"].is_null());
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{failed}"
    );

    // Sent again by hand: pending, due now, attempts from zero.
    let path = format!("{deliveries}/{}/redeliver", failed["id"]);
    let (status, again) = api(&s.base, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["status"], "pending");
    assert_eq!(again["attempts"], 0);
    // A pending delivery cannot be redelivered.
    let (status, _) = api(&s.base, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn pulls_are_reported_to_the_policies_that_ask() {
    let s = TestServer::start().await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    create(
        &s.base,
        "library",
        json!({"name": "pulls", "url": url, "events": ["artifact.pulled"]}),
    )
    .await;
    let (_, digest) = s.push_image("library/app", "4.0", &[b"layer four"]).await;
    for _ in 0..3 {
        let response = s
            .request(Method::GET, "/v2/library/app/manifests/4.0")
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Pulls are recorded in batches (every 5 s): one event for the three.
    let got = receiver.wait_for(1).await;
    let pull = got[0].json();
    assert_eq!(pull["type"], "PULL_ARTIFACT");
    assert_eq!(
        pull["event_data"]["resources"][0]["digest"],
        digest.as_str()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().await.len(), 1);
}

#[tokio::test]
async fn policies_are_checked_and_managed_by_project_admins() {
    let s = TestServer::start().await;
    let bad = [
        json!({"name": "x", "url": "ftp://example.com/", "events": ["artifact.pushed"]}),
        json!({"name": "x", "url": "http://example.com/", "events": []}),
        json!({"name": "x", "url": "http://example.com/", "events": ["image.pushed"]}),
        json!({"name": "x", "url": "http://example.com/", "events": ["artifact.pushed"], "format": "xml"}),
        json!({"name": "x", "url": "http://example.com/", "events": ["artifact.pushed"], "auth_header": "a\r\nX-Evil: 1"}),
        json!({"name": "x", "url": "http://example.com/", "events": ["artifact.pushed"], "secret": "short"}),
        json!({"name": "bad name!", "url": "http://example.com/", "events": ["artifact.pushed"]}),
    ];
    for body in bad {
        let (status, error) = api(
            &s.base,
            Method::POST,
            "/projects/library/webhooks",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
    let body = json!({"name": "ci", "url": "http://example.com/", "events": ["artifact.pushed"], "secret": SECRET});
    let created = create(&s.base, "library", body.clone()).await;
    let (status, _) = api(
        &s.base,
        Method::POST,
        "/projects/library/webhooks",
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Replaced without the secret: the secret is kept.
    let path = format!("/projects/library/webhooks/{}", created["id"]);
    let (status, updated) = api(
        &s.base,
        Method::PUT,
        &path,
        Some(json!({"name": "ci", "url": "https://example.com/hook", "events": ["tag.moved"], "enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["secret_set"], true);
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["events"], json!(["tag.moved"]));
    // Anonymous callers get nothing.
    let response = anonymous_client()
        .get(s.url("/api/v1/projects/library/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = api(&s.base, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api(&s.base, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Pending deliveries are rows in the database: a server killed with
/// SIGKILL while its target is down sends them once restarted.
#[tokio::test]
async fn pending_deliveries_survive_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    with_test_auth(&mut config);
    quick_retries(&mut config);
    let receiver = Receiver::default();
    let url = receiver.start().await;
    receiver.refuse.store(u32::MAX, Ordering::SeqCst);

    let mut node = Node::start(&config, dir.path(), "node").await;
    create(
        &node.base,
        "library",
        json!({"name": "ci", "url": url, "events": ["artifact.pushed"]}),
    )
    .await;
    let remote = NodeClient(node.base.clone());
    for n in 0..5 {
        remote.push(&format!("k{n}")).await;
    }
    // Refused at least once each, then killed.
    for _ in 0..200 {
        if receiver.received.lock().await.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill();
    receiver.refuse.store(0, Ordering::SeqCst);
    let node = Node::start(&config, dir.path(), "node").await;
    let got = receiver.wait_for(5).await;
    let mut tags: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["event_data"]["resources"][0]["tag"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags, ["k0", "k1", "k2", "k3", "k4"]);
    drop(node);
}

/// Pushes small images to a node over HTTP as the administrator.
struct NodeClient(String);

impl NodeClient {
    async fn push(&self, tag: &str) -> oci::Digest {
        let http = client();
        let repo = "library/app";
        let blob = |content: Vec<u8>| {
            let http = http.clone();
            let base = self.0.clone();
            async move {
                let digest = sha256(&content);
                let response = http
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                    .body(content.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                (digest, content.len())
            }
        };
        let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let (config_digest, config_size) = blob(config.into_bytes()).await;
        let (layer, layer_size) = blob(format!("layer of {tag}").into_bytes()).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.as_str(), "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer.as_str(), "size": layer_size}],
        }))
        .unwrap();
        let response = http
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.0))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        sha256(&manifest)
    }
}

/// A retention run reports its end, and its deletions are deletions like
/// a user's (with their events), before the run's own event.
#[tokio::test]
async fn retention_runs_report_their_end_and_their_deletions() {
    let s = TestServer::start_with(|c| {
        c.lifecycle.retention_protect_seconds = 0;
        c.lifecycle.tag_history_hours = 0;
        c.lifecycle.gc_schedule = String::new();
    })
    .await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    create(
        &s.base,
        "library",
        json!({"name": "ret", "url": url, "format": "cloudevents",
               "events": ["artifact.deleted", "retention.finished"]}),
    )
    .await;
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        s.push_image("library/app", v, &[v.as_bytes()]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let policy = json!({"policy": {"rules": [{
        "repositories": {"include": ["**"]},
        "tags": {"include": ["**"]},
        "keep": {"latest_pushed": 1}
    }]}});
    let (status, body) = api(
        &s.base,
        Method::PUT,
        "/projects/library/retention",
        Some(policy),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A dry run reports nothing.
    for dry_run in [true, false] {
        let (status, run) = api(
            &s.base,
            Method::POST,
            "/projects/library/retention/runs",
            Some(json!({"dry_run": dry_run})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let path = format!("/projects/library/retention/runs/{}", run["id"]);
        run_finished(&s.base, &path).await;
    }
    let got = receiver.wait_for(3).await;
    // Different artifacts: no order between them.
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "wharf.artifact.deleted",
            "wharf.artifact.deleted",
            "wharf.retention.finished"
        ]
    );
    let end = got
        .iter()
        .map(Received::json)
        .find(|e| e["type"] == "wharf.retention.finished")
        .unwrap();
    assert_eq!(end["data"]["project"], "library");
    assert_eq!(end["data"]["run"]["succeeded"], true);
    assert_eq!(end["data"]["run"]["summary"]["deleted"], 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.accepted().await.len(),
        3,
        "the dry run sent nothing"
    );
}

/// A target that keeps failing is probed one attempt at a time instead of
/// being sent every retry; once it answers, everything waiting goes out.
#[tokio::test]
async fn a_target_that_is_down_is_probed_not_hammered() {
    let s = TestServer::start_with(quick_retries).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    receiver.refuse.store(u32::MAX, Ordering::SeqCst);
    create(
        &s.base,
        "library",
        json!({"name": "down", "url": url, "events": ["artifact.pushed"]}),
    )
    .await;
    for n in 0..10 {
        let layer = format!("probed layer {n}");
        s.push_image("library/probed", &format!("p{n}"), &[layer.as_bytes()])
            .await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let tried = receiver.received.lock().await.len();
    // Every delivery is retried each second; unchecked, 10 deliveries
    // would have made about 40 attempts by now.
    assert!(tried < 25, "{tried} attempts at a target that is down");
    receiver.refuse.store(0, Ordering::SeqCst);
    let got = receiver.wait_for(10).await;
    assert_eq!(got.len(), 10);
}
