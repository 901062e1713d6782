//! Listing endpoints: tags, catalog, referrers.

use auth::{Grant, Pull, Viewer};
use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};
use oci::Digest;
use oci::media_type::OCI_IMAGE_INDEX;
use registry::Page;
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;
use crate::headers::{OCI_FILTERS_APPLIED, link_next};
use crate::query::{Query, encode};

fn page(query: &Query) -> Result<Page, ApiError> {
    Ok(Page {
        n: query.page_size()?,
        last: query.get("last").map(str::to_owned),
    })
}

fn json_response(
    content_type: &'static str,
    body: &impl Serialize,
    next: Option<String>,
    extra: Option<(http::HeaderName, &'static str)>,
) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(body).map_err(ApiError::internal)?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(url) = next {
        response = response.header(header::LINK, link_next(&url));
    }
    if let Some((name, value)) = extra {
        response = response.header(name, value);
    }
    response.body(Body::from(body)).map_err(ApiError::internal)
}

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

pub async fn tags(
    state: &AppState,
    grant: Grant<Pull>,
    query: &Query,
) -> Result<Response, ApiError> {
    let page = page(query)?;
    let result = state.registry.list_tags(&grant, &page).await?;
    let repo = grant.repository();
    let next = result.next_last.map(|last| {
        let n = page.n.unwrap_or(result.tags.len() as u32).to_string();
        format!(
            "/v2/{repo}/tags/list?{}",
            encode(&[("n", &n), ("last", &last)])
        )
    });
    let body = TagList {
        name: repo.as_str(),
        tags: result.tags.iter().map(|t| t.as_str()).collect(),
    };
    json_response("application/json", &body, next, None)
}

#[derive(Serialize)]
struct Catalog<'a> {
    repositories: Vec<&'a str>,
}

pub async fn catalog(
    state: &AppState,
    viewer: &Viewer,
    query: &Query,
) -> Result<Response, ApiError> {
    let page = page(query)?;
    let (repositories, next_last) = state.registry.catalog(viewer, &page).await?;
    let next = next_last.map(|last| {
        let n = page.n.unwrap_or(repositories.len() as u32).to_string();
        format!("/v2/_catalog?{}", encode(&[("n", &n), ("last", &last)]))
    });
    let body = Catalog {
        repositories: repositories.iter().map(|r| r.as_str()).collect(),
    };
    json_response("application/json", &body, next, None)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersIndex {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<ReferrerDescriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<serde_json::Value>,
}

/// The referrers list is an image index; `last` continues a paged list.
pub async fn referrers(
    state: &AppState,
    grant: Grant<Pull>,
    subject: Digest,
    query: &Query,
) -> Result<Response, ApiError> {
    let artifact_type = query.get("artifactType").filter(|t| !t.is_empty());
    let after = query
        .get("last")
        .map(|l| {
            Digest::parse(l)
                .map_err(|e| ApiError::digest_invalid(format!("query parameter last: {e}")))
        })
        .transpose()?;
    let page = state
        .registry
        .referrers(&grant, &subject, artifact_type, after.as_ref())
        .await?;
    let manifests = page
        .referrers
        .into_iter()
        .map(|r| {
            let annotations = r
                .annotations
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(ApiError::internal)?;
            Ok(ReferrerDescriptor {
                media_type: r.media_type,
                digest: r.digest.to_string(),
                size: r.size,
                artifact_type: r.artifact_type,
                annotations,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let next = page.next.map(|last| {
        let mut pairs = vec![("last", last.as_str())];
        if let Some(t) = artifact_type {
            pairs.push(("artifactType", t));
        }
        format!(
            "/v2/{}/referrers/{subject}?{}",
            grant.repository(),
            encode(&pairs)
        )
    });
    let index = ReferrersIndex {
        schema_version: 2,
        media_type: OCI_IMAGE_INDEX,
        manifests,
    };
    let filters = artifact_type.map(|_| (OCI_FILTERS_APPLIED, "artifactType"));
    json_response(OCI_IMAGE_INDEX, &index, next, filters)
}
