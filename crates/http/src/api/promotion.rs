//! Moving images between environments through the management API:
//! promotion (a server-side copy with its signatures and SBOMs, no blob
//! copied), and a tag's history with rollback to an earlier digest.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use identity::Caller;
use oci::{Digest, Reference, RepoName, Tag};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::plumbing::{Errors, Failure, JsonBody, Params, PathParams, Who, json, time};
use crate::AppState;

/// `project/repository:tag` or `project/repository@digest`.
fn parse_reference(what: &str, s: &str) -> Result<(RepoName, Option<Reference>), Failure> {
    let invalid = |e: String| {
        Failure::invalid(format!(
            "{what}: {s:?} is not REPOSITORY[:TAG|@DIGEST]: {e}"
        ))
    };
    let (name, reference) = if let Some((name, digest)) = s.split_once('@') {
        let digest: Digest = digest.parse().map_err(|e| invalid(format!("{e}")))?;
        (name, Some(Reference::Digest(digest)))
    } else {
        match s.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => {
                let tag = Tag::parse(tag).map_err(|e| invalid(e.to_string()))?;
                (name, Some(Reference::Tag(tag)))
            }
            _ => (s, None),
        }
    };
    let repo = RepoName::parse(name).map_err(|e| invalid(e.to_string()))?;
    Ok((repo, reference))
}

/// A promotion: copy `from` to `to`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The artifact: `dev/app:1.2.3` or `dev/app@sha256:...`.
    #[schema(min_length = 3)]
    pub from: String,
    /// Where it goes: `prod/app:1.2.3`; `prod/app` keeps the source's tag
    /// (or sets none, for a source named by digest).
    #[schema(min_length = 3)]
    pub to: String,
}

/// What a promotion copied.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromoteView {
    pub from: String,
    pub to: String,
    /// The artifact's digest, the same in both repositories.
    pub digest: String,
    pub media_type: String,
    /// Manifests stored in the target: the artifact, its children, its referrers.
    pub manifests: usize,
    /// Of them, referrers (signatures, SBOMs, attestations).
    pub referrers: usize,
    /// Blobs linked to the target; none is copied.
    pub blobs: usize,
}

/// Copies an artifact to another repository or project and tags it there,
/// with its signatures and SBOMs, without copying a blob (the caller must
/// be able to pull the source and push the target).
#[utoipa::path(post, path = "/api/v1/promote", tag = "promotion",
    request_body = PromoteRequest, responses((status = 201, body = PromoteView), Errors))]
pub async fn promote(
    State(state): State<AppState>,
    Who(actor): Who,
    JsonBody(request): JsonBody<PromoteRequest>,
) -> Result<Response, Failure> {
    let (source, reference) = parse_reference("from", &request.from)?;
    let Some(reference) = reference else {
        return Err(Failure::invalid(
            "from: name the artifact with :TAG or @DIGEST",
        ));
    };
    let (target, target_reference) = parse_reference("to", &request.to)?;
    let tag = match (target_reference, &reference) {
        (Some(Reference::Tag(t)), _) => Some(t),
        (Some(Reference::Digest(_)), _) => {
            return Err(Failure::invalid(
                "to: name the target repository and, if wanted, a tag; not a digest",
            ));
        }
        (None, Reference::Tag(t)) => Some(t.clone()),
        (None, Reference::Digest(_)) => None,
    };
    if source == target && tag.is_none() {
        return Err(Failure::invalid(
            "from and to are the same repository, and no tag is set",
        ));
    }
    let caller = Caller::Subject(Arc::new(actor.subject.clone()));
    let headers = http::HeaderMap::new();
    let pull = crate::access::grant::<auth::Pull>(&state, &caller, &headers, &source, None).await?;
    let push =
        crate::access::grant::<auth::Push>(&state, &caller, &headers, &target, Some(&source))
            .await?;
    let promoted = state
        .registry
        .promote(&pull, &reference, &push, tag.as_ref())
        .await?;
    let to = match &tag {
        Some(t) => format!("{target}:{t}"),
        None => format!("{target}@{}", promoted.digest),
    };
    state.identity.record_change(
        &actor,
        "promote",
        "artifact",
        &to,
        Some(target.project()),
        format!(
            "from {} ({}; {} manifests, {} referrers, {} blobs linked)",
            request.from, promoted.digest, promoted.manifests, promoted.referrers, promoted.blobs
        ),
    );
    Ok(json(
        StatusCode::CREATED,
        &PromoteView {
            from: request.from,
            to,
            digest: promoted.digest.to_string(),
            media_type: promoted.media_type,
            manifests: promoted.manifests,
            referrers: promoted.referrers,
            blobs: promoted.blobs,
        },
    ))
}

