//! The only crate that knows HTTP.
//!
//! - `/v2/...`: the OCI distribution API. A request is parsed into an
//!   [`Endpoint`] (typed values only), its caller authenticated and
//!   authorized once, centrally, into the grant its operation needs
//!   (`access.rs`), and handed to a thin handler that calls one
//!   [`registry::Registry`] method and shapes the response.
//! - `/auth/token`: the token endpoint of Docker's token authentication.
//! - `/api/v1/...`: the management REST API ([`api`]), with its OpenAPI
//!   document at `/api/v1/openapi.json`.
//! - `/healthz`, `/readyz`, `/metrics`: operations.
//! - [`serve`]: the accept loop, with optional TLS and graceful shutdown.
//!
//! Errors become responses in one place (`error.rs`). What this crate must not
//! do: business rules, SQL, or storage calls.

mod access;
pub mod api;
mod blobs;
mod body;
mod discovery;
mod endpoint;
mod error;
mod headers;
mod manifests;
pub mod metrics;
mod ops;
mod query;
mod server;
mod token;
mod uploads;
mod zero_copy;

use std::sync::Arc;

use auth::{Action, GrantedAction, Viewer};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method};
use identity::{Caller, Identity};
use metrics_exporter_prometheus::PrometheusHandle;
use oci::RepoName;
use registry::Registry;
use tracing::Instrument;

pub use access::ClientAddr;
pub use endpoint::Endpoint;
pub use error::ApiError;
pub use server::{ServerError, TlsFiles, load_tls, serve};
pub use token::TOKEN_PATH;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub registry: Registry,
    /// Garbage collection, retention and integrity runs.
    pub lifecycle: jobs::Lifecycle,
    /// Who is asking, and what they may do.
    pub identity: Identity,
    /// The token endpoint's URL for challenges; `None`: this server's own
    /// (`http(s)://<Host>/auth/token`).
    pub token_realm: Option<Arc<str>>,
    /// Whether this server speaks TLS (for the default realm).
    pub tls: bool,
    pub metrics: PrometheusHandle,
    /// A request body that sends nothing for this long is abandoned.
    pub body_idle_timeout: std::time::Duration,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(TOKEN_PATH, get(token::token).post(token::token))
        .nest("/api/v1", api::routes())
        .fallback(v2)
        .layer(axum::middleware::from_fn(metrics::observe))
        .with_state(state)
}

