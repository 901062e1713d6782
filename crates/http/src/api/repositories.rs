//! Repositories, artifacts and tags through the management API. A
//! repository is named within its project (`app` for `team/app`; a name with
//! more components is sent with `%2F` for `/`, as in `tools%2Fapp`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use identity::Caller;
use metadata::{ArtifactFilter, RepositoryFilter};
use oci::{Digest, Reference, RepoName, Tag};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::plumbing::{
    Errors, Failure, Params, PathParams, Who, json, no_content, paged_query, time,
};
use crate::AppState;

/// The full name of `repository` within `project`.
fn full_name(project: &str, repository: &str) -> Result<RepoName, Failure> {
    identity::manage::check_relative_repository(repository)?;
    RepoName::parse(&format!("{project}/{repository}"))
        .map_err(|e| Failure::invalid(format!("invalid repository {repository:?}: {e}")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryView {
    /// The full name, as clients pull it (`team/app`).
    pub name: String,
    /// The name within the project (`app`), as these paths take it.
    pub name_in_project: String,
    pub artifact_count: u64,
    pub tag_count: u64,
    pub created_at: String,
    pub pushed_at: Option<String>,
    pub pulled_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactView {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// The manifest and what it references directly (config and layers, or
    /// child manifests), in bytes.
    pub size: u64,
    /// The artifact this one refers to (signatures, SBOMs, attestations).
    pub subject: Option<String>,
    pub tags: Vec<String>,
    pub pushed_at: String,
    /// Pull times are recorded every few seconds.
    pub pulled_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagView {
    pub name: String,
    pub digest: String,
    pub pushed_at: String,
    pub pulled_at: Option<String>,
}

super::types::list_type!(RepositoryList, RepositoryView);
super::types::list_type!(ArtifactList, ArtifactView);
super::types::list_type!(TagList, TagView);

paged_query!(RepositoryQuery, sort = r"^-?(?:name|created_at|pushed_at|pulled_at|artifact_count)$", sort_doc = " `name`, `created_at`, `pushed_at`, `pulled_at`, `artifact_count`, or `-field` for descending order.", {
    /// Names containing this.
    q: Option<String>,
});

/// Which kinds of artifact to list.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tagged {
    /// Only artifacts with at least one tag.
    Yes,
    /// Only untagged artifacts (signatures, SBOMs, platform images of an index).
    No,
}

paged_query!(ArtifactQuery, sort = r"^-?(?:pushed_at|pulled_at|size|digest)$", sort_doc = " `pushed_at`, `pulled_at`, `size`, `digest`, or `-field` for descending order (default: newest push first).", {
    tagged: Option<Tagged>,
    media_type: Option<String>,
    artifact_type: Option<String>,
});

paged_query!(TagQuery, sort = r"^-?(?:name|pushed_at|pulled_at|semver)$", sort_doc = " `name`, `pushed_at`, `pulled_at`, `semver` (semantic-version precedence; tags that are not versions come last), or `-field` for descending order.", {
    /// Tags containing this.
    q: Option<String>,
    /// Only tags matching this glob (`v1.*`), or regular expression after `re:`.
    #[param(min_length = 1)]
    pattern: Option<String>,
});

/// The repositories of a project the caller may read. Sortable by `name`, `created_at`, `pushed_at`, `pulled_at`, `artifact_count`.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories", tag = "repositories",
    params(("project" = String, Path), RepositoryQuery), security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = RepositoryList), Errors))]
pub async fn list_repositories(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    Params(q): Params<RepositoryQuery>,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let only = state
        .identity
        .readable_repositories(&actor, &project)
        .await?;
    let filter = RepositoryFilter { name: q.q, only };
    let listed = state
        .registry
        .list_repositories(&project, &filter, &paging.sort()?, page)
        .await?;
    let view = |r: metadata::RepositoryInfo| RepositoryView {
        name_in_project: match r.name.name_in_project() {
            // A repository named like its project (`app` in `app`).
            "" => r.name.as_str().to_owned(),
            within => within.to_owned(),
        },
        name: r.name.as_str().to_owned(),
        artifact_count: r.artifact_count,
        tag_count: r.tag_count,
        created_at: time(r.created_at_ms),
        pushed_at: r.pushed_at_ms.map(time),
        pulled_at: r.pulled_at_ms.map(time),
    };
    Ok(json(
        StatusCode::OK,
        &RepositoryList::new(listed, number, size, view),
    ))
}

/// The artifacts of a repository with their tags, size, push and pull times.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts", tag = "repositories",
    params(("project" = String, Path), ("repository" = String, Path, description = "The name within the project; `/` as `%2F`"), ArtifactQuery),
    security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = ArtifactList), Errors))]
