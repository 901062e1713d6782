-- Registry core: repositories, blobs and their links, manifests, tags,
-- referrers (manifests.subject) and the event outbox.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- Every blob the blob store holds with a verified digest.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Which repository may read which blob.
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL REFERENCES blobs(digest),
    linked_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);

-- Manifest bytes, once per digest however many repositories hold them.
CREATE TABLE manifest_contents (
    id            INTEGER PRIMARY KEY,
    digest        TEXT NOT NULL UNIQUE,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    body          BLOB NOT NULL,
    subject       TEXT,
    artifact_type TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL
);

-- What a manifest points at: kind 0 = config or layer blob, 1 = child manifest.
CREATE TABLE manifest_references (
    manifest_digest TEXT NOT NULL REFERENCES manifest_contents(digest),
    target_digest   TEXT NOT NULL,
    kind            INTEGER NOT NULL,
    PRIMARY KEY (manifest_digest, kind, target_digest)
) WITHOUT ROWID;
CREATE INDEX manifest_references_by_target ON manifest_references(target_digest, kind);

-- Which repository holds which manifest.
CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL REFERENCES manifest_contents(digest),
    subject       TEXT,
    pushed_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX manifests_by_digest ON manifests(digest);

CREATE TABLE tags (
    repository_id INTEGER NOT NULL,
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags(repository_id, digest);

-- The outbox: one row per domain event, written in the transaction of its change.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    repository      TEXT NOT NULL,
    digest          TEXT,
    tag             TEXT,
    previous_digest TEXT,
    media_type      TEXT,
    size            INTEGER,
    actor           TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL
);
