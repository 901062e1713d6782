//! Roles, what they allow, and the decision for one subject.
//!
//! A project's members hold one of five roles with Harbor's meanings; a
//! membership may be narrowed to one repository of the project (a
//! *repository grant*: "developer of `team/app` only"). Robots hold explicit
//! permissions instead of roles. System administrators may do everything.
//! Public projects let anyone, anonymous included, pull and read.
//!
//! The permission matrix in `docs/access-control.md` is this module's
//! [`Role::repository_actions`] and [`Role::allows`], written out; the
//! table-driven test at the bottom and the HTTP matrix test check both.

use std::fmt;
use std::str::FromStr;

use oci::RepoName;
use serde::{Deserialize, Serialize};

use crate::{Action, Principal};

/// A project role, from least to most powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Pulls, and sees the project's repositories and artifacts; does not see
    /// members or the project's audit log.
    LimitedGuest,
    /// Read-only: pulls, sees repositories, artifacts, members and the log.
    Guest,
    /// Reads and writes: pushes and scans.
    Developer,
    /// A developer who also deletes artifacts, tags and repositories and
    /// manages the project's robots.
    Maintainer,
    /// Everything within the project: members, settings, deletion.
    ProjectAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::LimitedGuest,
        Role::Guest,
        Role::Developer,
        Role::Maintainer,
        Role::ProjectAdmin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::LimitedGuest => "limited-guest",
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::ProjectAdmin => "project-admin",
        }
    }

    /// What the role may do to each repository it covers.
    pub const fn repository_actions(self) -> RepoActions {
        match self {
            Role::LimitedGuest | Role::Guest => RepoActions::READ_ONLY,
            Role::Developer => RepoActions::READ_ONLY
                .with(RepoActions::PUSH)
                .with(RepoActions::SCAN),
            Role::Maintainer | Role::ProjectAdmin => RepoActions::ALL,
        }
    }

    /// Whether a project-wide member with this role has `capability`.
    pub const fn allows(self, capability: Capability) -> bool {
        match capability {
            Capability::ReadMembers | Capability::ReadAuditLog => {
                !matches!(self, Role::LimitedGuest)
            }
            Capability::ManageRobots => matches!(self, Role::Maintainer | Role::ProjectAdmin),
            Capability::ManageMembers | Capability::UpdateProject | Capability::DeleteProject => {
                matches!(self, Role::ProjectAdmin)
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {0:?}; roles are limited-guest, guest, developer, maintainer and project-admin"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s || r.as_str().replace('-', "_") == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A project-level power that is not an action on a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    ReadMembers,
    ReadAuditLog,
    ManageRobots,
    ManageMembers,
    UpdateProject,
    DeleteProject,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::ReadMembers,
        Capability::ReadAuditLog,
        Capability::ManageRobots,
        Capability::ManageMembers,
        Capability::UpdateProject,
        Capability::DeleteProject,
    ];
}

/// A set of actions on a repository.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RepoActions(u8);

impl RepoActions {
    pub const NONE: RepoActions = RepoActions(0);
    /// Download manifests and blobs.
    pub const PULL: RepoActions = RepoActions(1);
    /// Upload blobs and manifests, move tags.
    pub const PUSH: RepoActions = RepoActions(2);
    /// Delete manifests, tags, blobs and the repository.
    pub const DELETE: RepoActions = RepoActions(4);
    /// See the repository, its artifacts and tags through the management API.
    pub const READ: RepoActions = RepoActions(8);
    /// Start vulnerability scans.
    pub const SCAN: RepoActions = RepoActions(16);
    pub const READ_ONLY: RepoActions = RepoActions(1 | 8);
    pub const ALL: RepoActions = RepoActions(31);

    const NAMES: [(RepoActions, &'static str); 5] = [
        (RepoActions::PULL, "pull"),
        (RepoActions::PUSH, "push"),
        (RepoActions::DELETE, "delete"),
        (RepoActions::READ, "read"),
        (RepoActions::SCAN, "scan"),
    ];

    pub const fn with(self, other: RepoActions) -> RepoActions {
        RepoActions(self.0 | other.0)
    }

    pub const fn contains(self, other: RepoActions) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersect(self, other: RepoActions) -> RepoActions {
        RepoActions(self.0 & other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn of(action: Action) -> RepoActions {
        match action {
            Action::Pull => RepoActions::PULL,
            Action::Push => RepoActions::PUSH,
            Action::Delete => RepoActions::DELETE,
        }
    }

    /// The names of the actions in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        RepoActions::NAMES
            .into_iter()
            .filter(move |(a, _)| self.contains(*a))
            .map(|(_, n)| n)
    }

    /// Parses one action name (`pull`, `push`, `delete`, `read`, `scan`).
    pub fn parse_one(name: &str) -> Option<RepoActions> {
        RepoActions::NAMES
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(a, _)| a)
    }
}

impl fmt::Debug for RepoActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for RepoActions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for RepoActions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().try_fold(RepoActions::NONE, |set, n| {
            RepoActions::parse_one(n)
                .map(|a| set.with(a))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown action {n:?}; actions are pull, push, delete, read and scan"
                    ))
                })
        })
    }
}

