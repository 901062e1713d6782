//! Parsing `/v2/...` requests into typed endpoints.
//!
//! Repository names contain slashes, so a path is parsed from the right: the
//! trailing segments say which endpoint it is, and what precedes them is the
//! name. Every parsed value is a checked type (`RepoName`, `Digest`,
//! `Reference`, `UploadId`); handlers never see raw path text.

use auth::Action;
use http::Method;
use oci::{Digest, Reference, ReferenceError, RepoName};
use storage::UploadId;

use crate::error::ApiError;

/// A request to the distribution API, by endpoint (the spec's `end-N` ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// end-1: `GET /v2/`
    Ping,
    /// `GET /v2/_catalog`
    Catalog,
    /// end-2, end-10: `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`
    Blob { name: RepoName, digest: Digest },
    /// end-4a/4b/4c, end-11: `POST /v2/<name>/blobs/uploads/`
    StartUpload { name: RepoName },
    /// end-5, end-6, end-13, end-14: `PATCH|PUT|GET|DELETE <blob-push-location>`
    Upload { name: RepoName, id: UploadId },
    /// end-3, end-7, end-9: `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// end-8: `GET /v2/<name>/tags/list`
    Tags { name: RepoName },
    /// end-12: `GET /v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: Digest },
}

impl Endpoint {
    /// A stable name for metrics and logs.
    pub fn metric_name(&self, method: &Method) -> &'static str {
        match (self, method.as_str()) {
            (Endpoint::Ping, _) => "ping",
            (Endpoint::Catalog, _) => "catalog",
            (Endpoint::Blob { .. }, "HEAD") => "blob_head",
            (Endpoint::Blob { .. }, "DELETE") => "blob_delete",
            (Endpoint::Blob { .. }, _) => "blob_get",
            (Endpoint::StartUpload { .. }, _) => "upload_start",
            (Endpoint::Upload { .. }, "PATCH") => "upload_patch",
            (Endpoint::Upload { .. }, "PUT") => "upload_finish",
            (Endpoint::Upload { .. }, "DELETE") => "upload_cancel",
            (Endpoint::Upload { .. }, _) => "upload_status",
            (Endpoint::Manifest { .. }, "HEAD") => "manifest_head",
            (Endpoint::Manifest { .. }, "PUT") => "manifest_put",
            (Endpoint::Manifest { .. }, "DELETE") => "manifest_delete",
            (Endpoint::Manifest { .. }, _) => "manifest_get",
            (Endpoint::Tags { .. }, _) => "tags_list",
            (Endpoint::Referrers { .. }, _) => "referrers",
        }
    }

    /// The repository the request acts on, and the action it needs there.
    pub fn access(&self, method: &Method) -> Option<(&RepoName, Action)> {
        let action = match *method {
            Method::GET | Method::HEAD => Action::Pull,
            Method::DELETE => Action::Delete,
            _ => Action::Push,
        };
        match self {
            Endpoint::Ping | Endpoint::Catalog => None,
            Endpoint::StartUpload { name } | Endpoint::Upload { name, .. } => {
                Some((name, Action::Push))
            }
            Endpoint::Blob { name, .. }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Tags { name }
            | Endpoint::Referrers { name, .. } => Some((name, action)),
        }
    }

    /// Methods each endpoint answers, for `405` responses.
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Endpoint::Ping
            | Endpoint::Catalog
            | Endpoint::Tags { .. }
            | Endpoint::Referrers { .. } => "GET, HEAD",
            Endpoint::Blob { .. } => "GET, HEAD, DELETE",
            Endpoint::StartUpload { .. } => "POST",
            Endpoint::Upload { .. } => "GET, PATCH, PUT, DELETE",
            Endpoint::Manifest { .. } => "GET, HEAD, PUT, DELETE",
        }
    }

    /// Whether `method` is one this endpoint answers.
    pub fn allows(&self, method: &Method) -> bool {
        self.allowed_methods()
            .split(", ")
            .any(|m| m == method.as_str())
    }

    /// Parses the path of a request under `/v2`. `None` means the path is not
    /// a distribution API path at all.
    pub fn parse(method: &Method, path: &str) -> Option<Result<Endpoint, ApiError>> {
        let rest = match path {
            "/v2" | "/v2/" => return Some(Ok(Endpoint::Ping)),
            p => p.strip_prefix("/v2/")?,
        };
        if rest == "_catalog" {
            return Some(Ok(Endpoint::Catalog));
        }
        Some(parse_repository_path(method, rest))
    }
}

fn parse_repository_path(method: &Method, rest: &str) -> Result<Endpoint, ApiError> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Endpoint::Tags {
            name: name_of(name)?,
        });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Endpoint::StartUpload {
            name: name_of(name)?,
        });
    }
    let (prefix, last) = rest
        .rsplit_once('/')
        .ok_or_else(ApiError::unknown_endpoint)?;
    let (before, kind) = prefix
        .rsplit_once('/')
        .ok_or_else(ApiError::unknown_endpoint)?;
    match kind {
        "manifests" => {
            let name = name_of(before)?;
            let reference = Reference::parse(last).map_err(|e| invalid_reference(method, e))?;
            Ok(Endpoint::Manifest { name, reference })
        }
        "blobs" => Ok(Endpoint::Blob {
            name: name_of(before)?,
            digest: digest_of(last)?,
        }),
        "referrers" => Ok(Endpoint::Referrers {
            name: name_of(before)?,
            digest: digest_of(last)?,
        }),
        "uploads" => {
            let name = before
                .strip_suffix("/blobs")
                .ok_or_else(ApiError::unknown_endpoint)?;
            let name = name_of(name)?;
            let id = UploadId::parse(last).ok_or_else(ApiError::upload_unknown)?;
            Ok(Endpoint::Upload { name, id })
        }
        _ => Err(ApiError::unknown_endpoint()),
    }
}

