//! How uploads are cut into multipart parts: pure arithmetic and a buffer.
//!
//! S3 wants every part but the last to be at least 5 MiB, no part above
//! 5 GiB, and at most 10,000 parts. The servers tests run against (Garage)
//! accept smaller parts, so these rules are tested here, directly.

use std::collections::VecDeque;

use bytes::Bytes;
use object_store::PutPayload;

pub(crate) const MIB: u64 = 1024 * 1024;
/// S3's smallest part, except the last one.
pub(crate) const MIN_PART: u64 = 5 * MIB;
/// S3's largest part.
pub(crate) const MAX_PART: u64 = 5 * 1024 * MIB;
/// S3's most parts in one multipart upload.
pub(crate) const MAX_PARTS: usize = 10_000;
/// Part sizes double after this many parts, so that a blob far larger than
/// `MAX_PARTS` times the configured part size still fits in one upload while
/// the blobs of everyday sizes keep the small, configured parts.
pub(crate) const PARTS_PER_DOUBLING: usize = 1_000;

fn scale(index: usize) -> u64 {
    1 << (index / PARTS_PER_DOUBLING).min(32)
}

/// Bytes streaming in are cut into the part with this (0-based) index as soon
/// as this many have arrived. `base` is the configured part size.
pub(crate) fn full_part_size(base: u64, index: usize) -> u64 {
    base.saturating_mul(scale(index)).clamp(MIN_PART, MAX_PART)
}

/// The smallest remainder that may end an append as the part with this index;
/// a smaller one waits, as a tail object, for the next append. Grows with the
/// index like the full size does, so that a client sending many small chunks
/// cannot exhaust the 10,000 parts early.
pub(crate) fn min_part_size(base: u64, index: usize) -> u64 {
    MIN_PART
        .saturating_mul(scale(index))
        .min(full_part_size(base, index))
}

/// What becomes of the bytes left at the end of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Remainder {
    /// Nothing is left.
    Nothing,
    /// Large enough to be the next part.
    Part,
    /// Kept as a tail object and carried into the next append.
    Tail,
}

pub(crate) fn remainder(base: u64, index: usize, len: u64) -> Remainder {
    if len == 0 {
        Remainder::Nothing
    } else if len >= min_part_size(base, index) {
        Remainder::Part
    } else {
        Remainder::Tail
    }
}

/// Bytes received but not yet sent: the chunks as they came, never copied.
#[derive(Default, Debug)]
pub(crate) struct PartBuffer {
    chunks: VecDeque<Bytes>,
    len: u64,
}

