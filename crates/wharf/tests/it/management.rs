//! Spec section "Content Management": deleting tags, manifests and blobs.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn delete_a_tag_keeps_the_manifest() {
    let s = TestServer::start().await;
    let (_, digest) = s.push_image("library/app", "1.0", &[b"l"]).await;
    assert_eq!(
        s.delete("/v2/library/app/manifests/1.0").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        s.get("/v2/library/app/manifests/1.0").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.get(&format!("/v2/library/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        s.delete("/v2/library/app/manifests/1.0").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn delete_a_manifest_removes_its_tags() {
    let s = TestServer::start().await;
    let (manifest, digest) = s.push_image("library/app", "1.0", &[b"l"]).await;
    let r = s
        .put_manifest("library/app", "latest", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        s.delete(&format!("/v2/library/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    for reference in ["1.0", "latest", digest.as_str()] {
        assert_eq!(
            s.get(&format!("/v2/library/app/manifests/{reference}"))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    let tags: serde_json::Value =
        serde_json::from_slice(&bytes(s.get("/v2/library/app/tags/list").await).await).unwrap();
    assert_eq!(tags["tags"], json!([]));
    assert_error(
        s.delete(&format!("/v2/library/app/manifests/{digest}"))
            .await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        s.delete(&format!("/v2/no/repo/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn delete_blobs() {
    let s = TestServer::start().await;
    let digest = s.push_blob("library/app", b"loose blob").await;
    assert_eq!(
        s.delete(&format!("/v2/library/app/blobs/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        s.get(&format!("/v2/library/app/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_error(
        s.delete(&format!("/v2/library/app/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deletes_never_break_what_remains() {
    let s = TestServer::start().await;
    let layer = b"a layer in use";
    let (image, digest) = s.push_image("keep/app", "1.0", &[layer]).await;
    let r = s
        .delete(&format!("/v2/keep/app/blobs/{}", sha256(layer)))
        .await;
    let body = assert_error(r, StatusCode::CONFLICT, "DENIED").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(digest.as_str())
    );

    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest.as_str(), "size": image.len()}]
    }))
    .unwrap();
    assert_eq!(
        s.put_manifest("keep/app", "multi", OCI_INDEX, &index)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_error(
        s.delete(&format!("/v2/keep/app/manifests/{digest}")).await,
        StatusCode::CONFLICT,
        "DENIED",
    )
    .await;
    assert_eq!(
        s.get("/v2/keep/app/manifests/multi").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.get(&format!("/v2/keep/app/blobs/{}", sha256(layer)))
            .await
            .status(),
        StatusCode::OK
    );

    // In the right order every delete succeeds.
    assert_eq!(
        s.delete(&format!("/v2/keep/app/manifests/{}", sha256(&index)))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.delete(&format!("/v2/keep/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.delete(&format!("/v2/keep/app/blobs/{}", sha256(layer)))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}
