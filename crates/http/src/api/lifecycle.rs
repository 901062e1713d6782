//! Garbage collection, integrity checks, retention, immutability and quotas
//! through the management API. Runs start at once and answer `202` with the
//! run's record; poll the run until its `status` is no longer `running`.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use identity::Identity;
use jobs::{GcRequest, JobError};
use metadata::{Run, RunKind};
use policy::immutability::ImmutabilityRules;
use policy::retention::Policy;
use policy::schedule::Schedule;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::plumbing::{
    Errors, Failure, JsonBody, Params, PathParams, Who, json, no_content, paged_query, time,
};
use crate::AppState;

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(m) | JobError::Conflict(m) => {
                Failure::new(StatusCode::CONFLICT, "CONFLICT", m)
            }
            JobError::NotFound(m) => Failure::not_found(m),
            JobError::Invalid(m) => Failure::invalid(m),
            JobError::Registry(e) => e.into(),
        }
    }
}

/// A garbage collection, retention or integrity run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    /// `gc`, `retention` or `integrity`.
    pub kind: String,
    pub project: Option<String>,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub dry_run: bool,
    pub requested_by: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Counts and bytes, by name.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// What was (or, dry, would be) deleted and why; problems found. Empty in listings.
    #[schema(value_type = Vec<Object>)]
    pub items: serde_json::Value,
    pub error: Option<String>,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            id: r.id,
            kind: r.kind.as_str().to_owned(),
            project: r.project,
            trigger: r.trigger,
            dry_run: r.dry_run,
            requested_by: r.requested_by,
            status: r.status,
            started_at: time(r.started_at_ms),
            finished_at: r.finished_at_ms.map(time),
            summary: serde_json::from_str(&r.summary).unwrap_or_default(),
            items: serde_json::from_str(&r.items).unwrap_or_default(),
            error: r.error,
        }
    }
}

super::types::list_type!(RunList, RunView);

paged_query!(
    RunQuery,
    sort = r"^$",
    sort_doc = " Runs are listed newest first.",
    {}
);

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcRunRequest {
    /// Report what would be removed without removing it.
    #[serde(default)]
    pub dry_run: bool,
    /// Also delete untagged manifests nothing kept refers to; unset: the
    /// configured default.
    pub delete_untagged: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Report what would be deleted without deleting it.
    #[serde(default)]
    pub dry_run: bool,
}

fn accepted(run: Run) -> Response {
    json(StatusCode::ACCEPTED, &RunView::from(run))
}

async fn list_runs(
    state: &AppState,
    kind: RunKind,
    project: Option<&str>,
    q: RunQuery,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    if paging.sort.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(Failure::invalid(
            "runs are listed newest first; `sort` is not supported",
        ));
    }
    let listed = state.lifecycle.runs(kind, project, page).await?;
    Ok(json(
        StatusCode::OK,
        &RunList::new(listed, number, size, RunView::from),
    ))
}

async fn one_run(
    state: &AppState,
    kind: RunKind,
    project: Option<&str>,
    id: i64,
) -> Result<Response, Failure> {
    let run = state.lifecycle.run(id).await?;
    if run.kind != kind || run.project.as_deref() != project {
        return Err(Failure::not_found(format!("run {id} does not exist here")));
    }
    Ok(json(StatusCode::OK, &RunView::from(run)))
}

/// Starts a garbage collection (system administrators).
#[utoipa::path(post, path = "/api/v1/system/gc", tag = "lifecycle", request_body = GcRunRequest,
    responses((status = 202, body = RunView), Errors))]
pub async fn start_gc(
    State(state): State<AppState>,
    Who(actor): Who,
    JsonBody(request): JsonBody<GcRunRequest>,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    let run = state
        .lifecycle
        .start_gc(
            Identity::actor_name(&actor),
            "manual",
            GcRequest {
                dry_run: request.dry_run,
                delete_untagged: request.delete_untagged,
            },
        )
        .await?;
    Ok(accepted(run))
}

/// Garbage collection runs, newest first.
#[utoipa::path(get, path = "/api/v1/system/gc/runs", tag = "lifecycle", params(RunQuery),
    responses((status = 200, body = RunList), Errors))]
pub async fn gc_runs(
    State(state): State<AppState>,
    Who(actor): Who,
    Params(q): Params<RunQuery>,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    list_runs(&state, RunKind::Gc, None, q).await
}

/// One garbage collection run, with the untagged manifests it deleted.
#[utoipa::path(get, path = "/api/v1/system/gc/runs/{id}", tag = "lifecycle", params(("id" = i64, Path)),
    responses((status = 200, body = RunView), Errors))]
pub async fn gc_run(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(id): PathParams<i64>,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    one_run(&state, RunKind::Gc, None, id).await
}

/// Starts an integrity check of every stored blob (system administrators).
#[utoipa::path(post, path = "/api/v1/system/integrity", tag = "lifecycle",
    responses((status = 202, body = RunView), Errors))]
