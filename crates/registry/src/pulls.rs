//! When each manifest was last pulled and how often, recorded without
//! slowing pulls down.
//!
//! A pull only notes `(repository, digest) -> (now, +1)` in memory; repeated
//! pulls of one manifest collapse into one entry. [`crate::Registry::flush_pulls`]
//! (run every few seconds by the server, and at shutdown) writes what
//! accumulated in one transaction. A node that dies loses at most the pull
//! times and counts since its last flush; pulls themselves are never affected.

use std::collections::HashMap;
use std::sync::Mutex;

use metadata::Pull;
use oci::{Digest, RepoName};

/// More distinct manifests than this between two flushes: further ones are
/// dropped until the next flush (the times are informational).
const MAX_PENDING: usize = 100_000;

/// Newest pull time, number of pulls, newest puller.
type Pending = (i64, u64, String);

#[derive(Debug, Default)]
pub(crate) struct PullTimes {
    /// Newest pull time, number of pulls and newest puller per manifest.
    pending: Mutex<HashMap<(RepoName, Digest), Pending>>,
}

impl PullTimes {
    pub(crate) fn note(
        &self,
        repository: &RepoName,
        digest: &Digest,
        at_ms: i64,
        count: u64,
        actor: &str,
    ) {
        let mut pending = self.pending.lock().expect("pull times lock");
        if let Some((at, n, by)) = pending.get_mut(&(repository.clone(), digest.clone())) {
            if at_ms >= *at && by != actor {
                actor.clone_into(by);
            }
            *at = (*at).max(at_ms);
            *n += count;
        } else if pending.len() < MAX_PENDING {
            pending.insert(
                (repository.clone(), digest.clone()),
                (at_ms, count, actor.to_owned()),
            );
        }
    }

    pub(crate) fn take(&self) -> Vec<Pull> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pull times lock"));
        pending
            .into_iter()
            .map(|((repository, digest), (at_ms, count, actor))| Pull {
                repository,
                digest,
                at_ms,
                count,
                actor,
            })
            .collect()
    }

    /// Puts back pulls a failed flush could not write (newer times win).
    pub(crate) fn restore(&self, pulls: Vec<Pull>) {
        for p in pulls {
            self.note(&p.repository, &p.digest, p.at_ms, p.count, &p.actor);
        }
    }
}
