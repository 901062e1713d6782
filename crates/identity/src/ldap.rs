//! Sign-in against an LDAP directory (OpenLDAP, 389-ds, Active Directory, ...).
//!
//! [`Ldap::authenticate`] checks a name and password the way directories
//! expect a client to:
//!
//! 1. connect (`ldap://`, `ldaps://`, or `ldap://` upgraded with StartTLS);
//! 2. bind as wharf's service account ([`LdapConfig::bind_dn`]);
//! 3. search [`LdapConfig::user_base_dn`] with [`LdapConfig::user_filter`],
//!    the name escaped into it as RFC 4515 requires; exactly one entry must
//!    match;
//! 4. bind as that entry's DN with the password: the directory, not wharf,
//!    decides whether the password is right;
//! 5. bind as the service account again and search the groups whose
//!    [`LdapConfig::group_filter`] names the user (optional).
//!
//! The answer is a [`DirectoryUser`] (name, e-mail, full name, group DNs,
//! whether [`LdapConfig::admin_group`] is among them), `None` when the
//! credentials are wrong in any way, or an [`LdapError`] saying whether the
//! directory is down ([`LdapError::Unavailable`]) or wharf's configuration
//! does not work with it ([`LdapError::Misconfigured`]). Each sign-in uses a
//! connection of its own, closed when it returns; every network step is
//! bounded by [`LdapConfig::timeout_seconds`].
//!
//! What this module must not do:
//!
//! - Treat a bind with an empty password as a success. LDAP calls it an
//!   *unauthenticated* bind and many directories answer it with success
//!   whatever the DN; empty passwords are refused before any I/O.
//! - Let a name change the shape of a filter: `*`, `(`, `)`, `\` and NUL are
//!   escaped, so `*` or `alice)(uid=*` match nothing.
//! - Compare passwords, read password attributes, cache outcomes or write to
//!   the directory.
//! - Put a password into an error, a log line or `Debug` output.
//! - Fall back to plain text when StartTLS fails.
//!
//! It does not create or update wharf users from what it finds: that is the
//! caller's business.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchEntry, SearchOptions};
use serde::{Deserialize, Serialize};

/// How to reach the directory and where users and groups are in it.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding; a
    /// directory that refuses is an error, never a reason to go on in plain
    /// text.
    pub start_tls: bool,
    /// The service account that searches users and groups.
    pub bind_dn: String,
    /// Its password; never shown by `Debug`.
    pub bind_password: String,
    /// Where users are searched (the whole subtree).
    pub user_base_dn: String,
    /// Finds the entry of one user: `{username}` is replaced by the name
    /// signing in, escaped for a filter (RFC 4515).
    pub user_filter: String,
    /// The attribute wharf takes the user's name from (the spelling the
    /// directory holds, e.g. `alice` for someone who typed `Alice`).
    pub username_attribute: String,
    pub email_attribute: String,
    pub full_name_attribute: String,
    /// Where groups are searched (the whole subtree); unset, groups are not
    /// looked up.
    pub group_base_dn: Option<String>,
    /// Finds the groups of one user: `{dn}` is replaced by the user's DN and
    /// `{username}` by their name (for `posixGroup`'s `memberUid`), both
    /// escaped.
    pub group_filter: String,
    /// The DN of a group whose members are system administrators; needs
    /// `group_base_dn`, and the group must be below it.
    pub admin_group: Option<String>,
    /// The limit for connecting, and for each operation after that.
    pub timeout_seconds: u64,
    /// PEM file with the certificate authorities that may sign the
    /// directory's certificate (`ldaps://` or StartTLS); unset, the system's.
    pub ca_certificate: Option<PathBuf>,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            start_tls: false,
            bind_dn: String::new(),
            bind_password: String::new(),
            user_base_dn: String::new(),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))".into(),
            username_attribute: "uid".into(),
            email_attribute: "mail".into(),
            full_name_attribute: "cn".into(),
            group_base_dn: None,
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))".into(),
            admin_group: None,
            timeout_seconds: 5,
            ca_certificate: None,
        }
    }
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("user_base_dn", &self.user_base_dn)
            .field("user_filter", &self.user_filter)
            .field("username_attribute", &self.username_attribute)
            .field("email_attribute", &self.email_attribute)
            .field("full_name_attribute", &self.full_name_attribute)
            .field("group_base_dn", &self.group_base_dn)
            .field("group_filter", &self.group_filter)
            .field("admin_group", &self.admin_group)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("ca_certificate", &self.ca_certificate)
            .finish()
    }
}