pub async fn start_integrity(
    State(state): State<AppState>,
    Who(actor): Who,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    let run = state
        .lifecycle
        .start_integrity(Identity::actor_name(&actor), "manual")
        .await?;
    Ok(accepted(run))
}

/// Integrity check runs, newest first.
#[utoipa::path(get, path = "/api/v1/system/integrity/runs", tag = "lifecycle", params(RunQuery),
    responses((status = 200, body = RunList), Errors))]
pub async fn integrity_runs(
    State(state): State<AppState>,
    Who(actor): Who,
    Params(q): Params<RunQuery>,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    list_runs(&state, RunKind::Integrity, None, q).await
}

/// One integrity check, with the missing and corrupt blobs it found.
#[utoipa::path(get, path = "/api/v1/system/integrity/runs/{id}", tag = "lifecycle", params(("id" = i64, Path)),
    responses((status = 200, body = RunView), Errors))]
pub async fn integrity_run(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(id): PathParams<i64>,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    one_run(&state, RunKind::Integrity, None, id).await
}

/// A project's quotas and usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaView {
    /// Bytes; `null`: unlimited.
    pub storage_limit: Option<u64>,
    /// Artifacts; `null`: unlimited.
    pub artifact_limit: Option<u64>,
    /// Percentage of a limit at which a `quota.warning` event is recorded.
    pub warn_percent: u32,
    pub usage: UsageView,
}

/// What a project uses: each distinct blob and manifest of its
/// repositories once, and its artifacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub storage_bytes: u64,
    pub artifacts: u64,
}

/// Quotas to set; an absent field keeps its value, `null` lifts a limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub storage_limit: Option<Option<u64>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub artifact_limit: Option<Option<u64>>,
    #[schema(minimum = 1, maximum = 100)]
    pub warn_percent: Option<u32>,
}

/// `absent` → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(d).map(Some)
    }
}

async fn settings(state: &AppState, project: &str) -> Result<metadata::ProjectSettings, Failure> {
    state
        .registry
        .project_settings(project)
        .await?
        .ok_or_else(|| Failure::not_found(format!("project {project:?} does not exist")))
}

/// A project's quotas and usage (anyone who can see the project).
#[utoipa::path(get, path = "/api/v1/projects/{project}/quota", tag = "lifecycle", params(("project" = String, Path)), security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = QuotaView), Errors))]
pub async fn get_quota(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    state
        .identity
        .check_project_visible(&actor, &project)
        .await?;
    quota_view(&state, &project).await
}

async fn quota_view(state: &AppState, project: &str) -> Result<Response, Failure> {
    let s = settings(state, project).await?;
    let usage = state
        .registry
        .project_usage(project)
        .await?
        .unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &QuotaView {
            storage_limit: s.quota_bytes,
            artifact_limit: s.quota_artifacts,
            warn_percent: s.quota_warn_percent,
            usage: UsageView {
                storage_bytes: usage.bytes,
                artifacts: usage.artifacts,
            },
        },
    ))
}

/// Sets a project's quotas (system administrators).
#[utoipa::path(put, path = "/api/v1/projects/{project}/quota", tag = "lifecycle", params(("project" = String, Path)),
    request_body = QuotaSpec, responses((status = 200, body = QuotaView), Errors))]
pub async fn set_quota(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(spec): JsonBody<QuotaSpec>,
) -> Result<Response, Failure> {
    state.identity.check_system_admin(&actor)?;
    let mut s = settings(&state, &project).await?;
    if let Some(limit) = spec.storage_limit {
        s.quota_bytes = limit;
    }
    if let Some(limit) = spec.artifact_limit {
        s.quota_artifacts = limit;
    }
    if let Some(percent) = spec.warn_percent {
        if !(1..=100).contains(&percent) {
            return Err(Failure::invalid("warn_percent must be between 1 and 100"));
        }
        s.quota_warn_percent = percent;
    }
    if s.quota_bytes.is_some_and(|v| v > i64::MAX as u64)
        || s.quota_artifacts.is_some_and(|v| v > i64::MAX as u64)
    {
        return Err(Failure::invalid(
            "a limit must be at most 9223372036854775807",
        ));
    }
    state.registry.set_project_settings(&s).await?;
    state.identity.record_change(
        &actor,
        "update",
        "quota",
        &project,
        Some(&project),
        format!(
            "storage_limit={:?} artifact_limit={:?} warn_percent={}",
            s.quota_bytes, s.quota_artifacts, s.quota_warn_percent
        ),
    );
    quota_view(&state, &project).await
}

/// A project's immutability rules (anyone who can see the project).
#[utoipa::path(get, path = "/api/v1/projects/{project}/immutability", tag = "lifecycle", params(("project" = String, Path)), security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = ImmutabilityRules), Errors))]
pub async fn get_immutability(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    state
        .identity
        .check_project_visible(&actor, &project)
        .await?;
    let s = settings(&state, &project).await?;
    let rules: ImmutabilityRules = registry::rules::parse_immutability(&s.immutability)?;
    Ok(json(StatusCode::OK, &rules))
}

