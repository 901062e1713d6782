//! Name patterns: which repositories and which tags a rule is about.
//!
//! A [`Pattern`] is written as a plain string. One starting with `re:` is a
//! regular expression (the rest of the string, in the syntax of the `regex`
//! crate); anything else is a [`Glob`]. Both match the **whole** name: the
//! regex `re:v1` matches `v1` and not `v10`, as if written `^(?:v1)$`.
//!
//! Globs follow Harbor's doublestar rules:
//!
//! | glob      | matches                                                         |
//! |-----------|-----------------------------------------------------------------|
//! | `*`       | any run of characters except `/` (also the empty run)           |
//! | `**`      | any run of characters, `/` included: `**` alone matches every name |
//! | `**/`     | at the start or after `/`: zero or more whole path segments, so `**/app` matches `app` and `team/app` |
//! | `?`       | one character other than `/`                                     |
//! | `{a,b,c}` | one of the alternatives, each a glob itself (no nesting)         |
//! | `[abc]` `[a-z]` | one character of the class, never `/`                      |
//! | `[!a]` `[^a]` | one character not in the class, never `/`                    |
//! | `\x`      | the character `x` literally                                      |
//!
//! A trailing `/**` needs something under it, as in `.gitignore`: `team/**`
//! matches `team/api` and `team/a/b` but not the repository `team` itself;
//! write `{team,team/**}` for both.
//!
//! Regexes read like Harbor's (Go's RE2): `\d`, `\w`, `\s`, `\b` and `(?i)`
//! are ASCII-only, and `.` matches one byte. Repository names and tags are
//! ASCII by the OCI specification, so nothing is lost, and Unicode classes
//! would make `[\w.-]{1,128}` a 4 MiB automaton instead of a few KiB.
//!
//! Decisions:
//! - Globs are translated to a regex and matched by the `regex` crate, which
//!   the `re:` patterns need anyway: matching is linear in the name whatever
//!   the glob, and no second matching engine is needed. `globset` would add
//!   `globset`, `bstr` and `log` and gives `**` a different meaning (only as
//!   a whole path segment), so the translation is written here (about a
//!   hundred lines).
//! - A pattern is at most [`MAX_PATTERN_LEN`] bytes, and a compiled regex at
//!   most [`REGEX_SIZE_LIMIT`] bytes, so a hostile pattern (`re:(a{999}){999}`)
//!   is refused instead of exhausting memory. Matching cannot be slowed down:
//!   the `regex` crate has no backtracking blow-up.
//! - An empty pattern is refused: no repository or tag name is empty, so it
//!   could only be a mistake.
//! - A [`Selector`] with an empty `include` list selects **nothing**; `**`
//!   selects everything.

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::{PatternTarget, PolicyError};

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The most memory one compiled pattern may take, in bytes (the `regex`
/// crate's compiled-program limit; its lazy DFA cache is bounded the same).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// What makes a pattern a regular expression.
pub const REGEX_PREFIX: &str = "re:";

/// How a parsed pattern decides; the literal and match-all cases skip the
/// regex engine, since they are most of what users write.
#[derive(Clone, Debug)]
enum Matcher {
    Everything,
    Literal(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Everything => true,
            Matcher::Literal(literal) => literal == name,
            Matcher::Regex(regex) => regex.is_match(name.as_bytes()),
        }
    }
}

fn invalid(target: PatternTarget, pattern: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::InvalidPattern {
        target,
        pattern: pattern.to_owned(),
        reason: reason.into(),
    }
}

fn check_length(target: PatternTarget, pattern: &str) -> Result<(), PolicyError> {
    if pattern.is_empty() {
        return Err(invalid(
            target,
            pattern,
            "a pattern may not be empty; use ** to match every name",
        ));
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(invalid(
            target,
            pattern,
            format!("a pattern may be at most {MAX_PATTERN_LEN} characters long"),
        ));
    }
    Ok(())
}

/// Compiles `body` to match whole names only. `unicode`: `.` and classes
/// match characters, not bytes (for globs, which may be written with any
/// character); user regexes are ASCII-minded like Go's, see the module
/// documentation.
fn compile_anchored(body: &str, unicode: bool) -> Result<Regex, String> {
    let build = |source: &str| {
        RegexBuilder::new(source)
            .unicode(unicode)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(describe_regex_error)
    };
    // The body on its own first: `a)|(b` is not a regex, but `^(?:a)|(b)$`
    // is one, and it would match "axyz".
    build(body)?;
    build(&format!("^(?:{body})$"))
}

