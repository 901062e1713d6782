-- Projects, users, memberships, robots, token signing keys, the audit log
-- and failed-login throttling. Existing repositories move into projects named
-- after their first path component; `library` is created public.
-- Times are milliseconds since the Unix epoch; flags are 0 or 1.

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    public      INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    -- A JSON object of string labels.
    labels      TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

INSERT INTO projects (name, public, description, created_at, updated_at)
VALUES ('library', 1, 'Public images, pullable by anyone.',
        CAST(strftime('%s', 'now') AS INTEGER) * 1000, CAST(strftime('%s', 'now') AS INTEGER) * 1000);

INSERT INTO projects (name, public, description, created_at, updated_at)
SELECT DISTINCT substr(name, 1, instr(name || '/', '/') - 1), 0,
       'Created by the upgrade for repositories pushed before projects existed.',
       CAST(strftime('%s', 'now') AS INTEGER) * 1000, CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM repositories WHERE true
ON CONFLICT (name) DO NOTHING;

-- SQLite cannot add a NOT NULL foreign key column to a table with rows; the
-- store always sets it, and the column is NOT NULL in PostgreSQL.
ALTER TABLE repositories ADD COLUMN project_id INTEGER REFERENCES projects(id);
UPDATE repositories SET project_id =
    (SELECT p.id FROM projects p WHERE p.name = substr(repositories.name, 1, instr(repositories.name || '/', '/') - 1));
CREATE INDEX repositories_by_project ON repositories(project_id);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL DEFAULT '',
    full_name     TEXT NOT NULL DEFAULT '',
    -- 'local', or the directory the user comes from ('ldap', later 'oidc').
    source        TEXT NOT NULL,
    -- The user's identity in that directory (an LDAP DN, an OIDC subject).
    external_id   TEXT,
    -- argon2id PHC string; NULL for users who sign in through a directory.
    password_hash TEXT,
    admin         INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    -- Refresh tokens issued before this are refused (password change, disable).
    credentials_changed_at INTEGER NOT NULL,
    last_login_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Directory groups a user belonged to at their last sign-in.
CREATE TABLE user_groups (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
) WITHOUT ROWID;
CREATE INDEX user_groups_by_group ON user_groups(group_name);

-- A role in a project for a user or a directory group; with `repository`,
-- only for that repository of the project.
CREATE TABLE project_members (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id     INTEGER REFERENCES users(id) ON DELETE CASCADE,
    group_name  TEXT,
    repository  TEXT,
    role        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    CHECK ((user_id IS NULL) <> (group_name IS NULL))
);
CREATE UNIQUE INDEX project_members_unique
    ON project_members(project_id, COALESCE(user_id, 0), COALESCE(group_name, ''), COALESCE(repository, ''));
CREATE INDEX project_members_by_user ON project_members(user_id);
CREATE INDEX project_members_by_group ON project_members(group_name);

CREATE TABLE robots (
    id          INTEGER PRIMARY KEY,
    -- robot$<name> (system) or robot$<project>+<name>: '$' is in no user name.
    name        TEXT NOT NULL UNIQUE,
    -- The owning project; NULL for a system robot.
    project_id  INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    description TEXT NOT NULL DEFAULT '',
    -- SHA-256 (hex) of the generated secret.
    secret_hash TEXT NOT NULL,
    -- JSON: [{"project": "p" or "*", "repository": "p/app"?, "actions": [...]}]
    permissions TEXT NOT NULL,
    expires_at  INTEGER,
    disabled    INTEGER NOT NULL DEFAULT 0,
    credentials_changed_at INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX robots_by_project ON robots(project_id);

-- Keys that sign registry tokens. The newest unretired key signs; retired
-- keys verify until the tokens they signed have expired.
CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY,
    secret      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at   INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    address       TEXT NOT NULL DEFAULT '',
    operation     TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource      TEXT NOT NULL,
    -- The project the resource belongs to, if any (for project members' view).
    project       TEXT,
    success       INTEGER NOT NULL,
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_by_time ON audit_log(occurred_at);
CREATE INDEX audit_log_by_project ON audit_log(project, occurred_at);

-- Failed sign-ins per (name, address), for throttling.
CREATE TABLE login_failures (
    key         TEXT PRIMARY KEY,
    failures    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL
) WITHOUT ROWID;
