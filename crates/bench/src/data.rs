//! Benchmark content: blobs made of shared buffers (so a 1 GiB blob costs no
//! memory and no generation time while it is sent), each with a unique
//! 8-byte header so every blob has its own digest.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use oci::{Digest, DigestAlgorithm, DigestHasher};

/// xorshift64*: fast, seedable, good enough for incompressible test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Bytes {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        Bytes::from(v)
    }
}

/// A blob as a list of shared chunks, with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub parts: Vec<Bytes>,
    pub size: u64,
    pub digest: Digest,
}

impl Blob {
    pub fn from_parts(parts: Vec<Bytes>) -> Self {
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let mut size = 0;
        for p in &parts {
            hasher.update(p);
            size += p.len() as u64;
        }
        Blob {
            parts,
            size,
            digest: hasher.finish(),
        }
    }

    /// `size` bytes (a multiple of `base.len()`): a unique header, then `base` repeated.
    pub fn large(base: &Bytes, id: u64, size: u64) -> Self {
        let header = Bytes::copy_from_slice(&id.to_le_bytes());
        let mut parts = vec![header, base.slice(8..)];
        let mut total = base.len() as u64;
        while total < size {
            parts.push(base.clone());
            total += base.len() as u64;
        }
        Blob::from_parts(parts)
    }

    /// The chunks covering bytes `start..end` of the blob.
    pub fn slice(&self, start: u64, end: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for p in &self.parts {
            let (p_start, p_end) = (offset, offset + p.len() as u64);
            offset = p_end;
            if p_end <= start || p_start >= end {
                continue;
            }
            let from = start.saturating_sub(p_start) as usize;
            let to = (end.min(p_end) - p_start) as usize;
            out.push(p.slice(from..to));
        }
        out
    }
}

/// A request body of known length made of shared chunks (sent with
/// Content-Length, without copying).
#[derive(Debug)]
pub struct PartsBody {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl PartsBody {
    pub fn new(parts: Vec<Bytes>) -> Self {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        PartsBody {
            parts: parts.into(),
            remaining,
        }
    }
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.parts.pop_front() {
            Some(p) => {
                self.remaining -= p.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(p))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
