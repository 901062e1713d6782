-- Leases: a named piece of background work is held by one node at a time
-- until the lease expires or is released. Times are ms since the Unix epoch.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