pub async fn list_artifacts(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, repository)): PathParams<(String, String)>,
    Params(q): Params<ArtifactQuery>,
) -> Result<Response, Failure> {
    let repo = full_name(&project, &repository)?;
    state.identity.check_readable(&actor, &repo).await?;
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let filter = ArtifactFilter {
        tagged: q.tagged.map(|t| matches!(t, Tagged::Yes)),
        media_type: q.media_type,
        artifact_type: q.artifact_type,
    };
    let listed = state
        .registry
        .list_artifacts(&repo, &filter, &paging.sort()?, page)
        .await?;
    let view = |a: metadata::ArtifactInfo| ArtifactView {
        digest: a.digest.as_str().to_owned(),
        media_type: a.media_type,
        artifact_type: a.artifact_type,
        size: a.size,
        subject: a.subject.map(|s| s.as_str().to_owned()),
        tags: a.tags,
        pushed_at: time(a.pushed_at_ms),
        pulled_at: a.pulled_at_ms.map(time),
    };
    Ok(json(
        StatusCode::OK,
        &ArtifactList::new(listed, number, size, view),
    ))
}

/// The tags of a repository with their artifacts and times.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/tags", tag = "repositories",
    params(("project" = String, Path), ("repository" = String, Path, description = "The name within the project; `/` as `%2F`"), TagQuery),
    security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = TagList), Errors))]
pub async fn list_tags(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, repository)): PathParams<(String, String)>,
    Params(q): Params<TagQuery>,
) -> Result<Response, Failure> {
    let repo = full_name(&project, &repository)?;
    state.identity.check_readable(&actor, &repo).await?;
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let pattern = q
        .pattern
        .as_deref()
        .map(|p| policy::Pattern::parse_for(p, policy::PatternTarget::Tag))
        .transpose()
        .map_err(|e| Failure::invalid(format!("pattern: {e}")))?;
    let listed = state
        .registry
        .list_tag_info(
            &repo,
            q.q.as_deref(),
            pattern.as_ref(),
            &paging.sort()?,
            page,
        )
        .await?;
    let view = |t: metadata::TagInfo| TagView {
        name: t.name,
        digest: t.digest.as_str().to_owned(),
        pushed_at: time(t.pushed_at_ms),
        pulled_at: t.pulled_at_ms.map(time),
    };
    Ok(json(
        StatusCode::OK,
        &TagList::new(listed, number, size, view),
    ))
}

/// Deletes `reference` (a digest: the artifact with its tags; a tag: only
/// the tag) as the actor, with the registry's own checks.
async fn delete(
    state: &AppState,
    actor: identity::manage::Actor,
    repo: RepoName,
    reference: Reference,
) -> Result<Response, Failure> {
    let caller = Caller::Subject(Arc::new(actor.subject.clone()));
    let headers = http::HeaderMap::new();
    let grant = crate::access::grant::<auth::Delete>(state, &caller, &headers, &repo, None).await?;
    state.registry.delete_manifest(&grant, &reference).await?;
    let (kind, resource) = match &reference {
        Reference::Digest(d) => ("artifact", format!("{repo}@{d}")),
        Reference::Tag(t) => ("tag", format!("{repo}:{t}")),
    };
    state
        .identity
        .record_deletion(&actor, kind, &resource, repo.project());
    Ok(no_content())
}

/// Deletes an artifact and every tag pointing at it (maintainers and up).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{digest}", tag = "repositories",
    params(("project" = String, Path), ("repository" = String, Path, description = "The name within the project; `/` as `%2F`"),
        ("digest" = String, Path, pattern = r"^sha(?:256:[a-f0-9]{64}|512:[a-f0-9]{128})$")),
    responses((status = 204), Errors))]
pub async fn delete_artifact(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, repository, digest)): PathParams<(String, String, String)>,
) -> Result<Response, Failure> {
    let repo = full_name(&project, &repository)?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| Failure::invalid(format!("invalid digest {digest:?}: {e}")))?;
    delete(&state, actor, repo, Reference::Digest(digest)).await
}

/// Deletes a tag; its artifact stays (maintainers and up).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}", tag = "repositories",
    params(("project" = String, Path), ("repository" = String, Path, description = "The name within the project; `/` as `%2F`"),
        ("tag" = String, Path, pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")),
    responses((status = 204), Errors))]
pub async fn delete_tag(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, repository, tag)): PathParams<(String, String, String)>,
) -> Result<Response, Failure> {
    let repo = full_name(&project, &repository)?;
    let tag = Tag::parse(&tag).map_err(|e| Failure::invalid(format!("invalid tag: {e}")))?;
    delete(&state, actor, repo, Reference::Tag(tag)).await
}