/// A role in a project, for the whole project or one of its repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub project: String,
    /// `None`: every repository of the project; otherwise only this one
    /// (a full name within the project).
    pub repository: Option<String>,
    pub role: Role,
}

/// `*` in [`RobotPermission::project`] means every project.
pub const ANY_PROJECT: &str = "*";

/// What a robot may do: `actions` on one repository, or on every repository
/// of a project (or of every project).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotPermission {
    /// A project name, or `*` (system robots only) for every project.
    pub project: String,
    /// A repository's name *within* the project (`app` for `team/app`,
    /// `tools/app` for `team/tools/app`); absent for all of them. With `*`
    /// as the project: that repository in every project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub actions: RepoActions,
}

impl RobotPermission {
    fn covers(&self, repo: &RepoName) -> bool {
        let project = repo.project();
        (self.project == ANY_PROJECT || self.project == project)
            && self.repository.as_deref().is_none_or(|r| {
                repo.as_str()
                    .strip_prefix(project)
                    .and_then(|rest| rest.strip_prefix('/'))
                    == Some(r)
            })
    }
}

/// Who is asking and everything the decision needs about them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Anonymous,
    User {
        name: String,
        system_admin: bool,
        memberships: Vec<Membership>,
    },
    Robot {
        name: String,
        permissions: Vec<RobotPermission>,
    },
}

/// What anyone may do in a public project.
const PUBLIC: RepoActions = RepoActions::READ_ONLY;

impl Subject {
    pub fn principal(&self) -> Principal {
        match self {
            Subject::Anonymous => Principal::Anonymous,
            Subject::User { name, .. } | Subject::Robot { name, .. } => {
                Principal::Named(name.clone())
            }
        }
    }

    pub fn is_system_admin(&self) -> bool {
        matches!(
            self,
            Subject::User {
                system_admin: true,
                ..
            }
        )
    }

    /// What the subject may do to `repo`, whose project is public or not.
    pub fn repository_actions(&self, repo: &RepoName, project_public: bool) -> RepoActions {
        let public = if project_public {
            PUBLIC
        } else {
            RepoActions::NONE
        };
        match self {
            Subject::Anonymous => public,
            Subject::User {
                system_admin: true, ..
            } => RepoActions::ALL,
            Subject::User { memberships, .. } => memberships
                .iter()
                .filter(|m| {
                    m.project == repo.project()
                        && m.repository.as_deref().is_none_or(|r| r == repo.as_str())
                })
                .fold(public, |set, m| set.with(m.role.repository_actions())),
            Subject::Robot { permissions, .. } => permissions
                .iter()
                .filter(|p| p.covers(repo))
                .fold(public, |set, p| set.with(p.actions)),
        }
    }

    /// The strongest project-wide role the subject holds in `project`.
    pub fn project_role(&self, project: &str) -> Option<Role> {
        match self {
            Subject::User { memberships, .. } => memberships
                .iter()
                .filter(|m| m.project == project && m.repository.is_none())
                .map(|m| m.role)
                .max(),
            _ => None,
        }
    }

    /// Whether the subject has a project-level capability.
    pub fn project_allows(&self, project: &str, capability: Capability) -> bool {
        self.is_system_admin()
            || self
                .project_role(project)
                .is_some_and(|r| r.allows(capability))
    }

