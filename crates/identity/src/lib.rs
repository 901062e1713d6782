//! Who is asking, and what the access decision needs to know about them.
//!
//! [`Identity`] turns credentials into a [`Caller`]: Basic credentials of a
//! local user (argon2id) or a robot (its secret), or a registry token this
//! node or another one issued. It loads what `auth` decides with
//! (memberships, whether projects are public), issues and refreshes tokens
//! for the token endpoint, keeps the signing keys, throttles repeated failed
//! sign-ins, and writes the audit log (see [`audit`]).
//!
//! The hot path is a `/v2` request with a token: [`Identity::authenticate`]
//! checks the signature with the key ring in memory and the token's claims
//! *are* the authorizer, so no database round trip happens. Basic
//! credentials cost a user lookup and the memberships per request (the
//! argon2id check itself is cached for a minute per exact credentials).
//!
//! The decisions themselves live in `auth`; what this crate adds is I/O.

pub mod audit;
mod keys;
pub mod ldap;
pub mod manage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth::token::{Claims, ResourceAccess, Scope, TokenAccess, TokenError, TokenKind};
use auth::{Authorizer, Principal, RepoActions, Subject, SubjectAccess};
use metadata::MetadataError;
use metadata::identity::{
    IdentityStore, NewProject, NewUser, Page, ProjectFilter, Sort, User, UserSource,
};
use oci::RepoName;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

pub use audit::{AuditLog, AuditRecord};
pub use keys::Keys;

/// How the identity service behaves; see `docs/configuration.md`.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// `iss` of the tokens this registry issues.
    pub issuer: String,
    /// The `service` clients name at the token endpoint (the `aud` of tokens).
    pub service: String,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    /// Create a missing project when a system administrator pushes to it.
    pub auto_create_projects: bool,
    /// Failed sign-ins from one address for one name before further attempts
    /// are refused for the rest of the window.
    pub max_failed_logins: u32,
    pub failed_login_window: Duration,
    /// The first administrator's password; generated and logged once if unset.
    pub admin_password: Option<String>,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Sign users in against an LDAP directory too.
    pub ldap: Option<ldap::LdapConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            issuer: "wharf".into(),
            service: "wharf".into(),
            access_token_lifetime: Duration::from_secs(300),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 3600),
            auto_create_projects: false,
            max_failed_logins: 10,
            failed_login_window: Duration::from_secs(300),
            admin_password: None,
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            ldap: None,
        }
    }
}

/// Credentials as a request presents them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic { name: String, secret: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { name, .. } => write!(f, "Basic({name}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Caller {
    /// Anonymous, or a user or robot who presented Basic credentials.
    Subject(Arc<Subject>),
    /// A registry token: exactly what it grants.
    Token {
        claims: Arc<Claims>,
        access: Arc<TokenAccess>,
    },
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller::Subject(Arc::new(Subject::Anonymous))
    }

    pub fn principal(&self) -> Principal {
        match self {
            Caller::Subject(s) => s.principal(),
            Caller::Token { claims, .. } => claims.principal(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.principal() == Principal::Anonymous
    }
}

/// Why the identity service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] MetadataError),
    #[error("auth.ldap: {0}")]
    Ldap(#[from] ldap::LdapError),
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins; try again in {} seconds", retry_after.as_secs())]
    Throttled { retry_after: Duration },
    #[error("invalid token")]
    InvalidToken(TokenError),
    #[error(transparent)]
    Store(#[from] MetadataError),
    /// The LDAP directory is down or refuses wharf's configuration.
    #[error(transparent)]
    Directory(#[from] ldap::LdapError),
}

/// What the token endpoint returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at_s: i64,
    pub refresh_token: Option<String>,
    pub claims: Claims,
}

/// An access refusal, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The repository's project does not exist.
    ProjectUnknown(String),
    /// Anonymous, or a token that did not ask for this: authenticate (again)
    /// with this scope.
    Unauthenticated,
    /// Authenticated and not allowed.
    Denied,
}

/// Seconds since the Unix epoch, and milliseconds.
pub(crate) fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.as_millis() as i64)
}