/// The `regex` crate's syntax errors span several lines (the pattern, a
/// caret, the error); API messages are one line, so keep the error.
fn describe_regex_error(error: regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let detail = text
                .lines()
                .find_map(|line| line.strip_prefix("error: "))
                .unwrap_or(text.trim());
            format!("regex parse error: {detail}")
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("the regex is too large once compiled (over {limit} bytes); simplify it")
        }
        other => other.to_string(),
    }
}

/// A doublestar glob; see the module documentation for the syntax.
#[derive(Clone, Debug)]
pub struct Glob {
    source: String,
    matcher: Matcher,
}

impl Glob {
    pub fn parse(glob: &str) -> Result<Glob, PolicyError> {
        Glob::parse_for(glob, PatternTarget::Name)
    }

    /// Like [`Glob::parse`], with errors naming what the glob is for.
    pub fn parse_for(glob: &str, target: PatternTarget) -> Result<Glob, PolicyError> {
        check_length(target, glob)?;
        let matcher = match translate(glob).map_err(|reason| invalid(target, glob, reason))? {
            Translation::Everything => Matcher::Everything,
            Translation::Literal(literal) => Matcher::Literal(literal),
            Translation::Regex(body) => Matcher::Regex(
                compile_anchored(&body, true).map_err(|reason| invalid(target, glob, reason))?,
            ),
        };
        Ok(Glob {
            source: glob.to_owned(),
            matcher,
        })
    }

    /// Whether the glob matches all of `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.matches(name)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

enum Translation {
    Everything,
    Literal(String),
    /// A regex body, to be anchored.
    Regex(String),
}

/// Translates a glob to a regex body, or notices it needs none.
fn translate(glob: &str) -> Result<Translation, String> {
    if glob == "**" {
        return Ok(Translation::Everything);
    }
    let chars: Vec<char> = glob.chars().collect();
    let mut regex = String::from("(?s:");
    let mut literal = String::new();
    let mut is_literal = true;
    // Inside `{...}`, and whether that group began a path segment.
    let mut braces: Option<bool> = None;
    // Whether the next character begins a path segment, for `**/`.
    let mut segment_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_segment = segment_start;
        segment_start = false;
        match c {
            '*' => {
                is_literal = false;
                let run = chars[i..].iter().take_while(|&&c| c == '*').count();
                i += run;
                if run == 1 {
                    regex.push_str("[^/]*");
                } else if starts_segment && chars.get(i) == Some(&'/') {
                    regex.push_str("(?:.*/)?");
                    i += 1;
                    segment_start = true;
                } else {
                    regex.push_str(".*");
                }
                continue;
            }
            '?' => {
                is_literal = false;
                regex.push_str("[^/]");
            }
            '[' => {
                is_literal = false;
                i = class(&chars, i, &mut regex)?;
                continue;
            }
            '{' => {
                if braces.is_some() {
                    return Err("nested braces are not supported: write {a,b,c} once".into());
                }
                is_literal = false;
                braces = Some(starts_segment);
                segment_start = starts_segment;
                regex.push_str("(?:");
            }
            ',' if braces.is_some() => {
                segment_start = braces == Some(true);
                regex.push('|');
            }
            '}' if braces.is_some() => {
                braces = None;
                regex.push(')');
            }
            '\\' => {
                let Some(&escaped) = chars.get(i + 1) else {
                    return Err("a glob may not end with a lone \\".into());
                };
                push_literal(&mut regex, escaped);
                literal.push(escaped);
                i += 1;
            }
            _ => {
                segment_start = c == '/';
                push_literal(&mut regex, c);
                literal.push(c);
            }
        }
        i += 1;
    }
    if braces.is_some() {
        return Err("a { is never closed by }".into());
    }
    if is_literal {
        return Ok(Translation::Literal(literal));
    }
    regex.push(')');
    Ok(Translation::Regex(regex))
}

fn push_literal(regex: &mut String, c: char) {
    let mut buffer = [0; 4];
    regex.push_str(&regex::escape(c.encode_utf8(&mut buffer)));
}

