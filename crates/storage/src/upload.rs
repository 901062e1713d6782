//! Upload session identity and status.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use oci::DigestAlgorithm;

use crate::StorageError;

/// An upload session id: a random UUID, the only part of an upload URL a
/// client chooses nothing about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn random() -> Self {
        UploadId(uuid::Uuid::new_v4())
    }

    /// Parses the hyphenated form only, so that every id has exactly one spelling
    /// (and so one file path or object key).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        let id = uuid::Uuid::try_parse(s).ok()?;
        (id.hyphenated().to_string() == s).then_some(UploadId(id))
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0.hyphenated())
    }
}

/// The label a session was started under (the registry uses the repository name).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct UploadScope(pub String);

impl UploadScope {
    pub fn new(s: impl Into<String>) -> Self {
        UploadScope(s.into())
    }
}

/// Where an upload session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: UploadId,
    /// Bytes received so far; the next chunk starts here.
    pub offset: u64,
    pub algorithm: DigestAlgorithm,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_spelling() {
        let id = UploadId::random();
        assert_eq!(UploadId::parse(&id.to_string()), Some(id));
        assert_eq!(UploadId::parse(&id.to_string().to_uppercase()), None);
        assert_eq!(UploadId::parse(&id.to_string().replace('-', "")), None);
        assert_eq!(UploadId::parse("../../etc/passwd"), None);
    }
}

/// The upload sessions this process is writing to: a second request on a
/// session that is busy is refused, never interleaved with the first.
#[derive(Clone, Debug, Default)]
pub(crate) struct BusySessions(Arc<Mutex<HashSet<UploadId>>>);

impl BusySessions {
    /// Marks `id` busy until the guard drops, or refuses if it already is.
    pub(crate) fn claim(&self, id: UploadId) -> Result<BusyGuard, StorageError> {
        let mut busy = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(id) {
            return Err(StorageError::UploadBusy);
        }
        Ok(BusyGuard {
            set: self.0.clone(),
            id,
        })
    }
}

/// Releases a session claimed by [`BusySessions::claim`].
pub(crate) struct BusyGuard {
    set: Arc<Mutex<HashSet<UploadId>>>,
    id: UploadId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
