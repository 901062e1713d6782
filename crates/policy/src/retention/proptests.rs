//! The guarantees retention gives whatever the policy and the repositories:
//! immutable tags and recent pushes survive, nothing kept loses a child or a
//! referrer, a tag no rule mentions survives, and the deletion order is safe.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::{ImmutabilityRule, ImmutabilityRules, Selector};

const DAY: i64 = 24 * 60 * 60 * 1000;
const REPOSITORIES: [&str; 3] = ["a", "b", "team/c"];
const TAGS: [&str; 8] = [
    "v1", "v2", "1.0.0", "1.0.1", "1.1.0", "latest", "dev-1", "prod",
];
const TAG_PATTERNS: [&str; 6] = [
    "**",
    "v*",
    r"re:\d+\.\d+\.\d+",
    "latest",
    "dev-*",
    "{v1,prod}",
];
const REPOSITORY_PATTERNS: [&str; 4] = ["**", "a", "team/*", "{a,b}"];

fn patterns(sources: &[&str], picks: Vec<prop::sample::Index>) -> Vec<Pattern> {
    picks
        .into_iter()
        .map(|i| Pattern::parse(sources[i.index(sources.len())]).unwrap())
        .collect()
}

fn keep() -> impl Strategy<Value = Keep> {
    prop_oneof![
        (0u32..4).prop_map(Keep::LatestPushed),
        (0u32..4).prop_map(Keep::LatestPulled),
        (0u32..20).prop_map(Keep::PushedWithinDays),
        (0u32..20).prop_map(Keep::PulledWithinDays),
        (0u32..3).prop_map(Keep::LatestPatchesPerMinor),
        Just(Keep::Always),
        Just(Keep::Nothing),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(any::<prop::sample::Index>(), 1..3),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::collection::vec(any::<prop::sample::Index>(), 0..2),
        any::<bool>(),
        keep(),
    )
        .prop_map(|(repositories, include, exclude, untagged, keep)| Rule {
            repositories: Selector {
                include: patterns(&REPOSITORY_PATTERNS, repositories),
                exclude: Vec::new(),
            },
            tags: TagSelector {
                include: patterns(&TAG_PATTERNS, include),
                exclude: patterns(&TAG_PATTERNS, exclude),
                untagged,
            },
            keep,
        })
}

fn immutability_rule() -> impl Strategy<Value = ImmutabilityRule> {
    (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(r, t)| {
        ImmutabilityRule {
            repositories: Selector {
                include: patterns(&REPOSITORY_PATTERNS, vec![r]),
                exclude: Vec::new(),
            },
            tags: Selector {
                include: patterns(&TAG_PATTERNS, vec![t]),
                exclude: Vec::new(),
            },
        }
    })
}

/// Children are always earlier artifacts (real digests cannot make a cycle
/// of indexes); subjects may be anything, themselves and missing digests
/// included, so an index may have one of its children as subject.
fn repository(name: &'static str) -> impl Strategy<Value = Repository> {
    let artifact = (
        0i64..20,
        prop::option::of(0i64..20),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::option::of(0usize..14),
    );
    prop::collection::vec(artifact, 0..12).prop_map(move |shapes| {
        let digest = |i: usize| format!("{name}@{i}");
        let artifacts = shapes
            .into_iter()
            .enumerate()
            .map(|(i, (pushed, pulled, tags, children, subject))| Artifact {
                digest: digest(i),
                pushed_at_ms: pushed * DAY,
                pulled_at_ms: pulled.map(|p| p * DAY),
                tags: tags
                    .into_iter()
                    .map(|t| TAGS[t.index(TAGS.len())].to_owned())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect(),
                children: if i == 0 {
                    Vec::new()
                } else {
                    children.into_iter().map(|c| digest(c.index(i))).collect()
                },
                subject: subject.map(digest),
                recently_tagged: false,
            })
            .collect();
        Repository {
            name: name.into(),
            artifacts,
        }
    })
}

