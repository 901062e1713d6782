//! Tags read as semantic versions, for "keep the latest patches" retention.
//!
//! [`Version::parse_tag`] accepts a [SemVer 2.0.0] version with an optional
//! leading `v`: `1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build`. It refuses
//! anything else (`1.2`, `latest`, `1.2.3.4`, `01.2.3`): a tag that is not a
//! version is simply not one, never an error.
//!
//! Decisions:
//! - Build metadata is accepted and ignored, as the spec says for precedence.
//!   OCI tags cannot contain `+`, so Helm writes chart version `1.2.3+build`
//!   as the tag `1.2.3_build`; `_` is read as `+` for that reason.
//! - [`Version`]'s `Ord` is semver precedence: numeric fields, then a
//!   pre-release is lower than its release, then pre-release identifiers
//!   left to right (numeric ones numerically, alphanumeric ones in ASCII
//!   order, numeric lower than alphanumeric, a shorter list lower when all
//!   else is equal).
//!
//! [SemVer 2.0.0]: https://semver.org/spec/v2.0.0.html

use std::cmp::Ordering;
use std::fmt;

/// A semantic version, without its build metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The pre-release identifiers after `-`, dot-separated (`rc.1`).
    pub pre: Option<String>,
}

impl Version {
    /// Reads a tag as a version; `None` when it is not one.
    pub fn parse_tag(tag: &str) -> Option<Version> {
        let tag = tag.strip_prefix('v').unwrap_or(tag);
        // Build metadata: after the first `+` (or `_`), ignored once valid.
        let (version, build) = match tag.find(['+', '_']) {
            Some(at) => (&tag[..at], Some(&tag[at + 1..])),
            None => (tag, None),
        };
        if let Some(build) = build
            && !build.split('.').all(is_identifier)
        {
            return None;
        }
        let (core, pre) = match version.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (version, None),
        };
        if let Some(pre) = pre
            && !pre.split('.').all(|id| {
                is_identifier(id) && !(is_numeric(id) && id.len() > 1 && id.starts_with('0'))
            })
        {
            return None;
        }
        let mut numbers = core.split('.').map(number);
        let (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) = (
            numbers.next(),
            numbers.next(),
            numbers.next(),
            numbers.next(),
        ) else {
            return None;
        };
        Some(Version {
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
        })
    }
}

fn is_numeric(id: &str) -> bool {
    id.bytes().all(|b| b.is_ascii_digit())
}

fn is_identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A numeric version field: digits, no leading zero.
fn number(field: &str) -> Option<u64> {
    if field.is_empty() || !is_numeric(field) || (field.len() > 1 && field.starts_with('0')) {
        return None;
    }
    field.parse().ok()
}

fn compare_identifiers(a: &str, b: &str) -> Ordering {
    match (is_numeric(a), is_numeric(b)) {
        // Equal length and no leading zeros: digit strings compare as
        // numbers, with no overflow whatever their size.
        (true, true) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut a_ids = a.split('.');
    let mut b_ids = b.split('.');
    loop {
        match (a_ids.next(), b_ids.next()) {
            (Some(x), Some(y)) => match compare_identifiers(x, y) {
                Ordering::Equal => {}
                other => return other,
            },
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => compare_pre(a, b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        match &self.pre {
            Some(pre) => write!(f, "-{pre}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tag: &str) -> Version {
        Version::parse_tag(tag).unwrap_or_else(|| panic!("{tag} should parse"))
    }

    #[test]
    fn tags_that_are_versions() {
        // (tag, Some((major, minor, patch, pre)) or None)
        type Expected = Option<(u64, u64, u64, Option<&'static str>)>;
        let table: &[(&str, Expected)] = &[
            ("1.2.3", Some((1, 2, 3, None))),
            ("v1.2.3", Some((1, 2, 3, None))),
            ("0.0.0", Some((0, 0, 0, None))),
            ("1.2.3-rc.1", Some((1, 2, 3, Some("rc.1")))),
            ("1.2.3-0.3.7", Some((1, 2, 3, Some("0.3.7")))),
            ("1.2.3-x-y-z.--", Some((1, 2, 3, Some("x-y-z.--")))),
            ("1.2.3+build", Some((1, 2, 3, None))),
            ("1.2.3+build.5.sha-abc", Some((1, 2, 3, None))),
            ("1.2.3-beta+exp.sha.5114f85", Some((1, 2, 3, Some("beta")))),
            ("1.2.3_build.7", Some((1, 2, 3, None))),
            ("v10.20.30", Some((10, 20, 30, None))),
            ("18446744073709551615.0.0", Some((u64::MAX, 0, 0, None))),
            ("1.2", None),
            ("latest", None),
            ("1.2.3.4", None),
            ("01.2.3", None),
            ("1.02.3", None),
            ("1.2.3-01", None),
            ("1.2.3-", None),
            ("1.2.3-rc..1", None),
            ("1.2.3+", None),
            // Helm's spelling of 1.2.3-rc+1.
            ("1.2.3-rc_1", Some((1, 2, 3, Some("rc")))),
            ("V1.2.3", None),
            ("vv1.2.3", None),
            ("1.2.3 ", None),
            ("18446744073709551616.0.0", None),
            ("1.2.x", None),
            ("", None),
        ];
        for (tag, expected) in table {
            let expected = expected.map(|(major, minor, patch, pre)| Version {
                major,
                minor,
                patch,
                pre: pre.map(str::to_owned),
            });
            assert_eq!(Version::parse_tag(tag), expected, "{tag:?}");
        }
    }

    #[test]
    fn precedence_follows_the_semver_spec() {
        // The spec's own examples (section 11), in increasing order.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.9.0",
            "1.10.0",
            "1.11.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(v("1.0.0+a").cmp(&v("1.0.0+b")), Ordering::Equal);
        assert_eq!(v("v1.0.0"), v("1.0.0"));
        assert!(v("1.0.0-99999999999999999999999") < v("1.0.0-a"));
        assert!(v("1.0.0-9") < v("1.0.0-10"));
        assert_eq!(v("1.2.3-rc.1").to_string(), "1.2.3-rc.1");
    }
}