/// Translates the character class starting at `chars[open]` (a `[`) and
/// returns the index just past its `]`. A `]` right after `[` or `[!` is a
/// member, as in shells. Classes never match `/`.
fn class(chars: &[char], open: usize, regex: &mut String) -> Result<usize, String> {
    let mut i = open + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut members = String::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("a [ is never closed by ]".into());
        };
        if c == ']' && !first {
            break;
        }
        first = false;
        let low = if c == '\\' {
            i += 1;
            *chars
                .get(i)
                .ok_or("a glob may not end with a lone \\".to_owned())?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
            let mut high = chars[i + 1];
            i += 2;
            if high == '\\' {
                high = *chars
                    .get(i)
                    .ok_or("a glob may not end with a lone \\".to_owned())?;
                i += 1;
            }
            if high < low {
                return Err(format!("the range {low}-{high} in [...] is backwards"));
            }
            members.push_str(&format!("\\x{{{:x}}}-\\x{{{:x}}}", low as u32, high as u32));
        } else {
            members.push_str(&format!("\\x{{{:x}}}", low as u32));
        }
    }
    if negated {
        regex.push_str(&format!("[^{members}/]"));
    } else {
        regex.push_str(&format!("[[{members}]&&[^/]]"));
    }
    Ok(i + 1)
}

/// A glob, or a regex when written with the `re:` prefix; see the module
/// documentation. Serialized as the string it was parsed from.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    matcher: Matcher,
}

impl Pattern {
    pub fn parse(pattern: &str) -> Result<Pattern, PolicyError> {
        Pattern::parse_for(pattern, PatternTarget::Name)
    }

    /// Like [`Pattern::parse`], with errors naming what the pattern is for
    /// ("invalid tag pattern ...").
    pub fn parse_for(pattern: &str, target: PatternTarget) -> Result<Pattern, PolicyError> {
        check_length(target, pattern)?;
        let matcher = match pattern.strip_prefix(REGEX_PREFIX) {
            Some("") => {
                return Err(invalid(
                    target,
                    pattern,
                    "the regex after re: is empty; use ** to match every name",
                ));
            }
            Some(body) => Matcher::Regex(
                compile_anchored(body, false).map_err(|reason| invalid(target, pattern, reason))?,
            ),
            None => Glob::parse_for(pattern, target)?.matcher,
        };
        Ok(Pattern {
            source: pattern.to_owned(),
            matcher,
        })
    }

    /// The pattern matching every name, `**`.
    pub fn everything() -> Pattern {
        Pattern {
            source: "**".into(),
            matcher: Matcher::Everything,
        }
    }

    /// Whether the pattern matches all of `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.matches(name)
    }

    pub fn is_regex(&self) -> bool {
        self.source.starts_with(REGEX_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Pattern, PolicyError> {
        Pattern::parse(s)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::parse(&source).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Pattern {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A glob (`*` within a path segment, `**` across segments, `?`, `{a,b}`, \
                 `[a-z]`) or, after `re:`, a regular expression; either matches the whole name.",
            ))
            .max_length(Some(MAX_PATTERN_LEN))
            .examples(["**", "team/*", "v*", "re:v\\d+\\.\\d+"])
            .into()
    }
}

impl ToSchema for Pattern {}

/// Names matched by some `include` pattern and by no `exclude` pattern.
///
/// An empty `include` list selects nothing; write `["**"]` for everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[schema(min_items = 1)]
    pub include: Vec<Pattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Pattern>,
}

impl Selector {
    /// Selects every name.
    pub fn everything() -> Selector {
        Selector {
            include: vec![Pattern::everything()],
            exclude: Vec::new(),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.include.iter().any(|p| p.matches(name))
            && !self.exclude.iter().any(|p| p.matches(name))
    }
}

/// `deserialize_with` helpers, so that a bad pattern's message says whether
/// it is a repository or a tag pattern.
pub(crate) mod de {
    use serde::{Deserialize, Deserializer};

    use super::{Pattern, Selector};
    use crate::PatternTarget;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawSelector {
        include: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
    }

    fn parse<E: serde::de::Error>(
        sources: Vec<String>,
        target: PatternTarget,
    ) -> Result<Vec<Pattern>, E> {
        sources
            .iter()
            .map(|s| Pattern::parse_for(s, target).map_err(E::custom))
            .collect()
    }