fn input() -> impl Strategy<Value = (Policy, ImmutabilityRules, Vec<Repository>, i64)> {
    (
        prop::collection::vec(rule(), 1..4),
        prop::collection::vec(immutability_rule(), 0..2),
        (
            repository(REPOSITORIES[0]),
            repository(REPOSITORIES[1]),
            repository(REPOSITORIES[2]),
        ),
        0i64..25,
    )
        .prop_map(|(rules, immutable, (a, b, c), protect)| {
            (
                Policy { rules },
                ImmutabilityRules(immutable),
                vec![a, b, c],
                protect * DAY,
            )
        })
}

/// Whether `to` can be reached from `from` along index-child and
/// subject-referrer edges between deleted artifacts of `repository`.
fn reaches(repository: &Repository, deleted: &HashSet<&str>, from: &str, to: &str) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![from];
    while let Some(at) = stack.pop() {
        if at == to {
            return true;
        }
        if !seen.insert(at) {
            continue;
        }
        let artifact = repository
            .artifacts
            .iter()
            .find(|a| a.digest == at)
            .unwrap();
        stack.extend(
            artifact
                .children
                .iter()
                .map(String::as_str)
                .chain(
                    repository
                        .artifacts
                        .iter()
                        .filter(|a| a.subject.as_deref() == Some(at))
                        .map(|a| a.digest.as_str()),
                )
                .filter(|d| deleted.contains(d)),
        );
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn retention_guarantees((policy, immutable, repositories, protect) in input()) {
        let evaluation = evaluate(&policy, &immutable, &repositories, 20 * DAY, protect);
        let total: usize = repositories.iter().map(|r| r.artifacts.len()).sum();
        prop_assert_eq!(evaluation.decisions.len(), total);
        let decided: HashMap<&str, &Decision> =
            evaluation.decisions.iter().map(|d| (d.digest.as_str(), d)).collect();
        prop_assert_eq!(decided.len(), total);
        let position: HashMap<&str, usize> = evaluation
            .deletions()
            .iter()
            .enumerate()
            .map(|(p, d)| (d.digest.as_str(), p))
            .collect();

        for repository in &repositories {
            let deleted: HashSet<&str> = repository
                .artifacts
                .iter()
                .map(|a| a.digest.as_str())
                .filter(|d| decided[d].delete)
                .collect();
            let present = |digest: &str| repository.artifacts.iter().any(|a| a.digest == digest);
            for artifact in &repository.artifacts {
                let decision = decided[artifact.digest.as_str()];
                prop_assert_eq!(decision.delete, decision.reason.deletes());
                prop_assert_eq!(&decision.repository, &repository.name);
                if decision.delete {
                    for tag in &artifact.tags {
                        prop_assert!(immutable.immutable(&repository.name, tag).is_none(), "immutable {} deleted", tag);
                        prop_assert!(
                            policy.rules.iter().any(|r| r.repositories.matches(&repository.name) && r.tags.matches(tag)),
                            "{} has a tag no rule mentions: {}", artifact.digest, tag
                        );
                    }
                    prop_assert!(artifact.pushed_at_ms <= protect, "recent {} deleted", artifact.digest);
                    // Rule 7: an index before its children. Children only
                    // point backwards here, so this can always hold.
                    for child in artifact.children.iter().filter(|c| deleted.contains(c.as_str()) && **c != artifact.digest) {
                        prop_assert!(position[artifact.digest.as_str()] < position[child.as_str()], "{} after its child {}", artifact.digest, child);
                    }
                    // A subject before its referrers, unless that conflicts
                    // with an index-child order: then the referrer reaches
                    // its subject through the constraints.
                    if let Some(subject) = artifact.subject.as_deref().filter(|s| deleted.contains(s) && *s != artifact.digest) {
                        prop_assert!(
                            position[subject] < position[artifact.digest.as_str()]
                                || reaches(repository, &deleted, &artifact.digest, subject),
                            "{} before its subject {}", artifact.digest, subject
                        );
                    }
                } else {
                    for child in artifact.children.iter().filter(|c| present(c)) {
                        prop_assert!(!decided[child.as_str()].delete, "child {} of kept {} deleted", child, artifact.digest);
                    }
                    for referrer in repository.artifacts.iter().filter(|a| a.subject.as_deref() == Some(&artifact.digest)) {
                        prop_assert!(!decided[referrer.digest.as_str()].delete, "referrer {} of kept {} deleted", referrer.digest, artifact.digest);
                    }
                }
            }
        }
    }
}