/// A user the directory vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The user's entry.
    pub dn: String,
    /// [`LdapConfig::username_attribute`], as the directory spells it.
    pub name: String,
    /// [`LdapConfig::email_attribute`]; empty when the entry has none.
    pub email: String,
    /// [`LdapConfig::full_name_attribute`]; empty when the entry has none.
    pub full_name: String,
    /// The DNs of the user's groups, sorted; empty without `group_base_dn`.
    pub groups: Vec<String>,
    /// Whether [`LdapConfig::admin_group`] is among `groups`.
    pub admin: bool,
}

/// Why the directory gave no answer. Messages never hold a password.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// The directory is down, unreachable or too slow (no answer within the
    /// timeout), or dropped the connection.
    #[error("LDAP directory unavailable: {0}")]
    Unavailable(String),
    /// The configuration does not work with this directory: invalid
    /// settings, the service account's bind refused, a filter or base DN it
    /// rejects, TLS it cannot do.
    #[error("LDAP misconfigured: {0}")]
    Misconfigured(String),
}

fn misconfigured(message: impl Into<String>) -> LdapError {
    LdapError::Misconfigured(message.into())
}

/// Longest name passed on to the directory, in bytes.
const MAX_USERNAME_LEN: usize = 256;

/// Result codes (RFC 4511, appendix A).
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const TIME_LIMIT_EXCEEDED: u32 = 3;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const CONSTRAINT_VIOLATION: u32 = 19;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INAPPROPRIATE_AUTHENTICATION: u32 = 48;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;
    pub const BUSY: u32 = 51;
    pub const UNAVAILABLE: u32 = 52;
    pub const UNWILLING_TO_PERFORM: u32 = 53;
}

/// Signs users in against one directory. Cheap to clone.
#[derive(Clone)]
pub struct Ldap {
    inner: Arc<Inner>,
}

struct Inner {
    config: LdapConfig,
    timeout: Duration,
    /// Our own TLS settings when `ca_certificate` is set; else ldap3's
    /// (the system's roots).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Ldap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ldap")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Ldap {
    /// Checks the configuration (and reads `ca_certificate`); connects to
    /// nothing.
    pub fn new(config: LdapConfig) -> Result<Self, LdapError> {
        let host = validate_url(&config.url)?;
        let tls_url = config.url.to_ascii_lowercase().starts_with("ldaps://");
        let encrypted = tls_url || config.start_tls;
        if config.start_tls && tls_url {
            return Err(misconfigured(
                "start_tls is for ldap:// URLs; an ldaps:// connection is TLS from the start",
            ));
        }
        if config.bind_dn.is_empty() {
            return Err(misconfigured("bind_dn (the service account) is not set"));
        }
        if config.bind_password.is_empty() {
            return Err(misconfigured(
                "bind_password is empty: that would be an unauthenticated bind",
            ));
        }
        if config.user_base_dn.is_empty() {
            return Err(misconfigured("user_base_dn is not set"));
        }
        check_filter("user_filter", &config.user_filter, &["username"])?;
        for (name, value) in [
            ("username_attribute", &config.username_attribute),
            ("email_attribute", &config.email_attribute),
            ("full_name_attribute", &config.full_name_attribute),
        ] {
            let valid = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.;".contains(&b));
            if !valid {
                return Err(misconfigured(format!(
                    "{name} {value:?} is not an attribute name"
                )));
            }
        }
        match &config.group_base_dn {
            Some(base) if base.is_empty() => {
                return Err(misconfigured(
                    "group_base_dn is empty; leave it unset to skip groups",
                ));
            }
            Some(_) => check_filter("group_filter", &config.group_filter, &["dn", "username"])?,
            None if config.admin_group.is_some() => {
                return Err(misconfigured(
                    "admin_group needs group_base_dn: groups are not looked up without it",
                ));
            }
            None => {}
        }
        if config.admin_group.as_deref() == Some("") {
            return Err(misconfigured("admin_group is empty"));
        }
        if config.timeout_seconds == 0 || config.timeout_seconds > 300 {
            return Err(misconfigured(format!(
                "timeout_seconds must be between 1 and 300, not {}",
                config.timeout_seconds
            )));
        }
        let tls = match &config.ca_certificate {
            Some(_) if !encrypted => {
                return Err(misconfigured(
                    "ca_certificate is set but the connection is plain ldap:// without start_tls",
                ));
            }
            Some(path) => Some(tls_config(path)?),
            None => None,
        };
        if !encrypted && !is_loopback(host) {
            tracing::warn!(
                url = %config.url,
                "LDAP without TLS: passwords cross the network in plain text; \
                 use ldaps:// or start_tls"
            );
        }
        Ok(Ldap {
            inner: Arc::new(Inner {
                timeout: Duration::from_secs(config.timeout_seconds),
                config,
                tls,
            }),
        })
    }

    /// The configuration this was made with.
    pub fn config(&self) -> &LdapConfig {
        &self.inner.config
    }

