//! The JSON shapes of `/api/v1`, with their OpenAPI schemas.

use std::collections::BTreeMap;

use auth::{Membership, RepoActions, RobotPermission, Role};
use metadata::identity::{AuditEntry, Member, MemberOf, Project, Robot, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::plumbing::{Failure, time};

/// A project role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::LimitedGuest => Role::LimitedGuest,
            RoleName::Guest => Role::Guest,
            RoleName::Developer => Role::Developer,
            RoleName::Maintainer => Role::Maintainer,
            RoleName::ProjectAdmin => Role::ProjectAdmin,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::LimitedGuest => RoleName::LimitedGuest,
            Role::Guest => RoleName::Guest,
            Role::Developer => RoleName::Developer,
            Role::Maintainer => RoleName::Maintainer,
            Role::ProjectAdmin => RoleName::ProjectAdmin,
        }
    }
}

/// An action a robot may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Pull,
    Push,
    Delete,
    Read,
    Scan,
}

impl ActionName {
    fn set(self) -> RepoActions {
        match self {
            ActionName::Pull => RepoActions::PULL,
            ActionName::Push => RepoActions::PUSH,
            ActionName::Delete => RepoActions::DELETE,
            ActionName::Read => RepoActions::READ,
            ActionName::Scan => RepoActions::SCAN,
        }
    }

    fn all_in(set: RepoActions) -> Vec<ActionName> {
        [
            ActionName::Pull,
            ActionName::Push,
            ActionName::Delete,
            ActionName::Read,
            ActionName::Scan,
        ]
        .into_iter()
        .filter(|a| set.contains(a.set()))
        .collect()
    }
}

/// Declares a page type of a listing: `{items, total, page, page_size}`.
macro_rules! list_type {
    ($list:ident, $item:ty) => {
        /// One page of a listing.
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $list {
            pub items: Vec<$item>,
            /// Entries matching the filters, on all pages.
            pub total: u64,
            pub page: u64,
            pub page_size: u32,
        }

        impl $list {
            pub fn new<T>(
                listed: metadata::identity::Listed<T>,
                page: u64,
                page_size: u32,
                f: impl Fn(T) -> $item,
            ) -> Self {
                $list {
                    items: listed.items.into_iter().map(f).collect(),
                    total: listed.total,
                    page,
                    page_size,
                }
            }
        }
    };
}

pub(super) use list_type;

list_type!(UserList, UserView);
list_type!(ProjectList, ProjectView);
list_type!(MemberList, MemberView);
list_type!(RobotList, RobotView);
list_type!(AuditList, AuditView);

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemInfo {
    pub version: String,
    /// The `service` of the token endpoint.
    pub token_service: String,
    /// Path of the token endpoint.
    pub token_endpoint: String,
    pub access_token_lifetime_seconds: u64,
    /// Whether a system administrator's push creates a missing project.
    pub auto_create_projects: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// The id of the key that signs from now on.
    pub key_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub email: String,
    pub full_name: String,
    /// `local` or `ldap`.
    pub source: String,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub last_login_at: Option<String>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            name: u.name,
            email: u.email,
            full_name: u.full_name,
            source: u.source.as_str().into(),
            admin: u.admin,
            disabled: u.disabled,
            created_at: time(u.created_at_ms),
            updated_at: time(u.updated_at_ms),
            last_login_at: u.last_login_at_ms.map(time),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub admin: Option<bool>,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// Needed to change one's own password.
    pub current_password: Option<String>,
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

impl std::fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangePassword(<redacted>)")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipView {
    pub project: String,
    /// Only this repository of the project (its name within the project), if set.
    pub repository: Option<String>,
    pub role: RoleName,
}

/// A repository's name within its project.
fn within(project: &str, full: &str) -> String {
    full.strip_prefix(project)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(full)
        .to_owned()
}

impl From<&Membership> for MembershipView {
    fn from(m: &Membership) -> Self {
        MembershipView {
            project: m.project.clone(),
            repository: m.repository.as_deref().map(|r| within(&m.project, r)),
            role: m.role.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentUser {
    pub name: String,
    /// `user` or `robot`.
    pub kind: String,
    pub admin: bool,
    pub memberships: Vec<MembershipView>,
    /// A robot's permissions.
    pub permissions: Vec<PermissionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    pub name: String,
    pub public: bool,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub repository_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        ProjectView {
            name: p.name,
            public: p.public,
            description: p.description,
            labels: p.labels,
            repository_count: p.repository_count,
            created_at: time(p.created_at_ms),
            updated_at: time(p.updated_at_ms),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Lowercase letters and digits separated by `.`, `_`, `__` or `-`.
    #[schema(pattern = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$", max_length = 64)]
    pub name: String,
    /// Anyone may pull from a public project.
    pub public: Option<bool>,
    pub description: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub public: Option<bool>,
    pub description: Option<String>,
    /// Replaces all labels.
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub id: i64,
    pub project: String,
    /// The user, for a user's membership.
    pub user: Option<String>,
    /// The directory group (an LDAP group's DN), for a group's membership.
    pub group: Option<String>,
    /// Only this repository of the project (its name within the project), if set.
    pub repository: Option<String>,
    pub role: RoleName,
    pub created_at: String,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        let (user, group) = match m.member {
            MemberOf::User(u) => (Some(u), None),
            MemberOf::Group(g) => (None, Some(g)),
        };
        let repository = m.repository.map(|r| within(&m.project, &r));
        MemberView {
            id: m.id,
            project: m.project,
            user,
            group,
            repository,
            role: m.role.into(),
            created_at: time(m.created_at_ms),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub member: MemberRef,
    /// One repository of the project, by its name within the project (`app`
    /// for `team/app`), to grant the role there only.
    #[schema(
        pattern = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
        max_length = 190
    )]
    pub repository: Option<String>,
    pub role: RoleName,
}

/// A user (`{"user": "alice"}`) or a directory group (`{"group": "cn=devs,ou=groups,dc=example,dc=org"}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MemberRef {
    User(UserRef),
    Group(GroupRef),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub user: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRef {
    #[schema(min_length = 1, max_length = 1024)]
    pub group: String,
}

/// Where a user comes from.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceName {
    Local,
    Ldap,
}

impl From<SourceName> for metadata::identity::UserSource {
    fn from(s: SourceName) -> Self {
        match s {
            SourceName::Local => metadata::identity::UserSource::Local,
            SourceName::Ldap => metadata::identity::UserSource::Ldap,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: RoleName,
}

/// What a robot may do where.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionView {
    /// A project, or `*` for every project (system robots only).
    #[schema(
        pattern = r"^(?:\*|[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)$",
        max_length = 64
    )]
    pub project: String,
    /// One repository, by its name within the project (`app` for
    /// `team/app`); all of them if absent. With `*` as the project: that
    /// repository in every project.
    #[schema(
        pattern = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
        max_length = 190
    )]
    pub repository: Option<String>,
    #[schema(min_items = 1)]
    pub actions: Vec<ActionName>,
}

