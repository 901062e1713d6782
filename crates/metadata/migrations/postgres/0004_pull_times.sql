-- When each manifest of a repository was last pulled (ms since the Unix epoch;
-- NULL: never). Pulls are recorded in batches, so this may lag by seconds.
ALTER TABLE manifests ADD COLUMN pulled_at BIGINT;