    /// Checks `username` and `password` with the directory: the user, or
    /// `None` for an unknown name, a wrong password, an empty password, a
    /// name no user could have, or a filter that matches several entries.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<DirectoryUser>, LdapError> {
        // An empty password makes a bind "unauthenticated", which many
        // directories accept for any DN.
        if password.is_empty() {
            return Ok(None);
        }
        if username.is_empty()
            || username.len() > MAX_USERNAME_LEN
            || username.chars().any(char::is_control)
        {
            return Ok(None);
        }
        let config = &self.inner.config;
        let mut conn = self.connect().await?;
        conn.bind_service_account(config).await?;

        let filter = fill(&config.user_filter, &[("username", username)]);
        let attributes = [
            config.username_attribute.as_str(),
            config.email_attribute.as_str(),
            config.full_name_attribute.as_str(),
        ];
        // Two are enough to know the filter is ambiguous.
        let (mut entries, result) = conn
            .search(&config.user_base_dn, &filter, &attributes, 2, "user search")
            .await?;
        // More entries than the limit of two: ambiguous too.
        let several = match result.rc {
            rc::SUCCESS => entries.len() > 1,
            rc::SIZE_LIMIT_EXCEEDED => true,
            rc::NO_SUCH_OBJECT => {
                return Err(misconfigured(format!(
                    "user_base_dn {:?} does not exist",
                    config.user_base_dn
                )));
            }
            _ => return Err(result_error("user search", &result)),
        };
        if several {
            tracing::warn!(
                user_filter = %config.user_filter,
                "LDAP user filter matches several entries for one name: refusing the sign-in"
            );
            return Ok(None);
        }
        let Some(entry) = entries.pop() else {
            return Ok(None);
        };
        // A bind with an empty DN and a password is anonymous to some
        // directories.
        if entry.dn.is_empty() {
            return Ok(None);
        }

        let result = conn.bind(&entry.dn, password, "user bind").await?;
        match result.rc {
            rc::SUCCESS => {}
            rc::INVALID_CREDENTIALS
            | rc::INAPPROPRIATE_AUTHENTICATION
            | rc::INSUFFICIENT_ACCESS_RIGHTS
            | rc::UNWILLING_TO_PERFORM
            | rc::CONSTRAINT_VIOLATION => {
                tracing::debug!(
                    dn = %entry.dn,
                    rc = result.rc,
                    text = %result.text,
                    "LDAP user bind refused"
                );
                return Ok(None);
            }
            _ => return Err(result_error("user bind", &result)),
        }

        let Some(name) = pick_name(&entry, &config.username_attribute, username) else {
            tracing::warn!(
                dn = %entry.dn,
                attribute = %config.username_attribute,
                "LDAP user has no username attribute: refusing the sign-in"
            );
            return Ok(None);
        };
        let email = first_value(&entry, &config.email_attribute).unwrap_or_default();
        let full_name = first_value(&entry, &config.full_name_attribute).unwrap_or_default();

        let mut groups = Vec::new();
        if let Some(group_base_dn) = &config.group_base_dn {
            conn.bind_service_account(config).await?;
            let filter = fill(
                &config.group_filter,
                &[("dn", &entry.dn), ("username", &name)],
            );
            let (entries, result) = conn
                .search(group_base_dn, &filter, &["1.1"], 0, "group search")
                .await?;
            match result.rc {
                rc::SUCCESS => {}
                rc::SIZE_LIMIT_EXCEEDED => {
                    return Err(misconfigured(
                        "the group search returns more groups than the directory's size limit",
                    ));
                }
                rc::NO_SUCH_OBJECT => {
                    return Err(misconfigured(format!(
                        "group_base_dn {group_base_dn:?} does not exist"
                    )));
                }
                _ => return Err(result_error("group search", &result)),
            }
            groups = entries.into_iter().map(|e| e.dn).collect();
            groups.sort();
            groups.dedup();
        }
        let admin = config.admin_group.as_deref().is_some_and(|admin_group| {
            let admin_group = normalize_dn(admin_group);
            groups.iter().any(|g| normalize_dn(g) == admin_group)
        });
        Ok(Some(DirectoryUser {
            dn: entry.dn,
            name,
            email,
            full_name,
            groups,
            admin,
        }))
    }

    async fn connect(&self) -> Result<Connection, LdapError> {
        let inner = &self.inner;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(inner.timeout)
            .set_starttls(inner.config.start_tls);
        if let Some(tls) = &inner.tls {
            settings = settings.set_config(tls.clone());
        }
        let url = &inner.config.url;
        let connecting = LdapConnAsync::with_settings(settings, url);
        let (conn, ldap) = match tokio::time::timeout(inner.timeout, connecting).await {
            Ok(Ok(pair)) => pair,
            Err(_) | Ok(Err(ldap3::LdapError::Timeout { .. })) => {
                return Err(LdapError::Unavailable(format!(
                    "{url}: no connection within {} s",
                    inner.config.timeout_seconds
                )));
            }
            Ok(Err(ldap3::LdapError::LdapResult { result })) => {
                // Only StartTLS answers with a result while connecting.
                return Err(misconfigured(format!(
                    "{url}: the directory refused StartTLS: {result}"
                )));
            }
            Ok(Err(ldap3::LdapError::Io { source })) if is_tls_error(&source) => {
                return Err(misconfigured(format!("{url}: TLS: {source}")));
            }
            Ok(Err(e)) => return Err(classify(url, "connecting", e)),
        };
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(Connection {
            ldap,
            driver,
            timeout: inner.timeout,
            url: url.clone(),
        })
    }
}

