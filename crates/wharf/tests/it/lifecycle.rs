//! Quotas, immutable tags, garbage collection and retention through the
//! management API and the registry protocol.

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

/// Waits for a run to end; returns its record.
async fn finished(s: &TestServer, path: &str) -> Value {
    run_finished(&s.base, path).await
}

/// The first layer of a manifest of `library/app`.
async fn kept_layer(s: &TestServer, manifest: &oci::Digest) -> oci::Digest {
    let m: Value = serde_json::from_slice(
        &bytes(
            s.get(&format!("/v2/library/app/manifests/{manifest}"))
                .await,
        )
        .await,
    )
    .unwrap();
    m["layers"][0]["digest"].as_str().unwrap().parse().unwrap()
}

async fn start_run(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, run) = api(s, Method::POST, path, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    run
}

pub fn lifecycle_server(config: &mut wharf::config::Config) {
    config.lifecycle.gc_grace_period_seconds = 0;
    config.lifecycle.gc_schedule = String::new();
    config.lifecycle.integrity_schedule = String::new();
    config.lifecycle.retention_protect_seconds = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_count_exactly_and_refuse_with_the_numbers() {
    let s = TestServer::start_with(lifecycle_server).await;
    let (manifest, _) = s
        .push_image("library/app", "v1", &[b"layer-one", b"layer-two"])
        .await;
    let (status, quota) = api(&s, Method::GET, "/projects/library/quota", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(quota["usage"]["artifacts"], 1);
    let used = quota["usage"]["storage_bytes"].as_u64().unwrap();
    // Two layers, a config and the manifest.
    assert!(used > manifest.len() as u64 + 18, "{quota}");
    assert_eq!(quota["storage_limit"], Value::Null);
    // The same layers in another repository of the project count once.
    s.push_image("library/other", "v1", &[b"layer-one", b"layer-two"])
        .await;
    let (_, quota) = api(&s, Method::GET, "/projects/library/quota", None).await;
    assert_eq!(quota["usage"]["artifacts"], 2);

    let used = quota["usage"]["storage_bytes"].as_u64().unwrap();
    let (status, set) = api(
        &s,
        Method::PUT,
        "/projects/library/quota",
        Some(json!({"storage_limit": used + 10})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let location = s.start_upload("library/app").await;
    let big = vec![7u8; 100];
    let response = client()
        .put(s.upload_url(&location, &[("digest", sha256(&big).as_str())]))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let error = assert_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    let message = error["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("\"library\"")
            && message.contains("quota")
            && message.contains(&format!("of {}", used + 10)),
        "{message}"
    );
    // Lifted, the same push goes through.
    api(
        &s,
        Method::PUT,
        "/projects/library/quota",
        Some(json!({"storage_limit": null})),
    )
    .await;
    s.push_blob("library/app", &big).await;

    // Only a system administrator sets quotas; the API checks the numbers.
    let (status, _) = api(
        &s,
        Method::PUT,
        "/projects/library/quota",
        Some(json!({"warn_percent": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = anonymous_client()
        .put(s.url("/api/v1/projects/library/quota"))
        .json(&json!({"storage_limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_tags_refuse_overwrite_and_delete() {
    let s = TestServer::start_with(lifecycle_server).await;
    s.push_image("library/app", "v1", &[b"one"]).await;
    s.push_image("library/app", "latest", &[b"one"]).await;
    let rules = json!([{"repositories": {"include": ["**"]}, "tags": {"include": ["v*"], "exclude": ["v*-dev"]}}]);
    let (status, body) = api(
        &s,
        Method::PUT,
        "/projects/library/immutability",
        Some(rules.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, got) = api(&s, Method::GET, "/projects/library/immutability", None).await;
    assert_eq!(got[0]["tags"]["include"][0], "v*");

    // Re-pointing v1 at other content is refused; `latest` still moves.
    let config = s.push_blob("library/app", b"{}").await;
    let other = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": 2},
        "layers": [],
    }))
    .unwrap();
    let response = s
        .put_manifest(
            "library/app",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &other,
        )
        .await;
    let error = assert_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(error.to_string().contains("immutable"), "{error}");
    let response = s
        .put_manifest(
            "library/app",
            "latest",
            "application/vnd.oci.image.manifest.v1+json",
            &other,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = s
        .put_manifest(
            "library/app",
            "v2-dev",
            "application/vnd.oci.image.manifest.v1+json",
            &other,
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "excluded from the rule"
    );

    // Deleting the tag, or the manifest it points at, is refused too.
    assert_error(
        s.delete("/v2/library/app/manifests/v1").await,
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    let v1 = s.get("/v2/library/app/manifests/v1").await;
    let digest = header(&v1, "docker-content-digest");
    assert_error(
        s.delete(&format!("/v2/library/app/manifests/{digest}"))
            .await,
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    // Without the rules, both go.
    api(
        &s,
        Method::PUT,
        "/projects/library/immutability",
        Some(json!([])),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        s.delete("/v2/library/app/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );

    // A bad pattern is refused with the reason.
    let (status, body) = api(
        &s,
        Method::PUT,
        "/projects/library/immutability",
        Some(json!([{"repositories": {"include": ["**"]}, "tags": {"include": ["re:("]}}])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("re:("), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_reclaims_what_nothing_references() {
    let s = TestServer::start_with(lifecycle_server).await;
    let (_, kept) = s
        .push_image("library/app", "keep", &[b"shared", b"kept-only"])
        .await;
    let (_, gone) = s
        .push_image("library/app", "gone", &[b"shared", b"gone-only"])
        .await;
    // A layer uploaded for a push that never sent its manifest.
    let abandoned = s.push_blob("library/app", b"abandoned").await;
    assert_eq!(
        s.delete(&format!("/v2/library/app/manifests/{gone}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let dry = start_run(&s, "/system/gc", json!({"dry_run": true})).await;
    let dry = finished(&s, &format!("/system/gc/runs/{}", dry["id"])).await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    // gone-only, gone's config, abandoned (shared stays: keep uses it).
    assert_eq!(dry["summary"]["blobs"], 3, "{dry}");
    assert_eq!(
        s.head(&format!("/v2/library/app/blobs/{abandoned}"))
            .await
            .status(),
        StatusCode::OK,
        "a dry run removes nothing"
    );

    let run = start_run(&s, "/system/gc", json!({})).await;
    let run = finished(&s, &format!("/system/gc/runs/{}", run["id"])).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["summary"]["blobs"], 3, "{run}");
    assert_eq!(run["summary"]["manifests"], 1, "{run}");
    assert!(run["summary"]["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(
        s.head(&format!("/v2/library/app/blobs/{abandoned}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let stored = s.blob_file(&abandoned);
    assert!(
        std::fs::metadata(s.blob_file(&kept_layer(&s, &kept).await)).is_ok(),
        "the path is right"
    );
    assert!(!stored.exists(), "the bytes are gone from disk");
    // What is kept pulls whole.
    let manifest = s.get(&format!("/v2/library/app/manifests/{kept}")).await;
    assert_eq!(manifest.status(), StatusCode::OK);
    let m: Value = serde_json::from_slice(&bytes(manifest).await).unwrap();
    for layer in m["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let blob = bytes(s.get(&format!("/v2/library/app/blobs/{digest}")).await).await;
        assert_eq!(sha256(&blob).as_str(), digest);
    }
    // Listed, and a second run at once is refused while one runs or finds nothing.
    let (_, runs) = api(&s, Method::GET, "/system/gc/runs", None).await;
    assert_eq!(runs["total"], 2);
    let again = start_run(&s, "/system/gc", json!({})).await;
    let again = finished(&s, &format!("/system/gc/runs/{}", again["id"])).await;
    assert_eq!(again["summary"]["blobs"], 0, "{again}");

    // The integrity check finds everything whole.
    let check = start_run(&s, "/system/integrity", json!({})).await;
    let check = finished(&s, &format!("/system/integrity/runs/{}", check["id"])).await;
    assert_eq!(check["summary"]["missing"], 0, "{check}");
    assert_eq!(check["summary"]["corrupt"], 0, "{check}");

    // Damage on disk is found and named: one layer's bytes changed, another
    // layer's file gone.

    let layers: Vec<oci::Digest> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    let damaged = s.blob_file(&layers[0]);
    let mut content = std::fs::read(&damaged).unwrap();
    content[0] ^= 0xff;
    std::fs::write(&damaged, content).unwrap();
    std::fs::remove_file(s.blob_file(&layers[1])).unwrap();
    let check = start_run(&s, "/system/integrity", json!({})).await;
    let check = finished(&s, &format!("/system/integrity/runs/{}", check["id"])).await;
    assert_eq!(check["summary"]["corrupt"], 1, "{check}");
    assert_eq!(check["summary"]["missing"], 1, "{check}");
    let items = check["items"].as_array().unwrap();
    let state = |d: &oci::Digest| {
        items
            .iter()
            .find(|i| i["digest"] == d.as_str())
            .map(|i| i["state"].clone())
    };
    assert_eq!(state(&layers[0]), Some(json!("corrupt")), "{check}");
    assert_eq!(state(&layers[1]), Some(json!("missing")), "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_dry_run_names_the_rule_then_deletes() {
    let s = TestServer::start_with(lifecycle_server).await;
    for v in ["1.0.0", "1.0.1", "1.0.2", "1.0.3"] {
        s.push_image("library/app", v, &[v.as_bytes()]).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.push_image("library/app", "stable", &[b"stable"]).await;
    let spec = json!({
        "policy": {"rules": [{
            "repositories": {"include": ["**"]},
            "tags": {"include": ["re:\\d+\\.\\d+\\.\\d+"]},
            "keep": {"latest_pushed": 2}
        }]},
        "schedule": "0 3 * * *"
    });
    let (status, body) = api(&s, Method::PUT, "/projects/library/retention", Some(spec)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let dry = start_run(
        &s,
        "/projects/library/retention/runs",
        json!({"dry_run": true}),
    )
    .await;
    let dry = finished(
        &s,
        &format!("/projects/library/retention/runs/{}", dry["id"]),
    )
    .await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    let items = dry["items"].as_array().unwrap();
    let mut doomed: Vec<&str> = items
        .iter()
        .map(|i| i["tags"][0].as_str().unwrap())
        .collect();
    doomed.sort();
    assert_eq!(doomed, ["1.0.0", "1.0.1"], "{dry}");
    assert!(
        items
            .iter()
            .all(|i| i["result"] == "would_delete"
                && i["reason"].as_str().unwrap().contains("rule 1")),
        "{dry}"
    );
    assert_eq!(
        s.get("/v2/library/app/manifests/1.0.0").await.status(),
        StatusCode::OK
    );

    let run = start_run(&s, "/projects/library/retention/runs", json!({})).await;
    let run = finished(
        &s,
        &format!("/projects/library/retention/runs/{}", run["id"]),
    )
    .await;
    assert_eq!(run["summary"]["deleted"], 2, "{run}");
    assert_eq!(
        s.get("/v2/library/app/manifests/1.0.0").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/v2/library/app/manifests/1.0.3").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.get("/v2/library/app/manifests/stable").await.status(),
        StatusCode::OK,
        "no rule mentions it"
    );

    // Each deletion is in the audit log (written within a second or so).
    let mut text = String::new();
    for _ in 0..100 {
        let (_, audit) = api(
            &s,
            Method::GET,
            "/projects/library/audit-logs?operation=delete",
            None,
        )
        .await;
        text = audit.to_string();
        if text
            .matches("retention: deleted: selected by rule 1")
            .count()
            == 2
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the audit log lacks the deletions: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_integrity_check_removes_bytes_nothing_recorded() {
    let s = TestServer::start_with(lifecycle_server).await;
    let (_, kept) = s.push_image("library/app", "keep", &[b"recorded"]).await;
    // Bytes a node stored and was killed before recording.
    let stray = b"stored, never recorded";
    let stray_digest = sha256(stray);
    let path = s.blob_file(&stray_digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, stray).unwrap();

    let check = start_run(&s, "/system/integrity", json!({})).await;
    let check = finished(&s, &format!("/system/integrity/runs/{}", check["id"])).await;
    assert_eq!(check["status"], "succeeded", "{check}");
    assert_eq!(check["summary"]["unrecorded_removed"], 1, "{check}");
    assert_eq!(check["summary"]["unrecorded_bytes"], stray.len(), "{check}");
    assert_eq!(check["summary"]["missing"], 0, "{check}");
    assert!(!path.exists(), "the stray bytes are gone");
    // What is recorded stays.
    let layer = kept_layer(&s, &kept).await;
    assert!(s.blob_file(&layer).exists());
    // A push of the same content afterwards stores it again.
    s.push_image("library/app", "again", &[stray]).await;
    assert!(path.exists());
}

/// Marks `digest` as having its bytes removed by garbage collection, as a
/// collection's first transaction leaves it (see `blob_deletions` in the
/// schema), or ends that removal.
async fn set_removing(s: &TestServer, digest: &oci::Digest, removing: bool) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(s.dir.path().join("wharf.db"))
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO blob_deletions (digest, deleted_at, removing) VALUES ($1, $2, $3)
         ON CONFLICT (digest) DO UPDATE SET deleted_at = excluded.deleted_at,
             removing = excluded.removing",
    )
    .bind(digest.as_str())
    .bind(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
    .bind(i64::from(removing))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// A push of a blob whose bytes a collection is removing waits for the
/// removal to end, then links the bytes if they are there and asks for them
/// again if the removal took them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_waits_while_a_collection_removes_its_blob() {
    let s = TestServer::start_with(lifecycle_server).await;
    for (content, removed) in [
        (&b"kept by the store"[..], false),
        (b"taken by the removal", true),
    ] {
        let digest = sha256(content);
        set_removing(&s, &digest, true).await;
        let location = s.start_upload("library/app").await;
        let push = s.finish_upload(&location, &digest, content);
        let collection = async {
            // The bytes are stored; the link waits.
            while !s.blob_file(&digest).exists() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let head = s.head(&format!("/v2/library/app/blobs/{digest}")).await;
            assert_eq!(head.status(), StatusCode::NOT_FOUND);
            if removed {
                std::fs::remove_file(s.blob_file(&digest)).unwrap();
            }
            set_removing(&s, &digest, false).await;
        };
        let (response, ()) = tokio::join!(push, collection);
        if removed {
            let body = assert_error(response, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
            assert!(body.to_string().contains("garbage collection"), "{body}");
            // Sent again, it is stored and linked.
            s.push_blob("library/app", content).await;
        } else {
            assert_eq!(
                response.status(),
                StatusCode::CREATED,
                "{}",
                text(response).await
            );
        }
        let head = s.head(&format!("/v2/library/app/blobs/{digest}")).await;
        assert_eq!(head.status(), StatusCode::OK);
    }

    // A removal that does not end in time: the client is told to retry.
    let content = b"removed for too long";
    let digest = sha256(content);
    set_removing(&s, &digest, true).await;
    let location = s.start_upload("library/app").await;
    let response = s.finish_upload(&location, &digest, content).await;
    assert_eq!(header(&response, "retry-after"), "5");
    let body = assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    assert!(
        body.to_string().contains(&format!(
            "garbage collection is still removing blob {digest}"
        )),
        "{body}"
    );
    set_removing(&s, &digest, false).await;
    s.push_blob("library/app", content).await;
}
