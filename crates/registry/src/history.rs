//! Tag history and rollback. Every movement of a tag is an outbox event
//! (`tag.created`, `tag.moved`, `tag.deleted`, with actor and time), written
//! in the transaction that moved it; the history is those events read back.
//! A rollback points the tag at an earlier digest still stored, through the
//! same path as a client's push of that manifest by tag (immutable tags and
//! events apply).

use std::collections::HashMap;

use auth::{Grant, Pull, Push};
use metadata::EventKind;
use oci::{Digest, Reference, Tag};

use crate::{Registry, RegistryError, Result};

/// One movement of a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagMovement {
    pub id: i64,
    /// `created`, `moved` or `deleted`.
    pub action: &'static str,
    /// Where the tag pointed after the movement (for `deleted`: before it).
    pub digest: Option<Digest>,
    /// For `moved`: where it pointed before.
    pub previous_digest: Option<Digest>,
    pub actor: String,
    pub at_ms: i64,
    /// Whether the repository still holds `digest` (a rollback can go there).
    pub still_stored: bool,
}

/// Movements a rollback looks through for an earlier digest.
const ROLLBACK_LOOKBACK: u32 = 1000;

/// What a rollback did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBack {
    /// Where the tag pointed before (`None`: it had been deleted).
    pub from: Option<Digest>,
    pub to: Digest,
}

impl Registry {
    /// The movements of `tag`, newest first, with ids below `before`.
    pub async fn tag_history(
        &self,
        grant: &Grant<Pull>,
        tag: &Tag,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TagMovement>> {
        let repo = grant.repository();
        let events = self.meta.tag_history(repo, tag, before, limit).await?;
        let mut stored: HashMap<Digest, bool> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let still_stored = match &e.digest {
                None => false,
                Some(d) => match stored.get(d) {
                    Some(known) => *known,
                    None => {
                        let here = self.meta.manifest_by_digest(repo, d).await?.is_some();
                        stored.insert(d.clone(), here);
                        here
                    }
                },
            };
            out.push(TagMovement {
                id: e.id,
                action: match e.kind {
                    EventKind::TagCreated => "created",
                    EventKind::TagMoved => "moved",
                    _ => "deleted",
                },
                digest: e.digest,
                previous_digest: e.previous_digest,
                actor: e.actor,
                at_ms: e.occurred_at_ms,
                still_stored,
            });
        }
        Ok(out)
    }

    /// Points `tag` at `to`, or (without it) at the most recent digest it
    /// pointed to before its current one that the repository still holds.
    pub async fn rollback_tag(
        &self,
        grant: &Grant<Push>,
        tag: &Tag,
        to: Option<&Digest>,
    ) -> Result<RolledBack> {
        let repo = grant.repository();
        let current = self
            .meta
            .manifest_by_tag(repo, tag)
            .await?
            .map(|m| m.digest);
        let target = match to {
            Some(d) => self
                .meta
                .manifest_by_digest(repo, d)
                .await?
                .ok_or_else(|| {
                    RegistryError::ManifestUnknown(format!("manifest {d} is not in {repo}"))
                })?,
            None => {
                let history = self
                    .meta
                    .tag_history(repo, tag, None, ROLLBACK_LOOKBACK)
                    .await?;
                if history.is_empty() && current.is_none() {
                    return Err(RegistryError::ManifestUnknown(format!(
                        "tag {tag} is not in {repo} and has no history"
                    )));
                }
                // Newest first: each movement's digest, then what a move replaced.
                let mut candidates: Vec<Digest> = Vec::new();
                for e in history {
                    for d in [e.digest, e.previous_digest].into_iter().flatten() {
                        if Some(&d) != current.as_ref() {
                            candidates.push(d);
                        }
                    }
                }
                let mut found = None;
                for d in &candidates {
                    if let Some(m) = self.meta.manifest_by_digest(repo, d).await? {
                        found = Some(m);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    RegistryError::InvalidRequest(format!(
                        "no digest {repo}:{tag} pointed to before is still stored; name the digest to point it at (`to` in the request, --to in `wharf tag rollback`)"
                    ))
                })?
            }
        };
        if current.as_ref() == Some(&target.digest) {
            return Ok(RolledBack {
                from: current,
                to: target.digest,
            });
        }
        self.put_manifest(
            grant,
            &Reference::Digest(target.digest.clone()),
            Some(&target.media_type),
            target.body,
            std::slice::from_ref(tag),
        )
        .await?;
        Ok(RolledBack {
            from: current,
            to: target.digest,
        })
    }
}
