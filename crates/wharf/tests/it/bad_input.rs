//! Bad input: each gets the spec's error code and a clear message, and
//! leaves nothing behind.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn hostile_names() {
    let s = TestServer::start().await;
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a%2fb/tags/list",
        "/v2/-a/tags/list",
        "/v2/a//b/tags/list",
    ] {
        let body = assert_error(s.get(path).await, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("lowercase"),
            "{path}"
        );
    }
    // Dot segments, sent raw (HTTP client libraries would resolve them first).
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/../../etc/passwd/tags/list",
        "/v2/./a/tags/list",
        "/v2/a/%2e%2e/b/tags/list",
    ] {
        let (status, body) = raw_request(&s, &format!("GET {path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("NAME_INVALID"), "{path}: {body}");
    }
    let long = "a".repeat(256);
    assert_error(
        s.get(&format!("/v2/{long}/tags/list")).await,
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;
    // Nothing was created by any of them.
    let catalog: serde_json::Value =
        serde_json::from_slice(&bytes(s.get("/v2/_catalog").await).await).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]));
}

#[tokio::test]
async fn malformed_digests() {
    let s = TestServer::start().await;
    for d in [
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
    ] {
        assert_error(
            s.get(&format!("/v2/a/blobs/{d}")).await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        )
        .await;
    }
    let (status, body) = raw_request(&s, "GET /v2/a/blobs/sha256:..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    let location = s.start_upload("a").await;
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", "sha256:short")]))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s
        .client
        .put(s.url(&location))
        .body("x")
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("?digest=")
    );
    let r = s
        .request(Method::POST, "/v2/a/blobs/uploads/?mount=sha256:zz&from=b")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s
        .request(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?mount={}&from=B!", sha256(b"x")),
        )
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}