/// Entry point for everything under `/v2`.
async fn v2(State(state): State<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    let parsed = match Endpoint::parse(&method, request.uri().path()) {
        Some(parsed) => parsed,
        None => return (http::StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    let mut response = match parsed {
        Ok(endpoint) => {
            let name = endpoint.metric_name(&method);
            let span = tracing::debug_span!("request", endpoint = name);
            let mut response = dispatch(&state, endpoint, request)
                .instrument(span)
                .await
                .unwrap_or_else(IntoResponse::into_response);
            response
                .extensions_mut()
                .insert(metrics::EndpointName(name));
            response
        }
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(
        headers::DOCKER_API_VERSION,
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn grant<A: GrantedAction>(
    state: &AppState,
    caller: &Caller,
    headers: &http::HeaderMap,
    repo: &RepoName,
) -> Result<auth::Grant<A>, ApiError> {
    access::grant::<A>(state, caller, headers, repo, None).await
}

async fn dispatch(
    state: &AppState,
    endpoint: Endpoint,
    request: Request,
) -> Result<Response, ApiError> {
    let method = request.method().clone();
    if !endpoint.allows(&method) {
        return Err(ApiError::method_not_allowed(endpoint.allowed_methods()));
    }
    let address = access::client_address(&request);
    let query = query::Query::parse(request.uri().query());
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let credentials = access::credentials(headers)?;
    let caller = state
        .identity
        .authenticate(&credentials, &address)
        .await
        .map_err(|e| access::auth_error(state, headers, e))?;
    let audited = audited_action(&endpoint, &method);
    let response = route(state, &caller, endpoint, method, &query, headers, body).await;
    if let (Some((action, resource, project)), Ok(response)) = (audited, &response)
        && response.status().is_success()
    {
        state.identity.audit().record(identity::AuditRecord {
            actor: caller.principal().actor_name().to_owned(),
            address,
            operation: action.as_str().to_owned(),
            resource_type: "artifact".into(),
            resource,
            project: Some(project),
            success: true,
            detail: String::new(),
        });
    }
    response
}

/// The audit log records manifest pushes, pulls and deletes (a pull of an
/// image is a pull of its manifest; blobs are not recorded one by one).
fn audited_action(endpoint: &Endpoint, method: &Method) -> Option<(Action, String, String)> {
    let Endpoint::Manifest { name, reference } = endpoint else {
        return None;
    };
    let action = match *method {
        Method::GET => Action::Pull,
        Method::PUT => Action::Push,
        Method::DELETE => Action::Delete,
        _ => return None,
    };
    let separator = match reference {
        oci::Reference::Tag(_) => ':',
        oci::Reference::Digest(_) => '@',
    };
    Some((
        action,
        format!("{name}{separator}{reference}"),
        name.project().to_owned(),
    ))
}

async fn route(
    state: &AppState,
    caller: &Caller,
    endpoint: Endpoint,
    method: Method,
    query: &query::Query,
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let who = caller;
    match (endpoint, method) {
        (Endpoint::Ping, _) if caller.is_anonymous() => Err(access::challenge(
            state,
            headers,
            None,
            false,
            "authentication required".into(),
        )),
        (Endpoint::Ping, _) => headers::empty(http::StatusCode::OK),
        (Endpoint::Catalog, _) => {
            let Some(authorizer) = state
                .identity
                .catalog_authorizer(caller)
                .await
                .map_err(registry::RegistryError::from)?
            else {
                return Err(access::challenge(
                    state,
                    headers,
                    Some("registry:catalog:*"),
                    true,
                    "the token does not grant the catalog".into(),
                ));
            };
            let viewer = Viewer::new(caller.principal(), authorizer);
            discovery::catalog(state, &viewer, query).await
        }
        (Endpoint::Blob { name, digest }, Method::DELETE) => {
            blobs::delete(state, grant(state, who, headers, &name).await?, digest).await
        }
        (Endpoint::Blob { name, digest }, Method::HEAD) => {
            blobs::head(state, grant(state, who, headers, &name).await?, digest).await
        }
        (Endpoint::Blob { name, digest }, _) => {
            blobs::get(
                state,
                grant(state, who, headers, &name).await?,
                digest,
                headers,
            )
            .await
        }
        (Endpoint::StartUpload { name }, _) => {
            let from = query.get("from").and_then(|f| RepoName::parse(f).ok());
            let grant = access::grant(state, who, headers, &name, from.as_ref()).await?;
            uploads::start(state, grant, query, headers, body).await
        }
        (Endpoint::Upload { name, id }, Method::PATCH) => {
            uploads::patch(
                state,
                grant(state, who, headers, &name).await?,
                id,
                headers,
                body,
            )
            .await
        }
        (Endpoint::Upload { name, id }, Method::PUT) => {
            uploads::finish(
                state,
                grant(state, who, headers, &name).await?,
                id,
                query,
                headers,
                body,
            )
            .await
        }
        (Endpoint::Upload { name, id }, Method::DELETE) => {
            uploads::cancel(state, grant(state, who, headers, &name).await?, id).await
        }
        (Endpoint::Upload { name, id }, _) => {
            uploads::status(state, grant(state, who, headers, &name).await?, id).await
        }
        (Endpoint::Manifest { name, reference }, Method::PUT) => {
            manifests::put(
                state,
                grant(state, who, headers, &name).await?,
                reference,
                query,
                headers,
                body,
            )
            .await
        }
        (Endpoint::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(state, grant(state, who, headers, &name).await?, reference).await
        }
        (Endpoint::Manifest { name, reference }, method) => {
            let with_body = method != Method::HEAD;
            manifests::get(
                state,
                grant(state, who, headers, &name).await?,
                reference,
                headers,
                with_body,
            )
            .await
        }
        (Endpoint::Tags { name }, _) => {
            discovery::tags(state, grant(state, who, headers, &name).await?, query).await
        }
        (Endpoint::Referrers { name, digest }, _) => {
            discovery::referrers(
                state,
                grant(state, who, headers, &name).await?,
                digest,
                query,
            )
            .await
        }
    }
}

/// Router tests: requests through the whole application, without a socket.
#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn app() -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = storage::FsBlobStore::open(dir.path().join("blobs"))
            .await
            .unwrap();
        app_on(dir, Arc::new(blobs)).await
    }

    /// The router over `blobs` and a SQLite store in `dir`, open to everyone.
    pub(crate) async fn app_on(
        dir: tempfile::TempDir,
        blobs: Arc<dyn storage::BlobStore>,
    ) -> (tempfile::TempDir, Router) {
        let meta = metadata::SqliteMetaStore::open(&metadata::SqliteOptions {
            path: dir.path().join("meta.db"),
            readers: 2,
            fsync_every_commit: false,
        })
        .await
        .unwrap();
        let meta = Arc::new(meta);
        metadata::IdentityStore::create_project(
            &*meta,
            &metadata::identity::NewProject {
                name: "a".into(),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
        let identity = Identity::start(
            meta.clone(),
            identity::IdentityConfig {
                admin_password: Some(ADMIN_PASSWORD.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let registry = Registry::new(blobs, meta.clone(), registry::Limits::default());
        let lifecycle = jobs::Lifecycle::new(
            registry.clone(),
            meta,
            identity.clone(),
            jobs::LifecycleSettings::default(),
        );
        let state = AppState {
            registry,
            lifecycle,
            identity,
            token_realm: None,
            tls: false,
            metrics: metrics::recorder(),
            body_idle_timeout: std::time::Duration::from_secs(30),
        };
        (dir, router(state))
    }

    const ADMIN_PASSWORD: &str = "router-test-password";

    /// Sends `request` as the administrator (unless it carries credentials).
    pub(crate) async fn send(
        app: &Router,
        mut request: Request<Body>,
    ) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
        use base64::Engine;
        if !request.headers().contains_key(http::header::AUTHORIZATION) {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
            request.headers_mut().insert(
                http::header::AUTHORIZATION,
                format!("Basic {basic}").parse().unwrap(),
            );
        }
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn ping_and_operations() {
        let (_dir, app) = app().await;
        let (status, headers, _) = send(&app, get("/v2/")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["docker-distribution-api-version"], "registry/2.0");
        assert_eq!(send(&app, get("/healthz")).await.0, StatusCode::OK);
        assert_eq!(send(&app, get("/readyz")).await.0, StatusCode::OK);
        let (status, _, body) = send(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("wharf_http_requests_total"));
        assert_eq!(send(&app, get("/elsewhere")).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn errors_are_spec_json_from_one_place() {
        let (_dir, app) = app().await;
        let (status, headers, body) = send(&app, get("/v2/Bad/tags/list")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["errors"][0]["code"], "NAME_INVALID");
        assert_eq!(headers["docker-distribution-api-version"], "registry/2.0");

        let request = Request::post("/v2/a/tags/list")
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = send(&app, request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, HEAD");
    }

    #[tokio::test]
    async fn a_blob_round_trip() {
        let (_dir, app) = app().await;
        let digest = oci::Digest::compute(oci::DigestAlgorithm::Sha256, b"router test");
        let request = Request::post(format!("/v2/a/b/blobs/uploads/?digest={digest}"))
            .body(Body::from("router test"))
            .unwrap();
        let (status, headers, _) = send(&app, request).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            headers["location"],
            format!("/v2/a/b/blobs/{digest}").as_str()
        );
        let (status, headers, body) = send(&app, get(&format!("/v2/a/b/blobs/{digest}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["docker-content-digest"], digest.as_str());
        assert_eq!(&body[..], b"router test");
    }
}
