//! Integrity checks: is each stored blob present, of its recorded size, and
//! do its bytes hash to its digest?

use futures_util::StreamExt;
use oci::{Digest, DigestHasher};
use serde::Serialize;

use crate::{Registry, Result};

/// What checking one blob found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BlobHealth {
    Ok,
    /// The metadata store records it; the blob store does not have it.
    Missing,
    /// The bytes do not hash to the digest, or their length is not the
    /// recorded size.
    Corrupt {
        detail: String,
    },
}

impl Registry {
    /// Every blob some repository links, in digest order after `after`.
    pub async fn recorded_blobs(
        &self,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>> {
        Ok(self.meta.blobs_page(after, limit).await?)
    }

    /// Reads a blob whole and checks it against its digest and `size`.
    /// `pace` is called with each chunk's length before it is hashed, so that
    /// the caller can throttle the reading.
    pub async fn check_blob<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        mut pace: F,
    ) -> Result<BlobHealth>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let read = match self.blobs.read(digest, None).await {
            Ok(read) => read,
            Err(storage::StorageError::BlobNotFound(_)) => return Ok(BlobHealth::Missing),
            Err(e) => return Err(e.into()),
        };
        if read.size != size {
            return Ok(BlobHealth::Corrupt {
                detail: format!(
                    "the stored blob has {} bytes, the record says {size}",
                    read.size
                ),
            });
        }
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut body = read.body;
        let mut seen = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    return Ok(BlobHealth::Corrupt {
                        detail: format!("reading failed after {seen} bytes: {e}"),
                    });
                }
            };
            pace(chunk.len()).await;
            seen += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let actual = hasher.finish();
        if seen != size {
            return Ok(BlobHealth::Corrupt {
                detail: format!("read {seen} bytes, the record says {size}"),
            });
        }
        if &actual != digest {
            return Ok(BlobHealth::Corrupt {
                detail: format!("the bytes hash to {actual}"),
            });
        }
        Ok(BlobHealth::Ok)
    }
}
