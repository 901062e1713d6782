//! The management REST API under `/api/v1`: projects, members, users,
//! robots, repositories with their artifacts and tags, the audit log and
//! system information, described by the OpenAPI 3
//! document at `/api/v1/openapi.json`, which is generated from these
//! handlers and types (utoipa), so it cannot drift from them.
//!
//! Conventions: JSON in and out; errors are `{"errors": [{"code",
//! "message"}]}`; every list takes `page`, `page_size` and `sort` (`field` or
//! `-field`) plus its own filters and answers `{"items", "total", "page",
//! "page_size"}`; times are RFC 3339 in UTC. Callers authenticate with Basic
//! credentials (users and robots) or a token from `/auth/token`.
//!
//! Handlers only translate: every rule (who may, what is valid) lives in
//! `identity::manage`.

mod lifecycle;
mod plumbing;
mod promotion;
mod repositories;
mod types;
mod webhooks;

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post, put};
use http::StatusCode;
use identity::manage::{RobotSpec, UserSpec};
use metadata::identity::{
    AuditFilter, MemberFilter, MemberOf, NewMember, NewProject, ProjectFilter, ProjectPatch,
    RobotFilter, RobotPatch, UserFilter, UserPatch, UserSource,
};
use utoipa::OpenApi;

use crate::AppState;
use plumbing::{
    Errors, Failure, JsonBody, Params, PathParams, Who, json, no_content, paged_query, parse_time,
};
pub use types::*;

