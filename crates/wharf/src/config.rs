//! One typed configuration tree.
//!
//! Sources, each overriding the one before: built-in defaults, a TOML file
//! (`--config` or `WHARF_CONFIG`), `WHARF_<SECTION>__<KEY>` environment
//! variables, and for secrets `WHARF_<SECTION>__<KEY>_FILE` naming a file that
//! holds the value. Unknown keys are an error wherever they come from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Keys whose values are secrets: they may come from `*_FILE` variables and
/// are redacted when the configuration is printed or logged.
const SECRET_KEYS: &[&str] = &[
    "auth.admin_password",
    "auth.ldap.bind_password",
    "database.url",
    "storage.s3.secret_access_key",
    "storage.s3.session_token",
];

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded database and the blob directory live by default.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub lifecycle: LifecycleConfig,
    pub webhooks: WebhooksConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./wharf-data"),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            lifecycle: LifecycleConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace_seconds: u64,
    /// A request body that sends nothing for this long is abandoned (and
    /// nothing of it kept), so stalled clients cannot hold uploads forever.
    pub body_idle_timeout_seconds: u64,
    /// Serve HTTPS with these PEM files instead of plain HTTP.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".into(),
            shutdown_grace_seconds: 30,
            body_idle_timeout_seconds: 120,
            tls: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub filesystem: FilesystemConfig,
    /// Blobs in an S3-compatible bucket instead of a directory (see
    /// `storage::S3Config` for the keys).
    pub s3: Option<storage::S3Config>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// Blob directory; `<data_dir>/blobs` when unset.
    pub path: Option<PathBuf>,
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://<path>` (embedded) or `postgres://user:password@host:port/db`
    /// (shared by several nodes); `sqlite://<data_dir>/wharf.db` when unset.
    pub url: Option<String>,
    /// SQLite: read connections. PostgreSQL: connections this node keeps at most.
    pub max_connections: u32,
    /// SQLite only: fsync the database at every commit (no acknowledged push
    /// can be lost to a power failure). When false, a power failure may undo
    /// the last commits but never corrupts the database.
    pub fsync_every_commit: bool,
    /// PostgreSQL only: how long a request waits for a connection before it
    /// fails with 503 (the database is down or every connection is busy).
    pub acquire_timeout_seconds: u64,
    /// PostgreSQL only: longest a statement may run before it is cancelled.
    pub statement_timeout_seconds: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 8,
            fsync_every_commit: true,
            acquire_timeout_seconds: 5,
            statement_timeout_seconds: 30,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    /// The URL may hold a password: shown redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("max_connections", &self.max_connections)
            .field("fsync_every_commit", &self.fsync_every_commit)
            .field("acquire_timeout_seconds", &self.acquire_timeout_seconds)
            .field("statement_timeout_seconds", &self.statement_timeout_seconds)
            .finish()
    }
}

/// Which metadata database the configuration selects.
#[derive(Clone, PartialEq)]
pub enum DatabaseKind {
    Sqlite(PathBuf),
    /// The URL, which may hold a password.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseKind::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            DatabaseKind::Postgres(url) => {
                f.debug_tuple("Postgres").field(&redact_url(url)).finish()
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_manifest_bytes: u64,
    pub max_blob_bytes: u64,
    pub max_tags_per_push: usize,
    /// Most entries in one page of tags, repositories or referrers.
    pub max_page_entries: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = registry::Limits::default();
        LimitsConfig {
            max_manifest_bytes: d.max_manifest_bytes,
            max_blob_bytes: d.max_blob_bytes,
            max_tags_per_push: d.max_tags_per_push,
            max_page_entries: d.max_page_entries,
        }
    }
}