    /// Whether the subject may see that the project exists.
    pub fn may_see_project(&self, project: &str, public: bool) -> bool {
        public
            || match self {
                Subject::Anonymous => false,
                Subject::User {
                    system_admin,
                    memberships,
                    ..
                } => *system_admin || memberships.iter().any(|m| m.project == project),
                Subject::Robot { permissions, .. } => permissions
                    .iter()
                    .any(|p| p.project == ANY_PROJECT || p.project == project),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RepoActions = RepoActions::PULL;
    const U: RepoActions = RepoActions::PUSH;
    const D: RepoActions = RepoActions::DELETE;
    const R: RepoActions = RepoActions::READ;
    const S: RepoActions = RepoActions::SCAN;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    fn member(project: &str, repository: Option<&str>, role: Role) -> Subject {
        Subject::User {
            name: "u".into(),
            system_admin: false,
            memberships: vec![Membership {
                project: project.into(),
                repository: repository.map(str::to_owned),
                role,
            }],
        }
    }

    #[test]
    fn the_role_matrix() {
        use Capability::*;
        let table: [(Role, RepoActions, &[Capability]); 5] = [
            (Role::LimitedGuest, P.with(R), &[]),
            (Role::Guest, P.with(R), &[ReadMembers, ReadAuditLog]),
            (
                Role::Developer,
                P.with(R).with(U).with(S),
                &[ReadMembers, ReadAuditLog],
            ),
            (
                Role::Maintainer,
                RepoActions::ALL,
                &[ReadMembers, ReadAuditLog, ManageRobots],
            ),
            (Role::ProjectAdmin, RepoActions::ALL, &Capability::ALL),
        ];
        for (role, actions, capabilities) in table {
            assert_eq!(role.repository_actions(), actions, "{role}");
            for c in Capability::ALL {
                assert_eq!(role.allows(c), capabilities.contains(&c), "{role} {c:?}");
            }
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("owner".parse::<Role>().is_err());
        assert_eq!("project_admin".parse::<Role>(), Ok(Role::ProjectAdmin));
    }

    #[test]
    fn public_projects_are_readable_by_everyone_and_writable_by_nobody_extra() {
        let r = repo("library/app");
        assert_eq!(Subject::Anonymous.repository_actions(&r, true), P.with(R));
        assert_eq!(
            Subject::Anonymous.repository_actions(&r, false),
            RepoActions::NONE
        );
        let stranger = member("other", None, Role::ProjectAdmin);
        assert_eq!(stranger.repository_actions(&r, true), P.with(R));
        assert_eq!(stranger.repository_actions(&r, false), RepoActions::NONE);
    }

    #[test]
    fn repository_grants_cover_one_repository() {
        let dev = member("team", Some("team/app"), Role::Developer);
        assert!(dev.repository_actions(&repo("team/app"), false).contains(U));
        assert_eq!(
            dev.repository_actions(&repo("team/other"), false),
            RepoActions::NONE
        );
        assert_eq!(
            dev.repository_actions(&repo("team/app/sub"), false),
            RepoActions::NONE
        );
        // A repository grant confers no project-level power.
        assert_eq!(dev.project_role("team"), None);
        assert!(!dev.project_allows("team", Capability::ReadMembers));
        assert!(dev.may_see_project("team", false));
    }

    #[test]
    fn roles_add_up_and_admins_do_everything() {
        let both = Subject::User {
            name: "u".into(),
            system_admin: false,
            memberships: vec![
                Membership {
                    project: "team".into(),
                    repository: None,
                    role: Role::Guest,
                },
                Membership {
                    project: "team".into(),
                    repository: Some("team/app".into()),
                    role: Role::Maintainer,
                },
            ],
        };
        assert_eq!(
            both.repository_actions(&repo("team/app"), false),
            RepoActions::ALL
        );
        assert_eq!(both.repository_actions(&repo("team/web"), false), P.with(R));
        assert_eq!(both.project_role("team"), Some(Role::Guest));
        let admin = Subject::User {
            name: "admin".into(),
            system_admin: true,
            memberships: vec![],
        };
        assert_eq!(
            admin.repository_actions(&repo("any/thing"), false),
            RepoActions::ALL
        );
        assert!(admin.project_allows("any", Capability::DeleteProject));
    }

    #[test]
    fn robots_have_exactly_their_permissions() {
        let robot = Subject::Robot {
            name: "robot$team+ci".into(),
            permissions: vec![
                RobotPermission {
                    project: "team".into(),
                    repository: None,
                    actions: P,
                },
                RobotPermission {
                    project: "team".into(),
                    repository: Some("app".into()),
                    actions: U.with(D),
                },
            ],
        };
        assert_eq!(robot.repository_actions(&repo("team/web"), false), P);
        assert_eq!(
            robot.repository_actions(&repo("team/app"), false),
            P.with(U).with(D)
        );
        assert_eq!(
            robot.repository_actions(&repo("other/app"), false),
            RepoActions::NONE
        );
        assert!(!robot.project_allows("team", Capability::ReadMembers));
        let everywhere = Subject::Robot {
            name: "robot$puller".into(),
            permissions: vec![RobotPermission {
                project: ANY_PROJECT.into(),
                repository: None,
                actions: P,
            }],
        };
        assert_eq!(everywhere.repository_actions(&repo("x/y"), false), P);
        let base_images = Subject::Robot {
            name: "robot$base".into(),
            permissions: vec![RobotPermission {
                project: ANY_PROJECT.into(),
                repository: Some("base".into()),
                actions: P,
            }],
        };
        assert_eq!(base_images.repository_actions(&repo("x/base"), false), P);
        assert_eq!(
            base_images.repository_actions(&repo("x/base/more"), false),
            RepoActions::NONE
        );
        assert_eq!(
            base_images.repository_actions(&repo("base"), false),
            RepoActions::NONE
        );
    }

    #[test]
    fn actions_serialize_as_names() {
        let set = P.with(D).with(S);
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["pull","delete","scan"]"#
        );
        let back: RepoActions = serde_json::from_str(r#"["scan","pull","delete"]"#).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<RepoActions>(r#"["fly"]"#).is_err());
    }
}
