//! Projects, users, memberships, robots, token signing keys, the audit log
//! and failed-login counts: the [`IdentityStore`] and the values it takes and
//! returns.
//!
//! The store keeps the data consistent (unique names, a project holding
//! repositories cannot be deleted, memberships and robots go with their
//! project); what the data *allows* is decided by `auth`, and who may change
//! it by `identity`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use auth::{Membership, RobotPermission, Role};

use crate::Result;

/// A window of a listing: skip `offset` entries, return at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u32,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 100,
        }
    }
}

/// The order of a listing: a field the listing names as sortable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    /// `None`: the listing's natural order (by name, or newest first for the
    /// audit log).
    pub field: Option<String>,
    pub descending: bool,
}

/// One page of a listing and how many entries match in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub repository_count: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewProject {
    pub name: String,
    pub public: bool,
    pub description: String,
    pub labels: BTreeMap<String, String>,
}

/// Fields to change; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectPatch {
    pub public: Option<bool>,
    pub description: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectFilter {
    /// Names containing this (case-insensitive).
    pub name: Option<String>,
    pub public: Option<bool>,
    /// Only public projects and these: what a non-administrator may see.
    pub public_or_named: Option<Vec<String>>,
    /// Projects with this label (`key`, or `key=value`).
    pub label: Option<(String, Option<String>)>,
}

/// Where a user comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserSource {
    /// Created in wharf, with a password wharf checks.
    Local,
    /// Signs in against an LDAP directory; wharf keeps no password.
    Ldap,
    /// Signs in through an OpenID Connect provider (reserved).
    Oidc,
}

impl UserSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            UserSource::Local => "local",
            UserSource::Ldap => "ldap",
            UserSource::Oidc => "oidc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [UserSource::Local, UserSource::Ldap, UserSource::Oidc]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub full_name: String,
    pub source: UserSource,
    pub external_id: Option<String>,
    /// argon2id PHC string; `None` for directory users.
    pub password_hash: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    /// Refresh tokens issued before this moment are refused.
    pub credentials_changed_at_ms: i64,
    pub last_login_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("source", &self.source)
            .field("admin", &self.admin)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub full_name: String,
    pub source: UserSource,
    pub external_id: Option<String>,
    pub password_hash: Option<String>,
    pub admin: bool,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Fields to change; `None` leaves one as it is. A new password hash or
/// disabling the user also refuses every refresh token issued before.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub password_hash: Option<String>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("admin", &self.admin)
            .field("disabled", &self.disabled)
            .field("password_changes", &self.password_hash.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Names or emails containing this (case-insensitive).
    pub name: Option<String>,
    pub source: Option<UserSource>,
    pub admin: Option<bool>,
}

/// Who a membership is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MemberOf {
    User(String),
    /// A directory group, by its name there (an LDAP group's DN).
    Group(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: i64,
    pub project: String,
    pub member: MemberOf,
    /// `None`: the whole project; otherwise one repository of it.
    pub repository: Option<String>,
    pub role: Role,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    pub member: MemberOf,
    pub repository: Option<String>,
    pub role: Role,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFilter {
    /// Member names containing this (case-insensitive).
    pub name: Option<String>,
    pub role: Option<Role>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
    /// `robot$name` or `robot$project+name`.
    pub name: String,
    /// The owning project; `None` for a system robot.
    pub project: Option<String>,
    pub description: String,
    pub secret_hash: String,
    pub permissions: Vec<RobotPermission>,
    pub expires_at_ms: Option<i64>,
    pub disabled: bool,
    pub credentials_changed_at_ms: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for Robot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Robot")
            .field("name", &self.name)
            .field("project", &self.project)
            .field("permissions", &self.permissions)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct NewRobot {
    pub name: String,
    pub project: Option<String>,
    pub description: String,
    pub secret_hash: String,
    pub permissions: Vec<RobotPermission>,
    pub expires_at_ms: Option<i64>,
    pub created_by: String,
}

impl std::fmt::Debug for NewRobot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRobot")
            .field("name", &self.name)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

/// Fields to change; `None` leaves one as it is. `expires_at_ms:
/// Some(None)` removes the expiry. A new secret or disabling the robot also
/// refuses every token issued to it before.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RobotPatch {
    pub description: Option<String>,
    pub secret_hash: Option<String>,
    pub permissions: Option<Vec<RobotPermission>>,
    pub expires_at_ms: Option<Option<i64>>,
    pub disabled: Option<bool>,
}

impl std::fmt::Debug for RobotPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotPatch")
            .field("permissions", &self.permissions)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("disabled", &self.disabled)
            .field("secret_changes", &self.secret_hash.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RobotFilter {
    /// `Some(Some(p))`: robots of project `p`; `Some(None)`: system robots
    /// only; `None`: all.
    pub project: Option<Option<String>>,
    pub name: Option<String>,
}

/// A token signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub secret: Vec<u8>,
    pub created_at_ms: i64,
    /// When a newer key replaced it; it verifies until the tokens it signed
    /// have expired.
    pub retired_at_ms: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("created_at_ms", &self.created_at_ms)
            .field("retired_at_ms", &self.retired_at_ms)
            .finish_non_exhaustive()
    }
}

