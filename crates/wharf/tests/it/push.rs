//! Spec section "Push": monolithic and chunked uploads, mounts, manifests.

use bytes::Bytes;
use oci::{Digest, DigestAlgorithm};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn post_then_put() {
    let s = TestServer::start().await;
    let r = s
        .request(Method::POST, "/v2/library/app/blobs/uploads/")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    assert!(
        location.starts_with("/v2/library/app/blobs/uploads/"),
        "{location}"
    );
    let content = b"monolithic after POST";
    let digest = sha256(content);
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", digest.as_str())]))
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/library/app/blobs/{digest}")
    );
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(
        bytes(s.get(&header(&r, "location")).await).await,
        &content[..]
    );
}

#[tokio::test]
async fn single_post_with_digest() {
    let s = TestServer::start().await;
    let content = b"single POST";
    let digest = sha256(content);
    let r = s
        .request(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/a/blobs/{digest}"));
    assert_eq!(
        bytes(s.get(&format!("/v2/a/blobs/{digest}")).await).await,
        &content[..]
    );

    // The wrong digest: refused, and nothing becomes readable.
    let wrong = sha256(b"something else");
    let r = s
        .request(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={wrong}"),
        )
        .body(b"not that".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        s.head(&format!("/v2/a/blobs/{wrong}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.head(&format!("/v2/a/blobs/{}", sha256(b"not that")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn chunked_upload_in_order_with_status_and_416s() {
    let s = TestServer::start().await;
    let content: Vec<u8> = (0..250_000u32).map(|i| (i % 253) as u8).collect();
    let digest = sha256(&content);
    let location = s.start_upload("chunky").await;

    let patch = |location: String, range: String, chunk: Vec<u8>| {
        s.client
            .patch(s.url(&location))
            .header("content-type", "application/octet-stream")
            .header("content-range", range)
            .header("content-length", chunk.len().to_string())
            .body(chunk)
            .send()
    };
    let r = patch(
        location.clone(),
        "0-99999".into(),
        content[..100_000].to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-99999");
    let location = header(&r, "location");

    // Status: 204 with Range and Location.
    let st = s.get(&location).await;
    assert_eq!(st.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&st, "range"), "0-99999");
    assert_eq!(header(&st, "location"), location);

    // Out of order (gap) and overlapping chunks: 416, and nothing changes.
    for (range, chunk) in [
        ("100001-100010", &content[100_001..=100_010]),
        ("50-149", &content[50..150]),
    ] {
        let r = patch(location.clone(), range.into(), chunk.to_vec())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&r, "range"), "0-99999");
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
    }
    assert_eq!(header(&s.get(&location).await, "range"), "0-99999");

    let r = patch(
        location.clone(),
        "100000-199999".into(),
        content[100_000..200_000].to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-199999");
    // The last chunk travels with the closing PUT.
    let r = s
        .client
        .put(s.upload_url(&header(&r, "location"), &[("digest", digest.as_str())]))
        .header("content-range", "200000-249999")
        .header("content-type", "application/octet-stream")
        .body(content[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    assert_eq!(
        bytes(s.get(&format!("/v2/chunky/blobs/{digest}")).await).await,
        content
    );
    // The session is over.
    assert_error(
        s.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn streamed_patch_without_length() {
    let s = TestServer::start().await;
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let digest = sha256(&content);
    let location = s.start_upload("streamed").await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = content
        .chunks(7_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = s
        .client
        .patch(s.url(&location))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), format!("0-{}", content.len() - 1));
    let r = s
        .client
        .put(s.upload_url(&header(&r, "location"), &[("digest", digest.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        bytes(s.get(&format!("/v2/streamed/blobs/{digest}")).await).await,
        content
    );
}

#[tokio::test]
async fn cancelled_uploads_are_gone() {
    let s = TestServer::start().await;
    let location = s.start_upload("a").await;
    let r = s
        .client
        .patch(s.url(&location))
        .body(b"partial".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.delete(&location).await.status(), StatusCode::NO_CONTENT);
    assert_error(
        s.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.delete(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn upload_sessions_belong_to_their_repository() {
    let s = TestServer::start().await;
    let location = s.start_upload("team/a").await;
    let id = location.rsplit('/').next().unwrap();
    let elsewhere = format!("/v2/team/b/blobs/uploads/{id}");
    assert_error(
        s.get(&elsewhere).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let r = s
        .client
        .patch(s.url(&elsewhere))
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    assert_eq!(s.get(&location).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn sessions_survive_a_restart_and_resume() {
    let mut s = TestServer::start().await;
    let content = b"first half|second half".to_vec();
    let digest = sha256(&content);
    let location = s.start_upload("resume/me").await;
    let r = s
        .client
        .patch(s.url(&location))
        .header("content-range", "0-10")
        .body(content[..11].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    s.restart().await;

    let st = s.get(&location).await;
    assert_eq!(st.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&st, "range"), "0-10");
    let r = s
        .client
        .patch(s.url(&location))
        .header("content-range", format!("11-{}", content.len() - 1))
        .body(content[11..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", digest.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    assert_eq!(
        bytes(s.get(&format!("/v2/resume/me/blobs/{digest}")).await).await,
        content
    );
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = TestServer::start().await;
    let digest = s.push_blob("source/repo", b"shared layer").await;
    let r = s
        .request(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/target/repo/blobs/{digest}")
    );
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(
        s.get(&format!("/v2/target/repo/blobs/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );

    // A source that does not hold the blob: 202 and an upload session instead.
    let r = s
        .request(
            Method::POST,
            &format!("/v2/third/repo/blobs/uploads/?mount={digest}&from=empty/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    assert!(location.starts_with("/v2/third/repo/blobs/uploads/"));
    assert_eq!(s.get(&location).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        s.head(&format!("/v2/third/repo/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // An unknown digest: also 202.
    let unknown = sha256(b"never pushed");
    let r = s
        .request(
            Method::POST,
            &format!("/v2/third/repo/blobs/uploads/?mount={unknown}&from=source/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn automatic_mount_without_from() {
    let s = TestServer::start().await;
    let digest = s.push_blob("source/repo", b"known layer").await;
    let r = s
        .request(
            Method::POST,
            &format!("/v2/other/repo/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        bytes(s.get(&format!("/v2/other/repo/blobs/{digest}")).await).await,
        &b"known layer"[..]
    );
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let s = TestServer::start().await;
    let content = b"sha512 content";
    let digest = Digest::compute(DigestAlgorithm::Sha512, content);
    // A session announced as sha512.
    let r = s
        .request(
            Method::POST,
            "/v2/five/twelve/blobs/uploads/?digest-algorithm=sha512",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .client
        .put(s.upload_url(&header(&r, "location"), &[("digest", digest.as_str())]))
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(
            &s.head(&format!("/v2/five/twelve/blobs/{digest}")).await,
            "docker-content-digest"
        ),
        digest.as_str()
    );

    // A sha256 session closed with a sha512 digest is verified too.
    let other = b"closed with sha512";
    let other_digest = Digest::compute(DigestAlgorithm::Sha512, other);
    let location = s.start_upload("five/twelve").await;
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", other_digest.as_str())]))
        .body(other.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // A manifest addressed by its sha512 digest.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest.as_str(), "size": content.len()},
        "layers": []
    }))
    .unwrap();
    let manifest_digest = Digest::compute(DigestAlgorithm::Sha512, &manifest);
    let r = s
        .put_manifest(
            "five/twelve",
            manifest_digest.as_str(),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    assert_eq!(
        header(&r, "docker-content-digest"),
        manifest_digest.as_str()
    );
    let r = s
        .get(&format!("/v2/five/twelve/manifests/{manifest_digest}"))
        .await;
    assert_eq!(bytes(r).await, manifest);

    let r = s
        .request(Method::POST, "/v2/x/blobs/uploads/?digest-algorithm=md5")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn manifest_push_by_tag_and_by_digest() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("library/app", "1.0", &[b"l"]).await;
    let r = s
        .put_manifest("library/app", digest.as_str(), OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/library/app/manifests/{digest}")
    );
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());

    let wrong = sha256(b"other");
    let r = s
        .put_manifest("library/app", wrong.as_str(), OCI_MANIFEST, &manifest)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        s.head(&format!("/v2/library/app/manifests/{wrong}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_referenced_blob_and_child_must_exist() {
    let s = TestServer::start().await;
    let config = s.push_blob("a/b", b"{}").await;
    let missing_layer = sha256(b"never pushed layer");
    let missing_config = sha256(b"never pushed config");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": missing_config.as_str(), "size": 2},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": config.as_str(), "size": 2},
            {"mediaType": OCI_LAYER, "digest": missing_layer.as_str(), "size": 18},
        ]
    }))
    .unwrap();
    let r = s.put_manifest("a/b", "t", OCI_MANIFEST, &manifest).await;
    let body = assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "one error per missing blob: {body}");
    let digests: Vec<&str> = errors
        .iter()
        .map(|e| e["detail"]["digest"].as_str().unwrap())
        .collect();
    assert!(
        digests.contains(&missing_layer.as_str()) && digests.contains(&missing_config.as_str())
    );
    assert_eq!(
        s.get("/v2/a/b/manifests/t").await.status(),
        StatusCode::NOT_FOUND
    );

    let child = sha256(b"no such child");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.as_str(), "size": 10}]
    }))
    .unwrap();
    let body = assert_error(
        s.put_manifest("a/b", "i", OCI_INDEX, &index).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(body["errors"][0]["detail"]["digest"], child.as_str());

    // A descriptor whose size is wrong makes the manifest invalid.
    let wrong_size = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.as_str(), "size": 3}, "layers": []
    }))
    .unwrap();
    assert_error(
        s.put_manifest("a/b", "w", OCI_MANIFEST, &wrong_size).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn docker_manifests_and_lists() {
    let s = TestServer::start().await;
    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#;
    let config = s.push_blob("d/app", config_bytes).await;
    let layer = s.push_blob("d/app", b"docker layer").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.as_str(), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.as_str(), "size": 12}]
    }))
    .unwrap();
    let r = s
        .put_manifest("d/app", "v2", DOCKER_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    let digest = sha256(&manifest);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": digest.as_str(), "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    let r = s.put_manifest("d/app", "list", DOCKER_LIST, &list).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.get("/v2/d/app/manifests/list").await;
    assert_eq!(header(&r, "content-type"), DOCKER_LIST);
    assert_eq!(bytes(r).await, list);
    let r = s.get("/v2/d/app/manifests/v2").await;
    assert_eq!(header(&r, "content-type"), DOCKER_MANIFEST);
}

#[tokio::test]
async fn artifacts_with_subject_and_empty_config() {
    let s = TestServer::start().await;
    let (image, image_digest) = s.push_image("art/app", "1.0", &[b"l"]).await;
    let empty = s.push_blob("art/app", b"{}").await;
    let sbom = s
        .push_blob("art/app", b"{\"spdxVersion\":\"SPDX-2.3\"}")
        .await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.as_str(), "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom.as_str(), "size": 26}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest.as_str(), "size": image.len()},
        "annotations": {"org.opencontainers.image.created": "2026-11-22T00:00:00Z"}
    }))
    .unwrap();
    let digest = sha256(&artifact);
    let r = s
        .put_manifest("art/app", digest.as_str(), OCI_MANIFEST, &artifact)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    assert_eq!(header(&r, "oci-subject"), image_digest.as_str());
}

#[tokio::test]
async fn several_tags_in_one_push() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("multi/tag", "seed", &[b"l"]).await;
    let r = s
        .request(
            Method::PUT,
            &format!("/v2/multi/tag/manifests/{digest}?tag=1.2.3&tag=1.2&tag=1&tag=latest"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // One value or several header lines: RFC 9110 list semantics.
    let tags: Vec<String> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .map(|t| t.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(tags, ["1.2.3", "1.2", "1", "latest"]);
    for tag in ["1.2.3", "1.2", "1", "latest"] {
        let r = s.head(&format!("/v2/multi/tag/manifests/{tag}")).await;
        assert_eq!(
            header(&r, "docker-content-digest"),
            digest.as_str(),
            "{tag}"
        );
    }
    let r = s
        .request(
            Method::PUT,
            &format!("/v2/multi/tag/manifests/{digest}?tag=ok&tag=-bad"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert_eq!(
        s.head("/v2/multi/tag/manifests/ok").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Regression: a push of 100 tags answered with 100 OCI-Tag headers, more
/// than some HTTP clients accept (Python's http.client stops at 100).
#[tokio::test]
async fn a_hundred_tags_fit_in_a_few_header_lines() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("many/tags", "seed", &[b"l"]).await;
    let query: Vec<String> = (0..100).map(|i| format!("tag=t{i:03}")).collect();
    let r = s
        .request(
            Method::PUT,
            &format!("/v2/many/tags/manifests/{digest}?{}", query.join("&")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let lines = r.headers().get_all("oci-tag").iter().count();
    assert!(lines <= 2, "{lines} OCI-Tag header lines");
    let tags: Vec<String> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap()
                .split(", ")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(tags.len(), 100);
}

#[tokio::test]
async fn manifest_size_limit() {
    let s = TestServer::start_with(|c| c.limits.max_manifest_bytes = 1024).await;
    let big = format!(r#"{{"schemaVersion":2,"pad":"{}"}}"#, "x".repeat(2000));
    let r = s
        .put_manifest("a", "big", OCI_MANIFEST, big.as_bytes())
        .await;
    let body = assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1024")
    );
    // Streamed without a length, the limit still holds.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(big.into_bytes()))];
    let r = s
        .request(Method::PUT, "/v2/a/manifests/big")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
}
