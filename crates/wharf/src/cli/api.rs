//! A small typed client for the management API under `/api/v1`, over
//! reqwest: the registry's address, the caller's credentials, one method
//! per endpoint the command line uses, and the API's error shape.
//!
//! Every answer keeps the JSON exactly as the registry sent it next to its
//! typed form, so `--json` prints what the API said, not a re-serialization.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the registry is: its base URL (scheme, host, port; no path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    url: Url,
}

impl Registry {
    /// The base URL, such as `http://127.0.0.1:5000/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `host[:port]`, the key docker, podman and skopeo file credentials
    /// under (the port is left out when it is the scheme's default).
    pub fn key(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str().trim_end_matches('/'))
    }
}

/// Parses `--registry`: a URL with the scheme `http` or `https` and no path,
/// or a bare `host[:port]`, which means `https` unless the host is a loopback
/// address (127.0.0.0/8, `localhost`, `::1`), which means `http`.
pub fn parse_registry(s: &str) -> Result<Registry, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the registry address is empty".into());
    }
    let text = if s.contains("://") {
        s.to_owned()
    } else {
        let scheme = if is_loopback(bare_host(s)) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{s}")
    };
    let url = Url::parse(&text).map_err(|e| format!("invalid registry address {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid registry address {s:?}: the scheme must be http or https"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid registry address {s:?}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid registry address {s:?}: put no credentials in it; use `wharf login`"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid registry address {s:?}: give only the scheme, host and port"
        ));
    }
    Ok(Registry { url })
}

/// The host of a bare `host[:port]` (`[v6]:port` keeps its brackets off).
fn bare_host(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match s.rsplit_once(':') {
        // One colon: host:port. More: an IPv6 address without brackets.
        Some((host, _port)) if !host.contains(':') => host,
        _ => s,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A user name and password (or robot secret). Debug output hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with its error shape.
    #[error("{}", format_errors(errors, *status))]
    Api {
        status: StatusCode,
        /// `(code, message)` pairs, in the order given.
        errors: Vec<(String, String)>,
    },
    /// An answer that is not the API's (a proxy's error page, say).
    #[error("unexpected answer from {url}: HTTP {status}{}", snippet(body))]
    Unexpected {
        url: String,
        status: StatusCode,
        body: String,
    },
    /// No answer at all. The message holds the error's causes (reqwest's
    /// own message leaves them out), so it has no `source` of its own.
    #[error("cannot reach the registry at {url}: {}", chain(error))]
    Transport { url: String, error: reqwest::Error },
}

impl ApiError {
    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Api { status, .. } | ApiError::Unexpected { status, .. } => Some(*status),
            ApiError::Transport { .. } => None,
        }
    }
}

fn format_errors(errors: &[(String, String)], status: StatusCode) -> String {
    errors
        .iter()
        .map(|(code, message)| format!("{message} ({code}, HTTP {})", status.as_u16()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let short: String = body.chars().take(200).collect();
    let ellipsis = if short.len() < body.len() { "…" } else { "" };
    format!(": {short}{ellipsis}")
}

/// An error with its causes, `a: b: c`, for errors (like reqwest's) whose
/// own message leaves the cause out.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// An answer: its JSON text as sent, and its typed form.
#[derive(Debug)]
pub struct Reply<T> {
    pub body: String,
    pub data: T,
}

/// One page of a listing.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u64,
    pub page_size: u32,
}

/// Which page of a listing, and in what order.
#[derive(Debug, Clone, Default)]
pub struct Paging {
    pub page: Option<u64>,
    pub page_size: Option<u32>,
    /// `field` or `-field`.
    pub sort: Option<String>,
}

impl Paging {
    pub(super) fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(p) = self.page {
            q.push(("page", p.to_string()));
        }
        if let Some(s) = self.page_size {
            q.push(("page_size", s.to_string()));
        }
        if let Some(s) = &self.sort {
            q.push(("sort", s.clone()));
        }
        q
    }
}

/// A project role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::LimitedGuest => "limited-guest",
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::ProjectAdmin => "project-admin",
        }
    }
}

/// An action a robot may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
    Read,
    Scan,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::Read,
        Action::Scan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Scan => "scan",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Project {
    pub name: String,
    pub public: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub repository_count: u64,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct NewProject {
    pub name: String,
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Serialize)]
pub struct ProjectChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replaces all labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub struct Member {
    pub id: i64,
    #[serde(default)]
    pub project: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub repository: Option<String>,
    pub role: Role,
    #[serde(default)]
    pub created_at: String,
}

