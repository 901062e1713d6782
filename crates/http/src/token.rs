//! The token endpoint of Docker's token authentication, at [`TOKEN_PATH`].
//!
//! - `GET` with optional Basic credentials and `service`, `scope` (repeated),
//!   `offline_token=true` (also return a refresh token), `account`,
//!   `client_id`: what docker, podman and skopeo send after a `401`.
//! - `POST` with a form (`grant_type=password` with `username` and
//!   `password`, or `grant_type=refresh_token` with `refresh_token`;
//!   `access_type=offline` for a refresh token; `scope` space-separated):
//!   the OAuth2 flavour docker uses once it holds a refresh token.
//!
//! The answer grants, of the scopes asked for, exactly what the caller may do
//! (possibly nothing); it is never an error to ask for more.

use auth::Subject;
use auth::token::Scope;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::BodyExt;
use identity::Credentials;
use oci::ErrorCode;
use serde::Serialize;

use crate::access::{auth_error, client_address, credentials};
use crate::query::Query;
use crate::{ApiError, AppState};

pub const TOKEN_PATH: &str = "/auth/token";

/// Largest token request body.
const MAX_FORM: usize = 64 * 1024;

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    handle(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let address = client_address(&request);
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let params = if parts.method == Method::POST {
        let limited = http_body_util::Limited::new(body, MAX_FORM);
        let bytes = limited
            .collect()
            .await
            .map_err(|_| bad_request("the token request body is too large or broken"))?
            .to_bytes();
        Query::parse(Some(&String::from_utf8_lossy(&bytes)))
    } else {
        Query::parse(parts.uri.query())
    };
    if let Some(service) = params.get("service")
        && service != state.identity.config().service
    {
        return Err(bad_request(&format!(
            "unknown service {service:?}; this registry's service is {:?}",
            state.identity.config().service
        )));
    }
    let scopes = Scope::parse_all(params.all("scope")).map_err(|e| bad_request(&e))?;
    let offline =
        params.get("offline_token") == Some("true") || params.get("access_type") == Some("offline");

    let subject = match (parts.method == Method::POST, params.get("grant_type")) {
        (true, Some("refresh_token")) => {
            let token = params
                .get("refresh_token")
                .ok_or_else(|| bad_request("grant_type=refresh_token needs refresh_token"))?;
            state
                .identity
                .redeem_refresh_token(token, &address)
                .await
                .map_err(|e| auth_error(state, headers, e))?
        }
        (true, Some("password")) => {
            let (Some(name), Some(password)) = (params.get("username"), params.get("password"))
            else {
                return Err(bad_request(
                    "grant_type=password needs username and password",
                ));
            };
            sign_in(state, headers, name, password, &address).await?
        }
        (true, other) => {
            return Err(bad_request(&format!(
                "unsupported grant_type {:?}; use password or refresh_token",
                other.unwrap_or("")
            )));
        }
        (false, _) => match credentials(headers)? {
            Credentials::None => Subject::Anonymous,
            Credentials::Basic { name, secret } => {
                sign_in(state, headers, &name, &secret, &address).await?
            }
            Credentials::Bearer(token) => {
                // A refresh token presented as a bearer (some clients do).
                state
                    .identity
                    .redeem_refresh_token(&token, &address)
                    .await
                    .map_err(|e| auth_error(state, headers, e))?
            }
        },
    };
    let issued = state
        .identity
        .issue(&subject, &scopes, offline)
        .await
        .map_err(registry::RegistryError::from)?;
    let body = TokenResponse {
        token: issued.token.clone(),
        access_token: issued.token,
        expires_in: issued.expires_in,
        issued_at: rfc3339(issued.issued_at_s),
        refresh_token: issued.refresh_token,
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response())
}

async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    password: &str,
    address: &str,
) -> Result<Subject, ApiError> {
    state
        .identity
        .sign_in(name, password, address, true)
        .await
        .map_err(|e| auth_error(state, headers, e))
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
}

/// `2006-01-02T15:04:05Z` for seconds since the Unix epoch (UTC).
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_392_245), "2026-11-23T00:04:05Z");
    }
}
