//! Header names of the distribution API and small response helpers.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, StatusCode, header};
use oci::Digest;

use crate::error::ApiError;

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const DOCKER_API_VERSION: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Result<Response, ApiError> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(ApiError::internal)
}

/// `<url>; rel="next"` for paginated listings.
pub fn link_next(url: &str) -> String {
    format!("<{url}>; rel=\"next\"")
}
