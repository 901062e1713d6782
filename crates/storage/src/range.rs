//! Byte ranges of a blob (RFC 9110 single `bytes=` ranges).

/// A range as a client asked for it, before the blob's size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=first-last` (inclusive) or `bytes=first-` (`last` is `None`).
    FromTo { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A satisfiable, resolved range: `start..=end` within the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl RangeRequest {
    /// Parses a `Range` header value. Returns `None` for anything that is not a
    /// single well-formed byte range; per RFC 9110 such a header is ignored and
    /// the whole blob is served.
    pub fn parse_header(value: &str) -> Option<RangeRequest> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        if first.is_empty() {
            return number(last).map(RangeRequest::Suffix);
        }
        let first = number(first)?;
        if last.is_empty() {
            return Some(RangeRequest::FromTo { first, last: None });
        }
        let last = number(last)?;
        (last >= first).then_some(RangeRequest::FromTo {
            first,
            last: Some(last),
        })
    }

    /// Resolves against a blob of `size` bytes; `None` when unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        match self {
            RangeRequest::FromTo { first, last } => {
                if first >= size {
                    return None;
                }
                let end = last.map_or(size - 1, |l| l.min(size - 1));
                Some(ByteRange { start: first, end })
            }
            RangeRequest::Suffix(n) => {
                if n == 0 || size == 0 {
                    return None;
                }
                Some(ByteRange {
                    start: size.saturating_sub(n),
                    end: size - 1,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        let r = |s| RangeRequest::parse_header(s);
        assert_eq!(
            r("bytes=0-9").unwrap().resolve(100),
            Some(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            r("bytes=90-").unwrap().resolve(100),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=90-200").unwrap().resolve(100),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=-10").unwrap().resolve(100),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=-1000").unwrap().resolve(100),
            Some(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(r("bytes=100-").unwrap().resolve(100), None);
        assert_eq!(r("bytes=-0").unwrap().resolve(100), None);
        assert_eq!(r("bytes=0-0").unwrap().resolve(0), None);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "",
        ] {
            assert_eq!(r(ignored), None, "{ignored}");
        }
    }
}
