//! What every `/api/v1` handler shares: the caller, JSON in and out,
//! query and path parameters, pagination, and the one error shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use identity::manage::{Actor, ManageError};
use identity::{AuthError, Caller, Credentials};
use metadata::identity::{Page, Sort};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::AppState;
use crate::access::{ClientAddr, credentials};

/// Largest JSON request body.
const MAX_JSON: usize = 1024 * 1024;

/// Every error of the management API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorItem {
    /// `UNAUTHORIZED`, `DENIED`, `NOT_FOUND`, `CONFLICT`, `INVALID`,
    /// `TOO_MANY_REQUESTS`, `UNAVAILABLE` or `INTERNAL`.
    pub code: &'static str,
    pub message: String,
}

/// The errors any management endpoint may answer with, for the OpenAPI
/// document.
#[derive(Debug)]
pub struct Errors;

impl utoipa::IntoResponses for Errors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        [
            ("400", "The request is malformed or invalid."),
            ("401", "Credentials are missing or wrong."),
            ("403", "The caller may not do this."),
            (
                "404",
                "The resource does not exist or the caller may not see it.",
            ),
            ("409", "The request conflicts with the current state."),
            (
                "429",
                "Too many failed sign-ins; retry after Retry-After seconds.",
            ),
            (
                "503",
                "The database is unavailable; retry after Retry-After seconds.",
            ),
        ]
        .into_iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content)
                .build();
            (status.to_owned(), response.into())
        })
        .collect()
    }
}

/// An error response of the management API.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Failure {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "INVALID", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = %self.message, "management API failure");
        }
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error; the server log has the details".to_owned()
        } else {
            self.message
        };
        let body = serde_json::to_vec(&ErrorBody {
            errors: vec![ErrorItem {
                code: self.code,
                message,
            }],
        })
        .unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"wharf\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ManageError> for Failure {
    fn from(e: ManageError) -> Self {
        let message = e.to_string();
        match e {
            ManageError::Unauthenticated => {
                Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
            }
            ManageError::Forbidden(_) => Failure::new(StatusCode::FORBIDDEN, "DENIED", message),
            ManageError::NotFound(_) => Failure::not_found(message),
            ManageError::Conflict(_) => Failure::new(StatusCode::CONFLICT, "CONFLICT", message),
            ManageError::Invalid(_) => Failure::invalid(message),
            ManageError::Store(e) => e.into(),
        }
    }
}

impl From<metadata::MetadataError> for Failure {
    fn from(e: metadata::MetadataError) -> Self {
        match e {
            metadata::MetadataError::Unavailable(_) => Failure {
                retry_after: Some(5),
                ..Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the metadata database is unavailable; try again shortly",
                )
            },
            other => match ManageError::from(other) {
                ManageError::Store(e) => {
                    Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
                }
                mapped => mapped.into(),
            },
        }
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Throttled { retry_after } => Failure {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_REQUESTS",
                    e.to_string(),
                )
            },
            AuthError::Store(e) => e.into(),
            AuthError::Directory(e @ identity::ldap::LdapError::Unavailable(_)) => {
                tracing::warn!(error = %e, "sign-in failed: the directory is unavailable");
                Failure {
                    retry_after: Some(5),
                    ..Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "UNAVAILABLE",
                        "the user directory is unavailable; try again shortly",
                    )
                }
            }
            AuthError::Directory(e) => {
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
            }
            AuthError::InvalidCredentials | AuthError::InvalidToken(_) => {
                Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string())
            }
        }
    }
}

/// A `/v2` error (from the registry or its access checks) in this API's shape.
impl From<crate::ApiError> for Failure {
    fn from(api: crate::ApiError) -> Self {
        let status = api.status();
        let code = match status {
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::FORBIDDEN => "DENIED",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::CONFLICT => "CONFLICT",
            StatusCode::TOO_MANY_REQUESTS => "TOO_MANY_REQUESTS",
            StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
            s if s.is_client_error() => "INVALID",
            _ => "INTERNAL",
        };
        Failure::new(status, code, api.message().to_owned())
    }
}

impl From<registry::RegistryError> for Failure {
    fn from(e: registry::RegistryError) -> Self {
        crate::ApiError::from(e).into()
    }
}

/// The authenticated caller of a management request, as an [`Actor`].
#[derive(Debug)]
pub struct Who(pub Actor);

impl FromRequestParts<AppState> for Who {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Failure> {
        let address = parts
            .extensions
            .get::<ClientAddr>()
            .map(|a| a.0.ip().to_string())
            .unwrap_or_default();
        let credentials = credentials(&parts.headers)
            .map_err(|e| Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.message()))?;
        let subject = match &credentials {
            Credentials::None => auth::Subject::Anonymous,
            Credentials::Basic { name, secret } => {
                state
                    .identity
                    .sign_in(name, secret, &address, false)
                    .await?
            }
            Credentials::Bearer(_) => {
                let caller = state.identity.authenticate(&credentials, &address).await?;
                let Caller::Token { claims, .. } = caller else {
                    return Err(Failure::new(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "invalid token",
                    ));
                };
                state
                    .identity
                    .subject_named(&claims.sub)
                    .await?
                    .ok_or_else(|| {
                        Failure::new(
                            StatusCode::UNAUTHORIZED,
                            "UNAUTHORIZED",
                            "the token's holder no longer exists or is disabled",
                        )
                    })?
            }
        };
        Ok(Who(Actor { subject, address }))
    }
}