/// One sign-in's connection; closed when dropped.
struct Connection {
    ldap: ldap3::Ldap,
    driver: tokio::task::JoinHandle<()>,
    timeout: Duration,
    url: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// `operation`, bounded by the timeout.
    async fn within<T>(
        timeout: Duration,
        url: &str,
        what: &str,
        operation: impl Future<Output = ldap3::result::Result<T>>,
    ) -> Result<T, LdapError> {
        match tokio::time::timeout(timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(url, what, e)),
            Err(_) => Err(LdapError::Unavailable(format!(
                "{url}: no answer to the {what} within {} s",
                timeout.as_secs()
            ))),
        }
    }

    async fn bind(
        &mut self,
        dn: &str,
        password: &str,
        what: &str,
    ) -> Result<LdapResult, LdapError> {
        let binding = self.ldap.simple_bind(dn, password);
        Self::within(self.timeout, &self.url, what, binding).await
    }

    async fn bind_service_account(&mut self, config: &LdapConfig) -> Result<(), LdapError> {
        let result = self
            .bind(
                &config.bind_dn,
                &config.bind_password,
                "service account's bind",
            )
            .await?;
        match result.rc {
            rc::SUCCESS => Ok(()),
            rc::BUSY | rc::UNAVAILABLE => Err(result_error("service account's bind", &result)),
            _ => Err(misconfigured(format!(
                "the directory refused the service account {:?}: {result}",
                config.bind_dn,
            ))),
        }
    }

    /// A subtree search for entries only (referrals are dropped); `limit`
    /// 0 leaves the directory's own size limit.
    async fn search(
        &mut self,
        base: &str,
        filter: &str,
        attributes: &[&str],
        limit: i32,
        what: &str,
    ) -> Result<(Vec<SearchEntry>, LdapResult), LdapError> {
        let options = SearchOptions::new()
            .sizelimit(limit)
            .timelimit(i32::try_from(self.timeout.as_secs()).unwrap_or(i32::MAX));
        let searching = self.ldap.with_search_options(options).search(
            base,
            Scope::Subtree,
            filter,
            attributes.to_vec(),
        );
        let ldap3::SearchResult(raw, result) =
            Self::within(self.timeout, &self.url, what, searching).await?;
        let mut entries = Vec::with_capacity(raw.len());
        for entry in raw {
            // ldap3 panics on an entry it cannot decode (not UTF-8, bad
            // BER); that is the directory's fault, not a reason to unwind.
            let entry =
                std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(entry)))
                    .map_err(|_| {
                        LdapError::Unavailable(format!(
                            "{}: an undecodable entry in the {what}",
                            self.url
                        ))
                    })?;
            entries.push(entry);
        }
        Ok((entries, result))
    }
}

/// A failed operation's error: a directory that is busy or gone is
/// unavailable; anything else it refuses says the configuration is wrong.
fn classify(url: &str, what: &str, error: ldap3::LdapError) -> LdapError {
    use ldap3::LdapError as E;
    match error {
        E::LdapResult { result } => result_error(what, &result),
        E::FilterParsing => misconfigured(format!("{what}: the filter is not valid")),
        E::Io { .. }
        | E::OpSend { .. }
        | E::ResultRecv { .. }
        | E::IdScrubSend { .. }
        | E::MiscSend { .. }
        | E::Timeout { .. }
        | E::EndOfStream => LdapError::Unavailable(format!("{url}: {what}: {error}")),
        other => misconfigured(format!("{url}: {what}: {other}")),
    }
}

fn result_error(what: &str, result: &LdapResult) -> LdapError {
    let message = format!("{what}: {result}");
    match result.rc {
        rc::BUSY | rc::UNAVAILABLE | rc::TIME_LIMIT_EXCEEDED => LdapError::Unavailable(message),
        _ => LdapError::Misconfigured(message),
    }
}