/// Users, tokens and sign-in; see `docs/access-control.md`.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The password of the first administrator (`admin`), created at the
    /// first start; also read from `WHARF_ADMIN_PASSWORD`. Unset: a password
    /// is generated and logged once. Ignored once an administrator exists.
    pub admin_password: Option<String>,
    /// The token endpoint's URL in challenges; unset: this server's own
    /// `/auth/token` at the address the client used.
    pub token_realm: Option<String>,
    /// The service name of the token endpoint (the tokens' audience).
    pub service: String,
    /// The tokens' issuer.
    pub issuer: String,
    /// How long an access token is valid.
    pub access_token_lifetime_seconds: u64,
    /// How long a refresh token (`offline_token`) is valid; retired signing
    /// keys keep verifying this long.
    pub refresh_token_lifetime_seconds: u64,
    /// A system administrator's push to a project that does not exist
    /// creates it (private) instead of failing.
    pub auto_create_projects: bool,
    /// Failed sign-ins for one name from one address before further
    /// attempts are refused until the window passes.
    pub max_failed_logins: u32,
    pub failed_login_window_seconds: u64,
    /// How long audit log entries are kept.
    pub audit_retention_days: u64,
    /// Sign users in against an LDAP directory (see `docs/access-control.md`).
    pub ldap: Option<identity::ldap::LdapConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let d = identity::IdentityConfig::default();
        AuthConfig {
            admin_password: None,
            token_realm: None,
            service: d.service,
            issuer: d.issuer,
            access_token_lifetime_seconds: d.access_token_lifetime.as_secs(),
            refresh_token_lifetime_seconds: d.refresh_token_lifetime.as_secs(),
            auto_create_projects: d.auto_create_projects,
            max_failed_logins: d.max_failed_logins,
            failed_login_window_seconds: d.failed_login_window.as_secs(),
            audit_retention_days: d.audit_retention.as_secs() / 86_400,
            ldap: None,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    /// The admin password is shown redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("token_realm", &self.token_realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field(
                "access_token_lifetime_seconds",
                &self.access_token_lifetime_seconds,
            )
            .field(
                "refresh_token_lifetime_seconds",
                &self.refresh_token_lifetime_seconds,
            )
            .field("auto_create_projects", &self.auto_create_projects)
            .field("max_failed_logins", &self.max_failed_logins)
            .field(
                "failed_login_window_seconds",
                &self.failed_login_window_seconds,
            )
            .field("audit_retention_days", &self.audit_retention_days)
            .field("ldap", &self.ldap)
            .finish()
    }
}

impl AuthConfig {
    pub fn identity(&self) -> identity::IdentityConfig {
        identity::IdentityConfig {
            issuer: self.issuer.clone(),
            service: self.service.clone(),
            access_token_lifetime: std::time::Duration::from_secs(
                self.access_token_lifetime_seconds,
            ),
            refresh_token_lifetime: std::time::Duration::from_secs(
                self.refresh_token_lifetime_seconds,
            ),
            auto_create_projects: self.auto_create_projects,
            max_failed_logins: self.max_failed_logins,
            failed_login_window: std::time::Duration::from_secs(self.failed_login_window_seconds),
            admin_password: self.admin_password.clone(),
            audit_retention: std::time::Duration::from_secs(self.audit_retention_days * 86_400),
            ldap: self.ldap.clone(),
        }
    }
}

/// How webhooks are delivered; see `docs/webhooks.md`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// The registry's address as clients name it (`registry.example.com`,
    /// `host:port`), for the image references in payloads; empty: the
    /// address `server.listen` names.
    pub registry_host: String,
    /// How long one attempt may take.
    pub timeout_seconds: u64,
    /// Attempts before a delivery is failed (and can be redelivered by hand).
    pub max_attempts: u32,
    /// Wait before the second attempt, doubled for each further one.
    pub retry_base_seconds: u64,
    /// Longest wait between two attempts.
    pub retry_max_seconds: u64,
    /// How long ended deliveries stay in the delivery log.
    pub history_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            registry_host: String::new(),
            timeout_seconds: 10,
            max_attempts: 10,
            retry_base_seconds: 2,
            retry_max_seconds: 600,
            history_days: 14,
        }
    }
}