fn name_of(s: &str) -> Result<RepoName, ApiError> {
    RepoName::parse(s).map_err(|e| ApiError::name_invalid(e.to_string()))
}

fn digest_of(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::digest_invalid(e.to_string()))
}

/// An unparseable manifest reference. A broken digest is `DIGEST_INVALID`; a
/// tag that breaks the grammar names nothing that could exist, so reads and
/// deletes get `MANIFEST_UNKNOWN` and pushes `MANIFEST_INVALID`.
fn invalid_reference(method: &Method, e: ReferenceError) -> ApiError {
    match e {
        ReferenceError::Digest(e) => ApiError::digest_invalid(e.to_string()),
        ReferenceError::Tag(e) if *method == Method::PUT => {
            ApiError::manifest_invalid(e.to_string())
        }
        ReferenceError::Tag(e) => ApiError::manifest_unknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(path: &str) -> Result<Endpoint, ApiError> {
        Endpoint::parse(&Method::GET, path).expect("a /v2 path")
    }

    #[test]
    fn parses_from_the_right() {
        let name = |s| RepoName::parse(s).unwrap();
        let digest = Digest::parse(D).unwrap();
        let id = UploadId::random();
        let cases = vec![
            ("/v2/".to_string(), Endpoint::Ping),
            ("/v2".into(), Endpoint::Ping),
            ("/v2/_catalog".into(), Endpoint::Catalog),
            (
                "/v2/a/b/tags/list".into(),
                Endpoint::Tags { name: name("a/b") },
            ),
            (
                "/v2/a/blobs/uploads/".into(),
                Endpoint::StartUpload { name: name("a") },
            ),
            (
                "/v2/a/blobs/uploads".into(),
                Endpoint::StartUpload { name: name("a") },
            ),
            (
                "/v2/x/blobs/blobs/uploads/".into(),
                Endpoint::StartUpload {
                    name: name("x/blobs"),
                },
            ),
            (
                format!("/v2/a/blobs/uploads/{id}"),
                Endpoint::Upload {
                    name: name("a"),
                    id,
                },
            ),
            (
                format!("/v2/a/blobs/uploads/blobs/uploads/{id}"),
                Endpoint::Upload {
                    name: name("a/blobs/uploads"),
                    id,
                },
            ),
            (
                format!("/v2/a/b/blobs/{D}"),
                Endpoint::Blob {
                    name: name("a/b"),
                    digest: digest.clone(),
                },
            ),
            (
                format!("/v2/foo/uploads/blobs/{D}"),
                Endpoint::Blob {
                    name: name("foo/uploads"),
                    digest: digest.clone(),
                },
            ),
            (
                format!("/v2/a/referrers/{D}"),
                Endpoint::Referrers {
                    name: name("a"),
                    digest: digest.clone(),
                },
            ),
            (
                "/v2/a/manifests/latest".into(),
                Endpoint::Manifest {
                    name: name("a"),
                    reference: Reference::parse("latest").unwrap(),
                },
            ),
            (
                "/v2/a/manifests/manifests/x".into(),
                Endpoint::Manifest {
                    name: name("a/manifests"),
                    reference: Reference::parse("x").unwrap(),
                },
            ),
            (
                "/v2/tags/list/tags/list".into(),
                Endpoint::Tags {
                    name: name("tags/list"),
                },
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(parse(&path).unwrap(), expected, "{path}");
        }
    }

    #[test]
    fn refuses_bad_parts_precisely() {
        let code = |path: &str| parse(path).unwrap_err().code();
        assert_eq!(code("/v2/UPPER/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/../etc/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/a/%2e%2e/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/a//b/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/a/blobs/sha256:zz"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/blobs/md5:abc"), "DIGEST_INVALID");
        assert_eq!(
            code("/v2/a/blobs/uploads/not-a-uuid"),
            "BLOB_UPLOAD_UNKNOWN"
        );
        assert_eq!(code("/v2/a/manifests/-bad"), "MANIFEST_UNKNOWN");
        assert_eq!(code("/v2/a/manifests/sha256:1"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/whatever/x"), "UNSUPPORTED");
        assert_eq!(code("/v2/a"), "UNSUPPORTED");
        let put = Endpoint::parse(&Method::PUT, "/v2/a/manifests/-bad")
            .unwrap()
            .unwrap_err();
        assert_eq!(put.code(), "MANIFEST_INVALID");
        assert!(Endpoint::parse(&Method::GET, "/v1/x").is_none());
        assert!(Endpoint::parse(&Method::GET, "/v2x").is_none());
    }

    #[test]
    fn access_needed() {
        let e = parse("/v2/a/manifests/latest").unwrap();
        assert_eq!(e.access(&Method::GET).unwrap().1, Action::Pull);
        assert_eq!(e.access(&Method::PUT).unwrap().1, Action::Push);
        assert_eq!(e.access(&Method::DELETE).unwrap().1, Action::Delete);
        let u = parse("/v2/a/blobs/uploads/").unwrap();
        assert_eq!(u.access(&Method::POST).unwrap().1, Action::Push);
        assert!(
            parse("/v2/_catalog")
                .unwrap()
                .access(&Method::GET)
                .is_none()
        );
    }
}
