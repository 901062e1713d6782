//! Blob endpoints: GET, HEAD (with `Range`), DELETE. A GET may answer with a
//! redirect to the blob store (a presigned URL) instead of the bytes.

use auth::{Delete, Grant, Pull};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use oci::Digest;
use storage::RangeRequest;

use crate::AppState;
use crate::error::ApiError;
use crate::headers::{DOCKER_CONTENT_DIGEST, etag};

/// Blobs never change under their digest, so caches may keep them for a year.
const IMMUTABLE: &str = "max-age=31536000, immutable";

pub async fn get(
    state: &AppState,
    grant: Grant<Pull>,
    digest: Digest,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(url) = state.registry.blob_redirect(&grant, &digest).await? {
        // The client repeats its `Range` header at the new location.
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header(DOCKER_CONTENT_DIGEST, digest.as_str())
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::empty())
            .map_err(ApiError::internal);
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(RangeRequest::parse_header);
    let blob = state.registry.read_blob(&grant, &digest, range).await?;
    let mut response = Response::builder()
        .status(if blob.range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_LENGTH,
            blob.range.map_or(blob.size, |r| r.len()),
        )
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag(&digest))
        .header(header::CACHE_CONTROL, IMMUTABLE);
    if let Some(r) = blob.range {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", r.start, r.end, blob.size),
        );
    }
    response
        .body(Body::from_stream(blob.body))
        .map_err(ApiError::internal)
}

pub async fn head(
    state: &AppState,
    grant: Grant<Pull>,
    digest: Digest,
) -> Result<Response, ApiError> {
    let size = state.registry.blob_size(&grant, &digest).await?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag(&digest))
        .header(header::CACHE_CONTROL, IMMUTABLE)
        .body(Body::empty())
        .map_err(ApiError::internal)
}

pub async fn delete(
    state: &AppState,
    grant: Grant<Delete>,
    digest: Digest,
) -> Result<Response, ApiError> {
    state.registry.delete_blob(&grant, &digest).await?;
    crate::headers::empty(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use http::{Request, StatusCode};
    use storage::BlobStore;

    /// The S3 test server of `TEST_WHARF_S3_*` (`.ci/garage.sh` starts one),
    /// under a fresh prefix, redirecting downloads. `None` when there is none,
    /// except under `CI=true`, where the test fails instead of skipping.
    #[allow(clippy::print_stderr)]
    fn redirecting_s3() -> Option<storage::S3Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(bucket), Some(key), Some(secret)) = (
            var("TEST_WHARF_S3_ENDPOINT"),
            var("TEST_WHARF_S3_BUCKET"),
            var("TEST_WHARF_S3_ACCESS_KEY_ID"),
            var("TEST_WHARF_S3_SECRET_ACCESS_KEY"),
        ) else {
            let why = "TEST_WHARF_S3_* are not set; run `eval \"$(.ci/garage.sh)\"` first";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("S3 tests cannot run in CI: {why}");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        Some(storage::S3Config {
            endpoint: Some(endpoint),
            region: var("TEST_WHARF_S3_REGION"),
            bucket,
            prefix: Some(format!("wharf-test/{}", storage::UploadId::random())),
            access_key_id: Some(key),
            secret_access_key: Some(secret),
            redirect: storage::S3RedirectConfig {
                enabled: true,
                expiry_secs: 60,
            },
            ..storage::S3Config::default()
        })
    }

    /// The response, as the administrator would get it.
    async fn send(app: &axum::Router, request: Request<Body>) -> http::Response<bytes::Bytes> {
        let (status, headers, body) = crate::tests::send(app, request).await;
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_get_redirects_to_a_presigned_url_after_the_link_check() {
        let Some(config) = redirecting_s3() else {
            return;
        };
        let blobs = Arc::new(storage::S3BlobStore::open(&config).unwrap());
        let (_dir, app) = crate::tests::app_on(tempfile::tempdir().unwrap(), blobs.clone()).await;
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let digest = oci::Digest::compute(oci::DigestAlgorithm::Sha256, &content);
        let push = Request::post(format!("/v2/a/b/blobs/uploads/?digest={digest}"))
            .body(Body::from(content.clone()))
            .unwrap();
        assert_eq!(send(&app, push).await.status(), StatusCode::CREATED);

        let get = |repo: &str| {
            Request::get(format!("/v2/{repo}/blobs/{digest}"))
                .body(Body::empty())
                .unwrap()
        };
        let response = send(&app, get("a/b")).await;
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()["docker-content-digest"], digest.as_str());
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let fetched = reqwest::get(&location).await.unwrap();
        assert_eq!(fetched.status(), reqwest::StatusCode::OK);
        assert_eq!(fetched.bytes().await.unwrap(), content);
        // A ranged download follows the redirect with its Range header.
        let ranged = reqwest::Client::new()
            .get(&location)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.status(), reqwest::StatusCode::PARTIAL_CONTENT);
        assert_eq!(ranged.bytes().await.unwrap(), &content[10..20]);

        // Another repository learns nothing: no link, no redirect.
        let response = send(&app, get("c/d")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(!response.headers().contains_key("location"));
        // HEAD answers itself.
        let head = Request::head(format!("/v2/a/b/blobs/{digest}"))
            .body(Body::empty())
            .unwrap();
        let response = send(&app, head).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "200000");

        blobs.delete(&digest).await.unwrap();
    }
}