/// The full name of `repository` within `project`, and the tag.
fn tag_path(project: &str, repository: &str, tag: &str) -> Result<(RepoName, Tag), Failure> {
    identity::manage::check_relative_repository(repository)?;
    let repo = RepoName::parse(&format!("{project}/{repository}"))
        .map_err(|e| Failure::invalid(format!("invalid repository {repository:?}: {e}")))?;
    let tag = Tag::parse(tag).map_err(|e| Failure::invalid(format!("invalid tag: {e}")))?;
    Ok((repo, tag))
}

/// One movement of a tag.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagMovementView {
    pub id: i64,
    /// `created`, `moved` or `deleted`.
    pub action: String,
    /// Where the tag pointed after the movement (for `deleted`: before it).
    pub digest: Option<String>,
    /// For `moved`: where it pointed before.
    pub previous_digest: Option<String>,
    pub actor: String,
    pub at: String,
    /// Whether the repository still holds `digest`, so a rollback can go there.
    pub still_stored: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagHistory {
    /// Newest first.
    pub items: Vec<TagMovementView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next_before: Option<i64>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only movements with a smaller id.
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Entries per page, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Every movement of a tag, newest first, with who made it and when.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}/history", tag = "promotion",
    params(("project" = String, Path), ("repository" = String, Path, description = "The name within the project; `/` as `%2F`"),
        ("tag" = String, Path, pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"), HistoryQuery),
    security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = TagHistory), Errors))]
pub async fn tag_history(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, repository, tag)): PathParams<(String, String, String)>,
    Params(q): Params<HistoryQuery>,
) -> Result<Response, Failure> {
    let (repo, tag) = tag_path(&project, &repository, &tag)?;
    let limit = q.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(Failure::invalid("limit must be between 1 and 100"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(Failure::invalid("before must be at least 1"));
    }
    let caller = Caller::Subject(Arc::new(actor.subject.clone()));
    let grant =
        crate::access::grant::<auth::Pull>(&state, &caller, &http::HeaderMap::new(), &repo, None)
            .await?;
    let movements = state
        .registry
        .tag_history(&grant, &tag, q.before, limit)
        .await?;
    let next_before = (movements.len() == limit as usize)
        .then(|| movements.last().map(|m| m.id))
        .flatten();
    let items = movements
        .into_iter()
        .map(|m| TagMovementView {
            id: m.id,
            action: m.action.to_owned(),
            digest: m.digest.map(|d| d.to_string()),
            previous_digest: m.previous_digest.map(|d| d.to_string()),
            actor: m.actor,
            at: time(m.at_ms),
            still_stored: m.still_stored,
        })
        .collect();
    Ok(json(StatusCode::OK, &TagHistory { items, next_before }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The digest to point the tag at; absent: the most recent one it
    /// pointed at before its current one that is still stored.
    #[serde(default)]
    #[schema(pattern = r"^sha(?:256:[a-f0-9]{64}|512:[a-f0-9]{128})$")]
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RollbackView {
    /// Where the tag pointed before (`null`: it had been deleted).
    pub from: Option<String>,
    pub to: String,
}

/// Points a tag back at an earlier digest still stored (pushers).
#[utoipa::path(post, path = "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}/rollback", tag = "promotion",
    params(("project" = String, Path), ("repository" = String, Path, description = "The name within the project; `/` as `%2F`"),
        ("tag" = String, Path, pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")),
    request_body = RollbackRequest, responses((status = 200, body = RollbackView), Errors))]
pub async fn rollback(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, repository, tag)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<RollbackRequest>,
) -> Result<Response, Failure> {
    let (repo, tag) = tag_path(&project, &repository, &tag)?;
    let to: Option<Digest> = request
        .to
        .as_deref()
        .map(|d| {
            d.parse()
                .map_err(|e| Failure::invalid(format!("to: invalid digest {d:?}: {e}")))
        })
        .transpose()?;
    let caller = Caller::Subject(Arc::new(actor.subject.clone()));
    let grant =
        crate::access::grant::<auth::Push>(&state, &caller, &http::HeaderMap::new(), &repo, None)
            .await?;
    let done = state
        .registry
        .rollback_tag(&grant, &tag, to.as_ref())
        .await?;
    state.identity.record_change(
        &actor,
        "rollback",
        "tag",
        &format!("{repo}:{tag}"),
        Some(repo.project()),
        format!(
            "from {} to {}",
            done.from
                .as_ref()
                .map_or_else(|| "(deleted)".to_owned(), ToString::to_string),
            done.to
        ),
    );
    Ok(json(
        StatusCode::OK,
        &RollbackView {
            from: done.from.map(|d| d.to_string()),
            to: done.to.to_string(),
        },
    ))
}