/// Whether an I/O error from the TLS handshake is TLS refusing (a
/// certificate it does not trust, no common protocol version) rather than
/// the network failing.
fn is_tls_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// `url` is `ldap://host[:port]` or `ldaps://host[:port]`, optionally with
/// a trailing `/`: returns the host.
fn validate_url(url: &str) -> Result<&str, LdapError> {
    let invalid = |why: &str| misconfigured(format!("url {url:?}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("not a URL; use ldap://host or ldaps://host"))?;
    if !scheme.eq_ignore_ascii_case("ldap") && !scheme.eq_ignore_ascii_case("ldaps") {
        return Err(invalid("the scheme must be ldap or ldaps"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(invalid(
            "only a host and port; base DNs and filters have settings of their own",
        ));
    }
    if authority.contains('@') {
        return Err(invalid(
            "no user in the URL; the service account is bind_dn and bind_password",
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("an IPv6 address needs its closing ]"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(invalid("the port must be a number from 1 to 65535"));
    }
    Ok(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `template` must name at least one of `placeholders` and make a valid
/// filter once they are filled in.
fn check_filter(name: &str, template: &str, placeholders: &[&str]) -> Result<(), LdapError> {
    if !placeholders
        .iter()
        .any(|p| template.contains(&format!("{{{p}}}")))
    {
        let names: Vec<String> = placeholders.iter().map(|p| format!("{{{p}}}")).collect();
        return Err(misconfigured(format!(
            "{name} {template:?} must contain {}",
            names.join(" or ")
        )));
    }
    let sample: Vec<(&str, &str)> = placeholders.iter().map(|p| (*p, "x")).collect();
    if ldap3::parse_filter(fill(template, &sample)).is_err() {
        return Err(misconfigured(format!(
            "{name} {template:?} is not a valid LDAP filter"
        )));
    }
    Ok(())
}

fn tls_config(path: &Path) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let invalid = |why: String| misconfigured(format!("ca_certificate {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| invalid(e.to_string()))?;
        roots.add(certificate).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("holds no PEM certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Escapes a value for a filter (RFC 4515, section 3): `*`, `(`, `)`, `\`
/// and NUL become `\2a`, `\28`, `\29`, `\5c` and `\00`; everything else,
/// UTF-8 included, stays.
fn escape_filter_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => escaped.push_str(&format!("\\{:02x}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Replaces each `{name}` of `values` in `template` by the escaped value, in
/// one pass: a value that itself holds `{name}` is not filled in again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut filled = String::with_capacity(template.len() + 64);
    let mut rest = template;
    'scan: while let Some(open) = rest.find('{') {
        filled.push_str(&rest[..open]);
        let at = &rest[open..];
        for (name, value) in values {
            if let Some(after) = at
                .strip_prefix('{')
                .and_then(|s| s.strip_prefix(*name))
                .and_then(|s| s.strip_prefix('}'))
            {
                filled.push_str(&escape_filter_value(value));
                rest = after;
                continue 'scan;
            }
        }
        filled.push('{');
        rest = &at[1..];
    }
    filled.push_str(rest);
    filled
}

/// The values of `attribute` (attribute names are case-insensitive).
fn values<'e>(entry: &'e SearchEntry, attribute: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map_or(&[], |(_, values)| values.as_slice())
}

fn first_value(entry: &SearchEntry, attribute: &str) -> Option<String> {
    values(entry, attribute).first().cloned()
}

/// The user's name: of several values, the one the user typed (ignoring
/// case), else the first.
fn pick_name(entry: &SearchEntry, attribute: &str, typed: &str) -> Option<String> {
    let values = values(entry, attribute);
    values
        .iter()
        .find(|v| v.trim().to_lowercase() == typed.trim().to_lowercase())
        .or_else(|| values.first())
        .filter(|v| !v.is_empty())
        .cloned()
}

/// A DN in a form for comparing: lower case, without the spaces some people
/// write around `,` `=` `+` (escaped characters kept as they are). Good for
/// the usual case-insensitive attributes (cn, ou, dc, uid); not a full
/// RFC 4514 normalisation.
fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    // Characters up to here are escaped: never trimmed.
    let mut kept = 0;
    let mut escaping = false;
    let mut skip_spaces = true;
    for c in dn.chars() {
        if escaping {
            out.extend(c.to_lowercase());
            kept = out.len();
            escaping = false;
        } else if c == '\\' {
            out.push(c);
            kept = out.len();
            escaping = true;
            skip_spaces = false;
        } else if matches!(c, ',' | '=' | '+') {
            while out.len() > kept && out.ends_with(' ') {
                out.pop();
            }
            out.push(c);
            skip_spaces = true;
        } else if c != ' ' || !skip_spaces {
            out.extend(c.to_lowercase());
            skip_spaces = false;
        }
    }
    while out.len() > kept && out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn escapes_filter_values() {
        for (value, escaped) in [
            ("alice", "alice"),
            ("*", "\\2a"),
            ("*)(uid=*", "\\2a\\29\\28uid=\\2a"),
            ("alice)(uid=*", "alice\\29\\28uid=\\2a"),
            ("a\\b", "a\\5cb"),
            ("nul\0", "nul\\00"),
            ("(|(x=y))", "\\28|\\28x=y\\29\\29"),
            ("Zoë ✓", "Zoë ✓"),
            ("", ""),
        ] {
            assert_eq!(escape_filter_value(value), escaped, "{value:?}");
        }
    }

    #[test]
    fn injection_stays_a_value() {
        let template = "(&(objectClass=inetOrgPerson)(uid={username}))";
        let filled = fill(template, &[("username", "*)(uid=*")]);
        assert_eq!(
            filled,
            "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"
        );
        // Still one equality match on uid, which the parser accepts.
        assert!(ldap3::parse_filter(&filled).is_ok());
    }

    #[test]
    fn fills_placeholders_in_one_pass() {
        let template = "(|(member={dn})(memberUid={username})(x={other}))";
        let filled = fill(template, &[("dn", "uid=a(b),dc=x"), ("username", "{dn}")]);
        assert_eq!(
            filled,
            "(|(member=uid=a\\28b\\29,dc=x)(memberUid={dn})(x={other}))"
        );
    }

    #[test]
    fn normalizes_dns_for_comparison() {
        assert_eq!(
            normalize_dn(" CN=Admins , OU=groups,dc=Wharf, dc=test "),
            "cn=admins,ou=groups,dc=wharf,dc=test"
        );
        assert_eq!(normalize_dn("cn=a\\ ,dc=x"), "cn=a\\ ,dc=x");
        assert_ne!(normalize_dn("cn=a b,dc=x"), normalize_dn("cn=ab,dc=x"));
    }

    fn valid() -> LdapConfig {
        LdapConfig {
            url: "ldap://127.0.0.1:3890".into(),
            bind_dn: "cn=wharf-reader,dc=wharf,dc=test".into(),
            bind_password: "reader-password".into(),
            user_base_dn: "ou=people,dc=wharf,dc=test".into(),
            group_base_dn: Some("ou=groups,dc=wharf,dc=test".into()),
            ..LdapConfig::default()
        }
    }

    #[test]
    fn validates_the_configuration() {
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
        assert!(Ldap::new(valid()).is_ok());
        assert!(
            Ldap::new(LdapConfig {
                url: "LDAPS://[::1]:636/".into(),
                ..valid()
            })
            .is_ok()
        );
        let refused: Vec<(&str, LdapConfig)> = vec![
            (
                "no url",
                LdapConfig {
                    url: "".into(),
                    ..valid()
                },
            ),
            (
                "http",
                LdapConfig {
                    url: "http://x".into(),
                    ..valid()
                },
            ),
            (
                "path",
                LdapConfig {
                    url: "ldap://x/dc=test".into(),
                    ..valid()
                },
            ),
            (
                "user",
                LdapConfig {
                    url: "ldap://u:p@x".into(),
                    ..valid()
                },
            ),
            (
                "port",
                LdapConfig {
                    url: "ldap://x:99999".into(),
                    ..valid()
                },
            ),
            (
                "no host",
                LdapConfig {
                    url: "ldap://:389".into(),
                    ..valid()
                },
            ),
            (
                "starttls on ldaps",
                LdapConfig {
                    url: "ldaps://x".into(),
                    start_tls: true,
                    ..valid()
                },
            ),
            (
                "no bind dn",
                LdapConfig {
                    bind_dn: "".into(),
                    ..valid()
                },
            ),
            (
                "empty bind password",
                LdapConfig {
                    bind_password: "".into(),
                    ..valid()
                },
            ),
            (
                "no user base",
                LdapConfig {
                    user_base_dn: "".into(),
                    ..valid()
                },
            ),
            (
                "no placeholder",
                LdapConfig {
                    user_filter: "(uid=alice)".into(),
                    ..valid()
                },
            ),
            (
                "bad filter",
                LdapConfig {
                    user_filter: "(uid={username}".into(),
                    ..valid()
                },
            ),
            (
                "bad group filter",
                LdapConfig {
                    group_filter: "member={dn})".into(),
                    ..valid()
                },
            ),
            (
                "attribute",
                LdapConfig {
                    email_attribute: "mail)(x".into(),
                    ..valid()
                },
            ),
            (
                "admin without groups",
                LdapConfig {
                    group_base_dn: None,
                    admin_group: Some("cn=a".into()),
                    ..valid()
                },
            ),
            (
                "timeout",
                LdapConfig {
                    timeout_seconds: 0,
                    ..valid()
                },
            ),
            (
                "ca without tls",
                LdapConfig {
                    ca_certificate: Some(not_pem.path().into()),
                    ..valid()
                },
            ),
            (
                "ca missing",
                LdapConfig {
                    url: "ldaps://x".into(),
                    ca_certificate: Some("/nonexistent/ca.pem".into()),
                    ..valid()
                },
            ),
            (
                "ca not pem",
                LdapConfig {
                    start_tls: true,
                    ca_certificate: Some(not_pem.path().into()),
                    ..valid()
                },
            ),
        ];
        for (why, config) in refused {
            match Ldap::new(config) {
                Err(LdapError::Misconfigured(message)) => {
                    assert!(!message.contains("reader-password"), "{why}: {message}");
                }
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_defaults_and_redaction() {
        let config: LdapConfig = serde_json::from_value(serde_json::json!({
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=svc,dc=example,dc=com",
            "bind_password": "s3cret",
            "user_base_dn": "ou=people,dc=example,dc=com",
        }))
        .unwrap();
        assert_eq!(
            config.user_filter,
            "(&(objectClass=inetOrgPerson)(uid={username}))"
        );
        assert_eq!(
            config.group_filter,
            "(&(objectClass=groupOfNames)(member={dn}))"
        );
        assert_eq!(config.username_attribute, "uid");
        assert_eq!(config.email_attribute, "mail");
        assert_eq!(config.full_name_attribute, "cn");
        assert_eq!(config.timeout_seconds, 5);
        assert!(!config.start_tls);
        let debug = format!("{:?}", Ldap::new(config.clone()).unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let unknown =
            serde_json::from_value::<LdapConfig>(serde_json::json!({ "bind_pasword": "x" }));
        assert!(unknown.is_err());
    }

    /// The directory `.ci/slapd.sh` starts, from `TEST_WHARF_LDAP_*`. Without
    /// it the test says it was skipped, unless `CI=true`, where it fails.
    #[allow(clippy::print_stderr)] // "skipped" notes for the test harness's output
    fn directory() -> Option<LdapConfig> {
        let Ok(url) = std::env::var("TEST_WHARF_LDAP_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but TEST_WHARF_LDAP_URL is not set: eval \"$(.ci/slapd.sh)\""
            );
            eprintln!("skipped: TEST_WHARF_LDAP_URL is not set (eval \"$(.ci/slapd.sh)\")");
            return None;
        };
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
        let base = var("TEST_WHARF_LDAP_BASE_DN");
        Some(LdapConfig {
            url,
            bind_dn: var("TEST_WHARF_LDAP_BIND_DN"),
            bind_password: var("TEST_WHARF_LDAP_BIND_PASSWORD"),
            user_base_dn: format!("ou=people,{base}"),
            group_base_dn: Some(format!("ou=groups,{base}")),
            admin_group: Some(format!("cn=admins,ou=groups,{base}")),
            timeout_seconds: 5,
            ..LdapConfig::default()
        })
    }

    #[tokio::test]
    async fn alice_signs_in_with_her_details_and_groups() {
        let Some(config) = directory() else { return };
        let base = std::env::var("TEST_WHARF_LDAP_BASE_DN").unwrap();
        let ldap = Ldap::new(config).unwrap();
        let alice = ldap
            .authenticate("alice", "alice-password")
            .await
            .unwrap()
            .expect("alice signs in");
        assert_eq!(
            alice,
            DirectoryUser {
                dn: format!("uid=alice,ou=people,{base}"),
                name: "alice".into(),
                email: "alice@wharf.test".into(),
                full_name: "Alice Liddell".into(),
                groups: vec![format!("cn=developers,ou=groups,{base}")],
                admin: false,
            }
        );
        // The directory matches uid ignoring case; the name is its spelling.
        let alice = ldap
            .authenticate("ALICE", "alice-password")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alice.name, "alice");
    }

    #[tokio::test]
    async fn carol_is_an_administrator() {
        let Some(config) = directory() else { return };
        let base = std::env::var("TEST_WHARF_LDAP_BASE_DN").unwrap();
        let carol = Ldap::new(config.clone())
            .unwrap()
            .authenticate("carol", "carol-password")
            .await
            .unwrap()
            .expect("carol signs in");
        assert_eq!(carol.groups, vec![format!("cn=admins,ou=groups,{base}")]);
        assert!(carol.admin);
        // The admin group as someone might write it in a file.
        let spaced = LdapConfig {
            admin_group: Some(format!("CN=Admins, OU=groups, {base}")),
            ..config.clone()
        };
        let carol = Ldap::new(spaced)
            .unwrap()
            .authenticate("carol", "carol-password")
            .await;
        assert!(carol.unwrap().unwrap().admin);
        let bob = Ldap::new(config)
            .unwrap()
            .authenticate("bob", "bob-password")
            .await;
        assert!(!bob.unwrap().unwrap().admin);
    }

    #[tokio::test]
    async fn wrong_credentials_are_none() {
        let Some(config) = directory() else { return };
        let ldap = Ldap::new(config).unwrap();
        for (username, password) in [
            ("alice", "bob-password"),
            ("alice", "alice-password "),
            ("mallory", "alice-password"),
            ("alice", ""),
            ("", "alice-password"),
            ("alice\n", "alice-password"),
            ("al\0ice", "alice-password"),
            (&"a".repeat(257), "alice-password"),
            // Injection: unescaped, these match every user or alice alone.
            ("*", "alice-password"),
            ("ali*", "alice-password"),
            ("alice)(uid=*", "alice-password"),
            ("*)(uid=*", "alice-password"),
            ("alice)(|(uid=*", "alice-password"),
        ] {
            let outcome = ldap.authenticate(username, password).await;
            assert!(
                matches!(outcome, Ok(None)),
                "{username:?}/{password:?}: {outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_filter_matching_several_entries_is_none() {
        let Some(config) = directory() else { return };
        let ambiguous = LdapConfig {
            user_filter: "(|(uid={username})(objectClass=inetOrgPerson))".into(),
            ..config
        };
        let outcome = Ldap::new(ambiguous)
            .unwrap()
            .authenticate("alice", "alice-password")
            .await;
        assert!(matches!(outcome, Ok(None)), "{outcome:?}");
    }

    #[tokio::test]
    async fn without_group_base_no_groups() {
        let Some(config) = directory() else { return };
        let config = LdapConfig {
            group_base_dn: None,
            admin_group: None,
            ..config
        };
        let carol = Ldap::new(config)
            .unwrap()
            .authenticate("carol", "carol-password")
            .await;
        let carol = carol.unwrap().unwrap();
        assert!(carol.groups.is_empty() && !carol.admin, "{carol:?}");
    }

    #[tokio::test]
    async fn wrong_service_password_is_misconfigured() {
        let Some(config) = directory() else { return };
        let config = LdapConfig {
            bind_password: "not-the-reader-password".into(),
            ..config
        };
        let outcome = Ldap::new(config)
            .unwrap()
            .authenticate("alice", "alice-password")
            .await;
        match outcome {
            Err(LdapError::Misconfigured(message)) => {
                assert!(!message.contains("not-the-reader-password"), "{message}");
                assert!(!message.contains("alice-password"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_base_dn_is_misconfigured() {
        let Some(config) = directory() else { return };
        let config = LdapConfig {
            user_base_dn: "ou=nobody,dc=wharf,dc=test".into(),
            ..config
        };
        let outcome = Ldap::new(config)
            .unwrap()
            .authenticate("alice", "alice-password")
            .await;
        assert!(
            matches!(outcome, Err(LdapError::Misconfigured(_))),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn start_tls_refused_is_an_error_not_plain_text() {
        let Some(config) = directory() else { return };
        // The test directory has no certificate: it cannot do StartTLS.
        let config = LdapConfig {
            start_tls: true,
            ..config
        };
        let outcome = Ldap::new(config)
            .unwrap()
            .authenticate("alice", "alice-password")
            .await;
        assert!(
            matches!(outcome, Err(LdapError::Misconfigured(_))),
            "{outcome:?}"
        );
    }

    /// A local port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn directory_down_is_unavailable_quickly() {
        let config = LdapConfig {
            url: format!("ldap://127.0.0.1:{}", closed_port()),
            ..valid()
        };
        let ldap = Ldap::new(config).unwrap();
        let started = Instant::now();
        let outcome = ldap.authenticate("alice", "alice-password").await;
        match outcome {
            Err(LdapError::Unavailable(message)) => {
                assert!(!message.contains("password"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // An empty password is refused before any connection is tried.
        assert!(matches!(ldap.authenticate("alice", "").await, Ok(None)));
    }

    #[tokio::test]
    async fn a_directory_that_never_answers_is_unavailable_at_the_timeout() {
        // Accepts connections and reads nothing: the bind waits for ever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = LdapConfig {
            url: format!("ldap://127.0.0.1:{port}"),
            timeout_seconds: 1,
            ..valid()
        };
        let started = Instant::now();
        let outcome = Ldap::new(config)
            .unwrap()
            .authenticate("alice", "alice-password")
            .await;
        let elapsed = started.elapsed();
        silent.abort();
        assert!(
            matches!(outcome, Err(LdapError::Unavailable(_))),
            "{outcome:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    }
}
