//! The crate's one error type. Its messages are shown verbatim by the API,
//! so each says what is wrong in the user's terms and, where it helps, what
//! to write instead.

use std::fmt;

/// What a pattern is matched against, for error messages ("invalid tag
/// pattern ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatternTarget {
    /// Not known where the pattern was parsed ([`crate::Pattern::parse`]).
    Name,
    Repository,
    Tag,
}

impl fmt::Display for PatternTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternTarget::Name => "pattern",
            PatternTarget::Repository => "repository pattern",
            PatternTarget::Tag => "tag pattern",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A glob or `re:` regex that does not parse, is too long or too large.
    #[error("invalid {target} {pattern:?}: {reason}")]
    InvalidPattern {
        target: PatternTarget,
        pattern: String,
        reason: String,
    },
    /// A cron expression that does not parse or never fires.
    #[error("invalid schedule {schedule:?}: {reason}")]
    InvalidSchedule { schedule: String, reason: String },
    /// A retention policy that is empty or has too many rules.
    #[error("{0}")]
    InvalidPolicy(String),
    /// One rule of a retention policy is unusable. `rule` is 1-based, as
    /// users count.
    #[error("rule {rule}: {problem}")]
    InvalidRule { rule: usize, problem: String },
    /// One tag-immutability rule is unusable. `rule` is 1-based.
    #[error("immutability rule {rule}: {problem}")]
    InvalidImmutabilityRule { rule: usize, problem: String },
}