    fn selector<'de, D: Deserializer<'de>>(
        d: D,
        target: PatternTarget,
    ) -> Result<Selector, D::Error> {
        let raw = RawSelector::deserialize(d)?;
        Ok(Selector {
            include: parse(raw.include, target)?,
            exclude: parse(raw.exclude, target)?,
        })
    }

    pub fn repository_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        selector(d, PatternTarget::Repository)
    }

    pub fn tag_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        selector(d, PatternTarget::Tag)
    }

    pub fn tag_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
        parse(Vec::<String>::deserialize(d)?, PatternTarget::Tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        // (glob, matches, does not match)
        let table: &[(&str, &[&str], &[&str])] = &[
            ("app", &["app"], &["app2", "xapp", "team/app", ""]),
            ("*", &["app", "x", ""], &["team/app"]),
            ("**", &["app", "team/app", "a/b/c"], &[]),
            (
                "team/*",
                &["team/app", "team/"],
                &["team", "team/a/b", "other/app"],
            ),
            ("team/**", &["team/app", "team/a/b"], &["team", "teamx/app"]),
            (
                "**/app",
                &["app", "team/app", "a/b/app"],
                &["xapp", "team/app2", "a/xapp"],
            ),
            ("a/**/b", &["a/b", "a/x/b", "a/x/y/b"], &["ab", "a/xb", "b"]),
            (
                "**app",
                &["app", "xapp", "team/app", "team/xapp"],
                &["app2"],
            ),
            ("a**", &["a", "ab", "a/b/c"], &["ba"]),
            ("v*", &["v1", "v1.2.3", "v"], &["1.0", "xv1"]),
            ("*-rc*", &["1.0-rc1", "-rc"], &["1.0", "1.0-r"]),
            ("v?", &["v1", "va"], &["v", "v10", "v/"]),
            (
                "{dev,test}-*",
                &["dev-1", "test-x"],
                &["prod-1", "dev", "devtest-1"],
            ),
            ("{a,b/c}", &["a", "b/c"], &["b", "c"]),
            (
                "team/{**/,}api",
                &["team/api", "team/x/api", "team/x/y/api"],
                &["team/xapi"],
            ),
            ("{**/app,web}", &["app", "x/app", "web"], &["x/web"]),
            ("v[0-9]", &["v0", "v9"], &["va", "v10"]),
            ("v[!0-9]", &["va", "v-"], &["v0", "v/", "v"]),
            ("v[^0-9]", &["va"], &["v5"]),
            ("[abc]x", &["ax", "cx"], &["dx", "abcx"]),
            ("[]]", &["]"], &["a"]),
            ("[!]]", &["a"], &["]"]),
            // `+-0` is a range that holds `/`; classes still never match it.
            ("a[+-0]b", &["a-b", "a.b", "a0b"], &["a/b", "a1b"]),
            ("a[!+-0]b", &["a1b"], &["a-b", "a/b", "a0b", "a.b"]),
            // A leading `-` is a member.
            ("a[!-0]b", &["a.b", "a1b"], &["a-b", "a0b", "a/b"]),
            ("a[-/]b", &["a-b"], &["a/b"]),
            ("a[x-]b", &["axb", "a-b"], &["ayb"]),
            ("\\*", &["*"], &["a", "\\*"]),
            ("a\\{b,c}", &["a{b,c}"], &["ab"]),
            ("1.0", &["1.0"], &["1x0", "1.00"]),
            ("a+b", &["a+b"], &["aab"]),
            ("x,y", &["x,y"], &["x"]),
            ("a}", &["a}"], &["a"]),
            ("ünï*", &["ünïcode"], &["unicode"]),
        ];
        for (glob, yes, no) in table {
            let parsed = Glob::parse(glob).unwrap_or_else(|e| panic!("{glob}: {e}"));
            let pattern = Pattern::parse(glob).unwrap();
            for name in *yes {
                assert!(parsed.matches(name), "{glob} should match {name:?}");
                assert!(pattern.matches(name), "{glob} should match {name:?}");
            }
            for name in *no {
                assert!(!parsed.matches(name), "{glob} should not match {name:?}");
                assert!(!pattern.matches(name), "{glob} should not match {name:?}");
            }
        }
    }

    #[test]
    fn regexes_match_whole_names() {
        let table: &[(&str, &[&str], &[&str])] = &[
            ("re:v1", &["v1"], &["v10", "xv1", "v"]),
            (
                r"re:v\d+\.\d+",
                &["v1.2", "v10.20"],
                &["v1.2.3", "v1", "1.2"],
            ),
            ("re:a|b", &["a", "b"], &["ab", "xa", "bx"]),
            ("re:^latest$", &["latest"], &["latest2"]),
            ("re:.*", &["", "a/b"], &[]),
            ("re:team/[^/]+", &["team/app"], &["team/a/b"]),
            ("re:(?i)LATEST", &["latest", "Latest"], &["latest1"]),
            (r"re:\w+", &["abc_1"], &["a-b", "é"]),
            (r"re:[\w.-]{1,128}", &["v1.2.3-rc_1"], &["a/b", ""]),
            (r"re:\d+", &["0123"], &["١٢٣"]),
        ];
        for (source, yes, no) in table {
            let p = Pattern::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert!(p.is_regex());
            for name in *yes {
                assert!(p.matches(name), "{source} should match {name:?}");
            }
            for name in *no {
                assert!(!p.matches(name), "{source} should not match {name:?}");
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        let table: &[(&str, &str)] = &[
            ("", "may not be empty"),
            ("re:", "is empty"),
            ("re:(", "regex parse error: unclosed group"),
            ("re:a)|(b", "regex parse error: unopened group"),
            (
                "re:[z-a]",
                "regex parse error: invalid character class range",
            ),
            // Small to write, huge once compiled.
            ("re:(((a{100}){100}){100})", "too large once compiled"),
            (r"re:(\w{1000}){1000}", "too large once compiled"),
            // Unicode classes are not compiled in (module documentation).
            (r"re:\p{Greek}", "regex parse error: "),
            ("[abc", "never closed"),
            ("{a,b", "never closed"),
            ("{a,{b,c}}", "nested braces"),
            ("[z-a]", "backwards"),
            ("a\\", "lone \\"),
            (&long, "at most 1024 characters"),
        ];
        for (source, expected) in table {
            let e = Pattern::parse(source).expect_err(source).to_string();
            assert!(e.contains(expected), "{source}: {e}");
            assert!(!e.contains('\n'), "{source}: one line: {e}");
        }
        assert_eq!(
            Pattern::parse_for("re:(", PatternTarget::Tag)
                .unwrap_err()
                .to_string(),
            r#"invalid tag pattern "re:(": regex parse error: unclosed group"#
        );
    }

    #[test]
    fn patterns_round_trip_as_their_source() {
        for source in ["**", "team/*", "v{1,2}", "re:v\\d+", "[!a-c]x"] {
            let p: Pattern = serde_json::from_str(&serde_json::to_string(source).unwrap()).unwrap();
            assert_eq!(p.to_string(), source);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                serde_json::to_string(source).unwrap()
            );
            assert_eq!(p, Pattern::parse(source).unwrap());
        }
    }

    #[test]
    fn selectors() {
        let s: Selector =
            serde_json::from_str(r#"{"include": ["**"], "exclude": ["tmp/**", "re:.*-test"]}"#)
                .unwrap();
        let table = [
            ("app", true),
            ("team/app", true),
            ("tmp/app", false),
            ("app-test", false),
            ("team/app-test", false),
        ];
        for (name, expected) in table {
            assert_eq!(s.matches(name), expected, "{name}");
        }
        let nothing: Selector = serde_json::from_str(r#"{"include": []}"#).unwrap();
        assert!(!nothing.matches("app"));
        assert!(Selector::everything().matches("a/b/c"));
        assert_eq!(
            serde_json::to_string(&Selector::everything()).unwrap(),
            r#"{"include":["**"]}"#
        );
        assert!(serde_json::from_str::<Selector>(r#"{"include": [], "exlude": []}"#).is_err());
        let e = serde_json::from_str::<Selector>(r#"{"include": ["{a"]}"#).unwrap_err();
        assert!(
            e.to_string().starts_with(r#"invalid pattern "{a": "#),
            "{e}"
        );
    }
}
