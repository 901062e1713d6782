//! Streamed bodies.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use crate::range::ByteRange;

/// A stream of body chunks; an `Err` item means the body broke off.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A blob being read.
pub struct BlobRead {
    /// Size of the whole blob.
    pub size: u64,
    /// The part being streamed, when a range was requested.
    pub range: Option<ByteRange>,
    pub body: ByteStream,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl BlobRead {
    /// Number of bytes the body will yield.
    pub fn body_len(&self) -> u64 {
        self.range.map_or(self.size, |r| r.len())
    }
}