#[tokio::test]
async fn digest_mismatch_ends_the_session_and_stores_nothing() {
    let s = TestServer::start().await;
    let location = s.start_upload("a").await;
    let claimed = sha256(b"what the client claims");
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", claimed.as_str())]))
        .body(b"what the client sent".to_vec())
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(claimed.as_str())
    );
    assert_eq!(
        s.head(&format!("/v2/a/blobs/{claimed}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.head(&format!("/v2/a/blobs/{}", sha256(b"what the client sent")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        s.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_no_partial_files(&s);
}

#[tokio::test]
async fn malformed_manifests() {
    let s = TestServer::start().await;
    let config = s.push_blob("a", b"{}").await;
    let cases: Vec<(&str, String)> = vec![
        (OCI_MANIFEST, "not json".into()),
        (OCI_MANIFEST, "[1,2]".into()),
        (
            OCI_MANIFEST,
            r#"{"schemaVersion":1,"name":"a","tag":"t","fsLayers":[]}"#.into(),
        ),
        (
            OCI_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{config}","size":2}}}}"#
            ),
        ),
        (
            OCI_INDEX,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{config}","size":2}},"layers":[]}}"#
            ),
        ),
        (
            OCI_MANIFEST,
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:nothex","size":2},"layers":[]}"#
                .into(),
        ),
        (
            OCI_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{config}","size":-2}},"layers":[]}}"#
            ),
        ),
        (
            "application/vnd.oci.artifact.manifest.v1+json",
            r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","schemaVersion":2}"#
                .into(),
        ),
    ];
    for (content_type, body) in cases {
        let r = s
            .put_manifest("a", "bad", content_type, body.as_bytes())
            .await;
        let err = assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        assert!(
            !err["errors"][0]["message"].as_str().unwrap().is_empty(),
            "{body}"
        );
    }
    assert_eq!(
        s.get("/v2/a/manifests/bad").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        s.put_manifest("a", "-bad-tag", OCI_MANIFEST, b"{}").await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn upload_ids_that_do_not_exist() {
    let s = TestServer::start().await;
    let unknown = "/v2/a/blobs/uploads/00000000-0000-4000-8000-000000000000";
    assert_error(
        s.get(unknown).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let r = s
        .client
        .patch(s.url(unknown))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let (status, body) = raw_request(&s, "GET /v2/a/blobs/uploads/..%2F..%2Fetc").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");
    assert_error(
        s.get("/v2/a/blobs/uploads/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn chunks_that_lie_about_their_length() {
    let s = TestServer::start().await;
    let location = s.start_upload("a").await;
    // Content-Range says 100 bytes, the streamed body has 50: refused, nothing kept.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(vec![7u8; 50]))];
    let r = s
        .client
        .patch(s.url(&location))
        .header("content-range", "0-99")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    assert_eq!(header(&s.get(&location).await, "range"), "0-0");

    let r = s
        .client
        .patch(s.url(&location))
        .header("content-range", "0-9")
        .body(vec![1u8; 5])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    for bad in ["abc", "5-1", "bytes=x-y"] {
        let r = s
            .client
            .patch(s.url(&location))
            .header("content-range", bad)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    }
    assert_eq!(header(&s.get(&location).await, "range"), "0-0");
}

#[tokio::test]
async fn truncated_bodies_leave_nothing() {
    let s = TestServer::start().await;
    let location = s.start_upload("a").await;
    let r = s
        .client
        .patch(s.url(&location))
        .body(b"0123456789".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // A client that promises 1 MB, sends 1 KB, and disconnects.
    send_truncated(&s, &format!("PATCH {location}")).await;
    let digest = sha256(b"never complete");
    send_truncated(&s, &format!("POST /v2/a/blobs/uploads/?digest={digest}")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(header(&s.get(&location).await, "range"), "0-9");
    assert_eq!(
        s.head(&format!("/v2/a/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_no_partial_files(&s);
    // The session still completes correctly with the right bytes.
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", sha256(b"0123456789abc").as_str())]))
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Sends one request exactly as written (no path normalization) and returns
/// the status and body of the response.
async fn raw_request(s: &TestServer, request_line: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(s.running().addr)
        .await
        .unwrap();
    let head = format!(
        "{request_line} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

async fn send_truncated(s: &TestServer, request_line: &str) {
    let mut stream = tokio::net::TcpStream::connect(s.running().addr)
        .await
        .unwrap();
    let head = format!(
        "{request_line} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n",
        s.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'x'; 1024]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stream);
}

#[tokio::test]
async fn blob_size_limit() {
    let s = TestServer::start_with(|c| c.limits.max_blob_bytes = 1000).await;
    let content = vec![1u8; 1001];
    let digest = sha256(&content);
    let r = s
        .request(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={digest}"),
        )
        .body(content.clone())
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1000")
    );
    let location = s.start_upload("a").await;
    let r = s
        .client
        .patch(s.url(&location))
        .body(content)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_eq!(header(&s.get(&location).await, "range"), "0-0");
    assert_no_partial_files(&s);
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let s = TestServer::start().await;
    assert_error(
        s.get("/v2/a/nothing/here").await,
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
    let r = s
        .request(Method::POST, "/v2/a/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "allow"), "GET, HEAD, PUT, DELETE");
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let r = s.request(Method::PUT, "/v2/_catalog").send().await.unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    assert_eq!(s.get("/nothing").await.status(), StatusCode::NOT_FOUND);
}

/// No half-written upload files remain in the blob store's temporary area.
fn assert_no_partial_files(s: &TestServer) {
    let tmp = s.config.blob_dir().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "files left in {}: {left:?}", tmp.display());
}

#[tokio::test]
async fn raw_http_garbage_does_not_hurt() {
    let s = TestServer::start().await;
    let mut stream = tokio::net::TcpStream::connect(s.running().addr)
        .await
        .unwrap();
    stream
        .write_all(b"GARBAGE /v2/ \x00\x01\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn stalled_bodies_are_abandoned() {
    let s = TestServer::start_with(|c| c.server.body_idle_timeout_seconds = 1).await;
    let location = s.start_upload("slow/client").await;
    let first = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"some bytes"))
    });
    let stall = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        Ok::<_, std::io::Error>(Bytes::from_static(b"too late"))
    });
    let body = reqwest::Body::wrap_stream(futures_util::StreamExt::chain(first, stall));
    let started = std::time::Instant::now();
    let r = s
        .client
        .patch(s.url(&location))
        .body(body)
        .send()
        .await
        .unwrap();
    let json = assert_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no body data"),
        "{json}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(header(&s.get(&location).await, "range"), "0-0");
}

#[tokio::test]
async fn manifests_with_too_many_references_are_refused() {
    let s = TestServer::start().await;
    let config = s.push_blob("many/refs", b"{}").await;
    let layers: Vec<serde_json::Value> = (0..10_001u32)
        .map(|i| serde_json::json!({"mediaType": OCI_LAYER, "digest": sha256(&i.to_le_bytes()).as_str(), "size": 4}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.as_str(), "size": 2},
        "layers": layers,
    }))
    .unwrap();
    let body = assert_error(
        s.put_manifest("many/refs", "x", OCI_MANIFEST, &manifest)
            .await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 10000")
    );
}