/// The `/api/v1` routes, relative to that prefix.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/systeminfo", get(system_info))
        .route("/system/signing-key/rotate", post(rotate_signing_key))
        .route("/users", get(list_users).post(create_user))
        .route("/users/current", get(current_user))
        .route(
            "/users/{name}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/users/{name}/password", put(change_password))
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{project}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route(
            "/projects/{project}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/projects/{project}/members/{id}",
            axum::routing::patch(update_member).delete(remove_member),
        )
        .route("/projects/{project}/audit-logs", get(project_audit))
        .route("/robots", get(list_robots).post(create_robot))
        .route(
            "/robots/{name}",
            get(get_robot).patch(update_robot).delete(delete_robot),
        )
        .route("/robots/{name}/secret", post(refresh_robot_secret))
        .route(
            "/projects/{project}/robots",
            get(list_project_robots).post(create_project_robot),
        )
        .route(
            "/projects/{project}/robots/{name}",
            get(get_project_robot)
                .patch(update_project_robot)
                .delete(delete_project_robot),
        )
        .route(
            "/projects/{project}/robots/{name}/secret",
            post(refresh_project_robot_secret),
        )
        .route("/audit-logs", get(list_audit))
        .route(
            "/projects/{project}/repositories",
            get(repositories::list_repositories),
        )
        .route(
            "/projects/{project}/repositories/{repository}/artifacts",
            get(repositories::list_artifacts),
        )
        .route(
            "/projects/{project}/repositories/{repository}/artifacts/{digest}",
            axum::routing::delete(repositories::delete_artifact),
        )
        .route(
            "/projects/{project}/repositories/{repository}/tags",
            get(repositories::list_tags),
        )
        .route(
            "/projects/{project}/repositories/{repository}/tags/{tag}",
            axum::routing::delete(repositories::delete_tag),
        )
        .route("/system/gc", post(lifecycle::start_gc))
        .route("/system/gc/runs", get(lifecycle::gc_runs))
        .route("/system/gc/runs/{id}", get(lifecycle::gc_run))
        .route("/system/integrity", post(lifecycle::start_integrity))
        .route("/system/integrity/runs", get(lifecycle::integrity_runs))
        .route("/system/integrity/runs/{id}", get(lifecycle::integrity_run))
        .route(
            "/projects/{project}/quota",
            get(lifecycle::get_quota).put(lifecycle::set_quota),
        )
        .route(
            "/projects/{project}/immutability",
            get(lifecycle::get_immutability).put(lifecycle::set_immutability),
        )
        .route(
            "/projects/{project}/retention",
            get(lifecycle::get_retention)
                .put(lifecycle::set_retention)
                .delete(lifecycle::delete_retention),
        )
        .route(
            "/projects/{project}/retention/runs",
            get(lifecycle::retention_runs).post(lifecycle::start_retention),
        )
        .route(
            "/projects/{project}/retention/runs/{id}",
            get(lifecycle::retention_run),
        )
        .route("/promote", post(promotion::promote))
        .route(
            "/projects/{project}/repositories/{repository}/tags/{tag}/history",
            get(promotion::tag_history),
        )
        .route(
            "/projects/{project}/repositories/{repository}/tags/{tag}/rollback",
            post(promotion::rollback),
        )
        .route(
            "/projects/{project}/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/projects/{project}/webhooks/{id}",
            get(webhooks::get_webhook)
                .put(webhooks::update_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route(
            "/projects/{project}/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route(
            "/projects/{project}/webhooks/{id}/deliveries/{delivery}",
            get(webhooks::get_delivery),
        )
        .route(
            "/projects/{project}/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .fallback(not_found)
}

async fn not_found() -> Failure {
    Failure::not_found("no such API endpoint; the OpenAPI document is at /api/v1/openapi.json")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wharf management API",
        description = "Projects, members, users, robot accounts, the audit log, system information, the lifecycle: garbage collection, integrity checks, retention, immutability and quotas; webhooks; promotion between repositories and tag history with rollback.",
        version = "1"
    ),
    paths(
        system_info, rotate_signing_key,
        list_users, create_user, current_user, get_user, update_user, delete_user, change_password,
        list_projects, create_project, get_project, update_project, delete_project,
        list_members, add_member, update_member, remove_member, project_audit,
        list_robots, create_robot, get_robot, update_robot, delete_robot, refresh_robot_secret,
        list_project_robots, create_project_robot, get_project_robot, update_project_robot,
        delete_project_robot, refresh_project_robot_secret,
        list_audit,
        repositories::list_repositories, repositories::list_artifacts, repositories::list_tags,
        repositories::delete_artifact, repositories::delete_tag,
        lifecycle::start_gc, lifecycle::gc_runs, lifecycle::gc_run,
        lifecycle::start_integrity, lifecycle::integrity_runs, lifecycle::integrity_run,
        lifecycle::get_quota, lifecycle::set_quota,
        lifecycle::get_immutability, lifecycle::set_immutability,
        lifecycle::get_retention, lifecycle::set_retention, lifecycle::delete_retention,
        lifecycle::start_retention, lifecycle::retention_runs, lifecycle::retention_run,
        webhooks::list_webhooks, webhooks::create_webhook, webhooks::get_webhook,
        webhooks::update_webhook, webhooks::delete_webhook, webhooks::list_deliveries,
        webhooks::get_delivery, webhooks::redeliver,
        promotion::promote, promotion::tag_history, promotion::rollback,
    ),
    components(schemas(plumbing::ErrorBody, plumbing::ErrorItem)),
    modifiers(&Security),
    security(("basic" = []), ("bearer" = [])),
    tags(
        (name = "system"), (name = "users"), (name = "projects"), (name = "members"),
        (name = "robots"), (name = "repositories"), (name = "audit"), (name = "lifecycle"),
        (name = "webhooks"), (name = "promotion"),
    )
)]
struct Document;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, built once.
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        Document::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}

use axum::response::IntoResponse;

/// What this registry is.
#[utoipa::path(get, path = "/api/v1/systeminfo", tag = "system", security(()),
    responses((status = 200, body = SystemInfo), Errors))]
async fn system_info(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let config = state.identity.config();
    json(
        StatusCode::OK,
        &SystemInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            token_service: config.service.clone(),
            token_endpoint: crate::token::TOKEN_PATH.into(),
            access_token_lifetime_seconds: config.access_token_lifetime.as_secs(),
            auto_create_projects: config.auto_create_projects,
        },
    )
}

/// Signs new tokens with a new key; tokens signed before stay valid until they expire.
#[utoipa::path(post, path = "/api/v1/system/signing-key/rotate", tag = "system",
    responses((status = 200, body = RotatedKey), Errors))]
async fn rotate_signing_key(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
) -> Result<Response, Failure> {
    let key_id = state.identity.rotate_signing_key(&actor).await?;
    Ok(json(StatusCode::OK, &RotatedKey { key_id }))
}

