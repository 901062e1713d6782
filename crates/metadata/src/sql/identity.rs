// The `IdentityStore` implementation of an SQL backend: projects, users,
// memberships, robots, signing keys, the audit log and login failures.
// Included by each SQL backend (see `sql/mod.rs`).

use async_trait::async_trait;
use auth::{Membership, RobotPermission, Role};
use sqlx::Row as _;

use super::{Row, Store};
use crate::identity::{
    AuditEntry, AuditFilter, AuditRecord, IdentityStore, Listed, Member, MemberFilter, MemberOf,
    NewMember, NewProject, NewRobot, NewUser, Page, Project, ProjectFilter, ProjectPatch, Robot,
    RobotFilter, RobotPatch, Sort, StoredKey, User, UserFilter, UserPatch, UserSource,
};
use super::listing::{Conditions, audited, bind_values, list, order_by};
use crate::sql::{Value, write_tx};
use crate::{MetadataError, Result};

fn flag(value: bool) -> i64 {
    i64::from(value)
}

fn corrupt(what: &str, value: &str) -> MetadataError {
    MetadataError::Backend(format!("corrupt {what} {value:?} in the database").into())
}

fn stored_role(s: &str) -> Result<Role> {
    s.parse().map_err(|_| corrupt("role", s))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

const PROJECT_COLUMNS: &str = "p.id, p.name, p.public, p.description, p.labels, p.created_at, p.updated_at,
     (SELECT COUNT(*) FROM repositories r WHERE r.project_id = p.id) AS repository_count";

fn project_from_row(row: &Row) -> Result<Project> {
    let labels: String = row.try_get("labels")?;
    let count: i64 = row.try_get("repository_count")?;
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        public: row.try_get::<i64, _>("public")? != 0,
        description: row.try_get("description")?,
        labels: serde_json::from_str(&labels).map_err(|_| corrupt("labels", &labels))?,
        repository_count: count as u64,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn user_from_row(row: &Row) -> Result<User> {
    let source: String = row.try_get("source")?;
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        full_name: row.try_get("full_name")?,
        source: UserSource::parse(&source).ok_or_else(|| corrupt("user source", &source))?,
        external_id: row.try_get("external_id")?,
        password_hash: row.try_get("password_hash")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        credentials_changed_at_ms: row.try_get("credentials_changed_at")?,
        last_login_at_ms: row.try_get("last_login_at")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

const MEMBER_COLUMNS: &str = "m.id, p.name AS project, u.name AS user_name, m.group_name, m.repository, m.role, m.created_at
     FROM project_members m JOIN projects p ON p.id = m.project_id LEFT JOIN users u ON u.id = m.user_id";

fn member_from_row(row: &Row) -> Result<Member> {
    let user: Option<String> = row.try_get("user_name")?;
    let group: Option<String> = row.try_get("group_name")?;
    let role: String = row.try_get("role")?;
    Ok(Member {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        member: match (user, group) {
            (Some(u), None) => MemberOf::User(u),
            (None, Some(g)) => MemberOf::Group(g),
            _ => return Err(corrupt("membership", "neither user nor group")),
        },
        repository: row.try_get("repository")?,
        role: stored_role(&role)?,
        created_at_ms: row.try_get("created_at")?,
    })
}

const ROBOT_COLUMNS: &str = "b.id, b.name, p.name AS project, b.description, b.secret_hash, b.permissions,
     b.expires_at, b.disabled, b.credentials_changed_at, b.created_by, b.created_at, b.updated_at
     FROM robots b LEFT JOIN projects p ON p.id = b.project_id";

fn robot_from_row(row: &Row) -> Result<Robot> {
    let permissions: String = row.try_get("permissions")?;
    Ok(Robot {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        project: row.try_get("project")?,
        description: row.try_get("description")?,
        secret_hash: row.try_get("secret_hash")?,
        permissions: serde_json::from_str::<Vec<RobotPermission>>(&permissions)
            .map_err(|_| corrupt("robot permissions", &permissions))?,
        expires_at_ms: row.try_get("expires_at")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        credentials_changed_at_ms: row.try_get("credentials_changed_at")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn key_from_row(row: &Row) -> Result<StoredKey> {
    Ok(StoredKey {
        id: row.try_get("id")?,
        secret: row.try_get("secret")?,
        created_at_ms: row.try_get("created_at")?,
        retired_at_ms: row.try_get("retired_at")?,
    })
}

fn audit_from_row(row: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        record: AuditRecord {
            occurred_at_ms: row.try_get("occurred_at")?,
            actor: row.try_get("actor")?,
            address: row.try_get("address")?,
            operation: row.try_get("operation")?,
            resource_type: row.try_get("resource_type")?,
            resource: row.try_get("resource")?,
            project: row.try_get("project")?,
            success: row.try_get::<i64, _>("success")? != 0,
            detail: row.try_get("detail")?,
        },
    })
}

async fn project_by_name(conn: &mut super::Conn, name: &str) -> Result<Option<Project>> {
    let row = sqlx::query(audited(format!("SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.name = $1")))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(project_from_row).transpose()
}

async fn project_id(conn: &mut super::Conn, name: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| MetadataError::ProjectUnknown(name.to_owned()))
}

async fn user_by_name(conn: &mut super::Conn, name: &str) -> Result<Option<User>> {
    let row = sqlx::query("SELECT * FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

async fn member_by_id(conn: &mut super::Conn, project: &str, id: i64) -> Result<Member> {
    let row = sqlx::query(audited(format!(
        "SELECT {MEMBER_COLUMNS} WHERE p.name = $1 AND m.id = $2"
    )))
    .bind(project)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| MetadataError::NotFound(format!("member {id} of project {project:?}")))?;
    member_from_row(&row)
}

async fn robot_by_name(conn: &mut super::Conn, name: &str) -> Result<Option<Robot>> {
    let row = sqlx::query(audited(format!("SELECT {ROBOT_COLUMNS} WHERE b.name = $1")))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(robot_from_row).transpose()
}

/// `UPDATE <table> SET ...` from optional new values; false when nothing is set.
#[derive(Default)]
struct Assignments {
    sets: Vec<String>,
    values: Vec<Value>,
}

impl Assignments {
    fn set(&mut self, column: &str, value: Option<Value>) {
        if let Some(value) = value {
            self.values.push(value);
            self.sets.push(format!("{column} = ${}", self.values.len()));
        }
    }

    /// The statement, keyed by `key_column = <key>`.
    fn sql(&mut self, table: &str, key_column: &str, key: Value) -> String {
        self.values.push(key);
        format!(
            "UPDATE {table} SET {} WHERE {key_column} = ${}",
            self.sets.join(", "),
            self.values.len()
        )
    }
}

/// Runs the `UPDATE` of `a` on the row of `table` named `name`; `NotFound`
/// (as `what`) if there is none.
async fn update_named(
    conn: &mut super::Conn,
    a: &mut Assignments,
    table: &str,
    name: &str,
    what: impl FnOnce() -> MetadataError,
) -> Result<()> {
    let sql = a.sql(table, "name", Value::Text(name.to_owned()));
    let done = bind_values!(sqlx::query(audited(sql)), a.values.clone())
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(what());
    }
    Ok(())
}

/// Deletes the row of `table` named `name`; `NotFound` (as `what`) if none.
async fn delete_named(conn: &mut super::Conn, table: &str, name: &str, what: String) -> Result<()> {
    let sql = format!("DELETE FROM {table} WHERE name = $1");
    let done = sqlx::query(audited(sql)).bind(name).execute(conn).await?;
    if done.rows_affected() == 0 {
        return Err(MetadataError::NotFound(what));
    }
    Ok(())
}

#[async_trait]
impl IdentityStore for Store {
    async fn create_project(&self, project: &NewProject, now_ms: i64) -> Result<Project> {
        write_tx!(self, |tx| {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO projects (name, public, description, labels, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(&project.name)
            .bind(flag(project.public))
            .bind(&project.description)
            .bind(to_json(&project.labels))
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if id.is_none() {
                return Err(MetadataError::Conflict(format!(
                    "project {:?}",
                    project.name
                )));
            }
            project_by_name(&mut tx, &project.name)
                .await?
                .ok_or_else(|| MetadataError::ProjectUnknown(project.name.clone()))?
        })
    }

    async fn project(&self, name: &str) -> Result<Option<Project>> {
        let mut conn = self.readers().acquire().await?;
        project_by_name(&mut conn, name).await
    }

    async fn list_projects(
        &self,
        filter: &ProjectFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Project>> {
        let mut c = Conditions::default();
        if let Some(name) = &filter.name {
            c.contains("p.name", name);
        }
        if let Some(public) = filter.public {
            c.add("p.public = ?", [Value::Int(flag(public))]);
        }
        if let Some(names) = &filter.public_or_named {
            let marks = vec!["?"; names.len()].join(", ");
            let clause = if names.is_empty() {
                "p.public = 1".to_owned()
            } else {
                format!("(p.public = 1 OR p.name IN ({marks}))")
            };
            c.add(&clause, names.iter().cloned().map(Value::Text));
        }
        if let Some((key, value)) = &filter.label {
            // Labels are a JSON object; match the key (and value) as JSON text.
            let needle = match value {
                Some(v) => format!("{}:{}", to_json(key), to_json(v)),
                None => format!("{}:", to_json(key)),
            };
            c.contains("p.labels", &needle);
        }
        let order = order_by(
            sort,
            &[
                ("name", "p.name"),
                ("created_at", "p.created_at"),
                ("updated_at", "p.updated_at"),
                ("repository_count", "repository_count"),
            ],
            "p.name",
            "p.id",
        )?;
        list(
            self.readers(),
            &format!("SELECT {PROJECT_COLUMNS} FROM projects p"),
            "SELECT COUNT(*) FROM projects p",
            &c,
            &order,
            page,
            project_from_row,
        )
        .await
    }

    async fn update_project(
        &self,
        name: &str,
        patch: &ProjectPatch,
        now_ms: i64,
    ) -> Result<Project> {
        write_tx!(self, |tx| {
            let mut a = Assignments::default();
            a.set("public", patch.public.map(|p| Value::Int(flag(p))));
            a.set("description", patch.description.clone().map(Value::Text));
            a.set("labels", patch.labels.as_ref().map(|l| Value::Text(to_json(l))));
            a.set("updated_at", Some(Value::Int(now_ms)));
            update_named(&mut tx, &mut a, "projects", name, || MetadataError::ProjectUnknown(name.to_owned())).await?;
            project_by_name(&mut tx, name)
                .await?
                .ok_or_else(|| MetadataError::ProjectUnknown(name.to_owned()))?
        })
    }

    async fn delete_project(&self, name: &str) -> Result<()> {
        write_tx!(self, |tx| {
            let id = project_id(&mut tx, name).await?;
            let repositories: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM repositories WHERE project_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if repositories > 0 {
                return Err(MetadataError::Refused(format!(
                    "project {name:?} still holds {repositories} repositories; delete them first"
                )));
            }
            sqlx::query("DELETE FROM projects WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        })
    }

    async fn create_user(&self, user: &NewUser, now_ms: i64) -> Result<User> {
        write_tx!(self, |tx| {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO users (name, email, full_name, source, external_id, password_hash, admin,
                                    credentials_changed_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(&user.name)
            .bind(&user.email)
            .bind(&user.full_name)
            .bind(user.source.as_str())
            .bind(&user.external_id)
            .bind(&user.password_hash)
            .bind(flag(user.admin))
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if id.is_none() {
                return Err(MetadataError::Conflict(format!("user {:?}", user.name)));
            }
            user_by_name(&mut tx, &user.name)
                .await?
                .ok_or_else(|| MetadataError::NotFound(format!("user {:?}", user.name)))?
        })
    }

    async fn user(&self, name: &str) -> Result<Option<User>> {
        let mut conn = self.readers().acquire().await?;
        user_by_name(&mut conn, name).await
    }

    async fn list_users(
        &self,
        filter: &UserFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<User>> {
        let mut c = Conditions::default();
        if let Some(name) = &filter.name {
            c.contains("name || ' ' || email", name);
        }
        if let Some(source) = filter.source {
            c.add("source = ?", [Value::Text(source.as_str().to_owned())]);
        }
        if let Some(admin) = filter.admin {
            c.add("admin = ?", [Value::Int(flag(admin))]);
        }
        let order = order_by(
            sort,
            &[
                ("name", "name"),
                ("email", "email"),
                ("created_at", "created_at"),
                ("last_login_at", "last_login_at"),
            ],
            "name",
            "id",
        )?;
        list(
            self.readers(),
            "SELECT * FROM users",
            "SELECT COUNT(*) FROM users",
            &c,
            &order,
            page,
            user_from_row,
        )
        .await
    }

    async fn update_user(&self, name: &str, patch: &UserPatch, now_ms: i64) -> Result<User> {
        write_tx!(self, |tx| {
            let mut a = Assignments::default();
            a.set("email", patch.email.clone().map(Value::Text));
            a.set("full_name", patch.full_name.clone().map(Value::Text));
            a.set("password_hash", patch.password_hash.clone().map(Value::Text));
            a.set("admin", patch.admin.map(|v| Value::Int(flag(v))));
            a.set("disabled", patch.disabled.map(|v| Value::Int(flag(v))));
            if patch.password_hash.is_some() || patch.disabled == Some(true) {
                a.set("credentials_changed_at", Some(Value::Int(now_ms)));
            }
            a.set("updated_at", Some(Value::Int(now_ms)));
            update_named(&mut tx, &mut a, "users", name, || MetadataError::NotFound(format!("user {name:?}"))).await?;
            user_by_name(&mut tx, name)
                .await?
                .ok_or_else(|| MetadataError::NotFound(format!("user {name:?}")))?
        })
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        write_tx!(self, |tx| {
            delete_named(&mut tx, "users", name, format!("user {name:?}")).await?;
        })
    }

    async fn count_admins(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE admin = 1 AND disabled = 0")
                .fetch_one(self.readers())
                .await?;
        Ok(n as u64)
    }

    async fn sync_directory_user(
        &self,
        user: &NewUser,
        groups: &[String],
        now_ms: i64,
    ) -> Result<User> {
        write_tx!(self, |tx| {
            let id = match user_by_name(&mut tx, &user.name).await? {
                Some(existing) if existing.source != user.source => {
                    return Err(MetadataError::Conflict(format!(
                        "a {} user named {:?}",
                        existing.source.as_str(),
                        user.name
                    )));
                }
                Some(existing) => {
                    sqlx::query(
                        "UPDATE users SET email = $1, full_name = $2, external_id = $3,
                                          admin = $4, last_login_at = $5, updated_at = $5
                         WHERE id = $6",
                    )
                    .bind(&user.email)
                    .bind(&user.full_name)
                    .bind(&user.external_id)
                    .bind(flag(user.admin))
                    .bind(now_ms)
                    .bind(existing.id)
                    .execute(&mut *tx)
                    .await?;
                    existing.id
                }
                None => sqlx::query_scalar(
                    "INSERT INTO users (name, email, full_name, source, external_id, admin,
                                        credentials_changed_at, last_login_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $7) RETURNING id",
                )
                .bind(&user.name)
                .bind(&user.email)
                .bind(&user.full_name)
                .bind(user.source.as_str())
                .bind(&user.external_id)
                .bind(flag(user.admin))
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?,
            };
            sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for group in groups {
                sqlx::query(
                    "INSERT INTO user_groups (user_id, group_name) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(group)
                .execute(&mut *tx)
                .await?;
            }
            user_by_name(&mut tx, &user.name)
                .await?
                .ok_or_else(|| MetadataError::NotFound(format!("user {:?}", user.name)))?
        })
    }

    async fn record_login(&self, name: &str, now_ms: i64) -> Result<()> {
        write_tx!(self, |tx| {
            sqlx::query("UPDATE users SET last_login_at = $1 WHERE name = $2")
                .bind(now_ms)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        })
    }

    async fn add_member(&self, project: &str, member: &NewMember, now_ms: i64) -> Result<Member> {
        write_tx!(self, |tx| {
            let project_id = project_id(&mut tx, project).await?;
            let (user_id, group) = match &member.member {
                MemberOf::User(name) => {
                    let user = user_by_name(&mut tx, name)
                        .await?
                        .ok_or_else(|| MetadataError::NotFound(format!("user {name:?}")))?;
                    (Some(user.id), None)
                }
                MemberOf::Group(group) => (None, Some(group.clone())),
            };
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO project_members (project_id, user_id, group_name, repository, role, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(project_id)
            .bind(user_id)
            .bind(&group)
            .bind(&member.repository)
            .bind(member.role.as_str())
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Err(MetadataError::Conflict(format!(
                    "a membership of {:?} in {project:?}{}",
                    match &member.member {
                        MemberOf::User(u) | MemberOf::Group(u) => u,
                    },
                    member
                        .repository
                        .as_deref()
                        .map(|r| format!(" for {r}"))
                        .unwrap_or_default()
                )));
            };
            member_by_id(&mut tx, project, id).await?
        })
    }

    async fn list_members(
        &self,
        project: &str,
        filter: &MemberFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Member>> {
        let mut c = Conditions::default();
        c.add("p.name = ?", [Value::Text(project.to_owned())]);
        if let Some(name) = &filter.name {
            c.contains("COALESCE(u.name, m.group_name)", name);
        }
        if let Some(role) = filter.role {
            c.add("m.role = ?", [Value::Text(role.as_str().to_owned())]);
        }
        let order = order_by(
            sort,
            &[
                ("name", "COALESCE(u.name, m.group_name)"),
                ("role", "m.role"),
                ("created_at", "m.created_at"),
            ],
            "COALESCE(u.name, m.group_name)",
            "m.id",
        )?;
        let listed = list(
            self.readers(),
            &format!("SELECT {MEMBER_COLUMNS}"),
            "SELECT COUNT(*) FROM project_members m JOIN projects p ON p.id = m.project_id
             LEFT JOIN users u ON u.id = m.user_id",
            &c,
            &order,
            page,
            member_from_row,
        )
        .await?;
        if listed.total == 0 && IdentityStore::project(self, project).await?.is_none() {
            return Err(MetadataError::ProjectUnknown(project.to_owned()));
        }
        Ok(listed)
    }

    async fn update_member(&self, project: &str, id: i64, role: Role) -> Result<Member> {
        write_tx!(self, |tx| {
            member_by_id(&mut tx, project, id).await?;
            sqlx::query("UPDATE project_members SET role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            member_by_id(&mut tx, project, id).await?
        })
    }

    async fn remove_member(&self, project: &str, id: i64) -> Result<()> {
        write_tx!(self, |tx| {
            member_by_id(&mut tx, project, id).await?;
            sqlx::query("DELETE FROM project_members WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        })
    }

    async fn memberships(&self, user: &str) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT p.name AS project, m.repository, m.role
             FROM project_members m JOIN projects p ON p.id = m.project_id
             JOIN users u ON u.name = $1
             WHERE m.user_id = u.id
                OR m.group_name IN (SELECT g.group_name FROM user_groups g WHERE g.user_id = u.id)",
        )
        .bind(user)
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(Membership {
                    project: row.try_get("project")?,
                    repository: row.try_get("repository")?,
                    role: stored_role(&role)?,
                })
            })
            .collect()
    }

    async fn create_robot(&self, robot: &NewRobot, now_ms: i64) -> Result<Robot> {
        write_tx!(self, |tx| {
            let project_id = match &robot.project {
                Some(p) => Some(project_id(&mut tx, p).await?),
                None => None,
            };
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO robots (name, project_id, description, secret_hash, permissions, expires_at,
                                     credentials_changed_at, created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $7)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(&robot.name)
            .bind(project_id)
            .bind(&robot.description)
            .bind(&robot.secret_hash)
            .bind(to_json(&robot.permissions))
            .bind(robot.expires_at_ms)
            .bind(now_ms)
            .bind(&robot.created_by)
            .fetch_optional(&mut *tx)
            .await?;
            if id.is_none() {
                return Err(MetadataError::Conflict(format!("robot {:?}", robot.name)));
            }
            robot_by_name(&mut tx, &robot.name)
                .await?
                .ok_or_else(|| MetadataError::NotFound(format!("robot {:?}", robot.name)))?
        })
    }

    async fn robot(&self, name: &str) -> Result<Option<Robot>> {
        let mut conn = self.readers().acquire().await?;
        robot_by_name(&mut conn, name).await
    }

    async fn list_robots(
        &self,
        filter: &RobotFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<Robot>> {
        let mut c = Conditions::default();
        match &filter.project {
            Some(Some(project)) => c.add("p.name = ?", [Value::Text(project.clone())]),
            Some(None) => c.add("b.project_id IS NULL", []),
            None => {}
        }
        if let Some(name) = &filter.name {
            c.contains("b.name", name);
        }
        let order = order_by(
            sort,
            &[
                ("name", "b.name"),
                ("created_at", "b.created_at"),
                ("expires_at", "b.expires_at"),
            ],
            "b.name",
            "b.id",
        )?;
        list(
            self.readers(),
            &format!("SELECT {ROBOT_COLUMNS}"),
            "SELECT COUNT(*) FROM robots b LEFT JOIN projects p ON p.id = b.project_id",
            &c,
            &order,
            page,
            robot_from_row,
        )
        .await
    }

    async fn update_robot(&self, name: &str, patch: &RobotPatch, now_ms: i64) -> Result<Robot> {
        write_tx!(self, |tx| {
            let mut a = Assignments::default();
            a.set("description", patch.description.clone().map(Value::Text));
            a.set("secret_hash", patch.secret_hash.clone().map(Value::Text));
            a.set(
                "permissions",
                patch.permissions.as_ref().map(|p| Value::Text(to_json(p))),
            );
            a.set(
                "expires_at",
                patch
                    .expires_at_ms
                    .map(|e| e.map_or(Value::Null, Value::Int)),
            );
            a.set("disabled", patch.disabled.map(|v| Value::Int(flag(v))));
            if patch.secret_hash.is_some() || patch.disabled == Some(true) {
                a.set("credentials_changed_at", Some(Value::Int(now_ms)));
            }
            a.set("updated_at", Some(Value::Int(now_ms)));
            update_named(&mut tx, &mut a, "robots", name, || MetadataError::NotFound(format!("robot {name:?}"))).await?;
            robot_by_name(&mut tx, name)
                .await?
                .ok_or_else(|| MetadataError::NotFound(format!("robot {name:?}")))?
        })
    }

    async fn delete_robot(&self, name: &str) -> Result<()> {
        write_tx!(self, |tx| {
            delete_named(&mut tx, "robots", name, format!("robot {name:?}")).await?;
        })
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, id")
            .fetch_all(self.readers())
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn ensure_signing_key(&self, key: &StoredKey) -> Result<Vec<StoredKey>> {
        write_tx!(self, |tx| {
            let active: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL")
                    .fetch_one(&mut *tx)
                    .await?;
            if active == 0 {
                sqlx::query("INSERT INTO signing_keys (id, secret, created_at) VALUES ($1, $2, $3)")
                    .bind(&key.id)
                    .bind(&key.secret)
                    .bind(key.created_at_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, id")
                .fetch_all(&mut *tx)
                .await?;
            rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?
        })
    }

    async fn rotate_signing_key(&self, key: &StoredKey, now_ms: i64) -> Result<()> {
        write_tx!(self, |tx| {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO signing_keys (id, secret, created_at) VALUES ($1, $2, $3)")
                .bind(&key.id)
                .bind(&key.secret)
                .bind(key.created_at_ms)
                .execute(&mut *tx)
                .await?;
        })
    }

    async fn prune_signing_keys(&self, before_ms: i64) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Many rows per statement: pulls are audited, and a busy registry
        // writes thousands of entries a second.
        const ROWS: usize = 100;
        write_tx!(self, |tx| {
            for chunk in records.chunks(ROWS) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let p: Vec<String> = (1..=9).map(|j| format!("${}", i * 9 + j)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO audit_log (occurred_at, actor, address, operation, resource_type,
                                            resource, project, success, detail) VALUES {}",
                    rows.join(", ")
                );
                let values = chunk.iter().flat_map(|r| {
                    [
                        Value::Int(r.occurred_at_ms),
                        Value::Text(r.actor.clone()),
                        Value::Text(r.address.clone()),
                        Value::Text(r.operation.clone()),
                        Value::Text(r.resource_type.clone()),
                        Value::Text(r.resource.clone()),
                        r.project.clone().map_or(Value::Null, Value::Text),
                        Value::Int(flag(r.success)),
                        Value::Text(r.detail.clone()),
                    ]
                });
                let mut query = sqlx::query(audited(sql));
                for value in values {
                    query = match value {
                        Value::Null => query.bind(None::<String>),
                        Value::Int(v) => query.bind(v),
                        Value::Text(v) => query.bind(v),
                        Value::Bytes(v) => query.bind(v),
                    };
                }
                query.execute(&mut *tx).await?;
            }
        })
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        sort: &Sort,
        page: Page,
    ) -> Result<Listed<AuditEntry>> {
        let mut c = Conditions::default();
        let text = |s: &String| Value::Text(s.clone());
        if let Some(v) = &filter.actor {
            c.add("actor = ?", [text(v)]);
        }
        if let Some(v) = &filter.operation {
            c.add("operation = ?", [text(v)]);
        }
        if let Some(v) = &filter.resource_type {
            c.add("resource_type = ?", [text(v)]);
        }
        if let Some(v) = &filter.resource {
            c.add("substr(resource, 1, CAST(? AS INTEGER)) = ?", [Value::Int(v.len() as i64), text(v)]);
        }
        if let Some(v) = &filter.project {
            c.add("project = ?", [text(v)]);
        }
        if let Some(v) = filter.success {
            c.add("success = ?", [Value::Int(flag(v))]);
        }
        if let Some(v) = filter.from_ms {
            c.add("occurred_at >= ?", [Value::Int(v)]);
        }
        if let Some(v) = filter.to_ms {
            c.add("occurred_at < ?", [Value::Int(v)]);
        }
        let order = order_by(
            sort,
            &[
                ("occurred_at", "occurred_at"),
                ("actor", "actor"),
                ("operation", "operation"),
            ],
            "occurred_at DESC",
            "id DESC",
        )?;
        list(
            self.readers(),
            "SELECT * FROM audit_log",
            "SELECT COUNT(*) FROM audit_log",
            &c,
            &order,
            page,
            audit_from_row,
        )
        .await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<u64> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM audit_log WHERE occurred_at < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    async fn record_login_failure(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<u32> {
        write_tx!(self, |tx| {
            let failures: i64 = sqlx::query_scalar(
                "INSERT INTO login_failures (key, failures, last_at) VALUES ($1, 1, $2)
                 ON CONFLICT (key) DO UPDATE SET
                     failures = CASE WHEN login_failures.last_at < $3 THEN 1
                                     ELSE login_failures.failures + 1 END,
                     last_at = excluded.last_at
                 RETURNING failures",
            )
            .bind(key)
            .bind(now_ms)
            .bind(now_ms - window_ms)
            .fetch_one(&mut *tx)
            .await?;
            failures.clamp(0, i64::from(u32::MAX)) as u32
        })
    }

    async fn login_failures(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<u32> {
        let failures: Option<i64> = sqlx::query_scalar(
            "SELECT failures FROM login_failures WHERE key = $1 AND last_at >= $2",
        )
        .bind(key)
        .bind(now_ms - window_ms)
        .fetch_optional(self.readers())
        .await?;
        Ok(failures.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
    }

    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        })
    }
}
