//! Spec section "Content Discovery": tags, catalog, referrers.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

async fn tag_many(s: &TestServer, repo: &str, tags: &[&str]) {
    let (manifest, digest) = s.push_image(repo, tags[0], &[b"l"]).await;
    let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    let r = s
        .request(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{digest}?{}", query.join("&")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_slice(&bytes(r).await).unwrap()
}

#[tokio::test]
async fn tags_in_order_with_pagination() {
    let s = TestServer::start().await;
    tag_many(&s, "library/app", &["v2", "v10", "latest", "A", "v1", "_x"]).await;
    let r = s.get("/v2/library/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("link").is_none());
    let all = json_of(r).await;
    assert_eq!(
        all,
        json!({"name": "library/app", "tags": ["A", "_x", "latest", "v1", "v10", "v2"]})
    );

    let r = s.get("/v2/library/app/tags/list?n=2").await;
    assert_eq!(
        header(&r, "link"),
        "</v2/library/app/tags/list?n=2&last=_x>; rel=\"next\""
    );
    assert_eq!(json_of(r).await["tags"], json!(["A", "_x"]));

    // Following Link headers visits every tag once, in order.
    let mut next = Some("/v2/library/app/tags/list?n=4".to_string());
    let mut seen = Vec::new();
    while let Some(path) = next {
        let r = s.get(&path).await;
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_owned()
        });
        for t in json_of(r).await["tags"].as_array().unwrap() {
            seen.push(t.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["A", "_x", "latest", "v1", "v10", "v2"]);

    let r = s.get("/v2/library/app/tags/list?last=v1").await;
    assert_eq!(json_of(r).await["tags"], json!(["v10", "v2"]));
    let r = s.get("/v2/library/app/tags/list?n=2&last=v10").await;
    assert!(r.headers().get("link").is_none());
    assert_eq!(json_of(r).await["tags"], json!(["v2"]));

    // n=0: an empty list and no Link.
    let r = s.get("/v2/library/app/tags/list?n=0").await;
    assert!(r.headers().get("link").is_none());
    assert_eq!(json_of(r).await["tags"], json!([]));

    assert_error(
        s.get("/v2/library/app/tags/list?n=-1").await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        s.get("/v2/no/such/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn repository_without_tags_lists_empty() {
    let s = TestServer::start().await;
    s.push_blob("only/blobs", b"x").await;
    let r = s.get("/v2/only/blobs/tags/list").await;
    assert_eq!(json_of(r).await, json!({"name": "only/blobs", "tags": []}));
}

#[tokio::test]
async fn catalog_with_pagination() {
    let s = TestServer::start().await;
    for repo in ["c", "a/b", "b", "a"] {
        s.push_blob(repo, b"x").await;
    }
    let r = s.get("/v2/_catalog").await;
    assert_eq!(
        json_of(r).await,
        json!({"repositories": ["a", "a/b", "b", "c"]})
    );
    let r = s.get("/v2/_catalog?n=3").await;
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=3&last=b>; rel=\"next\""
    );
    assert_eq!(json_of(r).await["repositories"], json!(["a", "a/b", "b"]));
    let r = s.get("/v2/_catalog?n=3&last=b").await;
    assert!(r.headers().get("link").is_none());
    assert_eq!(json_of(r).await["repositories"], json!(["c"]));
}

/// Pushes an artifact referring to `subject`; returns its digest and size.
async fn push_referrer(
    s: &TestServer,
    repo: &str,
    subject: &oci::Digest,
    artifact_type: Option<&str>,
    annotations: Value,
) -> (oci::Digest, usize) {
    let config_type = "application/vnd.example.config+json";
    let config = s.push_blob(repo, b"{}").await;
    let layer = s
        .push_blob(repo, format!("payload for {artifact_type:?}").as_bytes())
        .await;
    let mut manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": config.as_str(), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer.as_str(),
                    "size": format!("payload for {artifact_type:?}").len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": 100},
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        manifest["artifactType"] = json!(t);
    }
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256(&body);
    let r = s
        .put_manifest(repo, digest.as_str(), OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    assert_eq!(header(&r, "oci-subject"), subject.as_str());
    (digest, body.len())
}

#[tokio::test]
async fn referrers_including_those_pushed_before_their_subject() {
    let s = TestServer::start().await;
    let repo = "sig/app";
    // The subject is not pushed yet: referrers may come first.
    let subject = sha256(b"an image pushed later");
    let empty = s.get(&format!("/v2/{repo}/referrers/{subject}")).await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(header(&empty, "content-type"), OCI_INDEX);
    assert_eq!(
        json_of(empty).await,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    );

    let (sig, sig_size) = push_referrer(
        &s,
        repo,
        &subject,
        Some("application/vnd.dev.cosign.artifact.sig.v1+json"),
        json!({"dev.cosignproject.cosign/signature": "abc"}),
    )
    .await;
    let (untyped, _) = push_referrer(&s, repo, &subject, None, json!({"k": "v"})).await;

    let r = s.get(&format!("/v2/{repo}/referrers/{subject}")).await;
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index = json_of(r).await;
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let sig_entry = manifests
        .iter()
        .find(|m| m["digest"] == sig.as_str())
        .unwrap();
    assert_eq!(
        *sig_entry,
        json!({
            "mediaType": OCI_MANIFEST, "digest": sig.as_str(), "size": sig_size,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "annotations": {"dev.cosignproject.cosign/signature": "abc"}
        })
    );
    // Without artifactType, the config's media type stands in.
    let untyped_entry = manifests
        .iter()
        .find(|m| m["digest"] == untyped.as_str())
        .unwrap();
    assert_eq!(
        untyped_entry["artifactType"],
        "application/vnd.example.config+json"
    );

    let r = s
        .get(&format!("/v2/{repo}/referrers/{subject}?artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson"))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let filtered = json_of(r).await;
    assert_eq!(filtered["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["manifests"][0]["digest"], sig.as_str());

    // Other repositories see none of them.
    let r = s.get(&format!("/v2/other/app/referrers/{subject}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["manifests"], json!([]));

    assert_error(
        s.get(&format!("/v2/{repo}/referrers/sha256:123")).await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn index_referrers_omit_a_missing_artifact_type() {
    let s = TestServer::start().await;
    let (image, digest) = s.push_image("idx/app", "1", &[b"l"]).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest.as_str(), "size": image.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest.as_str(), "size": image.len()}
    }))
    .unwrap();
    let r = s.put_manifest("idx/app", "idx", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), digest.as_str());
    let referrers = json_of(s.get(&format!("/v2/idx/app/referrers/{digest}")).await).await;
    let entry = &referrers["manifests"][0];
    assert_eq!(entry["mediaType"], OCI_INDEX);
    assert!(entry.get("artifactType").is_none(), "{entry}");
    assert!(entry.get("annotations").is_none(), "{entry}");
}
