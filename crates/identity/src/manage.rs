//! The management use cases behind `/api/v1` and the CLI: projects,
//! members, users, robots, the audit log and the signing key, each checked
//! against what the acting [`Subject`] may do and recorded in the audit log.
//!
//! Names are validated here (the store only keeps them unique); passwords
//! are hashed and robot secrets generated here, and a secret leaves this
//! module exactly once, in the answer to the call that made it.

use auth::{ANY_PROJECT, Capability, RepoActions, RobotPermission, Role, Subject};
use metadata::MetadataError;
use metadata::identity::{
    AuditEntry, AuditFilter, Listed, Member, MemberFilter, MemberOf, NewMember, NewProject,
    NewRobot, NewUser, Page, Project, ProjectFilter, ProjectPatch, Robot, RobotFilter, RobotPatch,
    Sort, User, UserFilter, UserPatch, UserSource,
};
use oci::RepoName;

use crate::{AuditRecord, Identity, ROBOT_PREFIX, now};

/// Why a management call failed, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("sign in first")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(MetadataError),
}

impl From<MetadataError> for ManageError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::ProjectUnknown(p) => {
                ManageError::NotFound(format!("project {p:?} does not exist"))
            }
            MetadataError::NotFound(what) => ManageError::NotFound(format!("{what} not found")),
            MetadataError::Conflict(what) => {
                ManageError::Conflict(format!("{what} already exists"))
            }
            MetadataError::Refused(why) => ManageError::Conflict(why),
            MetadataError::Invalid(why) => ManageError::Invalid(why),
            other => ManageError::Store(other),
        }
    }
}

pub type Result<T, E = ManageError> = std::result::Result<T, E>;

/// Who acts, and from where (for the audit log).
#[derive(Clone, Debug)]
pub struct Actor {
    pub subject: Subject,
    pub address: String,
}

impl Actor {
    fn name(&self) -> &str {
        match &self.subject {
            Subject::Anonymous => "anonymous",
            Subject::User { name, .. } | Subject::Robot { name, .. } => name,
        }
    }

    fn user(&self) -> Result<&str> {
        match &self.subject {
            Subject::Anonymous => Err(ManageError::Unauthenticated),
            Subject::Robot { .. } => Err(ManageError::Forbidden(
                "robot accounts may only push and pull".into(),
            )),
            Subject::User { name, .. } => Ok(name),
        }
    }

    fn admin(&self) -> Result<()> {
        self.user()?;
        if self.subject.is_system_admin() {
            Ok(())
        } else {
            Err(ManageError::Forbidden(
                "only system administrators may do this".into(),
            ))
        }
    }
}

/// A robot to create. `name` is the short name; the full name is
/// `robot$<project>+<name>` for a project robot, `robot$<name>` otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RobotSpec {
    pub name: String,
    pub project: Option<String>,
    pub description: String,
    pub permissions: Vec<RobotPermission>,
    pub expires_at_ms: Option<i64>,
}

/// A user to create.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub email: String,
    pub full_name: String,
    pub password: String,
    pub admin: bool,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Longest user, project or robot name.
const MAX_NAME: usize = 64;

/// Project names are repository path components (`[a-z0-9]` runs joined by
/// `.`, `_`, `__` or `-`), at most 64 bytes.
pub fn check_project_name(name: &str) -> Result<()> {
    let valid = name.len() <= MAX_NAME && !name.contains('/') && RepoName::parse(name).is_ok();
    if valid {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "invalid project name {name:?}: use lowercase letters and digits, separated by \
             '.', '_', '__' or '-', at most {MAX_NAME} characters"
        )))
    }
}

/// User names: letters, digits, `.`, `_`, `-`, `@`; they cannot contain `$`
/// (robots' names do) or `:` (it ends the name in Basic credentials).
pub fn check_user_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "invalid user name {name:?}: use letters, digits, '.', '_', '-' and '@', \
             at most {MAX_NAME} characters"
        )))
    }
}

fn check_robot_short_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "invalid robot name {name:?}: use lowercase letters, digits, '.', '_' and '-', \
             at most {MAX_NAME} characters"
        )))
    }
}

fn check_password(password: &str) -> Result<()> {
    auth::secret::check_password_policy(password).map_err(|e| ManageError::Invalid(e.to_string()))
}

/// Longest repository name within a project: a full name has at most 255
/// bytes, and a project name 64 of them.
pub const MAX_RELATIVE_REPOSITORY: usize = 190;

