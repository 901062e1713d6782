//! Authentication and authorization of `/v2` requests.
//!
//! A request's `Authorization` header becomes [`Credentials`], the identity
//! service turns them into a [`Caller`], and [`grant`] asks `auth` for the
//! grant the endpoint needs. A refusal is explained to the client: an
//! anonymous caller (or a token that did not ask for the action) gets `401`
//! with a `WWW-Authenticate: Bearer` challenge naming the scope to ask for,
//! an authenticated caller who may not do it gets `403 DENIED`, and a push to
//! a project that does not exist gets `404 NAME_UNKNOWN` saying so.

use std::net::SocketAddr;

use auth::{Action, Grant, GrantedAction};
use axum::extract::Request;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode, header};
use identity::{AuthError, Caller, Credentials, Refusal};
use oci::{ErrorCode, RepoName};

use crate::{ApiError, AppState};

/// The TCP peer of a request's connection, set by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// The client's address as the audit log and throttling see it.
pub fn client_address(request: &Request) -> String {
    request
        .extensions()
        .get::<ClientAddr>()
        .map(|a| a.0.ip().to_string())
        .unwrap_or_default()
}

/// The credentials in an `Authorization` header.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Credentials::None);
    };
    let malformed = || unauthorized("malformed Authorization header".into());
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (name, secret) = decoded.split_once(':').ok_or_else(malformed)?;
        Ok(Credentials::Basic {
            name: name.to_owned(),
            secret: secret.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest.to_owned()))
    } else {
        Err(unauthorized(format!(
            "unsupported authorization scheme {scheme:?}; use Basic or Bearer"
        )))
    }
}

fn unauthorized(message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

/// The token endpoint's URL: configured, or this server's own.
pub fn realm(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(realm) = &state.token_realm {
        return realm.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.tls { "https" } else { "http" };
    format!("{scheme}://{host}{}", crate::token::TOKEN_PATH)
}

/// A `401` with the Bearer challenge for `scope`.
pub fn challenge(
    state: &AppState,
    headers: &HeaderMap,
    scope: Option<&str>,
    insufficient: bool,
    message: String,
) -> ApiError {
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(state, headers),
        state.identity.config().service
    );
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient {
        value.push_str(",error=\"insufficient_scope\"");
    }
    unauthorized(message).with_header(header::WWW_AUTHENTICATE, value)
}

/// The scope a client asks for to perform `action` (a push needs to pull
/// too, as Docker asks for it).
pub fn scope_for(repository: &RepoName, action: Action) -> String {
    let actions = match action {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    };
    format!("repository:{repository}:{actions}")
}

/// Authentication failures as responses.
pub fn auth_error(state: &AppState, headers: &HeaderMap, e: AuthError) -> ApiError {
    match e {
        AuthError::InvalidCredentials | AuthError::InvalidToken(_) => {
            challenge(state, headers, None, false, e.to_string())
        }
        AuthError::Throttled { retry_after } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            e.to_string(),
        )
        .with_header(
            header::RETRY_AFTER,
            retry_after.as_secs().max(1).to_string(),
        ),
        AuthError::Store(e) => ApiError::from(registry::RegistryError::from(e)),
        AuthError::Directory(e @ identity::ldap::LdapError::Unavailable(_)) => {
            ApiError::unavailable(e)
        }
        AuthError::Directory(e) => ApiError::internal(e),
    }
}

/// The grant for `A` on `repository`, or the explained refusal. `also` are
/// other repositories the operation may read (a mount's source).
pub async fn grant<A: GrantedAction>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    repository: &RepoName,
    also: Option<&RepoName>,
) -> Result<Grant<A>, ApiError> {
    let identity = &state.identity;
    if A::ACTION == Action::Push
        && let Caller::Subject(subject) = caller
    {
        identity
            .auto_create_project(subject, repository)
            .await
            .map_err(registry::RegistryError::from)?;
    }
    // A push into a project that does not exist fails here, before any
    // bytes, with the reason (whoever the caller; remembered for a moment).
    if A::ACTION == Action::Push
        && identity
            .project_public(repository.project())
            .await
            .map_err(registry::RegistryError::from)?
            .is_none()
    {
        return Err(
            registry::RegistryError::ProjectUnknown(repository.project().to_owned()).into(),
        );
    }
    let mut repositories = vec![repository];
    repositories.extend(also);
    let authorizer = identity
        .authorizer(caller, &repositories)
        .await
        .map_err(registry::RegistryError::from)?;
    match auth::authorize::<A>(&authorizer, &caller.principal(), repository) {
        Ok(grant) => Ok(grant),
        Err(denied) => {
            let refusal = identity
                .explain_refusal(caller, repository, A::ACTION)
                .await
                .map_err(registry::RegistryError::from)?;
            Err(refusal_error(
                state,
                caller,
                headers,
                repository,
                A::ACTION,
                refusal,
                denied,
            ))
        }
    }
}

fn refusal_error(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    repository: &RepoName,
    action: Action,
    refusal: Refusal,
    denied: auth::Denied,
) -> ApiError {
    match refusal {
        Refusal::ProjectUnknown(project) => registry::RegistryError::ProjectUnknown(project).into(),
        Refusal::Unauthenticated => {
            let message = if caller.is_anonymous() {
                format!(
                    "authentication required to {} {repository}",
                    action.as_str()
                )
            } else {
                format!(
                    "the token does not grant {} on {repository}; ask for a token with this scope",
                    action.as_str()
                )
            };
            let insufficient = matches!(caller, Caller::Token { .. });
            challenge(
                state,
                headers,
                Some(&scope_for(repository, action)),
                insufficient,
                message,
            )
        }
        Refusal::Denied => {
            let needs = match action {
                Action::Pull => "a role in the project (or a public project)",
                Action::Push => "the developer role or higher, or a robot with push",
                Action::Delete => "the maintainer role or higher, or a robot with delete",
            };
            ApiError::denied(format!("{denied}: {} needs {needs}", action.as_str()))
        }
    }
}
