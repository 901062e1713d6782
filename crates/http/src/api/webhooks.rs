//! Webhook policies of a project and their delivery log, through the
//! management API (project admins). A policy's authorization header and
//! signing secret are write-only: views say whether they are set.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use metadata::webhooks::{Delivery, DeliveryStatus, WebhookPolicy, WebhookSpec};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use webhooks::{EventType, Format};

use super::plumbing::{Errors, Failure, JsonBody, Params, PathParams, Who, json, no_content, time};
use crate::AppState;

/// A webhook policy, without its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub project: String,
    pub name: String,
    pub url: String,
    /// Event types it is sent.
    pub events: Vec<String>,
    /// `harbor` or `cloudevents`.
    pub format: String,
    pub auth_header_set: bool,
    pub secret_set: bool,
    pub skip_tls_verify: bool,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<WebhookPolicy> for WebhookView {
    fn from(p: WebhookPolicy) -> Self {
        WebhookView {
            id: p.id,
            project: p.project,
            name: p.spec.name,
            url: p.spec.url,
            events: p.spec.events,
            format: p.spec.format,
            auth_header_set: p.spec.auth_header.is_some(),
            secret_set: p.spec.secret.is_some(),
            skip_tls_verify: p.spec.skip_tls_verify,
            enabled: p.spec.enabled,
            created_at: time(p.created_at_ms),
            updated_at: time(p.updated_at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// A webhook policy to create or replace.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Unique in the project: letters, digits, `.`, `_`, `-`; 1 to 64.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// `http://` or `https://` URL the events are posted to.
    #[schema(pattern = r"^https?://", max_length = 2048)]
    pub url: String,
    /// Event types: `artifact.pushed`, `artifact.pulled`, `artifact.deleted`,
    /// `tag.created`, `tag.moved`, `tag.deleted`, `quota.warning`,
    /// `quota.exceeded`, `signature.added`, `retention.finished`.
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    /// `harbor` (the default) or `cloudevents`.
    #[serde(default)]
    pub format: Option<String>,
    /// Sent verbatim as the `Authorization` header. On replace: absent keeps
    /// the current one, `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub auth_header: Option<Option<String>>,
    /// Key of the `X-Wharf-Signature-256` header (HMAC-SHA256 of the body),
    /// 16 to 256 characters. On replace: absent keeps the current one,
    /// `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 16, max_length = 256)]
    pub secret: Option<Option<String>>,
    /// Accept any certificate from the target (internal targets only).
    #[serde(default)]
    pub skip_tls_verify: bool,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn enabled() -> bool {
    true
}

/// `absent` → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

const MAX_URL: usize = 2048;
const MAX_AUTH_HEADER: usize = 4096;
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

impl WebhookRequest {
    /// The spec to store, from this request and the policy it replaces.
    fn spec(self, current: Option<&WebhookPolicy>) -> Result<WebhookSpec, Failure> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(Failure::invalid(
                "name: 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
        check_url(&self.url)?;
        if self.events.is_empty() {
            return Err(Failure::invalid("events: name at least one event type"));
        }
        let mut events = Vec::new();
        for e in &self.events {
            let Some(t) = EventType::parse(e) else {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                return Err(Failure::invalid(format!(
                    "events: unknown event type {e:?}; known: {}",
                    known.join(", ")
                )));
            };
            if !events.contains(&t) {
                events.push(t);
            }
        }
        let format = match self.format.as_deref() {
            None => Format::Harbor,
            Some(f) => Format::parse(f).ok_or_else(|| {
                Failure::invalid(format!("format: {f:?} is not `harbor` or `cloudevents`"))
            })?,
        };
        let auth_header = match self.auth_header {
            None => current.and_then(|c| c.spec.auth_header.clone()),
            Some(None) => None,
            Some(Some(h)) => {
                // Visible ASCII and spaces only: no header injection.
                if h.is_empty()
                    || h.len() > MAX_AUTH_HEADER
                    || !h.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                {
                    return Err(Failure::invalid(format!(
                        "auth_header: 1 to {MAX_AUTH_HEADER} printable ASCII characters"
                    )));
                }
                Some(h)
            }
        };
        let secret = match self.secret {
            None => current.and_then(|c| c.spec.secret.clone()),
            Some(None) => None,
            Some(Some(s)) => {
                if !SECRET_CHARS.contains(&s.chars().count()) {
                    return Err(Failure::invalid(format!(
                        "secret: {} to {} characters",
                        SECRET_CHARS.start(),
                        SECRET_CHARS.end()
                    )));
                }
                Some(s)
            }
        };
        Ok(WebhookSpec {
            name: self.name,
            url: self.url,
            events: events.iter().map(|t| t.as_str().to_owned()).collect(),
            format: format.as_str().to_owned(),
            auth_header,
            secret,
            skip_tls_verify: self.skip_tls_verify,
            enabled: self.enabled,
        })
    }
}

fn check_url(url: &str) -> Result<(), Failure> {
    let invalid = || {
        Failure::invalid(format!(
            "url: an http:// or https:// URL with a host, at most {MAX_URL} characters"
        ))
    };
    if url.len() > MAX_URL {
        return Err(invalid());
    }
    let parsed: http::Uri = url.parse().map_err(|_| invalid())?;
    let scheme_ok = matches!(parsed.scheme_str(), Some("http" | "https"));
    if !scheme_ok || parsed.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(())
}

async fn policy(state: &AppState, project: &str, id: i64) -> Result<WebhookPolicy, Failure> {
    state
        .registry
        .webhook_store()
        .webhook(project, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("project {project:?} has no webhook {id}")))
}

/// A project's webhook policies (project admins).
#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks", tag = "webhooks", params(("project" = String, Path)),
    responses((status = 200, body = WebhookList), Errors))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let items = state.registry.webhook_store().webhooks(&project).await?;
    Ok(json(
        StatusCode::OK,
        &WebhookList {
            items: items.into_iter().map(WebhookView::from).collect(),
        },
    ))
}

/// Creates a webhook policy (project admins).
#[utoipa::path(post, path = "/api/v1/projects/{project}/webhooks", tag = "webhooks", params(("project" = String, Path)),
    request_body = WebhookRequest, responses((status = 201, body = WebhookView), Errors))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams(project): PathParams<String>,
    JsonBody(request): JsonBody<WebhookRequest>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let spec = request.spec(None)?;
    let created = state
        .registry
        .webhook_store()
        .create_webhook(&project, &spec)
        .await?;
    state.identity.record_change(
        &actor,
        "create",
        "webhook",
        &created.spec.name,
        Some(&project),
        describe(&created),
    );
    Ok(json(StatusCode::CREATED, &WebhookView::from(created)))
}