paged_query!(UserQuery, sort = r"^-?(?:name|email|created_at|last_login_at)$", sort_doc = " `name`, `email`, `created_at`, `last_login_at`, or `-field` for descending order.", {
    /// Names or emails containing this.
    q: Option<String>,
    source: Option<SourceName>,
    admin: Option<bool>,
});

/// Users, for system administrators. Sortable by `name`, `email`, `created_at`, `last_login_at`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserQuery),
    responses((status = 200, body = UserList), Errors))]
async fn list_users(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    Params(q): Params<UserQuery>,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let filter = UserFilter {
        name: q.q,
        source: q.source.map(UserSource::from),
        admin: q.admin,
    };
    let listed = state
        .identity
        .list_users(&actor, &filter, &paging.sort()?, page)
        .await?;
    Ok(json(
        StatusCode::OK,
        &UserList::new(listed, number, size, UserView::from),
    ))
}

/// Creates a local user (system administrators).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), Errors))]
async fn create_user(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<Response, Failure> {
    let user = state
        .identity
        .create_user(
            &actor,
            UserSpec {
                name: body.name,
                email: body.email.unwrap_or_default(),
                full_name: body.full_name.unwrap_or_default(),
                password: body.password,
                admin: body.admin.unwrap_or(false),
            },
        )
        .await?;
    Ok(json(StatusCode::CREATED, &UserView::from(user)))
}

/// Who the caller is, with their memberships. Signing in through this endpoint is recorded in the audit log.
#[utoipa::path(get, path = "/api/v1/users/current", tag = "users",
    responses((status = 200, body = CurrentUser), Errors))]
async fn current_user(
    state: axum::extract::State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let address = crate::access::client_address(&request);
    let credentials = crate::access::credentials(request.headers())
        .map_err(|e| Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.message()))?;
    let subject = match credentials {
        identity::Credentials::Basic { name, secret } => {
            state
                .identity
                .sign_in(&name, &secret, &address, true)
                .await?
        }
        _ => {
            let (parts, _) = request.into_parts();
            let mut parts = parts;
            let Who(actor) =
                <Who as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                    &mut parts, &state,
                )
                .await?;
            actor.subject
        }
    };
    let view = match &subject {
        auth::Subject::Anonymous => {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "sign in first",
            ));
        }
        auth::Subject::Robot { name, permissions } => CurrentUser {
            name: name.clone(),
            kind: "robot".into(),
            admin: false,
            memberships: Vec::new(),
            permissions: permissions.iter().map(PermissionView::from).collect(),
        },
        auth::Subject::User {
            name,
            system_admin,
            memberships,
        } => CurrentUser {
            name: name.clone(),
            kind: "user".into(),
            admin: *system_admin,
            memberships: memberships.iter().map(MembershipView::from).collect(),
            permissions: Vec::new(),
        },
    };
    Ok(json(StatusCode::OK, &view))
}

/// A user: system administrators see anyone, users themselves.
#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 200, body = UserView), Errors))]
async fn get_user(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
) -> Result<Response, Failure> {
    let user = state.identity.get_user(&actor, &name).await?;
    Ok(json(StatusCode::OK, &UserView::from(user)))
}

/// Changes a user's details; `admin` and `disabled` only by system administrators.
#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserView), Errors))]
async fn update_user(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> Result<Response, Failure> {
    let patch = UserPatch {
        email: body.email,
        full_name: body.full_name,
        password_hash: None,
        admin: body.admin,
        disabled: body.disabled,
    };
    let user = state.identity.update_user(&actor, &name, patch).await?;
    Ok(json(StatusCode::OK, &UserView::from(user)))
}

/// Deletes a user (system administrators; not themselves).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 204), Errors))]
async fn delete_user(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
) -> Result<Response, Failure> {
    state.identity.delete_user(&actor, &name).await?;
    Ok(no_content())
}

/// Sets a local user's password: one's own with the current password, anyone's as a system administrator.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users", params(("name" = String, Path)), request_body = ChangePassword,
    responses((status = 204), Errors))]
async fn change_password(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ChangePassword>,
) -> Result<Response, Failure> {
    state
        .identity
        .change_password(
            &actor,
            &name,
            body.current_password.as_deref(),
            &body.new_password,
        )
        .await?;
    Ok(no_content())
}

