//! A manifest reference: a tag or a digest (`<reference>` in the spec).

use std::fmt;

use crate::digest::{Digest, DigestError};
use crate::name::{Tag, TagError};

/// A reference to a manifest within a repository.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a string is neither a tag nor a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl Reference {
    /// A reference containing `:` is a digest (tags cannot contain one).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t.as_str(),
            Reference::Digest(d) => d.as_str(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tags_and_digests() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("sha256:nothex"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("../x"),
            Err(ReferenceError::Tag(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in ".{0,200}") {
            if let Ok(r) = Reference::parse(&s) {
                prop_assert_eq!(r.as_str(), s.as_str());
            }
        }
    }
}
