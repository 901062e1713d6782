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

#[derive(Debug, Default)]
pub(crate) struct PullTimes {
    /// Newest pull time and number of pulls per manifest.
    pending: Mutex<HashMap<(RepoName, Digest), (i64, u64)>>,
}

impl PullTimes {
    pub(crate) fn note(&self, repository: &RepoName, digest: &Digest, at_ms: i64, count: u64) {
        let mut pending = self.pending.lock().expect("pull times lock");
        if let Some((at, n)) = pending.get_mut(&(repository.clone(), digest.clone())) {
            *at = (*at).max(at_ms);
            *n += count;
        } else if pending.len() < MAX_PENDING {
            pending.insert((repository.clone(), digest.clone()), (at_ms, count));
        }
    }

    pub(crate) fn take(&self) -> Vec<Pull> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pull times lock"));
        pending
            .into_iter()
            .map(|((repository, digest), (at_ms, count))| Pull {
                repository,
                digest,
                at_ms,
                count,
            })
            .collect()
    }

    /// Puts back pulls a failed flush could not write (newer times win).
    pub(crate) fn restore(&self, pulls: Vec<Pull>) {
        for p in pulls {
            self.note(&p.repository, &p.digest, p.at_ms, p.count);
        }
    }
}