paged_query!(ProjectQuery, sort = r"^-?(?:name|created_at|updated_at|repository_count)$", sort_doc = " `name`, `created_at`, `updated_at`, `repository_count`, or `-field` for descending order.", {
    /// Names containing this.
    q: Option<String>,
    public: Option<bool>,
    /// `key` or `key=value`.
    label: Option<String>,
});

/// Projects the caller may see. Sortable by `name`, `created_at`, `updated_at`, `repository_count`.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(ProjectQuery), security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = ProjectList), Errors))]
async fn list_projects(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    Params(q): Params<ProjectQuery>,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let label = q.label.map(|l| match l.split_once('=') {
        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
        None => (l, None),
    });
    let filter = ProjectFilter {
        name: q.q,
        public: q.public,
        public_or_named: None,
        label,
    };
    let listed = state
        .identity
        .list_projects(&actor, filter, &paging.sort()?, page)
        .await?;
    Ok(json(
        StatusCode::OK,
        &ProjectList::new(listed, number, size, ProjectView::from),
    ))
}

/// Creates a project; a user who is not a system administrator becomes its project admin.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectView), Errors))]
async fn create_project(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    JsonBody(body): JsonBody<CreateProject>,
) -> Result<Response, Failure> {
    let project = state
        .identity
        .create_project(
            &actor,
            NewProject {
                name: body.name,
                public: body.public.unwrap_or(false),
                description: body.description.unwrap_or_default(),
                labels: body.labels.unwrap_or_default(),
            },
        )
        .await?;
    Ok(json(StatusCode::CREATED, &ProjectView::from(project)))
}

/// A project the caller may see.
#[utoipa::path(get, path = "/api/v1/projects/{project}", tag = "projects", params(("project" = String, Path)), security((), ("basic" = []), ("bearer" = [])),
    responses((status = 200, body = ProjectView), Errors))]
async fn get_project(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    let project = state.identity.get_project(&actor, &project).await?;
    Ok(json(StatusCode::OK, &ProjectView::from(project)))
}

/// Changes a project (project admins).
#[utoipa::path(patch, path = "/api/v1/projects/{project}", tag = "projects", params(("project" = String, Path)), request_body = UpdateProject,
    responses((status = 200, body = ProjectView), Errors))]
async fn update_project(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(body): JsonBody<UpdateProject>,
) -> Result<Response, Failure> {
    let patch = ProjectPatch {
        public: body.public,
        description: body.description,
        labels: body.labels,
    };
    let project = state
        .identity
        .update_project(&actor, &project, patch)
        .await?;
    Ok(json(StatusCode::OK, &ProjectView::from(project)))
}

/// Deletes an empty project (project admins); its members and robots go with it.
#[utoipa::path(delete, path = "/api/v1/projects/{project}", tag = "projects", params(("project" = String, Path)),
    responses((status = 204), Errors))]
async fn delete_project(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    state.identity.delete_project(&actor, &project).await?;
    Ok(no_content())
}

paged_query!(MemberQuery, sort = r"^-?(?:name|role|created_at)$", sort_doc = " `name`, `role`, `created_at`, or `-field` for descending order.", {
    /// Member names containing this.
    q: Option<String>,
    role: Option<RoleName>,
});

/// A project's members (guests and up). Sortable by `name`, `role`, `created_at`.
#[utoipa::path(get, path = "/api/v1/projects/{project}/members", tag = "members", params(("project" = String, Path), MemberQuery),
    responses((status = 200, body = MemberList), Errors))]
async fn list_members(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    Params(q): Params<MemberQuery>,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let filter = MemberFilter {
        name: q.q,
        role: q.role.map(auth::Role::from),
    };
    let listed = state
        .identity
        .list_members(&actor, &project, &filter, &paging.sort()?, page)
        .await?;
    Ok(json(
        StatusCode::OK,
        &MemberList::new(listed, number, size, MemberView::from),
    ))
}

/// Adds a user or directory group to a project, for the whole project or one repository (project admins).
#[utoipa::path(post, path = "/api/v1/projects/{project}/members", tag = "members", params(("project" = String, Path)), request_body = AddMember,
    responses((status = 201, body = MemberView), Errors))]
