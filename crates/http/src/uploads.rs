//! Blob upload endpoints: start (with mount and monolithic variants), chunk,
//! status, finish, cancel.

use auth::{Grant, Push};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use oci::{Digest, DigestAlgorithm, RepoName};
use registry::MountOutcome;
use storage::{UploadId, UploadStatus};

use crate::AppState;
use crate::body::{self, request_stream};
use crate::error::{ApiError, range_header};
use crate::headers::{DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID};
use crate::query::Query;

/// `POST /v2/<name>/blobs/uploads/`: mount (`mount`, `from`), whole-blob push
/// (`digest`), or a new session (`digest-algorithm` optional).
pub async fn start(
    state: &AppState,
    grant: Grant<Push>,
    query: &Query,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount, "mount")?;
        let from = query
            .get("from")
            .map(|f| {
                RepoName::parse(f)
                    .map_err(|e| ApiError::name_invalid(format!("query parameter from: {e}")))
            })
            .transpose()?;
        if let MountOutcome::Mounted { .. } = state
            .registry
            .mount_blob(&grant, &digest, from.as_ref())
            .await?
        {
            return created_blob(grant.repository(), &digest);
        }
        // Not mountable: fall through to an ordinary upload session (202).
    } else if let Some(digest) = query.get("digest") {
        let digest = parse_digest(digest, "digest")?;
        let exact = body::content_length(headers);
        state
            .registry
            .push_blob(
                &grant,
                &digest,
                request_stream(request_body, exact, state.body_idle_timeout),
            )
            .await?;
        return created_blob(grant.repository(), &digest);
    }
    let algorithm = match query.get("digest-algorithm") {
        None => DigestAlgorithm::Sha256,
        Some(a) => a.parse().map_err(|e: oci::DigestError| {
            ApiError::digest_invalid(format!("query parameter digest-algorithm: {e}"))
        })?,
    };
    let status = state.registry.start_upload(&grant, algorithm).await?;
    session_response(StatusCode::ACCEPTED, grant.repository(), &status)
}

/// `PATCH <location>`: one chunk, in order.
pub async fn patch(
    state: &AppState,
    grant: Grant<Push>,
    id: UploadId,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let range = content_range(headers)?;
    let exact = declared_length(headers, range)?;
    let status = state
        .registry
        .append_upload(
            &grant,
            id,
            range.map(|(start, _)| start),
            request_stream(request_body, exact, state.body_idle_timeout),
        )
        .await?;
    session_response(StatusCode::ACCEPTED, grant.repository(), &status)
}

/// `GET <location>`: where the upload stands.
pub async fn status(
    state: &AppState,
    grant: Grant<Push>,
    id: UploadId,
) -> Result<Response, ApiError> {
    let status = state.registry.upload_status(&grant, id).await?;
    session_response(StatusCode::NO_CONTENT, grant.repository(), &status)
}

/// `PUT <location>?digest=`: the optional last chunk, then verify and store.
pub async fn finish(
    state: &AppState,
    grant: Grant<Push>,
    id: UploadId,
    query: &Query,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let digest = query.get("digest").ok_or_else(|| {
        ApiError::digest_invalid(
            "closing an upload needs the blob's digest: PUT <location>?digest=<digest>".into(),
        )
    })?;
    let digest = parse_digest(digest, "digest")?;
    let final_chunk = if body::is_empty(&request_body, headers) {
        None
    } else {
        let range = content_range(headers)?;
        let exact = declared_length(headers, range)?;
        Some((
            range.map(|(start, _)| start),
            request_stream(request_body, exact, state.body_idle_timeout),
        ))
    };
    state
        .registry
        .finish_upload(&grant, id, &digest, final_chunk)
        .await?;
    created_blob(grant.repository(), &digest)
}

/// `DELETE <location>`: abandon the upload.
pub async fn cancel(
    state: &AppState,
    grant: Grant<Push>,
    id: UploadId,
) -> Result<Response, ApiError> {
    state.registry.cancel_upload(&grant, id).await?;
    crate::headers::empty(StatusCode::NO_CONTENT)
}

fn parse_digest(value: &str, parameter: &str) -> Result<Digest, ApiError> {
    Digest::parse(value)
        .map_err(|e| ApiError::digest_invalid(format!("query parameter {parameter}: {e}")))
}

fn created_blob(repo: &RepoName, digest: &Digest) -> Result<Response, ApiError> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(ApiError::internal)
}

fn session_response(
    status: StatusCode,
    repo: &RepoName,
    upload: &UploadStatus,
) -> Result<Response, ApiError> {
    Response::builder()
        .status(status)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/blobs/uploads/{}", upload.id),
        )
        .header(header::RANGE, range_header(upload.offset))
        .header(DOCKER_UPLOAD_UUID, upload.id.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(ApiError::internal)
}

/// `Content-Range: <start>-<end>` (inclusive). Also accepts the RFC 9110 form
/// `bytes <start>-<end>/<total>` some clients send.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::upload_invalid(
            "Content-Range must be <first byte>-<last byte>, inclusive, for example 0-1023".into(),
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let text = text.split_once('/').map_or(text, |(range, _total)| range);
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = (
        number(start).ok_or_else(invalid)?,
        number(end).ok_or_else(invalid)?,
    );
    if end < start {
        return Err(invalid());
    }
    Ok(Some((start, end)))
}

/// The exact body length a chunk must have: from `Content-Range` when the body
/// has no `Content-Length` (HTTP enforces that one itself). The two must agree
/// when both are given.
fn declared_length(
    headers: &HeaderMap,
    range: Option<(u64, u64)>,
) -> Result<Option<u64>, ApiError> {
    let from_range = range.map(|(start, end)| end - start + 1);
    match (body::content_length(headers), from_range) {
        (Some(len), Some(range_len)) if len != range_len => Err(ApiError::size_invalid(format!(
            "Content-Length {len} does not match Content-Range, which covers {range_len} bytes"
        ))),
        (Some(_), _) => Ok(None),
        (None, from_range) => Ok(from_range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(&HeaderMap::new()).unwrap(), None);
        assert_eq!(content_range(&with_range("0-99")).unwrap(), Some((0, 99)));
        assert_eq!(
            content_range(&with_range("bytes 100-199/*")).unwrap(),
            Some((100, 199))
        );
        for bad in ["", "5", "9-1", "-1", "a-b", "1-2-3", "+1-2"] {
            assert!(content_range(&with_range(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn declared_lengths() {
        let mut h = with_range("0-9");
        assert_eq!(declared_length(&h, Some((0, 9))).unwrap(), Some(10));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(declared_length(&h, Some((0, 9))).unwrap(), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(declared_length(&h, Some((0, 9))).is_err());
    }
}
