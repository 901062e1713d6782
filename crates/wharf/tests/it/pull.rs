//! Spec section "Pull": manifests and blobs, HEAD, Range, content negotiation.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn ping_answers_200_with_the_api_version() {
    let s = TestServer::start().await;
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(s.get("/v2").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn manifests_by_tag_and_digest_are_byte_exact() {
    let s = TestServer::start().await;
    let (manifest, digest) = s
        .push_image("library/app", "1.0", &[b"layer one", b"layer two"])
        .await;
    for reference in ["1.0", digest.as_str()] {
        let r = s
            .get(&format!("/v2/library/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
        assert_eq!(bytes(r).await, manifest);

        let h = s
            .head(&format!("/v2/library/app/manifests/{reference}"))
            .await;
        assert_eq!(h.status(), StatusCode::OK);
        assert_eq!(header(&h, "docker-content-digest"), digest.as_str());
        assert_eq!(header(&h, "content-length"), manifest.len().to_string());
        assert!(bytes(h).await.is_empty());
    }
}

#[tokio::test]
async fn unusual_formatting_is_stored_exactly() {
    let s = TestServer::start().await;
    let config = s.push_blob("a/b", b"{}").await;
    // Odd spacing, key order and a trailing newline: stored and served as sent.
    let body = format!(
        "{{\n  \"layers\" : [],\n\t\"config\":{{\"size\":2,\"digest\":\"{config}\",\"mediaType\":\"{OCI_CONFIG}\"}},\"schemaVersion\":2,\"x-extra\":{{\"kept\":true}}}}\n"
    );
    let r = s
        .put_manifest("a/b", "odd", OCI_MANIFEST, body.as_bytes())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    let got = bytes(s.get("/v2/a/b/manifests/odd").await).await;
    assert_eq!(got, body.as_bytes());
}

#[tokio::test]
async fn missing_manifests_and_repositories_are_404() {
    let s = TestServer::start().await;
    s.push_image("library/app", "1.0", &[b"x"]).await;
    assert_error(
        s.get("/v2/library/app/manifests/nope").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let absent = sha256(b"absent");
    assert_error(
        s.get(&format!("/v2/library/app/manifests/{absent}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        s.get("/v2/no/such/manifests/1.0").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head("/v2/library/app/manifests/nope").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn blobs_get_and_head() {
    let s = TestServer::start().await;
    let content = b"some layer bytes".repeat(1000);
    let digest = s.push_blob("library/app", &content).await;
    let path = format!("/v2/library/app/blobs/{digest}");
    let r = s.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(header(&r, "content-length"), content.len().to_string());
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(bytes(r).await, content);
    let h = s.head(&path).await;
    assert_eq!(h.status(), StatusCode::OK);
    assert_eq!(header(&h, "content-length"), content.len().to_string());
    assert_eq!(header(&h, "docker-content-digest"), digest.as_str());
    assert!(bytes(h).await.is_empty());

    let absent = sha256(b"absent");
    assert_error(
        s.get(&format!("/v2/library/app/blobs/{absent}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head(&format!("/v2/library/app/blobs/{absent}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn blob_ranges() {
    let s = TestServer::start().await;
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
    let digest = s.push_blob("r", &content).await;
    let path = format!("/v2/r/blobs/{digest}");
    let ranged = |range: &'static str| {
        s.request(reqwest::Method::GET, &path)
            .header("range", range)
            .send()
    };

    let r = ranged("bytes=10-19").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 10-19/100000");
    assert_eq!(header(&r, "content-length"), "10");
    assert_eq!(bytes(r).await, &content[10..20]);

    let r = ranged("bytes=99990-").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes(r).await, &content[99_990..]);

    let r = ranged("bytes=-5").await.unwrap();
    assert_eq!(header(&r, "content-range"), "bytes 99995-99999/100000");
    assert_eq!(bytes(r).await, &content[99_995..]);

    let r = ranged("bytes=100000-").await.unwrap();
    assert_eq!(header(&r, "content-range"), "bytes */100000");
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID").await;

    // Several ranges or a malformed header: the whole blob, as RFC 9110 allows.
    for ignored in ["bytes=0-1,5-6", "pages=1-2", "bytes=9-1"] {
        let r = ranged(ignored).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{ignored}");
        assert_eq!(bytes(r).await.len(), content.len());
    }
}

#[tokio::test]
async fn a_repository_reads_only_its_own_blobs() {
    let s = TestServer::start().await;
    let digest = s.push_blob("team/a", b"private to a").await;
    assert_eq!(
        s.get(&format!("/v2/team/a/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
    assert_error(
        s.get(&format!("/v2/team/b/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head(&format!("/v2/team/b/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn manifests_are_also_readable_as_blobs() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("a/b", "t", &[b"l"]).await;
    let r = s.get(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(bytes(r).await, manifest);
    let h = s.head(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(header(&h, "content-length"), manifest.len().to_string());
}

#[tokio::test]
async fn content_negotiation_by_accept() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("a/b", "img", &[b"l"]).await;
    let get = |reference: String, accept: &'static str| {
        s.request(
            reqwest::Method::GET,
            &format!("/v2/a/b/manifests/{reference}"),
        )
        .header("accept", accept)
        .send()
    };
    let r = get("img".into(), "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = get("img".into(), "*/*").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A tag whose manifest type the client does not accept is not served to it...
    let r = get("img".into(), DOCKER_MANIFEST).await.unwrap();
    let body = assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Accept")
    );
    // ...but a digest names exact content, served whatever Accept says.
    let r = get(digest.to_string(), DOCKER_MANIFEST).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(bytes(r).await, manifest);
}

#[tokio::test]
async fn index_served_as_default_platform_to_clients_without_index_support() {
    let s = TestServer::start().await;
    let (amd64, amd64_digest) = s.push_image("multi/app", "amd64", &[b"amd64 layer"]).await;
    let (arm64, arm64_digest) = s.push_image("multi/app", "arm64", &[b"arm64 layer"]).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm64_digest.as_str(), "size": arm64.len(), "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": amd64_digest.as_str(), "size": amd64.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    }))
    .unwrap();
    let r = s
        .put_manifest("multi/app", "latest", OCI_INDEX, &index)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .request(reqwest::Method::GET, "/v2/multi/app/manifests/latest")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), amd64_digest.as_str());
    assert_eq!(bytes(r).await, amd64);
    let r = s
        .request(reqwest::Method::GET, "/v2/multi/app/manifests/latest")
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(bytes(r).await, index);
}

/// Large blobs are sent as file-backed chunks (sendfile on plain TCP): whole
/// reads and unaligned ranges across chunk boundaries return exact bytes.
#[tokio::test]
async fn large_blobs_and_ranges_are_exact() {
    let s = TestServer::start().await;
    let len = 9 * 1024 * 1024 + 123;
    let content: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = s.push_blob("big/blob", &content).await;
    let path = format!("/v2/big/blob/blobs/{digest}");
    // Several concurrent readers on the same file.
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (client, url) = (s.client.clone(), s.url(&path));
        readers.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().bytes().await.unwrap()
        }));
    }
    for r in readers {
        let got = r.await.unwrap();
        assert_eq!(got.len(), content.len());
        assert_eq!(sha256(&got), digest);
    }
    for (first, last) in [
        (4097u64, 8 * 1024 * 1024 + 5),
        (4 * 1024 * 1024 - 1, 4 * 1024 * 1024),
        (1, len as u64 - 2),
    ] {
        let r = s
            .request(reqwest::Method::GET, &path)
            .header("range", format!("bytes={first}-{last}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {first}-{last}/{len}")
        );
        let got = bytes(r).await;
        assert!(
            got == content[first as usize..=last as usize],
            "range {first}-{last}"
        );
    }
}