async fn add_member(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<Response, Failure> {
    let member = match body.member {
        MemberRef::User(r) => MemberOf::User(r.user),
        MemberRef::Group(r) => MemberOf::Group(r.group),
    };
    if let Some(r) = &body.repository {
        identity::manage::check_relative_repository(r)?;
    }
    let repository = body.repository.map(|r| format!("{project}/{r}"));
    let added = state
        .identity
        .add_member(
            &actor,
            &project,
            NewMember {
                member,
                repository,
                role: body.role.into(),
            },
        )
        .await?;
    Ok(json(StatusCode::CREATED, &MemberView::from(added)))
}

/// Changes a member's role (project admins).
#[utoipa::path(patch, path = "/api/v1/projects/{project}/members/{id}", tag = "members", params(("project" = String, Path), ("id" = i64, Path)), request_body = UpdateMember,
    responses((status = 200, body = MemberView), Errors))]
async fn update_member(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
    JsonBody(body): JsonBody<UpdateMember>,
) -> Result<Response, Failure> {
    let member = state
        .identity
        .update_member(&actor, &project, id, body.role.into())
        .await?;
    Ok(json(StatusCode::OK, &MemberView::from(member)))
}

/// Removes a member (project admins).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/members/{id}", tag = "members", params(("project" = String, Path), ("id" = i64, Path)),
    responses((status = 204), Errors))]
async fn remove_member(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> Result<Response, Failure> {
    state.identity.remove_member(&actor, &project, id).await?;
    Ok(no_content())
}

paged_query!(AuditQuery, sort = r"^-?(?:occurred_at|actor|operation)$", sort_doc = " `occurred_at`, `actor`, `operation`, or `-field` for descending order.", {
    actor: Option<String>,
    /// `push`, `pull`, `delete`, `login`, `create`, `update`.
    operation: Option<String>,
    /// `artifact`, `project`, `member`, `user`, `robot`, `session`, `config`.
    resource_type: Option<String>,
    /// Resources starting with this.
    resource: Option<String>,
    success: Option<bool>,
    /// From this time (RFC 3339, inclusive).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Until this time (RFC 3339, exclusive).
    #[param(format = DateTime)]
    to: Option<String>,
});

impl AuditQuery {
    fn filter(&self, project: Option<String>) -> Result<AuditFilter, Failure> {
        Ok(AuditFilter {
            actor: self.actor.clone(),
            operation: self.operation.clone(),
            resource_type: self.resource_type.clone(),
            resource: self.resource.clone(),
            project,
            success: self.success,
            from_ms: self.from.as_deref().map(parse_time).transpose()?,
            to_ms: self.to.as_deref().map(parse_time).transpose()?,
        })
    }
}

/// The whole audit log (system administrators), newest first. Sortable by `occurred_at`, `actor`, `operation`.
#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), Errors))]
async fn list_audit(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    Params(q): Params<AuditQuery>,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let listed = state
        .identity
        .list_audit(&actor, &q.filter(None)?, &paging.sort()?, page)
        .await?;
    Ok(json(
        StatusCode::OK,
        &AuditList::new(listed, number, size, AuditView::from),
    ))
}

/// A project's part of the audit log (guests and up).
#[utoipa::path(get, path = "/api/v1/projects/{project}/audit-logs", tag = "audit", params(("project" = String, Path), AuditQuery),
    responses((status = 200, body = AuditList), Errors))]
async fn project_audit(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    Params(q): Params<AuditQuery>,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let listed = state
        .identity
        .list_audit(&actor, &q.filter(Some(project))?, &paging.sort()?, page)
        .await?;
    Ok(json(
        StatusCode::OK,
        &AuditList::new(listed, number, size, AuditView::from),
    ))
}

paged_query!(RobotQuery, sort = r"^-?(?:name|created_at|expires_at)$", sort_doc = " `name`, `created_at`, `expires_at`, or `-field` for descending order.", {
    /// Names containing this.
    q: Option<String>,
});

