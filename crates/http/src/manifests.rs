//! Manifest endpoints: GET, HEAD, PUT, DELETE.

use auth::{Delete, Grant, Pull, Push};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use oci::{Reference, Tag};
use registry::AcceptedTypes;

use crate::AppState;
use crate::body::read_manifest_body;
use crate::error::ApiError;
use crate::headers::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG, etag};
use crate::query::Query;

pub async fn get(
    state: &AppState,
    grant: Grant<Pull>,
    reference: Reference,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let accepted = AcceptedTypes::from_headers(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let manifest = state
        .registry
        .get_manifest(&grant, &reference, &accepted)
        .await?;
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, manifest.media_type.as_str())
        .header(header::CONTENT_LENGTH, manifest.size())
        .header(DOCKER_CONTENT_DIGEST, manifest.digest.as_str())
        .header(header::ETAG, etag(&manifest.digest));
    let body = if with_body {
        Body::from(manifest.body)
    } else {
        Body::empty()
    };
    builder.body(body).map_err(ApiError::internal)
}

pub async fn put(
    state: &AppState,
    grant: Grant<Push>,
    reference: Reference,
    query: &Query,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let extra_tags = query
        .all("tag")
        .map(|t| {
            Tag::parse(t)
                .map_err(|e| ApiError::manifest_invalid(format!("query parameter tag: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limit = state.registry.limits().max_manifest_bytes;
    let body = read_manifest_body(request_body, headers, limit).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let pushed = state
        .registry
        .put_manifest(&grant, &reference, content_type, body, &extra_tags)
        .await?;
    let mut response = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{}/manifests/{}", grant.repository(), pushed.digest),
        )
        .header(DOCKER_CONTENT_DIGEST, pushed.digest.as_str())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &pushed.subject {
        response = response.header(OCI_SUBJECT, subject.as_str());
    }
    if !extra_tags.is_empty() {
        for tag in &pushed.tags {
            response = response.header(OCI_TAG, tag.as_str());
        }
    }
    response.body(Body::empty()).map_err(ApiError::internal)
}

pub async fn delete(
    state: &AppState,
    grant: Grant<Delete>,
    reference: Reference,
) -> Result<Response, ApiError> {
    state.registry.delete_manifest(&grant, &reference).await?;
    crate::headers::empty(StatusCode::ACCEPTED)
}