/// One webhook policy (project admins).
#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "webhooks", params(("project" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = WebhookView), Errors))]
pub async fn get_webhook(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let p = policy(&state, &project, id).await?;
    Ok(json(StatusCode::OK, &WebhookView::from(p)))
}

/// Replaces a webhook policy (project admins).
#[utoipa::path(put, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "webhooks", params(("project" = String, Path), ("id" = i64, Path)),
    request_body = WebhookRequest, responses((status = 200, body = WebhookView), Errors))]
pub async fn update_webhook(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
    JsonBody(request): JsonBody<WebhookRequest>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let current = policy(&state, &project, id).await?;
    let spec = request.spec(Some(&current))?;
    let updated = state
        .registry
        .webhook_store()
        .update_webhook(&project, id, &spec)
        .await?
        .ok_or_else(|| Failure::not_found(format!("project {project:?} has no webhook {id}")))?;
    state.identity.record_change(
        &actor,
        "update",
        "webhook",
        &updated.spec.name,
        Some(&project),
        describe(&updated),
    );
    Ok(json(StatusCode::OK, &WebhookView::from(updated)))
}

/// Deletes a webhook policy and its delivery log (project admins).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "webhooks", params(("project" = String, Path), ("id" = i64, Path)),
    responses((status = 204), Errors))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let p = policy(&state, &project, id).await?;
    if !state
        .registry
        .webhook_store()
        .delete_webhook(&project, id)
        .await?
    {
        return Err(Failure::not_found(format!(
            "project {project:?} has no webhook {id}"
        )));
    }
    state.identity.record_change(
        &actor,
        "delete",
        "webhook",
        &p.spec.name,
        Some(&project),
        String::new(),
    );
    Ok(no_content())
}