async fn robots(
    state: &AppState,
    actor: &identity::manage::Actor,
    project: Option<String>,
    q: RobotQuery,
) -> Result<Response, Failure> {
    let paging = q.paging();
    let (page, number, size) = paging.page()?;
    let filter = RobotFilter {
        project: Some(project),
        name: q.q,
    };
    let listed = state
        .identity
        .list_robots(actor, &filter, &paging.sort()?, page)
        .await?;
    Ok(json(
        StatusCode::OK,
        &RobotList::new(listed, number, size, RobotView::from),
    ))
}

/// System robot accounts (system administrators). Sortable by `name`, `created_at`, `expires_at`.
#[utoipa::path(get, path = "/api/v1/robots", tag = "robots", params(RobotQuery),
    responses((status = 200, body = RobotList), Errors))]
async fn list_robots(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    Params(q): Params<RobotQuery>,
) -> Result<Response, Failure> {
    robots(&state, &actor, None, q).await
}

/// A project's robot accounts (maintainers and up). Sortable by `name`, `created_at`, `expires_at`.
#[utoipa::path(get, path = "/api/v1/projects/{project}/robots", tag = "robots", params(("project" = String, Path), RobotQuery),
    responses((status = 200, body = RobotList), Errors))]
async fn list_project_robots(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    Params(q): Params<RobotQuery>,
) -> Result<Response, Failure> {
    robots(&state, &actor, Some(project), q).await
}

async fn new_robot(
    state: &AppState,
    actor: &identity::manage::Actor,
    spec: RobotSpec,
) -> Result<Response, Failure> {
    let (robot, secret) = state.identity.create_robot(actor, spec).await?;
    Ok(json(
        StatusCode::CREATED,
        &RobotWithSecret {
            robot: RobotView::from(robot),
            secret,
        },
    ))
}

/// Creates a system robot (system administrators); its permissions may span projects. The answer holds the secret, shown only this once.
#[utoipa::path(post, path = "/api/v1/robots", tag = "robots", request_body = CreateRobot,
    responses((status = 201, body = RobotWithSecret), Errors))]
async fn create_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    JsonBody(body): JsonBody<CreateRobot>,
) -> Result<Response, Failure> {
    let spec = RobotSpec {
        name: body.name,
        project: None,
        description: body.description.unwrap_or_default(),
        permissions: body
            .permissions
            .into_iter()
            .map(PermissionView::into_permission)
            .collect::<Result<_, _>>()?,
        expires_at_ms: body.expires_at.as_deref().map(parse_time).transpose()?,
    };
    new_robot(&state, &actor, spec).await
}

/// Creates a robot of a project (maintainers and up), signing in as `robot$<project>+<name>`. The answer holds the secret, shown only this once.
#[utoipa::path(post, path = "/api/v1/projects/{project}/robots", tag = "robots", params(("project" = String, Path)), request_body = CreateProjectRobot,
    responses((status = 201, body = RobotWithSecret), Errors))]
async fn create_project_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(body): JsonBody<CreateProjectRobot>,
) -> Result<Response, Failure> {
    let spec = RobotSpec {
        name: body.name,
        project: Some(project.clone()),
        description: body.description.unwrap_or_default(),
        permissions: body
            .permissions
            .into_iter()
            .map(|p| p.in_project(&project))
            .collect::<Result<_, _>>()?,
        expires_at_ms: body.expires_at.as_deref().map(parse_time).transpose()?,
    };
    new_robot(&state, &actor, spec).await
}

fn system_robot(name: &str) -> String {
    format!("{}{name}", identity::ROBOT_PREFIX)
}

fn project_robot(project: &str, name: &str) -> String {
    format!("{}{project}+{name}", identity::ROBOT_PREFIX)
}

fn new_expiry(expires_at: Option<Option<String>>) -> Result<Option<Option<i64>>, Failure> {
    Ok(match expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(at)) => Some(Some(parse_time(&at)?)),
    })
}

/// A system robot, by its short name.
#[utoipa::path(get, path = "/api/v1/robots/{name}", tag = "robots", params(("name" = String, Path)),
    responses((status = 200, body = RobotView), Errors))]
async fn get_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
) -> Result<Response, Failure> {
    let robot = state
        .identity
        .get_robot(&actor, None, &system_robot(&name))
        .await?;
    Ok(json(StatusCode::OK, &RobotView::from(robot)))
}

