//! Repository names and tags, with the distribution spec's grammars.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted. Many clients limit `host/name` to 255
/// characters; wharf refuses longer names outright rather than storing names
/// some clients cannot address.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag the spec allows.
pub const MAX_TAG_LEN: usize = 128;

/// Why a string is not a repository name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    Empty,
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "repository name {0:?} is invalid: use path components of lowercase letters and digits, \
         separated inside a component by '.', '_', '__' or '-', and joined by '/'"
    )]
    Grammar(String),
}

/// A repository name (`<name>` in the spec), such as `library/alpine`.
///
/// Invariant: matches
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
/// and is at most [`MAX_NAME_LEN`] bytes. Such a name never contains `..`, a
/// leading `/`, or any byte that needs escaping in a URL or a file path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(Box<str>);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !s.split('/').all(is_path_component) {
            return Err(NameError::Grammar(s.to_owned()));
        }
        Ok(RepoName(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The project the repository belongs to: its first path component
    /// (`team` for `team/app` and `team/sub/app`; `app` for `app`).
    pub fn project(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The name within its project (`app` for `team/app`, `sub/app` for
    /// `team/sub/app`, empty for `app`): what project-level rules match.
    pub fn name_in_project(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, rest)| rest)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum_run = true;
    while i < bytes.len() {
        if expect_alnum_run {
            let start = i;
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            if i == start {
                return false;
            }
            expect_alnum_run = false;
        } else {
            // A separator: '.', '_', '__' or one or more '-'.
            match bytes[i] {
                b'.' => i += 1,
                b'_' => {
                    i += 1;
                    if i < bytes.len() && bytes[i] == b'_' {
                        i += 1;
                    }
                }
                b'-' => {
                    while i < bytes.len() && bytes[i] == b'-' {
                        i += 1;
                    }
                }
                _ => return false,
            }
            expect_alnum_run = true;
        }
    }
    // Non-empty and does not end on a separator.
    !bytes.is_empty() && !expect_alnum_run
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoName::parse(s)
    }
}

/// Why a string is not a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tag {0:?} is invalid: a tag is 1 to {MAX_TAG_LEN} characters of letters, digits, '_', '.' \
     and '-', and does not start with '.' or '-'"
)]
pub struct TagError(pub String);

/// A tag, such as `1.2.3` or `latest`.
///
/// Invariant: matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Box<str>);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, TagError> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_TAG_LEN
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes[1..]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Tag(s.into()))
        } else {
            Err(TagError(s.chars().take(MAX_TAG_LEN + 8).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl FromStr for Tag {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repository_names() {
        let valid = [
            "a",
            "library/alpine",
            "a/b/c/d",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "my.app",
            "0/1",
            "foo/blobs/uploads",
        ];
        for name in valid {
            assert!(RepoName::parse(name).is_ok(), "{name} should be valid");
        }
        let invalid = [
            "", "/", "a/", "/a", "a//b", "A", "a___b", "a..b", "..", "../etc", "a/../b", "a/./b",
            "-a", "a-", "a_", "_a", ".a", "a.", "a b", "a%2fb", "ä", "a:b", "a@b",
        ];
        for name in invalid {
            assert!(RepoName::parse(name).is_err(), "{name:?} should be invalid");
        }
        assert_eq!(RepoName::parse(&"a".repeat(256)), Err(NameError::TooLong));
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn projects_are_first_components() {
        for (name, project, within) in [
            ("a", "a", ""),
            ("team/app", "team", "app"),
            ("team/sub/app", "team", "sub/app"),
        ] {
            let name = RepoName::parse(name).unwrap();
            assert_eq!((name.project(), name.name_in_project()), (project, within));
        }
    }

    #[test]
    fn tags() {
        for tag in ["latest", "1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(tag).is_ok(), "{tag} should be valid");
        }
        for tag in ["", ".x", "-x", "a/b", "a:b", "a@b", "ä", &"t".repeat(129)] {
            assert!(Tag::parse(tag).is_err(), "{tag:?} should be invalid");
        }
    }

    /// Reference implementation of the spec's name grammar, written as a
    /// straightforward recursive matcher, to check the hand-written scanner.
    fn grammar_matches(s: &str) -> bool {
        fn component(c: &[u8]) -> bool {
            // [a-z0-9]+ ( sep [a-z0-9]+ )*
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            let mut parts = Vec::new();
            let mut cur = Vec::new();
            let mut seps = Vec::new();
            let mut i = 0;
            while i < c.len() {
                if alnum(&c[i]) {
                    cur.push(c[i]);
                    i += 1;
                } else {
                    parts.push(std::mem::take(&mut cur));
                    let start = i;
                    while i < c.len() && !alnum(&c[i]) {
                        i += 1;
                    }
                    seps.push(&c[start..i]);
                }
            }
            parts.push(cur);
            parts.iter().all(|p| !p.is_empty())
                && seps.iter().all(|s| {
                    *s == b"." || *s == b"_" || *s == b"__" || s.iter().all(|&b| b == b'-')
                })
        }
        !s.is_empty() && s.len() <= MAX_NAME_LEN && s.split('/').all(|c| component(c.as_bytes()))
    }

    proptest! {
        #[test]
        fn name_scanner_agrees_with_grammar(s in "[a-z0-9._/-]{0,24}") {
            prop_assert_eq!(RepoName::parse(&s).is_ok(), grammar_matches(&s));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,300}") {
            let _ = RepoName::parse(&s);
            let _ = Tag::parse(&s);
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z0-9]{1,8}(([._]|__|-{1,3})[a-z0-9]{1,8}){0,3}(/[a-z0-9]{1,8}){0,3}") {
            let name = RepoName::parse(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
        }
    }
}
