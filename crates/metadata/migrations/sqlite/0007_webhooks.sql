-- Webhooks: per-project policies, and the deliveries made from the outbox;
-- the outbox read as each tag's history.
-- Times are milliseconds since the Unix epoch.

-- Outbox rows a webhook could be about wait for the dispatcher (0) until it
-- has made their deliveries (1). Rows from before this migration, rows no
-- webhook is about (blob events) and rows of projects without an enabled
-- policy are born dispatched.
-- What an event needs beyond its columns, as JSON (a retention run's
-- summary).
ALTER TABLE events ADD COLUMN detail TEXT;
ALTER TABLE events ADD COLUMN dispatched INTEGER NOT NULL DEFAULT 1;
CREATE INDEX events_to_dispatch ON events(id) WHERE dispatched = 0;

-- Tag history: every movement of a tag, newest first.
CREATE INDEX events_by_tag ON events(repository, tag, id) WHERE tag IS NOT NULL;
-- What tags pointed at lately: kept by retention and garbage collection.
CREATE INDEX events_tagged_by_time ON events(occurred_at) WHERE tag IS NOT NULL;

-- events: event types, space-separated; format: 'harbor' or 'cloudevents';
-- auth_header and secret are never shown again once set.
CREATE TABLE webhook_policies (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id      INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,
    format          TEXT NOT NULL,
    auth_header     TEXT,
    secret          TEXT,
    skip_tls_verify INTEGER NOT NULL DEFAULT 0,
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

-- One event for one policy: its body is rendered once, so that every
-- attempt and a redelivery send the same bytes. status: 'pending',
-- 'succeeded' or 'failed'. A pending delivery is sent only after every
-- earlier pending one of its policy with the same ordering key (the
-- artifact) has ended; `locked_until` keeps two nodes from sending it at
-- once, and lets another send it if the node sending it died.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id       INTEGER NOT NULL REFERENCES webhook_policies(id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    ordering_key    TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    response_code   INTEGER,
    error           TEXT,
    latency_ms      INTEGER,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (policy_id, event_id, event_type)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(policy_id, ordering_key, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_policy ON webhook_deliveries(policy_id, id);