impl WebhooksConfig {
    pub fn settings(&self, listen: &str) -> anyhow::Result<webhooks::WebhookSettings> {
        anyhow::ensure!(
            self.timeout_seconds >= 1,
            "webhooks.timeout_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.max_attempts >= 1,
            "webhooks.max_attempts must be at least 1"
        );
        anyhow::ensure!(
            self.retry_base_seconds >= 1 && self.retry_max_seconds >= self.retry_base_seconds,
            "webhooks.retry_base_seconds must be at least 1 and at most webhooks.retry_max_seconds"
        );
        let host = if self.registry_host.is_empty() {
            listen.to_owned()
        } else {
            self.registry_host.clone()
        };
        let secs = std::time::Duration::from_secs;
        Ok(webhooks::WebhookSettings {
            timeout: secs(self.timeout_seconds),
            max_attempts: self.max_attempts,
            retry_base: secs(self.retry_base_seconds),
            retry_max: secs(self.retry_max_seconds),
            history: secs(self.history_days.saturating_mul(86_400)),
            registry_host: host,
            ..webhooks::WebhookSettings::default()
        })
    }
}

/// Garbage collection, integrity checks and retention runs; see
/// `docs/lifecycle.md`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Cron expression (UTC) for garbage collection; empty: manual runs only.
    pub gc_schedule: String,
    /// Nothing younger than this is collected, so in-flight pushes are safe.
    pub gc_grace_period_seconds: u64,
    /// Collection also deletes manifests without tags that nothing kept
    /// refers to.
    pub gc_delete_untagged: bool,
    /// Upload sessions nobody wrote to for this long are abandoned.
    pub upload_max_age_seconds: u64,
    /// Cron expression (UTC) for integrity checks; empty: manual runs only.
    pub integrity_schedule: String,
    /// How fast an integrity check reads blobs.
    pub integrity_bytes_per_second: u64,
    /// Retention keeps artifacts pushed within this many seconds.
    pub retention_protect_seconds: u64,
    /// How long run records are kept.
    pub run_history_days: u64,
    /// Manifests a tag stopped pointing at within this many hours are kept
    /// by garbage collection and retention, so the tag can be rolled back.
    pub tag_history_hours: u64,
    /// The nice value (0-19) of the threads lifecycle runs work on: 19 lets
    /// them take only the processor time requests leave idle; 0 gives them
    /// the requests' priority (faster runs, slower requests meanwhile).
    pub background_nice: u8,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            gc_schedule: "0 * * * *".into(),
            gc_grace_period_seconds: 3600,
            gc_delete_untagged: false,
            upload_max_age_seconds: 24 * 3600,
            integrity_schedule: "30 4 * * 0".into(),
            integrity_bytes_per_second: 64 * 1024 * 1024,
            retention_protect_seconds: 3600,
            run_history_days: 90,
            tag_history_hours: 24,
            background_nice: 19,
        }
    }
}