impl PartBuffer {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len() as u64;
            self.chunks.push_back(chunk);
        }
    }

    /// Appends another buffer's bytes after these.
    pub(crate) fn extend(&mut self, other: PartBuffer) {
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the first `n` bytes (at most [`PartBuffer::len`]), splitting a
    /// chunk at the boundary without copying it.
    pub(crate) fn take(&mut self, n: u64) -> PutPayload {
        let mut taken = Vec::new();
        let mut want = n.min(self.len);
        self.len -= want;
        while want > 0 {
            let Some(mut chunk) = self.chunks.pop_front() else {
                break;
            };
            if chunk.len() as u64 > want {
                let rest = chunk.split_off(want as usize);
                self.chunks.push_front(rest);
            }
            want -= chunk.len() as u64;
            taken.push(chunk);
        }
        taken.into_iter().collect()
    }

    pub(crate) fn into_payload(self) -> PutPayload {
        self.chunks.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn sizes_stay_within_s3_limits() {
        for base in [5 * MIB, 16 * MIB, 100 * MIB, 5 * GIB] {
            for index in 0..MAX_PARTS {
                let full = full_part_size(base, index);
                let min = min_part_size(base, index);
                assert!((MIN_PART..=MAX_PART).contains(&full), "{base} {index}");
                assert!(MIN_PART <= min && min <= full, "{base} {index}");
            }
        }
        assert_eq!(full_part_size(16 * MIB, 0), 16 * MIB);
        assert_eq!(full_part_size(16 * MIB, 999), 16 * MIB);
        assert_eq!(full_part_size(16 * MIB, 1000), 32 * MIB);
        assert_eq!(full_part_size(16 * MIB, 9999), 5 * GIB);
        assert_eq!(min_part_size(16 * MIB, 0), 5 * MIB);
        assert_eq!(min_part_size(16 * MIB, 2500), 20 * MIB);
    }

    /// Plays a session through the same decisions the store makes: cut full
    /// parts while bytes stream in, then end each append with a part or a
    /// tail. Returns the sizes of the parts and the bytes left over.
    fn play(base: u64, chunks: impl IntoIterator<Item = u64>) -> (Vec<u64>, u64) {
        let mut parts = Vec::new();
        let mut buffered = 0;
        for chunk in chunks {
            buffered += chunk;
            while buffered >= full_part_size(base, parts.len()) {
                let size = full_part_size(base, parts.len());
                parts.push(size);
                buffered -= size;
            }
            if remainder(base, parts.len(), buffered) == Remainder::Part {
                parts.push(buffered);
                buffered = 0;
            }
        }
        (parts, buffered)
    }

    fn check(base: u64, chunks: impl IntoIterator<Item = u64>, at_least: u64) {
        let (parts, tail) = play(base, chunks);
        assert!(parts.len() < MAX_PARTS, "{} parts", parts.len());
        assert!(parts.iter().all(|&p| (MIN_PART..=MAX_PART).contains(&p)));
        assert!(tail < MAX_PART);
        assert!(parts.iter().sum::<u64>() + tail >= at_least);
    }

    #[test]
    fn worst_case_clients_still_fit() {
        const TIB: u64 = 1024 * GIB;
        // Every part is at least its smallest size, whatever the client does.
        for base in [5 * MIB, 16 * MIB, 5 * GIB] {
            let floor: u64 = (0..MAX_PARTS - 1).map(|i| min_part_size(base, i)).sum();
            assert!(floor > 4 * TIB, "{base}: {floor}");
        }
        // One streamed request far beyond 10,000 configured parts.
        check(16 * MIB, [10 * TIB], 10 * TIB);
        // A client sending 64 MiB chunks.
        check(
            16 * MIB,
            std::iter::repeat_n(64 * MIB, 16 * 1024 * 4),
            4 * TIB,
        );
        // Chunks of exactly the smallest part size: each becomes a part.
        check(
            16 * MIB,
            (0..MAX_PARTS - 1).map(|i| min_part_size(16 * MIB, i)),
            4 * TIB,
        );
        // Chunks just under the smallest part: two make a part.
        check(5 * MIB, std::iter::repeat_n(MIN_PART - 1, 20_000), 90 * GIB);
        // Tiny chunks gather into full parts.
        check(5 * MIB, std::iter::repeat_n(MIB / 3, 3 * 1024 + 3), GIB);
    }

    #[test]
    fn an_everyday_blob_uses_the_configured_size() {
        let (parts, tail) = play(16 * MIB, [1, 7 * MIB, 3 * MIB, 50 * MIB - 1]);
        assert_eq!(parts, [7 * MIB + 1, 16 * MIB, 16 * MIB, 16 * MIB]);
        assert_eq!(tail, 5 * MIB - 1);
        // The memory an upload holds stays at the configured size for any
        // blob below 15 GiB, and doubles only beyond.
        assert_eq!(
            full_part_size(16 * MIB, (15 * GIB / (16 * MIB)) as usize - 1),
            16 * MIB
        );
    }

    #[test]
    fn buffer_takes_across_chunk_boundaries() {
        let mut buffer = PartBuffer::default();
        for chunk in [&b"abc"[..], b"", b"defg", b"h"] {
            buffer.push(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(buffer.len(), 8);
        let taken: Bytes = buffer.take(5).into();
        assert_eq!(&taken[..], b"abcde");
        assert_eq!(buffer.len(), 3);
        let taken: Bytes = buffer.take(10).into();
        assert_eq!(&taken[..], b"fgh");
        assert!(buffer.is_empty());
        buffer.push(Bytes::from_static(b"ij"));
        let rest: Bytes = buffer.into_payload().into();
        assert_eq!(&rest[..], b"ij");
    }
}
