//! Tag immutability: which tags of a project may not move or go away.
//!
//! A project holds a list of [`ImmutabilityRule`]s. A tag is immutable when
//! some rule's `repositories` selector matches its repository (the name
//! relative to the project: `app`, `team/api`) and the rule's `tags`
//! selector matches the tag. Creating such a tag is allowed; once it exists
//! the registry refuses to point it at another manifest, to delete it, or to
//! delete the artifact it names, and retention keeps that artifact
//! ([`crate::retention`]). Enforcing is the caller's: this module only
//! answers "is it immutable, and by which rule" ([`ImmutabilityRules::immutable`]).
//!
//! The answer names the first rule (0-based) so that the refusal can say
//! which rule to change.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::PolicyError;
use crate::pattern::{Selector, de};

/// The tags matching `tags` in the repositories matching `repositories` are
/// immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImmutabilityRule {
    /// Repository names relative to the project.
    #[serde(deserialize_with = "de::repository_selector")]
    pub repositories: Selector,
    #[serde(deserialize_with = "de::tag_selector")]
    pub tags: Selector,
}

/// A project's immutability rules, in the order users wrote them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ImmutabilityRules(pub Vec<ImmutabilityRule>);

impl ImmutabilityRules {
    /// The most rules a project may have.
    pub const MAX_RULES: usize = 100;

    /// The index of the first rule making `tag` of `repository` (relative
    /// to the project) immutable, if any.
    pub fn immutable(&self, repository: &str, tag: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|rule| rule.repositories.matches(repository) && rule.tags.matches(tag))
    }

    /// The rules that apply to one repository, to ask about many of its tags
    /// without matching the repository name again for each.
    pub fn for_repository(&self, repository: &str) -> RepositoryImmutability<'_> {
        RepositoryImmutability {
            rules: self
                .0
                .iter()
                .enumerate()
                .filter(|(_, rule)| rule.repositories.matches(repository))
                .collect(),
        }
    }

    /// Refuses rule lists that cannot be what the user meant: too many
    /// rules, or a rule whose include lists are empty (it would match
    /// nothing).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.0.len() > Self::MAX_RULES {
            return Err(PolicyError::InvalidPolicy(format!(
                "there are {} immutability rules; at most {} are allowed",
                self.0.len(),
                Self::MAX_RULES
            )));
        }
        for (i, rule) in self.0.iter().enumerate() {
            let problem = if rule.repositories.include.is_empty() {
                "repositories.include is empty, so the rule matches nothing; use [\"**\"] for every repository"
            } else if rule.tags.include.is_empty() {
                "tags.include is empty, so the rule matches nothing; use [\"**\"] for every tag"
            } else {
                continue;
            };
            return Err(PolicyError::InvalidImmutabilityRule {
                rule: i + 1,
                problem: problem.to_owned(),
            });
        }
        Ok(())
    }
}

/// [`ImmutabilityRules`] narrowed to one repository.
#[derive(Clone, Debug)]
pub struct RepositoryImmutability<'a> {
    rules: Vec<(usize, &'a ImmutabilityRule)>,
}

impl RepositoryImmutability<'_> {
    /// Like [`ImmutabilityRules::immutable`] for this repository.
    pub fn immutable(&self, tag: &str) -> Option<usize> {
        self.rules
            .iter()
            .find(|(_, rule)| rule.tags.matches(tag))
            .map(|(i, _)| *i)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> ImmutabilityRules {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = rules(
            r#"[
                {"repositories": {"include": ["team/**"], "exclude": ["team/scratch"]},
                 "tags": {"include": ["v*"], "exclude": ["*-dev"]}},
                {"repositories": {"include": ["**"]}, "tags": {"include": ["re:\\d+\\.\\d+\\.\\d+"]}},
                {"repositories": {"include": ["app"]}, "tags": {"include": ["**"]}}
            ]"#,
        );
        let table = [
            ("team/api", "v1", Some(0)),
            ("team/api", "v1-dev", None),
            ("team/api", "1.2.3", Some(1)),
            ("team/scratch", "v1", None),
            ("team/scratch", "1.0.0", Some(1)),
            ("team", "v1", None),
            ("web", "v1", None),
            ("web", "1.2", None),
            ("app", "v1", Some(2)),
            ("app", "1.0.0", Some(1)),
            ("app", "latest", Some(2)),
        ];
        for (repository, tag, expected) in table {
            assert_eq!(
                rules.immutable(repository, tag),
                expected,
                "{repository}:{tag}"
            );
            assert_eq!(
                rules.for_repository(repository).immutable(tag),
                expected,
                "{repository}:{tag}"
            );
        }
        assert!(rules.for_repository("web").immutable("v1").is_none());
        assert!(
            ImmutabilityRules::default()
                .immutable("app", "v1")
                .is_none()
        );
        assert!(rules.validate().is_ok());
    }

    #[test]
    fn rules_are_checked() {
        let e = serde_json::from_str::<ImmutabilityRules>(
            r#"[{"repositories": {"include": ["**"]}, "tags": {"include": ["re:("]}}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(r#"invalid tag pattern "re:(": regex parse error: unclosed group"#),
            "{e}"
        );
        let e = serde_json::from_str::<ImmutabilityRules>(
            r#"[{"repositories": {"include": ["[a"]}, "tags": {"include": ["**"]}}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(r#"invalid repository pattern "[a": "#), "{e}");
        assert!(
            serde_json::from_str::<ImmutabilityRules>(
                r#"[{"repositories": {"include": ["**"]}, "tags": {"include": ["**"]}, "extra": 1}]"#,
            )
            .is_err()
        );
        let empty = rules(r#"[{"repositories": {"include": ["**"]}, "tags": {"include": []}}]"#);
        assert_eq!(
            empty.validate().unwrap_err().to_string(),
            "immutability rule 1: tags.include is empty, so the rule matches nothing; use [\"**\"] for every tag"
        );
    }
}