/// Recently verified exact credentials: skips argon2id for a minute.
#[derive(Clone, Copy)]
struct Verified {
    credentials_changed_at_ms: i64,
    until: Instant,
}

const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Verified access tokens remembered by a node, at most.
const MAX_CACHED_TOKENS: usize = 10_000;
const MAX_VERIFIED: usize = 10_000;
/// Whether projects are public, remembered this long by each node.
const PUBLIC_FOR: Duration = Duration::from_secs(2);

/// The identity service. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn IdentityStore>,
    config: IdentityConfig,
    keys: Keys,
    audit: AuditLog,
    ldap: Option<ldap::Ldap>,
    /// A random per-process key for the verified-credentials cache.
    pepper: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Verified>>,
    /// Access tokens verified on this node, by their text.
    tokens: std::sync::RwLock<HashMap<Box<str>, Caller>>,
    /// Turns to run argon2id (see [`Identity::argon2_slot`]).
    argon2_slots: tokio::sync::Semaphore,
    public: Mutex<HashMap<String, (Option<bool>, Instant)>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads (or creates) the signing keys and creates the first
    /// administrator if there is none.
    pub async fn start(
        store: Arc<dyn IdentityStore>,
        config: IdentityConfig,
    ) -> Result<Self, StartError> {
        let ldap = config.ldap.clone().map(ldap::Ldap::new).transpose()?;
        let keys = Keys::load(store.clone(), config.refresh_token_lifetime).await?;
        let audit = AuditLog::new(store.clone());
        let identity = Identity {
            inner: Arc::new(Inner {
                store,
                config,
                keys,
                audit,
                ldap,
                pepper: auth::secret::random_bytes::<32>(),
                verified: Mutex::new(HashMap::new()),
                tokens: std::sync::RwLock::new(HashMap::new()),
                argon2_slots: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
                public: Mutex::new(HashMap::new()),
            }),
        };
        identity.bootstrap_admin().await?;
        Ok(identity)
    }

    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.inner.store
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.inner.config
    }

    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Background upkeep until `shutdown`: writes the audit log, picks up
    /// keys other nodes rotated, prunes old audit entries and keys.
    pub fn spawn_upkeep(&self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let audit = self.inner.audit.spawn_writer(shutdown.clone());
        let this = self.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            let mut last_prune: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = this.inner.keys.reload().await {
                    tracing::warn!(error = %e, "reloading token signing keys failed");
                }
                if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                    last_prune = Some(Instant::now());
                    this.prune().await;
                }
            }
        });
        vec![audit, upkeep]
    }

    async fn prune(&self) {
        let (_, now_ms) = now();
        let retention = self.inner.config.audit_retention.as_millis() as i64;
        match self.inner.store.prune_audit(now_ms - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "pruned the audit log"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
        }
        let lifetime = self.inner.config.refresh_token_lifetime.as_millis() as i64;
        if let Err(e) = self.inner.store.prune_signing_keys(now_ms - lifetime).await {
            tracing::warn!(error = %e, "pruning retired signing keys failed");
        }
    }

    async fn bootstrap_admin(&self) -> Result<(), MetadataError> {
        let store = &self.inner.store;
        if store.count_admins().await? > 0 || store.user("admin").await?.is_some() {
            return Ok(());
        }
        let (password, generated) = match &self.inner.config.admin_password {
            Some(p) => (p.clone(), false),
            None => (auth::secret::generate_secret(), true),
        };
        let (_, now_ms) = now();
        let created = store
            .create_user(
                &NewUser {
                    name: "admin".into(),
                    email: String::new(),
                    full_name: "Administrator".into(),
                    source: UserSource::Local,
                    external_id: None,
                    password_hash: Some(self.hash_password(&password).await),
                    admin: true,
                },
                now_ms,
            )
            .await;
        match created {
            Ok(_) if generated => tracing::warn!(
                user = "admin",
                password = %password,
                "created the first administrator with a generated password, shown only this once; \
                 sign in and change it (wharf user passwd), or set WHARF_ADMIN_PASSWORD before the first start"
            ),
            Ok(_) => tracing::info!(user = "admin", "created the first administrator"),
            // Another node created it at the same moment.
            Err(MetadataError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Authenticates a request's credentials. `address` is the client's, for
    /// throttling and the audit log.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        address: &str,
    ) -> Result<Caller, AuthError> {
        match credentials {
            Credentials::None => Ok(Caller::anonymous()),
            Credentials::Basic { name, secret } => {
                let subject = self.sign_in(name, secret, address, false).await?;
                Ok(Caller::Subject(Arc::new(subject)))
            }
            Credentials::Bearer(token) => {
                if let Some(caller) = self.cached_token(token) {
                    return Ok(caller);
                }
                let claims = self.verify(token, TokenKind::Access).await?;
                let caller = Caller::Token {
                    access: Arc::new(claims.token_access()),
                    claims: Arc::new(claims),
                };
                self.remember_token(token, &caller);
                Ok(caller)
            }
        }
    }

    /// A token verified before and not expired since: clients send the same
    /// token with every request of a pull, and the answer is the same.
    fn cached_token(&self, token: &str) -> Option<Caller> {
        let tokens = self.inner.tokens.read().expect("token cache lock");
        let caller = tokens.get(token)?;
        let Caller::Token { claims, .. } = caller else {
            return None;
        };
        (claims.exp + auth::token::LEEWAY_SECONDS > now().0).then(|| caller.clone())
    }

    fn remember_token(&self, token: &str, caller: &Caller) {
        let mut tokens = self.inner.tokens.write().expect("token cache lock");
        if tokens.len() >= MAX_CACHED_TOKENS {
            let now_s = now().0;
            tokens.retain(|_, c| matches!(c, Caller::Token { claims, .. } if claims.exp + auth::token::LEEWAY_SECONDS > now_s));
            if tokens.len() >= MAX_CACHED_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(token.into(), caller.clone());
    }

    async fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, AuthError> {
        let claims: Claims = self
            .inner
            .keys
            .verify(token)
            .await
            .map_err(AuthError::InvalidToken)?;
        let config = &self.inner.config;
        claims
            .check(&config.issuer, &config.service, kind, now().0)
            .map_err(AuthError::InvalidToken)?;
        Ok(claims)
    }

    /// Checks a name and password (or robot secret), with throttling; the
    /// subject with what it may do. `audit_success`: record the sign-in
    /// (the token endpoint and the API do; Basic credentials on every `/v2`
    /// request do not).
    pub async fn sign_in(
        &self,
        name: &str,
        secret: &str,
        address: &str,
        audit_success: bool,
    ) -> Result<Subject, AuthError> {
        let config = &self.inner.config;
        let store = &self.inner.store;
        let key = format!("{name}|{address}");
        let (_, now_ms) = now();
        let window_ms = config.failed_login_window.as_millis() as i64;
        let failures = store.login_failures(&key, now_ms, window_ms).await?;
        if failures >= config.max_failed_logins {
            self.audit_login(name, address, false, "refused: too many failed sign-ins");
            return Err(AuthError::Throttled {
                retry_after: config.failed_login_window,
            });
        }
        let subject = if name.starts_with(ROBOT_PREFIX) {
            self.robot_sign_in(name, secret, now_ms).await?
        } else {
            self.user_sign_in(name, secret).await?
        };
        match subject {
            Some(subject) => {
                if failures > 0 {
                    store.clear_login_failures(&key).await?;
                }
                if audit_success {
                    self.audit_login(name, address, true, "");
                    if !name.starts_with(ROBOT_PREFIX) {
                        store.record_login(name, now_ms).await?;
                    }
                }
                Ok(subject)
            }
            None => {
                store.record_login_failure(&key, now_ms, window_ms).await?;
                self.audit_login(name, address, false, "invalid credentials");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    fn audit_login(&self, name: &str, address: &str, success: bool, detail: &str) {
        self.inner.audit.record(AuditRecord {
            actor: name.to_owned(),
            address: address.to_owned(),
            operation: "login".into(),
            resource_type: "session".into(),
            resource: name.to_owned(),
            project: None,
            success,
            detail: detail.to_owned(),
        });
    }

    async fn user_sign_in(&self, name: &str, password: &str) -> Result<Option<Subject>, AuthError> {
        let user = self.inner.store.user(name).await?;
        match (&user, &self.inner.ldap) {
            (Some(user), _) if user.source == UserSource::Local => {
                // The password is checked even for a disabled user, so that
                // timing does not tell disabled accounts apart.
                if !self.password_matches(user, password).await || user.disabled {
                    return Ok(None);
                }
                Ok(Some(self.user_subject(user).await?))
            }
            (Some(user), Some(_)) if user.source == UserSource::Ldap => {
                if user.disabled {
                    return Ok(None);
                }
                if self.recently_verified(user, password) {
                    return Ok(Some(self.user_subject(user).await?));
                }
                self.directory_sign_in(name, password, Some(user)).await
            }
            (None, Some(_)) => self.directory_sign_in(name, password, None).await,
            _ => {
                self.verify_nothing(password).await;
                Ok(None)
            }
        }
    }

    /// Signs in against the directory and brings the user's row (details,
    /// groups, administrator flag) up to date.
    async fn directory_sign_in(
        &self,
        name: &str,
        password: &str,
        known: Option<&User>,
    ) -> Result<Option<Subject>, AuthError> {
        let Some(ldap) = &self.inner.ldap else {
            return Ok(None);
        };
        let Some(found) = ldap.authenticate(name, password).await? else {
            return Ok(None);
        };
        // Without an admin group the directory says nothing about who
        // administers wharf: an administrator promoted in wharf stays one.
        let admin = if ldap.config().admin_group.is_some() {
            found.admin
        } else {
            known.is_some_and(|u| u.admin)
        };
        let (_, now_ms) = now();
        let user = self
            .inner
            .store
            .sync_directory_user(
                &NewUser {
                    name: found.name.clone(),
                    email: found.email,
                    full_name: found.full_name,
                    source: UserSource::Ldap,
                    external_id: Some(found.dn),
                    password_hash: None,
                    admin,
                },
                &found.groups,
                now_ms,
            )
            .await
            .map_err(|e| match e {
                // A local user already has the name: the directory's user
                // cannot take it over.
                MetadataError::Conflict(_) => AuthError::InvalidCredentials,
                other => AuthError::Store(other),
            })?;
        if user.disabled {
            return Ok(None);
        }
        self.remember_verified(&user, password);
        Ok(Some(self.user_subject(&user).await?))
    }

    async fn password_matches(&self, user: &User, password: &str) -> bool {
        let Some(hash) = user.password_hash.clone() else {
            self.verify_nothing(password).await;
            return false;
        };
        if self.recently_verified(user, password) {
            return true;
        }
        let _slot = self.argon2_slot().await;
        // Another request with the same credentials may have verified them
        // while this one waited for a slot.
        if self.recently_verified(user, password) {
            return true;
        }
        let candidate = password.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || auth::secret::verify_password(&candidate, &hash))
                .await
                .unwrap_or(false);
        if matches {
            self.remember_verified(user, password);
        }
        matches
    }

    /// A turn to run argon2id: each run takes 19 MiB and tens of
    /// milliseconds of CPU, so at most one per core runs at a time (on the
    /// blocking pool), whatever the number of sign-ins arriving together.
    async fn argon2_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .argon2_slots
            .acquire()
            .await
            .expect("the argon2 semaphore is never closed")
    }

    /// As long as a password check, for a name without a password.
    async fn verify_nothing(&self, password: &str) {
        let _slot = self.argon2_slot().await;
        let candidate = password.to_owned();
        let _ = tokio::task::spawn_blocking(move || auth::secret::verify_nothing(&candidate)).await;
    }

    /// An argon2id hash of a new password, computed like a check.
    pub async fn hash_password(&self, password: &str) -> String {
        let _slot = self.argon2_slot().await;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || auth::secret::hash_password(&password))
            .await
            .expect("argon2id hashing does not panic")
    }

    /// Whether these exact credentials were verified within the last minute
    /// and the user's credentials have not changed since.
    fn recently_verified(&self, user: &User, password: &str) -> bool {
        let key = self.credentials_key(&user.name, password);
        let cached = self
            .inner
            .verified
            .lock()
            .expect("cache lock")
            .get(&key)
            .copied();
        cached.is_some_and(|v| {
            v.credentials_changed_at_ms == user.credentials_changed_at_ms
                && v.until > Instant::now()
        })
    }

    fn remember_verified(&self, user: &User, password: &str) {
        let key = self.credentials_key(&user.name, password);
        let mut verified = self.inner.verified.lock().expect("cache lock");
        if verified.len() >= MAX_VERIFIED {
            let now = Instant::now();
            verified.retain(|_, v| v.until > now);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(
            key,
            Verified {
                credentials_changed_at_ms: user.credentials_changed_at_ms,
                until: Instant::now() + VERIFIED_FOR,
            },
        );
    }

    fn credentials_key(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.inner.pepper);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    async fn robot_sign_in(
        &self,
        name: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<Subject>, AuthError> {
        let Some(robot) = self.inner.store.robot(name).await? else {
            return Ok(None);
        };
        let expired = robot.expires_at_ms.is_some_and(|e| e <= now_ms);
        if robot.disabled || expired || !auth::secret::verify_secret(secret, &robot.secret_hash) {
            return Ok(None);
        }
        Ok(Some(Subject::Robot {
            name: robot.name,
            permissions: robot.permissions,
        }))
    }

    async fn user_subject(&self, user: &User) -> Result<Subject, MetadataError> {
        Ok(Subject::User {
            name: user.name.clone(),
            system_admin: user.admin,
            memberships: if user.admin {
                Vec::new()
            } else {
                self.inner.store.memberships(&user.name).await?
            },
        })
    }

    /// The subject a token names, as the store knows it now (`None` if the
    /// user or robot is gone, disabled or expired).
    pub async fn subject_named(&self, name: &str) -> Result<Option<Subject>, MetadataError> {
        if name.is_empty() {
            return Ok(Some(Subject::Anonymous));
        }
        let (_, now_ms) = now();
        if name.starts_with(ROBOT_PREFIX) {
            let Some(robot) = self.inner.store.robot(name).await? else {
                return Ok(None);
            };
            if robot.disabled || robot.expires_at_ms.is_some_and(|e| e <= now_ms) {
                return Ok(None);
            }
            return Ok(Some(Subject::Robot {
                name: robot.name,
                permissions: robot.permissions,
            }));
        }
        match self.inner.store.user(name).await? {
            Some(user) if !user.disabled => Ok(Some(self.user_subject(&user).await?)),
            _ => Ok(None),
        }
    }

    /// Whether a project is public (`None`: it does not exist), remembered
    /// for a moment.
    pub async fn project_public(&self, project: &str) -> Result<Option<bool>, MetadataError> {
        if let Some((public, at)) = self.inner.public.lock().expect("cache lock").get(project)
            && at.elapsed() < PUBLIC_FOR
        {
            return Ok(*public);
        }
        let public = self.inner.store.project(project).await?.map(|p| p.public);
        let mut cache = self.inner.public.lock().expect("cache lock");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(project.to_owned(), (public, Instant::now()));
        Ok(public)
    }

    /// Forgets what was remembered about a project (after changing it here).
    pub fn forget_project(&self, project: &str) {
        self.inner
            .public
            .lock()
            .expect("cache lock")
            .remove(project);
    }

    /// What `caller` may do to `repositories`, as an [`Authorizer`]. A
    /// token needs no I/O; a subject needs to know which projects are public.
    pub async fn authorizer(
        &self,
        caller: &Caller,
        repositories: &[&RepoName],
    ) -> Result<Arc<dyn Authorizer>, MetadataError> {
        match caller {
            Caller::Token { access, .. } => Ok(access.clone()),
            Caller::Subject(subject) => {
                let mut public = HashMap::new();
                for repo in repositories {
                    let project = repo.project();
                    if !public.contains_key(project) {
                        let is_public = self.project_public(project).await?.unwrap_or(false);
                        public.insert(project.to_owned(), is_public);
                    }
                }
                Ok(Arc::new(SubjectAccess {
                    subject: Subject::clone(subject),
                    public,
                }))
            }
        }
    }

    /// What `caller` may see across the registry (for `_catalog`): `None`
    /// when a token does not grant the catalog.
    pub async fn catalog_authorizer(
        &self,
        caller: &Caller,
    ) -> Result<Option<Arc<dyn Authorizer>>, MetadataError> {
        let subject = match caller {
            Caller::Subject(subject) => Subject::clone(subject),
            Caller::Token { claims, access } => {
                if !access.catalog {
                    return Ok(None);
                }
                self.subject_named(&claims.sub)
                    .await?
                    .unwrap_or(Subject::Anonymous)
            }
        };
        let public = self.public_projects().await?;
        Ok(Some(Arc::new(SubjectAccess { subject, public })))
    }

    async fn public_projects(&self) -> Result<HashMap<String, bool>, MetadataError> {
        let mut public = HashMap::new();
        let mut page = Page {
            offset: 0,
            limit: 1000,
        };
        loop {
            let listed = self
                .inner
                .store
                .list_projects(
                    &ProjectFilter {
                        public: Some(true),
                        ..ProjectFilter::default()
                    },
                    &Sort::default(),
                    page,
                )
                .await?;
            let n = listed.items.len();
            public.extend(listed.items.into_iter().map(|p| (p.name, true)));
            if n < page.limit as usize {
                return Ok(public);
            }
            page.offset += u64::from(page.limit);
        }
    }

    /// Why `caller` may not perform `action` on `repository`.
    pub async fn explain_refusal(
        &self,
        caller: &Caller,
        repository: &RepoName,
        action: auth::Action,
    ) -> Result<Refusal, MetadataError> {
        let Some(public) = self.project_public(repository.project()).await? else {
            return Ok(Refusal::ProjectUnknown(repository.project().to_owned()));
        };
        match caller {
            Caller::Subject(s) if **s == Subject::Anonymous => Ok(Refusal::Unauthenticated),
            Caller::Subject(_) => Ok(Refusal::Denied),
            Caller::Token { claims, .. } => {
                // The token may just not have asked for this action: if its
                // holder may do it, a new token with the right scope will.
                let allowed = self.subject_named(&claims.sub).await?.is_some_and(|s| {
                    s.repository_actions(repository, public)
                        .contains(RepoActions::of(action))
                });
                Ok(if allowed || claims.sub.is_empty() {
                    Refusal::Unauthenticated
                } else {
                    Refusal::Denied
                })
            }
        }
    }

    /// Creates the project of `repository` if it is missing, the caller is a
    /// system administrator and configuration allows it. True if created.
    pub async fn auto_create_project(
        &self,
        subject: &Subject,
        repository: &RepoName,
    ) -> Result<bool, MetadataError> {
        if !self.inner.config.auto_create_projects || !subject.is_system_admin() {
            return Ok(false);
        }
        let project = repository.project();
        if self.project_public(project).await?.is_some() {
            return Ok(false);
        }
        let (_, now_ms) = now();
        match self
            .inner
            .store
            .create_project(
                &NewProject {
                    name: project.to_owned(),
                    public: false,
                    description: format!(
                        "Created by {}'s first push.",
                        subject.principal().actor_name()
                    ),
                    ..NewProject::default()
                },
                now_ms,
            )
            .await
        {
            Ok(_) => {
                self.forget_project(project);
                self.inner.audit.record(AuditRecord {
                    actor: subject.principal().actor_name().to_owned(),
                    address: String::new(),
                    operation: "create".into(),
                    resource_type: "project".into(),
                    resource: project.to_owned(),
                    project: Some(project.to_owned()),
                    success: true,
                    detail: "created automatically by a push".into(),
                });
                Ok(true)
            }
            Err(MetadataError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Issues an access token for `subject` with what it may do of `scopes`,
    /// and a refresh token if `offline`.
    pub async fn issue(
        &self,
        subject: &Subject,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<IssuedToken, MetadataError> {
        let mut access = Vec::new();
        for scope in scopes {
            match scope {
                Scope::Repository { name, actions } => {
                    if actions.contains(RepoActions::PUSH) {
                        self.auto_create_project(subject, name).await?;
                    }
                    let public = self.project_public(name.project()).await?.unwrap_or(false);
                    let granted = subject.repository_actions(name, public).intersect(*actions);
                    access.push(ResourceAccess {
                        kind: "repository".into(),
                        name: name.as_str().to_owned(),
                        actions: granted
                            .names()
                            .filter(|n| matches!(*n, "pull" | "push" | "delete"))
                            .map(str::to_owned)
                            .collect(),
                    });
                }
                Scope::Catalog => access.push(ResourceAccess {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                }),
            }
        }
        let config = &self.inner.config;
        let (now_s, _) = now();
        let sub = match subject {
            Subject::Anonymous => String::new(),
            Subject::User { name, .. } | Subject::Robot { name, .. } => name.clone(),
        };
        let lifetime = config.access_token_lifetime.as_secs();
        let claims = Claims {
            iss: config.issuer.clone(),
            sub: sub.clone(),
            aud: config.service.clone(),
            exp: now_s + lifetime as i64,
            nbf: now_s,
            iat: now_s,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
            kind: TokenKind::Access,
        };
        let ring = self.inner.keys.ring();
        let token = ring.sign(&claims);
        let refresh_token = (offline && !sub.is_empty()).then(|| {
            ring.sign(&Claims {
                iss: config.issuer.clone(),
                sub: sub.clone(),
                aud: config.service.clone(),
                exp: now_s + config.refresh_token_lifetime.as_secs() as i64,
                nbf: now_s,
                iat: now_s,
                jti: uuid::Uuid::new_v4().to_string(),
                access: Vec::new(),
                kind: TokenKind::Refresh,
            })
        });
        Ok(IssuedToken {
            token,
            expires_in: lifetime,
            issued_at_s: now_s,
            refresh_token,
            claims,
        })
    }

    /// The subject a refresh token stands for, if the token is valid and its
    /// holder's credentials have not changed since it was issued.
    pub async fn redeem_refresh_token(
        &self,
        token: &str,
        address: &str,
    ) -> Result<Subject, AuthError> {
        let claims = self.verify(token, TokenKind::Refresh).await?;
        let changed_at_ms = if claims.sub.starts_with(ROBOT_PREFIX) {
            self.inner
                .store
                .robot(&claims.sub)
                .await?
                .map(|r| r.credentials_changed_at_ms)
        } else {
            self.inner
                .store
                .user(&claims.sub)
                .await?
                .map(|u| u.credentials_changed_at_ms)
        };
        let still_valid = changed_at_ms.is_some_and(|changed| changed <= claims.iat * 1000 + 999);
        let subject = match still_valid {
            true => self.subject_named(&claims.sub).await?,
            false => None,
        };
        match subject {
            Some(subject) => Ok(subject),
            None => {
                self.audit_login(&claims.sub, address, false, "refresh token no longer valid");
                Err(AuthError::InvalidToken(TokenError::Expired))
            }
        }
    }
}

/// Robot names start with this; user names cannot contain `$`.
pub const ROBOT_PREFIX: &str = "robot$";
