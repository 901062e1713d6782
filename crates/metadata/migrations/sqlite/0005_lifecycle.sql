-- Lifecycle: pull counts, exact per-project usage and quotas, immutability
-- and retention settings, garbage-collection tombstones and the record of
-- every lifecycle run. Times are milliseconds since the Unix epoch.

-- How often each manifest of a repository was pulled (recorded in batches).
ALTER TABLE manifests ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;

-- Quotas (NULL: unlimited) and the share of a limit at which a warning
-- event is recorded; immutability rules and the retention policy as JSON
-- (see the policy crate), the retention schedule as a cron expression.
ALTER TABLE projects ADD COLUMN quota_bytes INTEGER;
ALTER TABLE projects ADD COLUMN quota_artifacts INTEGER;
ALTER TABLE projects ADD COLUMN quota_warn_percent INTEGER NOT NULL DEFAULT 80;
ALTER TABLE projects ADD COLUMN immutability TEXT NOT NULL DEFAULT '[]';
ALTER TABLE projects ADD COLUMN retention TEXT;
ALTER TABLE projects ADD COLUMN retention_schedule TEXT;

-- A project's usage: the sum of its rows. Every change that links or
-- unlinks a blob or adds or removes a manifest adds to one row in its own
-- transaction; the row is picked at random among a few so that concurrent
-- pushes to one project seldom write the same row.
-- bytes: each distinct blob linked to a repository of the project, plus each
-- distinct manifest held by one, counted once however many of its
-- repositories hold it. artifacts: manifests held (per repository).
CREATE TABLE project_usage (
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    shard       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    artifacts   INTEGER NOT NULL,
    PRIMARY KEY (project_id, shard)
) WITHOUT ROWID;

INSERT INTO project_usage (project_id, shard, bytes, artifacts)
SELECT p.id, 0,
       COALESCE((SELECT SUM(b.size) FROM blobs b WHERE b.digest IN
                   (SELECT rb.digest FROM repository_blobs rb
                    JOIN repositories r ON r.id = rb.repository_id WHERE r.project_id = p.id)), 0)
     + COALESCE((SELECT SUM(c.size) FROM manifest_contents c WHERE c.digest IN
                   (SELECT m.digest FROM manifests m
                    JOIN repositories r ON r.id = m.repository_id WHERE r.project_id = p.id)), 0),
       (SELECT COUNT(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id
        WHERE r.project_id = p.id)
FROM projects p;

-- Blobs garbage collection deleted. While `removing` is 1 the rows are
-- gone and the bytes are being removed (since `deleted_at`): a push of the
-- same blob waits. Then `deleted_at` is set to a moment after the bytes were
-- gone: a push that stored the same bytes before it must check them again.
CREATE TABLE blob_deletions (
    digest      TEXT PRIMARY KEY,
    deleted_at  INTEGER NOT NULL,
    removing    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX blob_deletions_by_time ON blob_deletions(deleted_at);

-- How many manifests of the repository reference the linked blob, kept by
-- every manifest push and delete. A link with none is garbage once it is
-- older than the grace period; `linked_at` is reset when a link loses its
-- last manifest, so the grace period counts from then.
ALTER TABLE repository_blobs ADD COLUMN refs INTEGER NOT NULL DEFAULT 0;
UPDATE repository_blobs SET refs =
    (SELECT COUNT(*) FROM manifests m
     JOIN manifest_references r ON r.manifest_digest = m.digest AND r.kind = 0
     WHERE m.repository_id = repository_blobs.repository_id AND r.target_digest = repository_blobs.digest);
-- Garbage collection pages through the links without a manifest in key
-- order; the index holds those only (a push adds a link here and takes it
-- out with its manifest). Blobs have no index on `created_at`: collection
-- reads every blob in digest order anyway, and an index would cost every
-- push and every collected blob a write to a random page.
CREATE INDEX repository_blobs_unreferenced ON repository_blobs(repository_id, digest, linked_at)
    WHERE refs = 0;

-- Every garbage collection, retention and integrity run.
CREATE TABLE lifecycle_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'gc', 'retention' or 'integrity'
    kind          TEXT NOT NULL,
    -- The project of a retention run.
    project       TEXT,
    -- 'manual' or 'schedule'
    trigger       TEXT NOT NULL,
    dry_run       INTEGER NOT NULL,
    requested_by  TEXT NOT NULL,
    -- 'running', 'succeeded' or 'failed'
    status        TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    -- JSON: counts and bytes.
    summary       TEXT NOT NULL DEFAULT '{}',
    -- JSON list: what was (or would be) deleted and why, problems found.
    items         TEXT NOT NULL DEFAULT '[]',
    error         TEXT
);
CREATE INDEX lifecycle_runs_by_kind ON lifecycle_runs(kind, id);
