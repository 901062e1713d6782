//! An upload session's state object, `uploads/<uuid>/state.json`.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use oci::{DigestAlgorithm, DigestHasher};
use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::upload::{UploadId, UploadStatus};

/// What a session has received: the parts of its multipart upload and the
/// tail object after them, with the hasher state after all those bytes.
/// Invariant: `offset` is the sum of the parts' and the tail's sizes.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct SessionState {
    pub scope: String,
    pub algorithm: String,
    pub offset: u64,
    /// Hex of the hasher state after `offset` bytes.
    pub hasher: String,
    /// The multipart upload to the session's `data` key, once it has parts.
    /// Recorded before its first part is sent, so it is never lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<String>,
    /// Parts `1..=parts.len()` of the multipart upload, in order. A part sent
    /// by an append that then failed is not listed, and is overwritten by the
    /// next append, which sends the same part number.
    #[serde(default)]
    pub parts: Vec<PartRecord>,
    /// Bytes after the last part, too few to be a part yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<TailRecord>,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartRecord {
    pub etag: String,
    pub size: u64,
}

/// A tail object, `uploads/<uuid>/<name>`. Each append writes a new name, so
/// an append that fails never touches the tail the state points to.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct TailRecord {
    pub name: String,
    pub size: u64,
}

impl SessionState {
    pub fn new(scope: &str, algorithm: DigestAlgorithm) -> Self {
        let now = now_ms();
        let mut state = SessionState {
            scope: scope.to_owned(),
            algorithm: algorithm.as_str().to_owned(),
            offset: 0,
            hasher: String::new(),
            multipart: None,
            parts: Vec::new(),
            tail: None,
            started_at_ms: now,
            updated_at_ms: now,
        };
        state.set_hasher(&DigestHasher::new(algorithm));
        state
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, StorageError> {
        let state: SessionState = serde_json::from_slice(bytes).map_err(corrupt)?;
        let recorded = state.parts.iter().map(|p| p.size).sum::<u64>()
            + state.tail.as_ref().map_or(0, |t| t.size);
        let tail_name_ok = state.tail.as_ref().is_none_or(|t| is_tail_name(&t.name));
        if recorded != state.offset
            || !tail_name_ok
            || (state.multipart.is_none() && !state.parts.is_empty())
        {
            return Err(corrupt("session state does not add up"));
        }
        Ok(state)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec(self).map_err(|e| StorageError::backend(io::Error::other(e)))
    }

    pub fn algorithm(&self) -> Result<DigestAlgorithm, StorageError> {
        self.algorithm.parse().map_err(corrupt)
    }

    pub fn hasher(&self) -> Result<DigestHasher, StorageError> {
        let bytes = hex::decode(&self.hasher).map_err(corrupt)?;
        DigestHasher::restore(self.algorithm()?, &bytes).map_err(corrupt)
    }

    pub fn set_hasher(&mut self, hasher: &DigestHasher) {
        self.hasher = hex::encode(hasher.save());
        self.updated_at_ms = now_ms();
    }

    pub fn status(&self, id: UploadId) -> Result<UploadStatus, StorageError> {
        Ok(UploadStatus {
            id,
            offset: self.offset,
            algorithm: self.algorithm()?,
        })
    }
}

const TAIL_PREFIX: &str = "tail-";

/// A fresh, unique tail object name.
pub(crate) fn new_tail_name() -> String {
    format!("{TAIL_PREFIX}{}", UploadId::random())
}

fn is_tail_name(name: &str) -> bool {
    name.strip_prefix(TAIL_PREFIX)
        .is_some_and(|id| UploadId::parse(id).is_some())
}

fn corrupt(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StorageError {
    StorageError::backend(io::Error::new(io::ErrorKind::InvalidData, e))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_checked() {
        let mut state = SessionState::new("library/app", DigestAlgorithm::Sha256);
        state.multipart = Some("upload-1".into());
        state.parts.push(PartRecord {
            etag: "\"e1\"".into(),
            size: 5,
        });
        state.tail = Some(TailRecord {
            name: new_tail_name(),
            size: 2,
        });
        state.offset = 7;
        let parsed = SessionState::parse(&state.to_json().unwrap()).unwrap();
        assert_eq!(parsed.parts, state.parts);
        assert_eq!(parsed.tail, state.tail);
        parsed.hasher().unwrap();

        let mut wrong = state.clone();
        wrong.offset = 8;
        assert!(SessionState::parse(&wrong.to_json().unwrap()).is_err());
        let mut wrong = state.clone();
        wrong.tail.as_mut().unwrap().name = "../../blobs/sha256/aa/aa".into();
        assert!(SessionState::parse(&wrong.to_json().unwrap()).is_err());
        let mut wrong = state;
        wrong.multipart = None;
        assert!(SessionState::parse(&wrong.to_json().unwrap()).is_err());
    }
}