/// A JSON request body, limited in size, with errors in the API's shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(request: Request, _: &S) -> Result<Self, Failure> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return Err(Failure::invalid("send the body as application/json"));
        }
        let bytes = http_body_util::Limited::new(request.into_body(), MAX_JSON)
            .collect()
            .await
            .map_err(|_| {
                Failure::invalid(format!(
                    "the body is larger than {MAX_JSON} bytes or broken"
                ))
            })?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Failure::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Query parameters, with errors in the API's shape.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Failure> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| Failure::invalid(format!("invalid query parameters: {}", e.body_text())))
    }
}

/// Path parameters, with errors in the API's shape.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| Failure::invalid(format!("invalid path: {}", e.body_text())))
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Declares the query parameters of a listing: `page`, `page_size` and
/// `sort` (its fields matched by `$sort`, a pattern such as
/// `^-?(?:name|created_at)$`), then the listing's own filters; and
/// `fn paging()` to read the first three.
macro_rules! paged_query {
    ($name:ident, sort = $sort:literal, sort_doc = $sort_doc:literal,
     { $($(#[$field_attr:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
        #[serde(default, deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Page number, from 1.
            #[param(minimum = 1, maximum = 1000000)]
            page: Option<u64>,
            /// Entries per page, 1 to 100 (default 25).
            #[param(minimum = 1, maximum = 100)]
            page_size: Option<u32>,
            #[doc = $sort_doc]
            #[param(pattern = $sort)]
            sort: Option<String>,
            $($(#[$field_attr])* $field: $ty,)*
        }

        impl $name {
            fn paging(&self) -> $crate::api::plumbing::Paging {
                $crate::api::plumbing::Paging {
                    page: self.page,
                    page_size: self.page_size,
                    sort: self.sort.clone(),
                }
            }
        }
    };
}
pub(super) use paged_query;

/// Pagination and order of a listing, from its query parameters.
#[derive(Debug, Default)]
pub struct Paging {
    pub page: Option<u64>,
    pub page_size: Option<u32>,
    pub sort: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 100;

impl Paging {
    pub fn page(&self) -> Result<(Page, u64, u32), Failure> {
        let page = self.page.unwrap_or(1);
        let size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 || page > 1_000_000 {
            return Err(Failure::invalid(
                "page counts from 1 (and stops at 1000000)",
            ));
        }
        if size == 0 || size > MAX_PAGE_SIZE {
            return Err(Failure::invalid(format!(
                "page_size must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok((
            Page {
                offset: (page - 1) * u64::from(size),
                limit: size,
            },
            page,
            size,
        ))
    }

    pub fn sort(&self) -> Result<Sort, Failure> {
        Ok(match self.sort.as_deref() {
            None => Sort::default(),
            Some("" | "-") => {
                return Err(Failure::invalid(
                    "sort names a field, such as name or -name",
                ));
            }
            Some(s) => match s.strip_prefix('-') {
                Some(field) => Sort {
                    field: Some(field.to_owned()),
                    descending: true,
                },
                None => Sort {
                    field: Some(s.to_owned()),
                    descending: false,
                },
            },
        })
    }
}

/// `ms` since the Unix epoch as RFC 3339.
pub fn time(ms: i64) -> String {
    crate::token::rfc3339(ms.div_euclid(1000))
}

/// Parses an RFC 3339 date-time (`2026-01-02T03:04:05Z`, with optional
/// fractional seconds and a `+hh:mm` offset) to ms since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, Failure> {
    let bad = || {
        Failure::invalid(format!(
            "invalid time {s:?}; use RFC 3339, such as 2026-01-02T03:04:05Z"
        ))
    };
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Result<i64, Failure> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        let kept: String = fraction[..n].chars().chain("000".chars()).take(3).collect();
        ms = kept.parse::<i64>().map_err(|_| bad())?;
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let o = rest.as_bytes();
            if o.len() != 6 || !matches!(o[0], b'+' | b'-') || o[3] != b':' {
                return Err(bad());
            }
            let oh: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let om: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let sign = if o[0] == b'-' { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
    };
    let leap_year = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap_year { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 60
    {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + h * 3600 + mi * 60 + se.min(59) - offset_minutes * 60;
    Ok(seconds * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:34:56Z",
            "2026-11-23T00:04:05Z",
        ] {
            assert_eq!(time(parse_time(s).unwrap()), s);
        }
        assert_eq!(
            parse_time("2026-01-01T01:30:00.250+01:30").unwrap(),
            parse_time("2026-01-01T00:00:00Z").unwrap() + 250
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-1-01T00:00:00Z",
            "yesterday",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
