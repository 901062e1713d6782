//! Blob endpoints: GET, HEAD (with `Range`), DELETE.

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