/// A project robot, by its short name.
#[utoipa::path(get, path = "/api/v1/projects/{project}/robots/{name}", tag = "robots", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RobotView), Errors))]
async fn get_project_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams((project, name)): PathParams<(String, String)>,
) -> Result<Response, Failure> {
    let robot = state
        .identity
        .get_robot(&actor, Some(&project), &project_robot(&project, &name))
        .await?;
    Ok(json(StatusCode::OK, &RobotView::from(robot)))
}

/// Changes a system robot: description, permissions, expiry, disabled.
#[utoipa::path(patch, path = "/api/v1/robots/{name}", tag = "robots", params(("name" = String, Path)), request_body = UpdateRobot,
    responses((status = 200, body = RobotView), Errors))]
async fn update_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<UpdateRobot>,
) -> Result<Response, Failure> {
    let permissions = body
        .permissions
        .map(|ps| {
            ps.into_iter()
                .map(PermissionView::into_permission)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let patch = RobotPatch {
        description: body.description,
        secret_hash: None,
        permissions,
        expires_at_ms: new_expiry(body.expires_at)?,
        disabled: body.disabled,
    };
    let robot = state
        .identity
        .update_robot(&actor, None, &system_robot(&name), patch)
        .await?;
    Ok(json(StatusCode::OK, &RobotView::from(robot)))
}

/// Changes a project robot: description, permissions, expiry, disabled.
#[utoipa::path(patch, path = "/api/v1/projects/{project}/robots/{name}", tag = "robots", params(("project" = String, Path), ("name" = String, Path)), request_body = UpdateProjectRobot,
    responses((status = 200, body = RobotView), Errors))]
async fn update_project_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams((project, name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<UpdateProjectRobot>,
) -> Result<Response, Failure> {
    let permissions = body
        .permissions
        .map(|ps| {
            ps.into_iter()
                .map(|p| p.in_project(&project))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let patch = RobotPatch {
        description: body.description,
        secret_hash: None,
        permissions,
        expires_at_ms: new_expiry(body.expires_at)?,
        disabled: body.disabled,
    };
    let robot = state
        .identity
        .update_robot(
            &actor,
            Some(&project),
            &project_robot(&project, &name),
            patch,
        )
        .await?;
    Ok(json(StatusCode::OK, &RobotView::from(robot)))
}

/// Deletes a system robot.
#[utoipa::path(delete, path = "/api/v1/robots/{name}", tag = "robots", params(("name" = String, Path)),
    responses((status = 204), Errors))]
async fn delete_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
) -> Result<Response, Failure> {
    state
        .identity
        .delete_robot(&actor, None, &system_robot(&name))
        .await?;
    Ok(no_content())
}

/// Deletes a project robot.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/robots/{name}", tag = "robots", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 204), Errors))]
async fn delete_project_robot(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams((project, name)): PathParams<(String, String)>,
) -> Result<Response, Failure> {
    state
        .identity
        .delete_robot(&actor, Some(&project), &project_robot(&project, &name))
        .await?;
    Ok(no_content())
}

/// Gives a system robot a new secret (shown only this once); the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/robots/{name}/secret", tag = "robots", params(("name" = String, Path)),
    responses((status = 200, body = RobotWithSecret), Errors))]
async fn refresh_robot_secret(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams(name): PathParams<String>,
) -> Result<Response, Failure> {
    let (robot, secret) = state
        .identity
        .refresh_robot_secret(&actor, None, &system_robot(&name))
        .await?;
    Ok(json(
        StatusCode::OK,
        &RobotWithSecret {
            robot: RobotView::from(robot),
            secret,
        },
    ))
}

/// Gives a project robot a new secret (shown only this once); the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/projects/{project}/robots/{name}/secret", tag = "robots", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RobotWithSecret), Errors))]
async fn refresh_project_robot_secret(
    state: axum::extract::State<AppState>,
    Who(actor): Who,
    PathParams((project, name)): PathParams<(String, String)>,
) -> Result<Response, Failure> {
    let (robot, secret) = state
        .identity
        .refresh_robot_secret(&actor, Some(&project), &project_robot(&project, &name))
        .await?;
    Ok(json(
        StatusCode::OK,
        &RobotWithSecret {
            robot: RobotView::from(robot),
            secret,
        },
    ))
}