/// A user or a directory group (its DN).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRef {
    User(String),
    Group(String),
}

#[derive(Debug, Serialize)]
pub struct NewMember {
    pub member: MemberRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    pub last_login_at: Option<String>,
}

#[derive(Serialize)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    pub admin: bool,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct UserChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Serialize)]
struct PasswordChange<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    current_password: Option<&'a str>,
    new_password: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct Membership {
    pub project: String,
    pub repository: Option<String>,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
pub struct CurrentUser {
    pub name: String,
    /// `user` or `robot`.
    pub kind: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub memberships: Vec<Membership>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// What a robot may do where, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// A project, or `*` for every project.
    pub project: String,
    pub repository: Option<String>,
    pub actions: Vec<Action>,
}

/// What a project robot may do, as it is created: one repository of the
/// project (by its name within the project), or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectPermission {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
pub struct Robot {
    /// `robot$<project>+<name>` or `robot$<name>`.
    pub name: String,
    pub project: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

/// A robot and its secret, which the registry shows only in this answer.
#[derive(Deserialize)]
pub struct RobotWithSecret {
    pub robot: Robot,
    pub secret: String,
}

impl std::fmt::Debug for RobotWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotWithSecret")
            .field("robot", &self.robot)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A robot to create: a project's (permissions within it) or a system robot.
#[derive(Debug)]
pub enum NewRobot {
    Project {
        project: String,
        permissions: Vec<ProjectPermission>,
    },
    System {
        permissions: Vec<Permission>,
    },
}

#[derive(Debug, Serialize)]
struct RobotBody<'a, P: Serialize> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    permissions: &'a [P],
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub struct RotatedKey {
    pub key_id: String,
}

/// The management API of one registry, as one caller.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    registry: Registry,
    credentials: Option<Credentials>,
}

impl Client {
    /// A client for `registry`, signing requests with `credentials` (Basic)
    /// if given. `insecure` accepts any TLS certificate.
    pub fn new(
        registry: Registry,
        credentials: Option<Credentials>,
        insecure: bool,
    ) -> anyhow::Result<Client> {
        // reqwest's rustls needs a process-wide crypto provider (ring, as
        // everywhere in wharf); installing it twice is harmless.
        storage::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .tls_danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {}", chain(&e)))?;
        Ok(Client {
            http,
            registry,
            credentials,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// `/api/v1/<segments...>?<query>`, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.registry.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// Sends one request; the answer's body and its JSON (`Null` for an
    /// empty body).
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<(String, Value), ApiError> {
        let url = self.url(segments, query);
        let mut request = self
            .http
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let transport = |error| ApiError::Transport {
            url: self.registry.to_string(),
            error,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let json = if text.trim().is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_str::<Value>(&text).ok()
        };
        if status.is_success() {
            return match json {
                Some(json) => Ok((text, json)),
                None => Err(ApiError::Unexpected {
                    url: url.to_string(),
                    status,
                    body: text,
                }),
            };
        }
        match json.as_ref().and_then(api_errors) {
            Some(errors) => Err(ApiError::Api { status, errors }),
            None => Err(ApiError::Unexpected {
                url: url.to_string(),
                status,
                body: text,
            }),
        }
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Reply<T>, ApiError> {
        let (body, json) = self.send(method, segments, query, body).await?;
        match T::deserialize(&json) {
            Ok(data) => Ok(Reply { body, data }),
            Err(e) => Err(ApiError::Unexpected {
                url: self.url(segments, query).to_string(),
                status: StatusCode::OK,
                body: format!("the answer does not have the expected shape ({e}): {body}"),
            }),
        }
    }

    pub(super) async fn call_empty(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<(), ApiError> {
        self.send(method, segments, &[], body).await.map(drop)
    }

    // --- users --------------------------------------------------------

    /// Who the credentials belong to (`GET /users/current`; a sign-in).
    pub async fn current_user(&self) -> Result<Reply<CurrentUser>, ApiError> {
        self.call(Method::GET, &["users", "current"], &[], None)
            .await
    }

    pub async fn list_users(
        &self,
        query: Option<&str>,
        paging: &Paging,
    ) -> Result<Reply<Page<User>>, ApiError> {
        let mut q = paging.query();
        if let Some(text) = query {
            q.push(("q", text.to_owned()));
        }
        self.call(Method::GET, &["users"], &q, None).await
    }

    pub async fn create_user(&self, user: &NewUser) -> Result<Reply<User>, ApiError> {
        self.call(Method::POST, &["users"], &[], Some(to_json(user)))
            .await
    }

    pub async fn user(&self, name: &str) -> Result<Reply<User>, ApiError> {
        self.call(Method::GET, &["users", name], &[], None).await
    }

    pub async fn update_user(
        &self,
        name: &str,
        changes: &UserChanges,
    ) -> Result<Reply<User>, ApiError> {
        self.call(Method::PATCH, &["users", name], &[], Some(to_json(changes)))
            .await
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), ApiError> {
        self.call_empty(Method::DELETE, &["users", name], None)
            .await
    }

    /// Sets `name`'s password; `current` is needed for one's own (unless
    /// one is a system administrator).
    pub async fn change_password(
        &self,
        name: &str,
        current: Option<&str>,
        new: &str,
    ) -> Result<(), ApiError> {
        let body = to_json(&PasswordChange {
            current_password: current,
            new_password: new,
        });
        self.call_empty(Method::PUT, &["users", name, "password"], Some(body))
            .await
    }

    // --- projects -----------------------------------------------------

    pub async fn list_projects(
        &self,
        query: Option<&str>,
        public: Option<bool>,
        paging: &Paging,
    ) -> Result<Reply<Page<Project>>, ApiError> {
        let mut q = paging.query();
        if let Some(text) = query {
            q.push(("q", text.to_owned()));
        }
        if let Some(public) = public {
            q.push(("public", public.to_string()));
        }
        self.call(Method::GET, &["projects"], &q, None).await
    }

    pub async fn create_project(&self, project: &NewProject) -> Result<Reply<Project>, ApiError> {
        self.call(Method::POST, &["projects"], &[], Some(to_json(project)))
            .await
    }

    pub async fn project(&self, name: &str) -> Result<Reply<Project>, ApiError> {
        self.call(Method::GET, &["projects", name], &[], None).await
    }

    pub async fn update_project(
        &self,
        name: &str,
        changes: &ProjectChanges,
    ) -> Result<Reply<Project>, ApiError> {
        self.call(
            Method::PATCH,
            &["projects", name],
            &[],
            Some(to_json(changes)),
        )
        .await
    }

    pub async fn delete_project(&self, name: &str) -> Result<(), ApiError> {
        self.call_empty(Method::DELETE, &["projects", name], None)
            .await
    }

    pub async fn list_members(
        &self,
        project: &str,
        paging: &Paging,
    ) -> Result<Reply<Page<Member>>, ApiError> {
        self.call(
            Method::GET,
            &["projects", project, "members"],
            &paging.query(),
            None,
        )
        .await
    }

    pub async fn add_member(
        &self,
        project: &str,
        member: &NewMember,
    ) -> Result<Reply<Member>, ApiError> {
        self.call(
            Method::POST,
            &["projects", project, "members"],
            &[],
            Some(to_json(member)),
        )
        .await
    }

    pub async fn set_member_role(
        &self,
        project: &str,
        id: i64,
        role: Role,
    ) -> Result<Reply<Member>, ApiError> {
        let id = id.to_string();
        self.call(
            Method::PATCH,
            &["projects", project, "members", &id],
            &[],
            Some(serde_json::json!({ "role": role })),
        )
        .await
    }

    pub async fn remove_member(&self, project: &str, id: i64) -> Result<(), ApiError> {
        let id = id.to_string();
        self.call_empty(Method::DELETE, &["projects", project, "members", &id], None)
            .await
    }

    // --- robots -------------------------------------------------------

    /// The path of a robot collection: a project's, or the system robots'.
    fn robots_path(project: Option<&str>) -> Vec<&str> {
        match project {
            Some(p) => vec!["projects", p, "robots"],
            None => vec!["robots"],
        }
    }

    pub async fn list_robots(
        &self,
        project: Option<&str>,
        query: Option<&str>,
        paging: &Paging,
    ) -> Result<Reply<Page<Robot>>, ApiError> {
        let mut q = paging.query();
        if let Some(text) = query {
            q.push(("q", text.to_owned()));
        }
        self.call(Method::GET, &Self::robots_path(project), &q, None)
            .await
    }

    pub async fn create_robot(
        &self,
        name: &str,
        robot: &NewRobot,
        description: Option<&str>,
        expires_at: Option<&str>,
    ) -> Result<Reply<RobotWithSecret>, ApiError> {
        let (path, body) = match robot {
            NewRobot::Project {
                project,
                permissions,
            } => (
                Self::robots_path(Some(project)),
                to_json(&RobotBody {
                    name,
                    description,
                    permissions,
                    expires_at,
                }),
            ),
            NewRobot::System { permissions } => (
                Self::robots_path(None),
                to_json(&RobotBody {
                    name,
                    description,
                    permissions,
                    expires_at,
                }),
            ),
        };
        self.call(Method::POST, &path, &[], Some(body)).await
    }

    pub async fn robot(&self, project: Option<&str>, name: &str) -> Result<Reply<Robot>, ApiError> {
        let mut path = Self::robots_path(project);
        path.push(name);
        self.call(Method::GET, &path, &[], None).await
    }

    pub async fn set_robot_disabled(
        &self,
        project: Option<&str>,
        name: &str,
        disabled: bool,
    ) -> Result<Reply<Robot>, ApiError> {
        let mut path = Self::robots_path(project);
        path.push(name);
        self.call(
            Method::PATCH,
            &path,
            &[],
            Some(serde_json::json!({ "disabled": disabled })),
        )
        .await
    }

    pub async fn delete_robot(&self, project: Option<&str>, name: &str) -> Result<(), ApiError> {
        let mut path = Self::robots_path(project);
        path.push(name);
        self.call_empty(Method::DELETE, &path, None).await
    }

    pub async fn refresh_robot_secret(
        &self,
        project: Option<&str>,
        name: &str,
    ) -> Result<Reply<RobotWithSecret>, ApiError> {
        let mut path = Self::robots_path(project);
        path.extend([name, "secret"]);
        self.call(Method::POST, &path, &[], None).await
    }

    // --- system -------------------------------------------------------

    pub async fn rotate_signing_key(&self) -> Result<Reply<RotatedKey>, ApiError> {
        self.call(
            Method::POST,
            &["system", "signing-key", "rotate"],
            &[],
            None,
        )
        .await
    }
}

/// A request body as JSON. The bodies here are plain structs of strings,
/// numbers and maps with string keys, which always serialize.
fn to_json<T: Serialize>(body: &T) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// The `(code, message)` pairs of the API's error shape, if `json` has it.
fn api_errors(json: &Value) -> Option<Vec<(String, String)>> {
    let errors = json.get("errors")?.as_array()?;
    let pairs: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (field("code"), field("message"))
        })
        .collect();
    (!pairs.is_empty()).then_some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_addresses() {
        let cases = [
            ("127.0.0.1:5000", "http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("127.8.9.10:80", "http://127.8.9.10", "127.8.9.10"),
            ("localhost:5000", "http://localhost:5000", "localhost:5000"),
            ("LOCALHOST", "http://localhost", "localhost"),
            ("[::1]:5000", "http://[::1]:5000", "[::1]:5000"),
            (
                "registry.example.com:5000",
                "https://registry.example.com:5000",
                "registry.example.com:5000",
            ),
            (
                "registry.example.com",
                "https://registry.example.com",
                "registry.example.com",
            ),
            ("10.0.0.1:5000", "https://10.0.0.1:5000", "10.0.0.1:5000"),
            (
                "http://registry.internal:5000/",
                "http://registry.internal:5000",
                "registry.internal:5000",
            ),
            ("https://r.example:443", "https://r.example", "r.example"),
            (
                "https://127.0.0.1:5443",
                "https://127.0.0.1:5443",
                "127.0.0.1:5443",
            ),
        ];
        for (input, url, key) in cases {
            let r = parse_registry(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), url, "{input}");
            assert_eq!(r.key(), key, "{input}");
        }
        for bad in [
            "",
            "ftp://x",
            "http://",
            "https://r.example/v2/",
            "http://u:p@r.example",
            "https://r.example?x=1",
        ] {
            assert!(parse_registry(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls_encode_each_segment() {
        let client = Client::new(parse_registry("127.0.0.1:1").unwrap(), None, false).unwrap();
        let url = client.url(&["users", "a/b c"], &[("q", "x&y".into())]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/api/v1/users/a%2Fb%20c?q=x%26y"
        );
    }

    #[test]
    fn error_messages() {
        let e = ApiError::Api {
            status: StatusCode::NOT_FOUND,
            errors: vec![("NOT_FOUND".into(), "project \"x\" not found".into())],
        };
        assert_eq!(
            e.to_string(),
            "project \"x\" not found (NOT_FOUND, HTTP 404)"
        );
        let json = serde_json::json!({"errors": [{"code": "DENIED", "message": "no"}]});
        assert_eq!(
            api_errors(&json),
            Some(vec![("DENIED".into(), "no".into())])
        );
        assert_eq!(api_errors(&serde_json::json!({"errors": []})), None);
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{c:?}").contains("hunter22"));
    }
}
