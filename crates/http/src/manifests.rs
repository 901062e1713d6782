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
        state.registry.note_pull(&grant, &manifest.digest);
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
    let body = read_manifest_body(request_body, headers, limit, state.body_idle_timeout).await?;
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
        for line in oci_tag_lines(&pushed.tags) {
            response = response.header(OCI_TAG, line);
        }
    }
    response.body(Body::empty()).map_err(ApiError::internal)
}

/// The accepted tags as `OCI-Tag` header values: comma-separated lists (RFC
/// 9110 section 5.3) of at most about 1 KiB each, so that a push of many tags
/// stays within the header-count and header-size limits of HTTP clients.
fn oci_tag_lines(tags: &[Tag]) -> Vec<String> {
    const LINE: usize = 1024;
    let mut lines: Vec<String> = Vec::new();
    for tag in tags {
        match lines.last_mut() {
            Some(line) if line.len() + 2 + tag.as_str().len() <= LINE => {
                line.push_str(", ");
                line.push_str(tag.as_str());
            }
            _ => lines.push(tag.as_str().to_owned()),
        }
    }
    lines
}

pub async fn delete(
    state: &AppState,
    grant: Grant<Delete>,
    reference: Reference,
) -> Result<Response, ApiError> {
    state.registry.delete_manifest(&grant, &reference).await?;
    crate::headers::empty(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_fold_into_few_header_lines() {
        let tags: Vec<Tag> = (0..100)
            .map(|i| Tag::parse(&format!("release-{i:03}-{}", "x".repeat(40))).unwrap())
            .collect();
        let lines = oci_tag_lines(&tags);
        assert!(lines.len() < 10, "{} lines", lines.len());
        assert!(lines.iter().all(|l| l.len() <= 1024));
        let back: Vec<&str> = lines.iter().flat_map(|l| l.split(", ")).collect();
        assert_eq!(back, tags.iter().map(Tag::as_str).collect::<Vec<_>>());
        assert_eq!(
            oci_tag_lines(&tags[..2]),
            vec![format!("{}, {}", tags[0], tags[1])]
        );
    }
}
