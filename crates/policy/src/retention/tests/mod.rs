//! Tests of [`evaluate`] and the policy types; the helpers below build
//! inputs in a line each. Artifacts are pushed on numbered days (`NOW` is
//! day 1000).

mod decisions;
mod documents;

use std::collections::HashMap;

use super::*;
use crate::{ImmutabilityRules, Selector};

const DAY: i64 = 24 * 60 * 60 * 1000;
const NOW: i64 = 1000 * DAY;
const UNPROTECTED: i64 = i64::MAX;

/// An artifact pushed on `day` (days since the epoch; `NOW` is day 1000).
fn artifact(digest: &str, day: i64, tags: &[&str]) -> Artifact {
    Artifact {
        digest: digest.into(),
        pushed_at_ms: day * DAY,
        pulled_at_ms: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        children: Vec::new(),
        subject: None,
        recently_tagged: false,
    }
}

impl Artifact {
    fn pulled(mut self, day: i64) -> Artifact {
        self.pulled_at_ms = Some(day * DAY);
        self
    }

    fn children(mut self, children: &[&str]) -> Artifact {
        self.children = children.iter().map(|c| c.to_string()).collect();
        self
    }

    fn subject(mut self, subject: &str) -> Artifact {
        self.subject = Some(subject.into());
        self
    }

    fn recently_tagged(mut self) -> Artifact {
        self.recently_tagged = true;
        self
    }
}

fn repository(name: &str, artifacts: Vec<Artifact>) -> Repository {
    Repository {
        name: name.into(),
        artifacts,
    }
}

fn selector(patterns: &[&str]) -> Selector {
    Selector {
        include: patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect(),
        exclude: Vec::new(),
    }
}

fn rule(repositories: &[&str], tags: &[&str], untagged: bool, keep: Keep) -> Rule {
    Rule {
        repositories: selector(repositories),
        tags: TagSelector {
            include: selector(tags).include,
            exclude: Vec::new(),
            untagged,
        },
        keep,
    }
}

fn policy(rules: Vec<Rule>) -> Policy {
    Policy { rules }
}

fn run(policy: &Policy, repositories: &[Repository]) -> Evaluation {
    evaluate(
        policy,
        &ImmutabilityRules::default(),
        repositories,
        NOW,
        UNPROTECTED,
    )
}

/// Each digest's reason (digests are unique across a test's repositories).
fn reasons(evaluation: &Evaluation) -> HashMap<&str, &Reason> {
    for d in &evaluation.decisions {
        assert_eq!(d.delete, d.reason.deletes(), "{d}");
    }
    evaluation
        .decisions
        .iter()
        .map(|d| (d.digest.as_str(), &d.reason))
        .collect()
}

fn deleted(evaluation: &Evaluation) -> Vec<&str> {
    evaluation
        .deletions()
        .into_iter()
        .map(|d| d.digest.as_str())
        .collect()
}

fn kept_sorted(evaluation: &Evaluation) -> Vec<&str> {
    let mut kept: Vec<&str> = evaluation.kept().map(|d| d.digest.as_str()).collect();
    kept.sort_unstable();
    kept
}