/// What the audit log says of a policy (never its secrets).
fn describe(p: &WebhookPolicy) -> String {
    format!(
        "url={} events={} format={} auth_header={} secret={} skip_tls_verify={} enabled={}",
        p.spec.url,
        p.spec.events.join(","),
        p.spec.format,
        if p.spec.auth_header.is_some() {
            "set"
        } else {
            "unset"
        },
        if p.spec.secret.is_some() {
            "set"
        } else {
            "unset"
        },
        p.spec.skip_tls_verify,
        p.spec.enabled
    )
}

/// One delivery of an event to a policy's target.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: i64,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// When a pending delivery is next tried.
    pub next_attempt_at: Option<String>,
    /// The last attempt's HTTP status, error and duration.
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The body sent (with `?body=true`, or for one delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl DeliveryView {
    fn new(d: Delivery, with_body: bool) -> Self {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| time(d.next_attempt_at_ms)),
            response_code: d.response_code,
            error: d.error,
            latency_ms: d.latency_ms,
            created_at: time(d.created_at_ms),
            finished_at: d.finished_at_ms.map(time),
            body: with_body.then_some(d.body),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub items: Vec<DeliveryView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next_before: Option<i64>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `succeeded` or `failed`.
    #[param(pattern = "^(pending|succeeded|failed)$")]
    status: Option<String>,
    /// Only deliveries with a smaller id.
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Entries per page, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Include each delivery's body.
    body: Option<bool>,
}

/// A webhook policy's delivery log, newest first (project admins).
#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks/{id}/deliveries", tag = "webhooks",
    params(("project" = String, Path), ("id" = i64, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryList), Errors))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id)): PathParams<(String, i64)>,
    Params(q): Params<DeliveryQuery>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    policy(&state, &project, id).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| Failure::invalid("status must be pending, succeeded or failed"))?,
        ),
    };
    let limit = q.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(Failure::invalid("limit must be between 1 and 100"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(Failure::invalid("before must be at least 1"));
    }
    let items = state
        .registry
        .webhook_store()
        .deliveries(id, status, q.before, limit)
        .await?;
    let next_before = (items.len() == limit as usize)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    let with_body = q.body.unwrap_or(false);
    Ok(json(
        StatusCode::OK,
        &DeliveryList {
            items: items
                .into_iter()
                .map(|d| DeliveryView::new(d, with_body))
                .collect(),
            next_before,
        },
    ))
}

/// One delivery, with its body (project admins).
#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks/{id}/deliveries/{delivery}", tag = "webhooks",
    params(("project" = String, Path), ("id" = i64, Path), ("delivery" = i64, Path)),
    responses((status = 200, body = DeliveryView), Errors))]
pub async fn get_delivery(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id, delivery)): PathParams<(String, i64, i64)>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    policy(&state, &project, id).await?;
    let d = state
        .registry
        .webhook_store()
        .delivery(id, delivery)
        .await?
        .ok_or_else(|| Failure::not_found(format!("webhook {id} has no delivery {delivery}")))?;
    Ok(json(StatusCode::OK, &DeliveryView::new(d, true)))
}

/// Sends an ended delivery again, now, with the same body (project admins).
#[utoipa::path(post, path = "/api/v1/projects/{project}/webhooks/{id}/deliveries/{delivery}/redeliver", tag = "webhooks",
    params(("project" = String, Path), ("id" = i64, Path), ("delivery" = i64, Path)),
    responses((status = 202, body = DeliveryView), Errors))]
pub async fn redeliver(
    State(state): State<AppState>,
    Who(actor): Who,
    PathParams((project, id, delivery)): PathParams<(String, i64, i64)>,
) -> Result<Response, Failure> {
    state.identity.check_project_admin(&actor, &project).await?;
    let p = policy(&state, &project, id).await?;
    let store = state.registry.webhook_store();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    if !store.redeliver(id, delivery, now).await? {
        return Err(match store.delivery(id, delivery).await? {
            None => Failure::not_found(format!("webhook {id} has no delivery {delivery}")),
            Some(_) => Failure::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!("delivery {delivery} is still pending"),
            ),
        });
    }
    state.identity.record_change(
        &actor,
        "redeliver",
        "webhook",
        &p.spec.name,
        Some(&project),
        format!("delivery={delivery}"),
    );
    let d = store
        .delivery(id, delivery)
        .await?
        .ok_or_else(|| Failure::not_found(format!("webhook {id} has no delivery {delivery}")))?;
    Ok(json(StatusCode::ACCEPTED, &DeliveryView::new(d, false)))
}