/// A repository's name within a project (`app`, `tools/app`).
pub fn check_relative_repository(repository: &str) -> Result<()> {
    if repository.len() > MAX_RELATIVE_REPOSITORY {
        return Err(ManageError::Invalid(format!(
            "a repository name within a project has at most {MAX_RELATIVE_REPOSITORY} characters"
        )));
    }
    RepoName::parse(&format!("p/{repository}"))
        .map(|_| ())
        .map_err(|e| ManageError::Invalid(format!("invalid repository {repository:?}: {e}")))
}

/// A repository (full name) that must belong to `project`.
fn check_repository_in(project: &str, repository: &str) -> Result<()> {
    let repo = RepoName::parse(repository)
        .map_err(|e| ManageError::Invalid(format!("invalid repository {repository:?}: {e}")))?;
    if repo.project() == project {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "repository {repository:?} is not in project {project:?}; give its full name, \
             such as {project}/app"
        )))
    }
}

impl Identity {
    fn record(
        &self,
        actor: &Actor,
        operation: &str,
        resource_type: &str,
        resource: &str,
        project: Option<&str>,
        detail: String,
    ) {
        self.audit().record(AuditRecord {
            actor: actor.name().to_owned(),
            address: actor.address.clone(),
            operation: operation.to_owned(),
            resource_type: resource_type.to_owned(),
            resource: resource.to_owned(),
            project: project.map(str::to_owned),
            success: true,
            detail,
        });
    }

    /// The project, if the actor may see it.
    async fn visible_project(&self, actor: &Actor, name: &str) -> Result<Project> {
        let project = self.store().project(name).await?;
        match project {
            Some(p) if actor.subject.may_see_project(&p.name, p.public) => Ok(p),
            _ => Err(ManageError::NotFound(format!(
                "project {name:?} does not exist"
            ))),
        }
    }

    /// A project the actor may see and must have `capability` in.
    async fn project_with(
        &self,
        actor: &Actor,
        name: &str,
        capability: Capability,
    ) -> Result<Project> {
        if matches!(actor.subject, Subject::Anonymous) {
            return Err(ManageError::Unauthenticated);
        }
        let project = self.visible_project(actor, name).await?;
        if actor.subject.project_allows(name, capability) {
            Ok(project)
        } else {
            actor.user()?;
            Err(ManageError::Forbidden(format!(
                "{} may not {} in project {name:?}",
                actor.name(),
                match capability {
                    Capability::ReadMembers => "see the members",
                    Capability::ReadAuditLog => "read the audit log",
                    Capability::ManageRobots =>
                        "manage robot accounts (maintainer or project admin needed)",
                    Capability::ManageMembers => "manage members (project admin needed)",
                    Capability::UpdateProject => "change the project (project admin needed)",
                    Capability::DeleteProject => "delete the project (project admin needed)",
                }
            )))
        }
    }

