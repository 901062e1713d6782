//! Content digests (`algorithm:encoded`) and the streaming hasher that produces them.
//!
//! wharf accepts the two algorithms the image-spec registers, sha256 (canonical) and
//! sha512. Other syntactically valid algorithms are refused as unsupported rather
//! than stored unverified.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A hash algorithm wharf can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
}

impl DigestAlgorithm {
    pub const fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding of a digest of this algorithm.
    pub const fn encoded_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DigestAlgorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(DigestAlgorithm::Sha256),
            "sha512" => Ok(DigestAlgorithm::Sha512),
            other if is_algorithm_grammar(other) => {
                Err(DigestError::UnsupportedAlgorithm(other.to_owned()))
            }
            _ => Err(DigestError::Malformed),
        }
    }
}

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error(
        "digest must have the form <algorithm>:<hex>, for example sha256:<64 lowercase hex characters>"
    )]
    Malformed,
    #[error("digest algorithm {0:?} is not supported; use sha256 or sha512")]
    UnsupportedAlgorithm(String),
    #[error("a {algorithm} digest must have {expected} lowercase hex characters after the colon")]
    BadEncoding {
        algorithm: DigestAlgorithm,
        expected: usize,
    },
}

/// A validated digest of a supported algorithm, such as `sha256:4413…`.
///
/// Invariant: `text` is `<algorithm>:<lowercase hex of the right length>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: Box<str>,
    algorithm: DigestAlgorithm,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (algorithm, encoded) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if !is_encoded_grammar(encoded) {
            return Err(DigestError::Malformed);
        }
        let algorithm: DigestAlgorithm = algorithm.parse()?;
        let lower_hex = encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if encoded.len() != algorithm.encoded_len() || !lower_hex {
            return Err(DigestError::BadEncoding {
                algorithm,
                expected: algorithm.encoded_len(),
            });
        }
        Ok(Digest {
            text: s.into(),
            algorithm,
        })
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn compute(algorithm: DigestAlgorithm, bytes: &[u8]) -> Self {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The hex part after the colon.
    pub fn encoded(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&text)
            .map_err(|e| serde::de::Error::custom(format_args!("digest {text:?}: {e}")))
    }
}

/// `algorithm-component ([+._-] algorithm-component)*`, components `[a-z0-9]+`.
fn is_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `[a-zA-Z0-9=_-]+`
fn is_encoded_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// A streaming hasher for one [`DigestAlgorithm`], whose intermediate state can be
/// saved and restored so that an upload can be resumed after a restart (or on
/// another node) without reading the bytes received so far a second time.
#[derive(Clone)]
pub enum DigestHasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestHasher({})", self.algorithm())
    }
}

/// A saved hasher state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("saved {algorithm} hasher state is corrupt")]
pub struct HasherStateError {
    pub algorithm: DigestAlgorithm,
}

impl DigestHasher {
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => DigestHasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => DigestHasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            DigestHasher::Sha256(_) => DigestAlgorithm::Sha256,
            DigestHasher::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(bytes),
            DigestHasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let encoded = match self {
            DigestHasher::Sha256(h) => hex::encode(h.finalize()),
            DigestHasher::Sha512(h) => hex::encode(h.finalize()),
        };
        Digest {
            text: format!("{}:{}", algorithm.as_str(), encoded).into(),
            algorithm,
        }
    }

    /// The hasher's internal state, to be restored with [`DigestHasher::restore`].
    pub fn save(&self) -> Vec<u8> {
        match self {
            DigestHasher::Sha256(h) => h.serialize().to_vec(),
            DigestHasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    pub fn restore(algorithm: DigestAlgorithm, state: &[u8]) -> Result<Self, HasherStateError> {
        let err = HasherStateError { algorithm };
        match algorithm {
            DigestAlgorithm::Sha256 => {
                let state = state.try_into().map_err(|_| err.clone())?;
                Sha256::deserialize(state)
                    .map(DigestHasher::Sha256)
                    .map_err(|_| err)
            }
            DigestAlgorithm::Sha512 => {
                let state = state.try_into().map_err(|_| err.clone())?;
                Sha512::deserialize(state)
                    .map(DigestHasher::Sha512)
                    .map_err(|_| err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "[a-z0-9+._:-]{0,140}|.{0,80}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert_eq!(d.encoded().len(), d.algorithm().encoded_len());
            }
        }

        #[test]
        fn computed_digests_parse_back(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
                let d = Digest::compute(alg, &bytes);
                prop_assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
                let mut h = DigestHasher::new(alg);
                for chunk in bytes.chunks(7) {
                    h.update(chunk);
                }
                prop_assert_eq!(h.finish(), d);
            }
        }
    }

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_rejects() {
        let cases: &[(&str, Result<(), DigestError>)] = &[
            (EMPTY_SHA256, Ok(())),
            (
                "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
                Ok(()),
            ),
            ("", Err(DigestError::Malformed)),
            ("sha256", Err(DigestError::Malformed)),
            ("sha256:", Err(DigestError::Malformed)),
            (":abc", Err(DigestError::Malformed)),
            ("sha256:../../etc/passwd", Err(DigestError::Malformed)),
            (
                "sha384:abc",
                Err(DigestError::UnsupportedAlgorithm("sha384".into())),
            ),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                Err(DigestError::BadEncoding {
                    algorithm: DigestAlgorithm::Sha256,
                    expected: 64,
                }),
            ),
            (
                "sha256:abc",
                Err(DigestError::BadEncoding {
                    algorithm: DigestAlgorithm::Sha256,
                    expected: 64,
                }),
            ),
            ("SHA256:abc", Err(DigestError::Malformed)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Digest::parse(input).map(|_| ()),
                *expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn computes_known_values() {
        assert_eq!(
            Digest::compute(DigestAlgorithm::Sha256, b"").as_str(),
            EMPTY_SHA256
        );
        let d = Digest::compute(DigestAlgorithm::Sha256, b"{}");
        assert_eq!(
            d.as_str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(d.encoded().len(), 64);
    }

    #[test]
    fn hasher_state_round_trips() {
        for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
            let mut a = DigestHasher::new(alg);
            a.update(b"hello, ");
            let saved = a.save();
            let mut b = DigestHasher::restore(alg, &saved).unwrap();
            a.update(b"world");
            b.update(b"world");
            assert_eq!(a.finish(), b.finish());
            assert!(DigestHasher::restore(alg, &saved[1..]).is_err());
        }
    }
}
