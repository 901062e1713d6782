//! The one place errors become HTTP responses.
//!
//! Every `/v2` error is the spec's JSON body (`{"errors":[{code, message,
//! detail}]}`) with the code from the spec's closed list and the matching
//! status. Internal failures answer `500` with no detail; the detail travels in
//! a response extension to the request middleware, which logs it once.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use metadata::MissingReference;
use oci::ErrorCode;
use registry::RegistryError;
use serde::Serialize;

/// Detail of a 5xx, for the log only.
#[derive(Clone, Debug)]
pub struct InternalErrorDetail(pub String);

/// An error response of the distribution API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<ErrorEntry>,
    headers: Vec<(HeaderName, HeaderValue)>,
    internal: Option<String>,
}

#[derive(Debug, Serialize)]
struct ErrorEntry {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    errors: &'a [ErrorEntry],
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![ErrorEntry {
                code: code.as_str(),
                message: message.into(),
                detail: None,
            }],
            headers: Vec::new(),
            internal: None,
        }
    }

    /// The code of the first error, as sent.
    pub fn code(&self) -> &'static str {
        self.errors.first().map_or("", |e| e.code)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message of the first error, as sent.
    pub fn message(&self) -> &str {
        self.errors.first().map_or("", |e| e.message.as_str())
    }

    pub fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }

    fn with_detail(mut self, detail: serde_json::Value) -> Self {
        if let Some(e) = self.errors.last_mut() {
            e.detail = Some(detail);
        }
        self
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            // Not one of the spec's 4xx codes: a 5xx says the fault is the server's.
            errors: vec![ErrorEntry {
                code: "UNKNOWN",
                message: "internal server error; the registry log has the details".into(),
                detail: None,
            }],
            headers: Vec::new(),
            internal: Some(detail.to_string()),
        }
    }

    /// `503` when a dependency is down or slow: the client may retry (after
    /// `Retry-After` seconds); the cause goes to the log like a 500's.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        ApiError {
            internal: Some(detail.to_string()),
            ..ApiError::try_again(
                "the registry's storage or database is unavailable; retry shortly",
            )
        }
    }

    /// `503` with `Retry-After`: the request may succeed if sent again shortly.
    pub fn try_again(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            // Distribution's code for the same condition; not in the spec's list.
            errors: vec![ErrorEntry {
                code: "UNAVAILABLE",
                message: message.into(),
                detail: None,
            }],
            headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            internal: None,
        }
    }

    pub fn unknown_endpoint() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "no such endpoint in the distribution API",
        )
    }

    pub fn method_not_allowed(allowed: &'static str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            format!("method not allowed here; allowed: {allowed}"),
        )
        .with_header(header::ALLOW, allowed)
    }

    pub fn upload_unknown() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadUnknown,
            "upload session not found; start a new upload",
        )
    }

    pub fn name_invalid(message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, message)
    }

    pub fn digest_invalid(message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, message)
    }

    pub fn manifest_invalid(message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
    }

    pub fn manifest_unknown(message: String) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, message)
    }

    pub fn bad_parameter(message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
    }

    pub fn upload_invalid(message: String) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            message,
        )
    }

    pub fn size_invalid(message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid, message)
    }

    pub fn denied(message: String) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, message)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            RegistryError::BlobUnknown(d) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::BlobUnknown, message)
                    .with_detail(serde_json::json!({ "digest": d.as_str() }))
            }
            RegistryError::BlobUploadUnknown => {
                ApiError::new(S::NOT_FOUND, ErrorCode::BlobUploadUnknown, message)
            }
            RegistryError::BlobUploadInvalid(_) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::BlobUploadInvalid, message)
            }
            RegistryError::UploadOutOfOrder { offset } => ApiError::new(
                S::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                message,
            )
            .with_header(header::RANGE, range_header(offset)),
            RegistryError::UploadBusy => ApiError::new(
                S::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                message,
            ),
            RegistryError::RangeNotSatisfiable { size } => {
                ApiError::new(S::RANGE_NOT_SATISFIABLE, ErrorCode::SizeInvalid, message)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            RegistryError::DigestInvalid(_) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::DigestInvalid, message)
            }
            RegistryError::BlobTooLarge { .. } => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid, message)
            }
            RegistryError::ManifestTooLarge { .. } => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, ErrorCode::ManifestInvalid, message)
            }
            RegistryError::ManifestInvalid(_) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
            }
            RegistryError::ManifestBlobUnknown(missing) => manifest_blob_unknown(&missing),
            RegistryError::ManifestUnknown(_) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::ManifestUnknown, message)
            }
            RegistryError::NameUnknown(name) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::NameUnknown, message)
                    .with_detail(serde_json::json!({ "name": name.as_str() }))
            }
            RegistryError::InvalidRequest(_) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::Unsupported, message)
            }
            RegistryError::ProjectUnknown(_) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::NameUnknown, message)
            }
            RegistryError::TooManyTags(_) => {
                ApiError::new(S::URI_TOO_LONG, ErrorCode::Unsupported, message)
            }
            RegistryError::InUse(_) => ApiError::new(S::CONFLICT, ErrorCode::Denied, message),
            // As Harbor: a client shows "denied: <message>".
            RegistryError::QuotaExceeded(_) | RegistryError::TagImmutable(_) => {
                ApiError::new(S::FORBIDDEN, ErrorCode::Denied, message)
            }
            RegistryError::RetryLater(_) => ApiError::try_again(message),
            RegistryError::Unavailable(source) => ApiError::unavailable(source),
            RegistryError::Internal(source) => ApiError::internal(source),
        }
    }
}

/// One `MANIFEST_BLOB_UNKNOWN` error per missing reference, as the spec asks.
fn manifest_blob_unknown(missing: &[MissingReference]) -> ApiError {
    let mut errors = Vec::with_capacity(missing.len());
    for m in missing {
        let (code, message) = match m {
            MissingReference::Blob(d) => (
                ErrorCode::ManifestBlobUnknown,
                format!(
                    "blob {d} is not in this repository; push it (or mount it) before the manifest"
                ),
            ),
            MissingReference::Manifest(d) => (
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {d} is not in this repository; push it before the index"),
            ),
            MissingReference::SizeMismatch {
                digest,
                declared,
                actual,
            } => (
                ErrorCode::ManifestInvalid,
                format!(
                    "descriptor for {digest} says {declared} bytes, but the content has {actual}"
                ),
            ),
        };
        errors.push(ErrorEntry {
            code: code.as_str(),
            message,
            detail: Some(serde_json::json!({ "digest": m.digest().as_str() })),
        });
    }
    ApiError {
        status: StatusCode::BAD_REQUEST,
        errors,
        headers: Vec::new(),
        internal: None,
    }
}

/// The `Range` header of an upload holding `offset` bytes. An empty upload is
/// reported as `0-0`, as Distribution does and clients expect.
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl From<auth::Denied> for ApiError {
    fn from(e: auth::Denied) -> Self {
        ApiError::denied(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            errors: &self.errors,
        })
        .unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        if let Some(detail) = self.internal {
            response
                .extensions_mut()
                .insert(InternalErrorDetail(detail));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_store_is_a_503_to_retry() {
        let error = ApiError::from(RegistryError::Unavailable("connection refused".into()));
        assert_eq!(error.code(), "UNAVAILABLE");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let detail = response.extensions().get::<InternalErrorDetail>().unwrap();
        assert_eq!(detail.0, "connection refused");
    }
}