/// One audit log entry to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub occurred_at_ms: i64,
    pub actor: String,
    pub address: String,
    /// `push`, `pull`, `delete`, `login`, `create`, `update`, ...
    pub operation: String,
    /// `artifact`, `tag`, `repository`, `project`, `member`, `user`, `robot`,
    /// `config`, `session`, ...
    pub resource_type: String,
    pub resource: String,
    pub project: Option<String>,
    pub success: bool,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub record: AuditRecord,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub operation: Option<String>,
    pub resource_type: Option<String>,
    /// Resources starting with this.
    pub resource: Option<String>,
    pub project: Option<String>,
    pub success: Option<bool>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// Projects, users, memberships, robots, signing keys, the audit log and
/// failed-login counts. Names are validated by the caller; the store keeps
/// them unique ([`crate::MetadataError::Conflict`]).
#[async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug + 'static {
    async fn create_project(&self, project: &NewProject, now_ms: i64) -> Result<Project>;
    async fn project(&self, name: &str) -> Result<Option<Project>>;
    /// Sortable by `name`, `created_at`, `updated_at`, `repository_count`.
    async fn list_projects(
        &self,
        filter: &ProjectFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Project>>;
    async fn update_project(
        &self,
        name: &str,
        patch: &ProjectPatch,
        now_ms: i64,
    ) -> Result<Project>;
    /// Refused while the project holds repositories; its memberships and
    /// robots go with it.
    async fn delete_project(&self, name: &str) -> Result<()>;

    async fn create_user(&self, user: &NewUser, now_ms: i64) -> Result<User>;
    async fn user(&self, name: &str) -> Result<Option<User>>;
    /// Sortable by `name`, `email`, `created_at`, `last_login_at`.
    async fn list_users(
        &self,
        filter: &UserFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<User>>;
    async fn update_user(&self, name: &str, patch: &UserPatch, now_ms: i64) -> Result<User>;
    async fn delete_user(&self, name: &str) -> Result<()>;
    async fn count_admins(&self) -> Result<u64>;
    /// Creates or refreshes a directory user at sign-in: their details
    /// (administrator flag included), and the groups they belong to now.
    /// Refused if a user of another source has the name.
    async fn sync_directory_user(
        &self,
        user: &NewUser,
        groups: &[String],
        now_ms: i64,
    ) -> Result<User>;
    async fn record_login(&self, name: &str, now_ms: i64) -> Result<()>;

    async fn add_member(&self, project: &str, member: &NewMember, now_ms: i64) -> Result<Member>;
    /// Sortable by `name`, `role`, `created_at`.
    async fn list_members(
        &self,
        project: &str,
        filter: &MemberFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Member>>;
    async fn update_member(&self, project: &str, id: i64, role: Role) -> Result<Member>;
    async fn remove_member(&self, project: &str, id: i64) -> Result<()>;
    /// Every membership of a user, directly or through the groups they were
    /// in at their last sign-in.
    async fn memberships(&self, user: &str) -> Result<Vec<Membership>>;

    async fn create_robot(&self, robot: &NewRobot, now_ms: i64) -> Result<Robot>;
    async fn robot(&self, name: &str) -> Result<Option<Robot>>;
    /// Sortable by `name`, `created_at`, `expires_at`.
    async fn list_robots(
        &self,
        filter: &RobotFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Robot>>;
    async fn update_robot(&self, name: &str, patch: &RobotPatch, now_ms: i64) -> Result<Robot>;
    async fn delete_robot(&self, name: &str) -> Result<()>;

    /// Every stored signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>>;
    /// Stores `key` as the signing key if no unretired key exists (the first
    /// start; several nodes may race and one wins), and returns every key.
    async fn ensure_signing_key(&self, key: &StoredKey) -> Result<Vec<StoredKey>>;
    /// Stores `key` as the signing key and retires every other at `now_ms`.
    async fn rotate_signing_key(&self, key: &StoredKey, now_ms: i64) -> Result<()>;
    /// Removes keys retired before `before_ms`.
    async fn prune_signing_keys(&self, before_ms: i64) -> Result<u64>;

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()>;
    /// Newest first unless sorted otherwise; sortable by `occurred_at`,
    /// `actor`, `operation`.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<AuditEntry>>;
    /// Removes entries older than `before_ms`.
    async fn prune_audit(&self, before_ms: i64) -> Result<u64>;

    /// Counts a failed sign-in under `key`; failures older than `window_ms`
    /// are forgotten first. Returns the count including this one.
    async fn record_login_failure(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<u32>;
    /// Failures under `key` within the window.
    async fn login_failures(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<u32>;
    async fn clear_login_failures(&self, key: &str) -> Result<()>;
}