impl LifecycleConfig {
    pub fn settings(&self) -> anyhow::Result<jobs::LifecycleSettings> {
        let schedule = |key: &str, s: &str| -> anyhow::Result<Option<policy::schedule::Schedule>> {
            if s.trim().is_empty() {
                return Ok(None);
            }
            policy::schedule::Schedule::parse(s)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("lifecycle.{key}: {e}"))
        };
        anyhow::ensure!(
            self.background_nice <= 19,
            "lifecycle.background_nice: {} is not a nice value from 0 to 19",
            self.background_nice
        );
        Ok(jobs::LifecycleSettings {
            gc: registry::gc::GcOptions {
                grace: std::time::Duration::from_secs(self.gc_grace_period_seconds),
                delete_untagged: self.gc_delete_untagged,
                dry_run: false,
                upload_max_age: std::time::Duration::from_secs(self.upload_max_age_seconds),
                tag_history: std::time::Duration::from_secs(self.tag_history_hours * 3600),
                batch: registry::gc::GcOptions::default().batch,
            },
            gc_schedule: schedule("gc_schedule", &self.gc_schedule)?,
            integrity_schedule: schedule("integrity_schedule", &self.integrity_schedule)?,
            integrity_bytes_per_second: self.integrity_bytes_per_second.max(1),
            retention_protect: std::time::Duration::from_secs(self.retention_protect_seconds),
            run_history: std::time::Duration::from_secs(self.run_history_days * 86_400),
            background_nice: i32::from(self.background_nice),
        })
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, or per module, `info,wharf_http=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot read {variable}: {source}")]
    SecretFile {
        variable: String,
        source: std::io::Error,
    },
    #[error(
        "environment variable {0} does not name a configuration key (use WHARF_<SECTION>__<KEY>)"
    )]
    BadVariable(String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the file (if any), then the `WHARF_*` variables.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Parse {
                        path: path.to_owned(),
                        source: Box::new(source),
                    })?
            }
        };
        for (variable, value) in env {
            let Some(key) = variable.strip_prefix("WHARF_") else {
                continue;
            };
            // `WHARF_CONFIG` names the file; the others are the command-line
            // client's (`wharf project ...`), which may well be set in the
            // shell that starts a server.
            if matches!(key, "CONFIG" | "REGISTRY" | "USERNAME" | "PASSWORD") {
                continue;
            }
            // The first administrator's password has a short name of its own.
            let key = match key {
                "ADMIN_PASSWORD" => "AUTH__ADMIN_PASSWORD",
                "ADMIN_PASSWORD_FILE" => "AUTH__ADMIN_PASSWORD_FILE",
                other => other,
            };
            let (path, value) = match key.strip_suffix("_FILE") {
                Some(secret) if SECRET_KEYS.contains(&dotted(secret).as_str()) => {
                    let text = std::fs::read_to_string(&value).map_err(|source| {
                        ConfigError::SecretFile {
                            variable: variable.clone(),
                            source,
                        }
                    })?;
                    (
                        dotted(secret),
                        toml::Value::String(text.trim_end_matches(['\n', '\r']).to_owned()),
                    )
                }
                _ => (dotted(key), env_value(&value)),
            };
            insert(&mut table, &path, value)
                .map_err(|()| ConfigError::BadVariable(variable.clone()))?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::Invalid(format!("invalid configuration: {e}"))
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.database()?;
        if self.storage.s3.is_some() && self.storage.filesystem.path.is_some() {
            return Err(ConfigError::Invalid(
                "storage.s3 and storage.filesystem.path are both set; choose one blob store".into(),
            ));
        }
        if self.database.max_connections == 0 || self.database.acquire_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections and database.acquire_timeout_seconds must be at least 1"
                    .into(),
            ));
        }
        if self.limits.max_manifest_bytes < 4 * 1024 * 1024 {
            tracing::warn!(
                "limits.max_manifest_bytes is below 4 MiB; the distribution spec expects registries to take manifests of at least 4 MiB"
            );
        }
        if self.server.body_idle_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "server.body_idle_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.auth.access_token_lifetime_seconds < 60
            || self.auth.refresh_token_lifetime_seconds < self.auth.access_token_lifetime_seconds
            || self.auth.max_failed_logins == 0
            || self.auth.failed_login_window_seconds == 0
            || self.auth.audit_retention_days == 0
        {
            return Err(ConfigError::Invalid(
                "auth: access tokens must live at least 60 seconds and refresh tokens at least as \
                 long; max_failed_logins, failed_login_window_seconds and audit_retention_days \
                 must be at least 1"
                    .into(),
            ));
        }
        if let Some(p) = &self.auth.admin_password
            && let Err(e) = auth::secret::check_password_policy(p)
        {
            return Err(ConfigError::Invalid(format!("auth.admin_password: {e}")));
        }
        if self.limits.max_tags_per_push == 0 || self.limits.max_page_entries == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_tags_per_push and limits.max_page_entries must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "server.listen {:?} is not an address and port such as 127.0.0.1:5000: {e}",
                self.server.listen
            ))
        })
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.storage
            .filesystem
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The metadata database the configuration selects.
    pub fn database(&self) -> Result<DatabaseKind, ConfigError> {
        let Some(url) = &self.database.url else {
            return Ok(DatabaseKind::Sqlite(self.data_dir.join("wharf.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseKind::Postgres(url.clone()));
        }
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
            .map(|p| DatabaseKind::Sqlite(PathBuf::from(p)))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "database.url {} is not supported: use sqlite://<path> or postgres://user:password@host:port/database",
                    redact_url(url)
                ))
            })
    }

    pub fn limits(&self) -> registry::Limits {
        registry::Limits {
            max_manifest_bytes: self.limits.max_manifest_bytes,
            max_blob_bytes: self.limits.max_blob_bytes,
            max_tags_per_push: self.limits.max_tags_per_push,
            max_page_entries: self.limits.max_page_entries,
        }
    }

    fn redacted(&self) -> Config {
        let mut shown = self.clone();
        shown.database.url = shown.database.url.as_deref().map(redact_url);
        if let Some(s3) = &mut shown.storage.s3 {
            for secret in [&mut s3.secret_access_key, &mut s3.session_token] {
                if secret.is_some() {
                    *secret = Some("***".into());
                }
            }
        }
        if shown.auth.admin_password.is_some() {
            shown.auth.admin_password = Some("***".into());
        }
        if let Some(ldap) = &mut shown.auth.ldap {
            ldap.bind_password = "***".into();
        }
        shown
    }

    /// The effective configuration as TOML, secrets redacted (for `wharf config`).
    pub fn redacted_toml(&self) -> String {
        toml::to_string(&self.redacted())
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// The effective configuration as one line of JSON, secrets redacted (for logs).
    pub fn redacted_json(&self) -> String {
        serde_json::to_string(&self.redacted())
            .unwrap_or_else(|e| format!("cannot render configuration: {e}"))
    }
}

/// `SERVER__TLS__PRIVATE_KEY` -> `server.tls.private_key`.
fn dotted(key: &str) -> String {
    key.to_ascii_lowercase().replace("__", ".")
}

/// A value from the environment: a TOML scalar if it reads as one (numbers,
/// booleans, quoted strings), otherwise the raw text.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn insert(table: &mut toml::Table, dotted_path: &str, value: toml::Value) -> Result<(), ()> {
    let mut parts = dotted_path.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(());
        }
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return Ok(());
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or(())?;
    }
    Err(())
}

/// Hides the passwords of a URL: `scheme://user:password@host/...` and a
/// `password=` query parameter (libpq takes both).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_from_the_current_directory() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:5000");
        assert_eq!(c.data_dir, PathBuf::from("./wharf-data"));
        assert_eq!(
            c.database().unwrap(),
            DatabaseKind::Sqlite(PathBuf::from("./wharf-data/wharf.db"))
        );
        let c = Config::load(
            None,
            env(&[("WHARF_DATABASE__URL", "postgres://w:pw@db:5432/wharf")]),
        )
        .unwrap();
        assert_eq!(
            c.database().unwrap(),
            DatabaseKind::Postgres("postgres://w:pw@db:5432/wharf".into())
        );
        let e = Config::load(None, env(&[("WHARF_DATABASE__URL", "mysql://u:pw@h/db")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported") && !e.contains("pw"), "{e}");
        assert_eq!(c.blob_dir(), PathBuf::from("./wharf-data/blobs"));
        assert_eq!(c.limits.max_manifest_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(
            &file,
            "data_dir = \"/var/lib/wharf\"\n[server]\nlisten = \"0.0.0.0:5000\"\n[limits]\nmax_manifest_bytes = 8388608\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("WHARF_SERVER__LISTEN", "127.0.0.1:6000"),
                ("WHARF_LOG__FORMAT", "json"),
                ("WHARF_DATABASE__FSYNC_EVERY_COMMIT", "false"),
                ("WHARF_CONFIG", "ignored"),
                // the command-line client's variables
                ("WHARF_REGISTRY", "https://registry.example.com"),
                ("WHARF_USERNAME", "alice"),
                ("WHARF_PASSWORD", "secret"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/wharf"));
        assert_eq!(c.server.listen, "127.0.0.1:6000");
        assert_eq!(c.limits.max_manifest_bytes, 8 * 1024 * 1024);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(!c.database.fsync_every_commit);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"typo\"\n",
        )
        .unwrap();
        let e = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = Config::load(None, env(&[("WHARF_SERVR__LISTEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("servr"), "{e}");
        let e = Config::load(None, env(&[("WHARF_SERVER__LISTEN", "nonsense")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "sqlite://./x.db\n").unwrap();
        let c = Config::load(
            None,
            env(&[("WHARF_DATABASE__URL_FILE", secret.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.database.url.as_deref(), Some("sqlite://./x.db"));
        assert_eq!(
            redact_url("postgres://wharf:s3cret@db:5432/wharf"),
            "postgres://wharf:***@db:5432/wharf"
        );
        let mut c = c;
        c.database.url = Some("postgres://wharf:s3cret@db/wharf".into());
        assert!(!c.redacted_toml().contains("s3cret"));
        assert!(!c.redacted_json().contains("s3cret"));
        assert!(!format!("{c:?} {:?}", c.database()).contains("s3cret"));
        assert_eq!(
            redact_url("postgres://db/wharf?user=w&password=s3cret&sslmode=require"),
            "postgres://db/wharf?user=w&password=***&sslmode=require"
        );
        assert!(!c.redacted_json().contains('\n'));
        let s3_secret = dir.path().join("s3-secret");
        std::fs::write(&s3_secret, "very-secret-key\n").unwrap();
        let c = Config::load(
            None,
            env(&[
                ("WHARF_STORAGE__S3__BUCKET", "b"),
                ("WHARF_STORAGE__S3__ACCESS_KEY_ID", "GKid"),
                (
                    "WHARF_STORAGE__S3__SECRET_ACCESS_KEY_FILE",
                    s3_secret.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap();
        let s3 = c.storage.s3.as_ref().unwrap();
        assert_eq!(s3.secret_access_key.as_deref(), Some("very-secret-key"));
        assert!(!c.redacted_toml().contains("very-secret-key"));
        assert!(!c.redacted_json().contains("very-secret-key"));
        assert!(!format!("{c:?}").contains("very-secret-key"));
        // The administrator's first password and the directory's bind
        // password are secrets too.
        let admin_secret = dir.path().join("admin");
        std::fs::write(&admin_secret, "first admin password\n").unwrap();
        let c = Config::load(
            None,
            env(&[
                ("WHARF_ADMIN_PASSWORD_FILE", admin_secret.to_str().unwrap()),
                ("WHARF_AUTH__LDAP__URL", "ldap://127.0.0.1:389"),
                ("WHARF_AUTH__LDAP__BIND_PASSWORD", "directory secret"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.auth.admin_password.as_deref(),
            Some("first admin password")
        );
        for shown in [c.redacted_toml(), c.redacted_json(), format!("{c:?}")] {
            assert!(!shown.contains("first admin password"), "{shown}");
            assert!(!shown.contains("directory secret"), "{shown}");
        }
        // `_FILE` is only for secrets: other keys ending in it are ordinary keys.
        let e = Config::load(None, env(&[("WHARF_SERVER__LISTEN_FILE", "/x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_file"), "{e}");
    }
}