    pub async fn list_projects(
        &self,
        actor: &Actor,
        mut filter: ProjectFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Project>> {
        match &actor.subject {
            s if s.is_system_admin() => {}
            Subject::Anonymous => filter.public_or_named = Some(Vec::new()),
            Subject::User { memberships, .. } => {
                filter.public_or_named =
                    Some(memberships.iter().map(|m| m.project.clone()).collect());
            }
            Subject::Robot { permissions, .. } => {
                if !permissions.iter().any(|p| p.project == ANY_PROJECT) {
                    filter.public_or_named =
                        Some(permissions.iter().map(|p| p.project.clone()).collect());
                }
            }
        }
        Ok(self.store().list_projects(&filter, sort, page).await?)
    }

    pub async fn get_project(&self, actor: &Actor, name: &str) -> Result<Project> {
        self.visible_project(actor, name).await
    }

    /// Any user may create a project (and becomes its project admin).
    pub async fn create_project(&self, actor: &Actor, project: NewProject) -> Result<Project> {
        let user = actor.user()?.to_owned();
        check_project_name(&project.name)?;
        let (_, now_ms) = now();
        let created = self.store().create_project(&project, now_ms).await?;
        if !actor.subject.is_system_admin() {
            self.store()
                .add_member(
                    &created.name,
                    &NewMember {
                        member: MemberOf::User(user),
                        repository: None,
                        role: Role::ProjectAdmin,
                    },
                    now_ms,
                )
                .await?;
        }
        self.forget_project(&created.name);
        self.record(
            actor,
            "create",
            "project",
            &created.name,
            Some(&created.name),
            format!("public={}", created.public),
        );
        Ok(created)
    }

    pub async fn update_project(
        &self,
        actor: &Actor,
        name: &str,
        patch: ProjectPatch,
    ) -> Result<Project> {
        self.project_with(actor, name, Capability::UpdateProject)
            .await?;
        let (_, now_ms) = now();
        let updated = self.store().update_project(name, &patch, now_ms).await?;
        self.forget_project(name);
        self.record(
            actor,
            "update",
            "project",
            name,
            Some(name),
            describe_project_patch(&patch),
        );
        Ok(updated)
    }

    pub async fn delete_project(&self, actor: &Actor, name: &str) -> Result<()> {
        self.project_with(actor, name, Capability::DeleteProject)
            .await?;
        self.store().delete_project(name).await?;
        self.forget_project(name);
        self.record(actor, "delete", "project", name, Some(name), String::new());
        Ok(())
    }

    pub async fn list_members(
        &self,
        actor: &Actor,
        project: &str,
        filter: &MemberFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Member>> {
        self.project_with(actor, project, Capability::ReadMembers)
            .await?;
        Ok(self
            .store()
            .list_members(project, filter, sort, page)
            .await?)
    }

    pub async fn add_member(
        &self,
        actor: &Actor,
        project: &str,
        member: NewMember,
    ) -> Result<Member> {
        self.project_with(actor, project, Capability::ManageMembers)
            .await?;
        if let Some(repository) = &member.repository {
            check_repository_in(project, repository)?;
        }
        if let MemberOf::Group(group) = &member.member
            && (group.is_empty() || group.len() > 1024)
        {
            return Err(ManageError::Invalid(
                "a group name must have 1 to 1024 characters".into(),
            ));
        }
        let (_, now_ms) = now();
        let added = self.store().add_member(project, &member, now_ms).await?;
        self.record(
            actor,
            "create",
            "member",
            &member_label(&added),
            Some(project),
            format!("role={}", added.role),
        );
        Ok(added)
    }

    pub async fn update_member(
        &self,
        actor: &Actor,
        project: &str,
        id: i64,
        role: Role,
    ) -> Result<Member> {
        self.project_with(actor, project, Capability::ManageMembers)
            .await?;
        let updated = self.store().update_member(project, id, role).await?;
        self.record(
            actor,
            "update",
            "member",
            &member_label(&updated),
            Some(project),
            format!("role={role}"),
        );
        Ok(updated)
    }

    pub async fn remove_member(&self, actor: &Actor, project: &str, id: i64) -> Result<()> {
        self.project_with(actor, project, Capability::ManageMembers)
            .await?;
        self.store().remove_member(project, id).await?;
        self.record(
            actor,
            "delete",
            "member",
            &id.to_string(),
            Some(project),
            String::new(),
        );
        Ok(())
    }

    pub async fn list_users(
        &self,
        actor: &Actor,
        filter: &UserFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<User>> {
        actor.admin()?;
        Ok(self.store().list_users(filter, sort, page).await?)
    }

    /// A user: administrators see everyone, users themselves.
    pub async fn get_user(&self, actor: &Actor, name: &str) -> Result<User> {
        let me = actor.user()?;
        if me != name {
            actor.admin()?;
        }
        self.store()
            .user(name)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("user {name:?} not found")))
    }

    pub async fn create_user(&self, actor: &Actor, spec: UserSpec) -> Result<User> {
        actor.admin()?;
        check_user_name(&spec.name)?;
        check_password(&spec.password)?;
        let (_, now_ms) = now();
        let user = self
            .store()
            .create_user(
                &NewUser {
                    name: spec.name,
                    email: spec.email,
                    full_name: spec.full_name,
                    source: UserSource::Local,
                    external_id: None,
                    password_hash: Some(self.hash_password(&spec.password).await),
                    admin: spec.admin,
                },
                now_ms,
            )
            .await?;
        self.record(
            actor,
            "create",
            "user",
            &user.name,
            None,
            format!("admin={}", user.admin),
        );
        Ok(user)
    }

    /// Changes details: users their own email and full name, administrators
    /// also the admin and disabled flags (but not for themselves).
    pub async fn update_user(
        &self,
        actor: &Actor,
        name: &str,
        mut patch: UserPatch,
    ) -> Result<User> {
        let me = actor.user()?.to_owned();
        patch.password_hash = None;
        if patch.admin.is_some() || patch.disabled.is_some() {
            actor.admin()?;
            if me == name && (patch.admin == Some(false) || patch.disabled == Some(true)) {
                return Err(ManageError::Conflict(
                    "administrators cannot remove their own administrator rights or disable themselves".into(),
                ));
            }
        } else if me != name {
            actor.admin()?;
        }
        let (_, now_ms) = now();
        let user = self.store().update_user(name, &patch, now_ms).await?;
        self.record(
            actor,
            "update",
            "user",
            name,
            None,
            describe_user_patch(&patch),
        );
        Ok(user)
    }

    /// Sets a local user's password: their own with the current one, or
    /// anyone's as an administrator.
    pub async fn change_password(
        &self,
        actor: &Actor,
        name: &str,
        current: Option<&str>,
        new: &str,
    ) -> Result<()> {
        let me = actor.user()?.to_owned();
        let user = self
            .store()
            .user(name)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("user {name:?} not found")))?;
        if user.source != UserSource::Local {
            return Err(ManageError::Invalid(format!(
                "{name:?} signs in through {}; change the password there",
                user.source.as_str()
            )));
        }
        if me == name && !actor.subject.is_system_admin() {
            let ok = match current {
                Some(current) => self.password_matches(&user, current).await,
                None => false,
            };
            if !ok {
                return Err(ManageError::Forbidden(
                    "the current password is wrong".into(),
                ));
            }
        } else if me != name {
            actor.admin()?;
        }
        check_password(new)?;
        let (_, now_ms) = now();
        self.store()
            .update_user(
                name,
                &UserPatch {
                    password_hash: Some(self.hash_password(new).await),
                    ..UserPatch::default()
                },
                now_ms,
            )
            .await?;
        self.record(
            actor,
            "update",
            "user",
            name,
            None,
            "password changed".into(),
        );
        Ok(())
    }

    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        actor.admin()?;
        if actor.name() == name {
            return Err(ManageError::Conflict(
                "administrators cannot delete themselves".into(),
            ));
        }
        self.store().delete_user(name).await?;
        self.record(actor, "delete", "user", name, None, String::new());
        Ok(())
    }

    pub async fn list_robots(
        &self,
        actor: &Actor,
        filter: &RobotFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Robot>> {
        match &filter.project {
            Some(Some(project)) => {
                self.project_with(actor, project, Capability::ManageRobots)
                    .await?;
            }
            _ => actor.admin()?,
        }
        Ok(self.store().list_robots(filter, sort, page).await?)
    }

    /// A robot of `project` (`None`: a system robot) the actor may manage.
    async fn managed_robot(
        &self,
        actor: &Actor,
        project: Option<&str>,
        name: &str,
    ) -> Result<Robot> {
        actor.user()?;
        let robot = self.store().robot(name).await?;
        let not_found = || ManageError::NotFound(format!("robot {name:?} not found"));
        let robot = robot
            .filter(|r| r.project.as_deref() == project)
            .ok_or_else(not_found)?;
        match &robot.project {
            Some(project) => {
                self.project_with(actor, project, Capability::ManageRobots)
                    .await?;
            }
            None => actor.admin()?,
        }
        Ok(robot)
    }

    pub async fn get_robot(
        &self,
        actor: &Actor,
        project: Option<&str>,
        name: &str,
    ) -> Result<Robot> {
        self.managed_robot(actor, project, name).await
    }

    fn check_robot_permissions(
        project: Option<&str>,
        permissions: &[RobotPermission],
    ) -> Result<()> {
        if permissions.is_empty() {
            return Err(ManageError::Invalid(
                "a robot needs at least one permission".into(),
            ));
        }
        for p in permissions {
            if p.actions.is_empty() {
                return Err(ManageError::Invalid(
                    "a robot permission needs at least one action".into(),
                ));
            }
            match project {
                Some(project) if p.project != project => {
                    return Err(ManageError::Invalid(format!(
                        "a robot of project {project:?} can only have permissions in it, not in {:?}",
                        p.project
                    )));
                }
                _ if p.project != ANY_PROJECT => check_project_name(&p.project)?,
                _ => {}
            }
            if let Some(repository) = &p.repository {
                check_relative_repository(repository)?;
            }
        }
        Ok(())
    }

    /// Creates a robot; returns it and its secret, which is never shown again.
    pub async fn create_robot(&self, actor: &Actor, spec: RobotSpec) -> Result<(Robot, String)> {
        check_robot_short_name(&spec.name)?;
        let name = match &spec.project {
            Some(project) => {
                self.project_with(actor, project, Capability::ManageRobots)
                    .await?;
                format!("{ROBOT_PREFIX}{project}+{}", spec.name)
            }
            None => {
                actor.admin()?;
                format!("{ROBOT_PREFIX}{}", spec.name)
            }
        };
        Self::check_robot_permissions(spec.project.as_deref(), &spec.permissions)?;
        let (_, now_ms) = now();
        let secret = auth::secret::generate_secret();
        let robot = self
            .store()
            .create_robot(
                &NewRobot {
                    name,
                    project: spec.project.clone(),
                    description: spec.description,
                    secret_hash: auth::secret::secret_digest(&secret),
                    permissions: spec.permissions,
                    expires_at_ms: spec.expires_at_ms,
                    created_by: actor.name().to_owned(),
                },
                now_ms,
            )
            .await?;
        self.record(
            actor,
            "create",
            "robot",
            &robot.name,
            spec.project.as_deref(),
            describe_permissions(&robot.permissions),
        );
        Ok((robot, secret))
    }

    pub async fn update_robot(
        &self,
        actor: &Actor,
        project: Option<&str>,
        name: &str,
        mut patch: RobotPatch,
    ) -> Result<Robot> {
        let robot = self.managed_robot(actor, project, name).await?;
        patch.secret_hash = None;
        if let Some(permissions) = &patch.permissions {
            Self::check_robot_permissions(robot.project.as_deref(), permissions)?;
        }
        let (_, now_ms) = now();
        let updated = self.store().update_robot(name, &patch, now_ms).await?;
        self.record(
            actor,
            "update",
            "robot",
            name,
            robot.project.as_deref(),
            describe_permissions(&updated.permissions),
        );
        Ok(updated)
    }

    /// A new secret for a robot; the old one stops working at once.
    pub async fn refresh_robot_secret(
        &self,
        actor: &Actor,
        project: Option<&str>,
        name: &str,
    ) -> Result<(Robot, String)> {
        let robot = self.managed_robot(actor, project, name).await?;
        let secret = auth::secret::generate_secret();
        let (_, now_ms) = now();
        let updated = self
            .store()
            .update_robot(
                name,
                &RobotPatch {
                    secret_hash: Some(auth::secret::secret_digest(&secret)),
                    ..RobotPatch::default()
                },
                now_ms,
            )
            .await?;
        self.record(
            actor,
            "update",
            "robot",
            name,
            robot.project.as_deref(),
            "secret refreshed".into(),
        );
        Ok((updated, secret))
    }

    pub async fn delete_robot(
        &self,
        actor: &Actor,
        project: Option<&str>,
        name: &str,
    ) -> Result<()> {
        let robot = self.managed_robot(actor, project, name).await?;
        self.store().delete_robot(name).await?;
        self.record(
            actor,
            "delete",
            "robot",
            name,
            robot.project.as_deref(),
            String::new(),
        );
        Ok(())
    }

    /// The audit log: all of it for administrators, a project's part for
    /// those who may read it.
    pub async fn list_audit(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<AuditEntry>> {
        match &filter.project {
            Some(project) if !actor.subject.is_system_admin() => {
                self.project_with(actor, project, Capability::ReadAuditLog)
                    .await?;
            }
            _ => actor.admin()?,
        }
        self.audit().flushed().await;
        Ok(self.store().list_audit(filter, sort, page).await?)
    }

    /// Which repositories of a project the actor may read: `None` for all of
    /// them, or the full names of those a repository grant covers.
    pub async fn readable_repositories(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Option<Vec<String>>> {
        let p = self.visible_project(actor, project).await?;
        if p.public || actor.subject.is_system_admin() {
            return Ok(None);
        }
        match &actor.subject {
            Subject::User { memberships, .. } => {
                let mine = memberships.iter().filter(|m| m.project == project);
                if mine.clone().any(|m| m.repository.is_none()) {
                    return Ok(None);
                }
                Ok(Some(mine.filter_map(|m| m.repository.clone()).collect()))
            }
            Subject::Robot { permissions, .. } => {
                let reads = RepoActions::READ.with(RepoActions::PULL);
                let mine = permissions.iter().filter(|p| {
                    (p.project == project || p.project == ANY_PROJECT)
                        && !p.actions.intersect(reads).is_empty()
                });
                if mine.clone().any(|p| p.repository.is_none()) {
                    return Ok(None);
                }
                Ok(Some(
                    mine.filter_map(|p| p.repository.as_ref().map(|r| format!("{project}/{r}")))
                        .collect(),
                ))
            }
            Subject::Anonymous => Ok(Some(Vec::new())),
        }
    }

    /// Checks that the actor may read `repository` (see its artifacts and
    /// tags): not found if its project is missing or hidden from the actor.
    pub async fn check_readable(&self, actor: &Actor, repository: &RepoName) -> Result<()> {
        let project = self.visible_project(actor, repository.project()).await?;
        let actions = actor.subject.repository_actions(repository, project.public);
        if actions
            .intersect(RepoActions::READ.with(RepoActions::PULL))
            .is_empty()
        {
            if matches!(actor.subject, Subject::Anonymous) {
                return Err(ManageError::Unauthenticated);
            }
            return Err(ManageError::Forbidden(format!(
                "{} may not read {repository}",
                actor.name()
            )));
        }
        Ok(())
    }

    /// The project, if the actor may change it (project admin): for its
    /// retention policy and immutability rules.
    pub async fn check_project_admin(&self, actor: &Actor, project: &str) -> Result<Project> {
        self.project_with(actor, project, Capability::UpdateProject)
            .await
    }

    /// The project, if the actor may see it.
    pub async fn check_project_visible(&self, actor: &Actor, project: &str) -> Result<Project> {
        self.visible_project(actor, project).await
    }

    /// Refuses anyone but a system administrator (garbage collection,
    /// integrity checks, quotas).
    pub fn check_system_admin(&self, actor: &Actor) -> Result<()> {
        actor.admin()
    }

    /// The name an actor's changes are recorded under.
    pub fn actor_name(actor: &Actor) -> &str {
        actor.name()
    }

    /// Records a lifecycle change made through the management API (a setting
    /// changed, a run requested).
    pub fn record_change(
        &self,
        actor: &Actor,
        operation: &str,
        resource_type: &str,
        resource: &str,
        project: Option<&str>,
        detail: String,
    ) {
        self.record(actor, operation, resource_type, resource, project, detail);
    }

    /// Records a deletion made through the management API.
    pub fn record_deletion(
        &self,
        actor: &Actor,
        resource_type: &str,
        resource: &str,
        project: &str,
    ) {
        self.record(
            actor,
            "delete",
            resource_type,
            resource,
            Some(project),
            String::new(),
        );
    }

    /// Signs new tokens with a new key; returns its id.
    pub async fn rotate_signing_key(&self, actor: &Actor) -> Result<String> {
        actor.admin()?;
        let id = self.keys().rotate().await?;
        self.record(
            actor,
            "update",
            "config",
            "signing-key",
            None,
            format!("new key {id}"),
        );
        Ok(id)
    }
}

fn member_label(member: &Member) -> String {
    let who = match &member.member {
        MemberOf::User(u) => format!("user:{u}"),
        MemberOf::Group(g) => format!("group:{g}"),
    };
    match &member.repository {
        Some(r) => format!("{who}@{r}"),
        None => who,
    }
}

fn describe_project_patch(patch: &ProjectPatch) -> String {
    let mut parts = Vec::new();
    if let Some(p) = patch.public {
        parts.push(format!("public={p}"));
    }
    if patch.description.is_some() {
        parts.push("description".into());
    }
    if let Some(labels) = &patch.labels {
        parts.push(format!("labels={}", labels.len()));
    }
    parts.join(", ")
}

fn describe_user_patch(patch: &UserPatch) -> String {
    let mut parts = Vec::new();
    if let Some(a) = patch.admin {
        parts.push(format!("admin={a}"));
    }
    if let Some(d) = patch.disabled {
        parts.push(format!("disabled={d}"));
    }
    if patch.email.is_some() || patch.full_name.is_some() {
        parts.push("details".into());
    }
    parts.join(", ")
}

fn describe_permissions(permissions: &[RobotPermission]) -> String {
    permissions
        .iter()
        .map(|p| {
            let target = format!("{}/{}", p.project, p.repository.as_deref().unwrap_or("*"));
            let actions: Vec<&str> = p.actions.names().collect();
            format!("{target}:{}", actions.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
