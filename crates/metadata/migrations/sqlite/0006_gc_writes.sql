-- Fewer pages changed per garbage collection (and per manifest push).

-- Only the references an index check or a lookup by target needs: index
-- children (kind 1). A manifest's layers and config (kind 0, about a dozen
-- per manifest) are found from the manifest, and whether a repository's
-- manifests still use a blob from `repository_blobs.refs`. Indexed by
-- target, each of them changed a page at random on every push and every
-- deletion of a manifest.
DROP INDEX manifest_references_by_target;
CREATE INDEX manifest_references_by_target ON manifest_references(target_digest, kind)
    WHERE kind <> 0;

-- Tombstones are pruned by a scan: they hold at most about an hour of
-- deletions, and an index on their time changed twice per blob a collection
-- removed.
DROP INDEX blob_deletions_by_time;