/// Replaces a project's immutability rules (project admins).
#[utoipa::path(put, path = "/api/v1/projects/{project}/immutability", tag = "lifecycle", params(("project" = String, Path)),
    request_body = ImmutabilityRules, responses((status = 200, body = ImmutabilityRules), Errors))]
pub async fn set_immutability(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(rules): JsonBody<ImmutabilityRules>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    rules
        .validate()
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let mut s = settings(&state, &project).await?;
    s.immutability = serde_json::to_string(&rules).map_err(|e| Failure::invalid(e.to_string()))?;
    state.registry.set_project_settings(&s).await?;
    state.identity.record_change(
        &actor,
        "update",
        "immutability",
        &project,
        Some(&project),
        s.immutability.clone(),
    );
    Ok(json(StatusCode::OK, &rules))
}

/// A retention policy and when it runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    pub policy: Policy,
    /// Cron expression (UTC, five fields or `@daily`...); `null`: manual runs only.
    #[serde(default)]
    pub schedule: Option<String>,
}

/// A project's retention policy (anyone who can see the project).
#[utoipa::path(get, path = "/api/v1/projects/{project}/retention", tag = "lifecycle", params(("project" = String, Path)), security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = RetentionSpec), Errors))]
pub async fn get_retention(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    state
        .identity
        .check_project_visible(&actor, &project)
        .await?;
    let s = settings(&state, &project).await?;
    let Some(policy) = s.retention else {
        return Err(Failure::not_found(format!(
            "project {project:?} has no retention policy"
        )));
    };
    let policy: Policy = serde_json::from_str(&policy).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("stored retention policy: {e}"),
        )
    })?;
    Ok(json(
        StatusCode::OK,
        &RetentionSpec {
            policy,
            schedule: s.retention_schedule,
        },
    ))
}

/// Sets a project's retention policy and schedule (project admins).
#[utoipa::path(put, path = "/api/v1/projects/{project}/retention", tag = "lifecycle", params(("project" = String, Path)),
    request_body = RetentionSpec, responses((status = 200, body = RetentionSpec), Errors))]
pub async fn set_retention(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(spec): JsonBody<RetentionSpec>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    spec.policy
        .validate()
        .map_err(|e| Failure::invalid(e.to_string()))?;
    if let Some(schedule) = &spec.schedule {
        Schedule::parse(schedule).map_err(|e| Failure::invalid(format!("schedule: {e}")))?;
    }
    let mut s = settings(&state, &project).await?;
    s.retention =
        Some(serde_json::to_string(&spec.policy).map_err(|e| Failure::invalid(e.to_string()))?);
    s.retention_schedule = spec.schedule.clone();
    state.registry.set_project_settings(&s).await?;
    state.identity.record_change(
        &actor,
        "update",
        "retention",
        &project,
        Some(&project),
        format!(
            "{} (schedule {:?})",
            s.retention.clone().unwrap_or_default(),
            s.retention_schedule
        ),
    );
    Ok(json(StatusCode::OK, &spec))
}

/// Removes a project's retention policy (project admins).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/retention", tag = "lifecycle", params(("project" = String, Path)),
    responses((status = 204), Errors))]
pub async fn delete_retention(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let mut s = settings(&state, &project).await?;
    s.retention = None;
    s.retention_schedule = None;
    state.registry.set_project_settings(&s).await?;
    state.identity.record_change(
        &actor,
        "delete",
        "retention",
        &project,
        Some(&project),
        String::new(),
    );
    Ok(no_content())
}

/// Runs the project's retention policy now (project admins); with
/// `dry_run`, the run's items list what would be deleted and which rule decided.
#[utoipa::path(post, path = "/api/v1/projects/{project}/retention/runs", tag = "lifecycle", params(("project" = String, Path)),
    request_body = RunRequest, responses((status = 202, body = RunView), Errors))]
pub async fn start_retention(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let run = state
        .lifecycle
        .start_retention(
            &project,
            Identity::actor_name(&actor),
            "manual",
            request.dry_run,
        )
        .await?;
    Ok(accepted(run))
}

/// A project's retention runs, newest first (project admins).
#[utoipa::path(get, path = "/api/v1/projects/{project}/retention/runs", tag = "lifecycle", params(("project" = String, Path), RunQuery),
    responses((status = 200, body = RunList), Errors))]
pub async fn retention_runs(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    Params(q): Params<RunQuery>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    list_runs(&state, RunKind::Retention, Some(&project), q).await
}

/// One retention run, with every deletion (or, dry, would-be deletion) and its reason.
#[utoipa::path(get, path = "/api/v1/projects/{project}/retention/runs/{id}", tag = "lifecycle",
    params(("project" = String, Path), ("id" = i64, Path)), responses((status = 200, body = RunView), Errors))]
pub async fn retention_run(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    one_run(&state, RunKind::Retention, Some(&project), id).await
}
