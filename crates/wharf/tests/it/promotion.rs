//! Moving images between environments: promotion with referrers and no
//! blob copied, tag history and rollback (kept through garbage collection),
//! and the tag listing GitOps tools poll.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

async fn api(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    api_at(&s.base, method, path, body).await
}

const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Pushes a signature of `subject` to `repo`; returns its digest.
async fn push_signature(
    s: &TestServer,
    repo: &str,
    subject: &oci::Digest,
    size: usize,
) -> oci::Digest {
    let empty = s.push_blob(repo, b"{}").await;
    let payload = format!("signature of {subject}");
    let layer = s.push_blob(repo, payload.as_bytes()).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": COSIGN,
        "config": {"mediaType": EMPTY, "digest": empty.as_str(), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer.as_str(), "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": size},
    }))
    .unwrap();
    let digest = sha256(&manifest);
    let response = s
        .put_manifest(repo, digest.as_str(), OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        text(response).await
    );
    digest
}

/// Blob files in the server's store.
fn stored_blob_files(s: &TestServer) -> usize {
    let root = s.config.data_dir.join("blobs").join("blobs").join("sha256");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|prefix| std::fs::read_dir(prefix.path()).map_or(0, |d| d.count()))
        .sum()
}

#[tokio::test]
async fn promotion_copies_an_image_with_its_signature_and_no_blob() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("dev/app", "1.2.3", &[b"app layer"]).await;
    let signature = push_signature(&s, "dev/app", &digest, manifest.len()).await;
    let files = stored_blob_files(&s);

    let (status, promoted) = api(
        &s,
        Method::POST,
        "/promote",
        Some(json!({"from": "dev/app:1.2.3", "to": "prod/app:1.2.3"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{promoted}");
    assert_eq!(promoted["digest"], digest.as_str());
    assert_eq!(promoted["manifests"], 2);
    assert_eq!(promoted["referrers"], 1);
    assert_eq!(
        promoted["blobs"], 4,
        "config, layer, empty config, signature"
    );
    assert_eq!(promoted["to"], "prod/app:1.2.3");
    assert_eq!(stored_blob_files(&s), files, "no blob was copied");

    // The same bytes under the new name, its blobs readable there, its
    // signature found through the referrers API.
    let response = s
        .request(Method::GET, "/v2/prod/app/manifests/1.2.3")
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&bytes(response).await[..], &manifest[..]);
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let blob = s.get(&format!("/v2/prod/app/blobs/{layer}")).await;
    assert_eq!(&bytes(blob).await[..], b"app layer");
    let referrers: Value = serde_json::from_slice(
        &bytes(s.get(&format!("/v2/prod/app/referrers/{digest}")).await).await,
    )
    .unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], signature.as_str());

    // Without a tag in `to`, the source's; by digest, none.
    let (status, again) = api(
        &s,
        Method::POST,
        "/promote",
        Some(json!({"from": format!("dev/app@{digest}"), "to": "staging/app"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["to"], format!("staging/app@{digest}"));

    // Clear errors.
    for (body, expected) in [
        (
            json!({"from": "dev/app", "to": "prod/app:1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"from": "dev/app:nope", "to": "prod/app:1"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"from": "dev/app:1.2.3", "to": format!("prod/app@{digest}")}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"from": "Dev/App:1", "to": "prod/app:1"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, error) = api(&s, Method::POST, "/promote", Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {error}");
    }
    let response = anonymous_client()
        .post(s.url("/api/v1/promote"))
        .json(&json!({"from": "dev/app:1.2.3", "to": "prod/app:2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn promotion_takes_an_index_with_its_children() {
    let s = TestServer::start().await;
    let (amd, amd_digest) = s.push_image("dev/multi", "amd64", &[b"amd64 layer"]).await;
    let (arm, arm_digest) = s.push_image("dev/multi", "arm64", &[b"arm64 layer"]).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd_digest.as_str(), "size": amd.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest.as_str(), "size": arm.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .unwrap();
    let response = s.put_manifest("dev/multi", "1.0", OCI_INDEX, &index).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, promoted) = api(
        &s,
        Method::POST,
        "/promote",
        Some(json!({"from": "dev/multi:1.0", "to": "prod/multi"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{promoted}");
    assert_eq!(promoted["manifests"], 3);
    for child in [&amd_digest, &arm_digest] {
        let r = s.head(&format!("/v2/prod/multi/manifests/{child}")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = s
        .request(Method::GET, "/v2/prod/multi/manifests/1.0")
        .header("Accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(&bytes(r).await[..], &index[..]);
}

async fn tag_target(s: &TestServer, repo: &str, tag: &str) -> String {
    let r = s
        .request(Method::HEAD, &format!("/v2/{repo}/manifests/{tag}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    header(&r, "docker-content-digest")
}

#[tokio::test]
async fn tag_history_and_rollback_survive_garbage_collection() {
    let s = TestServer::start_with(|c| {
        c.lifecycle.gc_grace_period_seconds = 0;
        c.lifecycle.gc_schedule = String::new();
    })
    .await;
    let (_, a) = s.push_image("library/web", "stable", &[b"release a"]).await;
    let (_, b) = s.push_image("library/web", "stable", &[b"release b"]).await;

    let history = "/projects/library/repositories/web/tags/stable/history";
    let (status, h) = api(&s, Method::GET, history, None).await;
    assert_eq!(status, StatusCode::OK, "{h}");
    let items = h["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "moved");
    assert_eq!(items[0]["digest"], b.as_str());
    assert_eq!(items[0]["previous_digest"], a.as_str());
    assert_eq!(items[0]["actor"], "admin");
    assert_eq!(items[1]["action"], "created");
    assert_eq!(items[1]["digest"], a.as_str());
    assert_eq!(items[1]["still_stored"], true);

    // A collection that deletes untagged manifests keeps what the tag
    // pointed at within the tag history window.
    let (status, run) = api(
        &s,
        Method::POST,
        "/system/gc",
        Some(json!({"delete_untagged": true})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = run_finished(&s.base, &format!("/system/gc/runs/{}", run["id"])).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let r = s.head(&format!("/v2/library/web/manifests/{a}")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the earlier release was collected"
    );

    // Rollback: to the digest before, then to a named one.
    let rollback = "/projects/library/repositories/web/tags/stable/rollback";
    let (status, done) = api(&s, Method::POST, rollback, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["from"], b.as_str());
    assert_eq!(done["to"], a.as_str());
    assert_eq!(tag_target(&s, "library/web", "stable").await, a.as_str());
    let (status, done) = api(&s, Method::POST, rollback, Some(json!({"to": b.as_str()}))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(tag_target(&s, "library/web", "stable").await, b.as_str());

    // A deleted tag comes back where it was.
    let r = s.delete("/v2/library/web/manifests/stable").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (status, done) = api(&s, Method::POST, rollback, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(done["from"].is_null());
    assert_eq!(done["to"], b.as_str());
    let (_, h) = api(&s, Method::GET, history, None).await;
    let actions: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["created", "deleted", "moved", "moved", "moved", "created"]
    );

    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, _) = api(&s, Method::POST, rollback, Some(json!({"to": unknown}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api(
        &s,
        Method::POST,
        "/projects/library/repositories/web/tags/never/rollback",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tags_sorted_by_version_and_filtered_by_pattern() {
    let s = TestServer::start().await;
    let mut digests = std::collections::HashMap::new();
    for tag in [
        "v1.2.3",
        "v1.10.0",
        "latest",
        "v1.9.1",
        "v2.0.0-rc.1",
        "v2.0.0",
    ] {
        let (_, d) = s
            .push_image("library/versions", tag, &[tag.as_bytes()])
            .await;
        digests.insert(tag, d);
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let tags = "/projects/library/repositories/versions/tags";
    let (status, list) = api(&s, Method::GET, &format!("{tags}?sort=-semver"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        names(&list),
        [
            "v2.0.0",
            "v2.0.0-rc.1",
            "v1.10.0",
            "v1.9.1",
            "v1.2.3",
            "latest"
        ]
    );
    assert_eq!(list["items"][0]["digest"], digests["v2.0.0"].as_str());
    let (_, list) = api(
        &s,
        Method::GET,
        &format!("{tags}?sort=-semver&pattern=v1.*&page_size=2"),
        None,
    )
    .await;
    assert_eq!(names(&list), ["v1.10.0", "v1.9.1"]);
    assert_eq!(list["total"], 3);
    let (_, list) = api(
        &s,
        Method::GET,
        &format!("{tags}?sort=semver&pattern=re:v2%5C..*"),
        None,
    )
    .await;
    assert_eq!(names(&list), ["v2.0.0-rc.1", "v2.0.0"]);
    let (_, list) = api(
        &s,
        Method::GET,
        &format!("{tags}?sort=-pushed_at&page_size=1"),
        None,
    )
    .await;
    assert_eq!(names(&list), ["v2.0.0"]);
    let (status, _) = api(&s, Method::GET, &format!("{tags}?pattern=re:("), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