impl From<&RobotPermission> for PermissionView {
    fn from(p: &RobotPermission) -> Self {
        PermissionView {
            project: p.project.clone(),
            repository: p.repository.clone(),
            actions: ActionName::all_in(p.actions),
        }
    }
}

impl PermissionView {
    pub fn into_permission(self) -> Result<RobotPermission, Failure> {
        Ok(RobotPermission {
            project: self.project,
            repository: self.repository,
            actions: self
                .actions
                .into_iter()
                .fold(RepoActions::NONE, |set, a| set.with(a.set())),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RobotView {
    /// `robot$<project>+<name>` or `robot$<name>`: the user name to sign in with.
    pub name: String,
    /// The owning project; absent for a system robot.
    pub project: Option<String>,
    pub description: String,
    pub permissions: Vec<PermissionView>,
    pub expires_at: Option<String>,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Robot> for RobotView {
    fn from(r: Robot) -> Self {
        RobotView {
            name: r.name,
            project: r.project,
            description: r.description,
            permissions: r.permissions.iter().map(PermissionView::from).collect(),
            expires_at: r.expires_at_ms.map(time),
            disabled: r.disabled,
            created_by: r.created_by,
            created_at: time(r.created_at_ms),
            updated_at: time(r.updated_at_ms),
        }
    }
}

/// What a project robot may do: on one repository of its project, or on all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPermission {
    /// One repository, by its name within the project (`app` for
    /// `team/app`); all of the project's repositories if absent.
    #[schema(
        pattern = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
        max_length = 190
    )]
    pub repository: Option<String>,
    #[schema(min_items = 1)]
    pub actions: Vec<ActionName>,
}

impl ProjectPermission {
    pub fn in_project(self, project: &str) -> Result<RobotPermission, Failure> {
        PermissionView {
            project: project.to_owned(),
            repository: self.repository,
            actions: self.actions,
        }
        .into_permission()
    }
}

/// A project robot to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRobot {
    /// The short name: lowercase letters, digits, `.`, `_`, `-`; the robot
    /// signs in as `robot$<project>+<name>`.
    #[schema(pattern = r"^[a-z0-9._-]{1,64}$")]
    pub name: String,
    pub description: Option<String>,
    #[schema(min_items = 1)]
    pub permissions: Vec<ProjectPermission>,
    /// When the robot stops working (RFC 3339); never if absent.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectRobot {
    pub description: Option<String>,
    /// Replaces all permissions.
    #[schema(min_items = 1)]
    pub permissions: Option<Vec<ProjectPermission>>,
    /// A new expiry (RFC 3339), or `null` for none; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(format = DateTime, nullable)]
    pub expires_at: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// A system robot to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRobot {
    /// The short name: lowercase letters, digits, `.`, `_`, `-`; the robot
    /// signs in as `robot$<name>`.
    #[schema(pattern = r"^[a-z0-9._-]{1,64}$")]
    pub name: String,
    pub description: Option<String>,
    #[schema(min_items = 1)]
    pub permissions: Vec<PermissionView>,
    /// When the robot stops working (RFC 3339); never if absent.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRobot {
    pub description: Option<String>,
    /// Replaces all permissions.
    #[schema(min_items = 1)]
    pub permissions: Option<Vec<PermissionView>>,
    /// A new expiry (RFC 3339), or `null` for none; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(format = DateTime, nullable)]
    pub expires_at: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// `Some(value)` for a field that is present, even as `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A robot with its secret, shown only in the answer that made the secret.
#[derive(Serialize, ToSchema)]
pub struct RobotWithSecret {
    pub robot: RobotView,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub occurred_at: String,
    pub actor: String,
    pub address: String,
    pub operation: String,
    pub resource_type: String,
    pub resource: String,
    pub project: Option<String>,
    pub success: bool,
    pub detail: String,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        let r = e.record;
        AuditView {
            id: e.id,
            occurred_at: time(r.occurred_at_ms),
            actor: r.actor,
            address: r.address,
            operation: r.operation,
            resource_type: r.resource_type,
            resource: r.resource,
            project: r.project,
            success: r.success,
            detail: r.detail,
        }
    }
}
