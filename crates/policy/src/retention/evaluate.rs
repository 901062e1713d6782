//! [`evaluate`]: the semantics of the module documentation, one repository
//! at a time. Artifacts are addressed by their position in the repository's
//! list; digests are looked up once, in a map, so nothing is quadratic.

use std::cmp::Reverse;
use std::collections::HashMap;

use super::{Artifact, Decision, Evaluation, Keep, Policy, Reason, Repository, Rule, order};
use crate::immutability::{ImmutabilityRules, RepositoryImmutability};
use crate::semver::Version;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Decides every artifact of `repositories` under `policy`; see the module
/// documentation. `now_ms` is the reference for `*_within_days`; artifacts
/// pushed after `protect_pushed_after_ms` are kept whatever the policy says.
pub fn evaluate(
    policy: &Policy,
    immutable: &ImmutabilityRules,
    repositories: &[Repository],
    now_ms: i64,
    protect_pushed_after_ms: i64,
) -> Evaluation {
    let mut by_name: Vec<&Repository> = repositories.iter().collect();
    by_name.sort_by(|a, b| a.name.cmp(&b.name));
    let mut decisions = Vec::with_capacity(repositories.iter().map(|r| r.artifacts.len()).sum());
    for repository in by_name {
        let context = Context {
            repository,
            rules: policy
                .rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| rule.repositories.matches(&repository.name))
                .collect(),
            immutable: immutable.for_repository(&repository.name),
            now_ms,
            protect_pushed_after_ms,
        };
        context.decide(&mut decisions);
    }
    Evaluation { decisions }
}

/// How the artifacts of one repository refer to each other, by position.
pub(super) struct Graph {
    /// An index's children present in the repository.
    pub children: Vec<Vec<usize>>,
    /// The indexes listing an artifact.
    pub indexes: Vec<Vec<usize>>,
    /// The artifacts whose subject is this one.
    pub referrers: Vec<Vec<usize>>,
    /// An artifact's subject, when present in the repository.
    pub subject: Vec<Option<usize>>,
}

impl Graph {
    fn new(artifacts: &[Artifact]) -> Graph {
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(artifacts.len());
        for (i, artifact) in artifacts.iter().enumerate() {
            position.entry(artifact.digest.as_str()).or_insert(i);
        }
        let n = artifacts.len();
        let mut graph = Graph {
            children: vec![Vec::new(); n],
            indexes: vec![Vec::new(); n],
            referrers: vec![Vec::new(); n],
            subject: vec![None; n],
        };
        for (i, artifact) in artifacts.iter().enumerate() {
            for child in &artifact.children {
                if let Some(&c) = position.get(child.as_str())
                    && c != i
                    // A child listed twice: the second is the same edge.
                    && graph.indexes[c].last() != Some(&i)
                {
                    graph.children[i].push(c);
                    graph.indexes[c].push(i);
                }
            }
            if let Some(subject) = &artifact.subject
                && let Some(&s) = position.get(subject.as_str())
                && s != i
            {
                graph.subject[i] = Some(s);
                graph.referrers[s].push(i);
            }
        }
        graph
    }

    fn is_dependent(&self, i: usize) -> bool {
        !self.indexes[i].is_empty() || self.subject[i].is_some()
    }
}

/// What [`evaluate`] needs to decide one repository.
struct Context<'a> {
    repository: &'a Repository,
    /// The rules covering the repository, with their index in the policy.
    rules: Vec<(usize, &'a Rule)>,
    immutable: RepositoryImmutability<'a>,
    now_ms: i64,
    protect_pushed_after_ms: i64,
}

/// What is known of one artifact on the way to its decision.
#[derive(Clone, Default)]
struct Facts {
    candidate: bool,
    /// The first rule (policy index) selecting it.
    selected_by: Option<usize>,
    /// The first rule (policy index) keeping it.
    kept_by: Option<usize>,
    root: bool,
    kept: bool,
}

impl Context<'_> {
    fn decide(&self, decisions: &mut Vec<Decision>) {
        let artifacts = &self.repository.artifacts;
        let graph = Graph::new(artifacts);
        let mut facts = vec![Facts::default(); artifacts.len()];

        // 2 and 3: selection and candidates.
        let mut selected: Vec<Vec<usize>> = vec![Vec::new(); self.rules.len()];
        let mut selects = vec![false; self.rules.len()];
        for (i, artifact) in artifacts.iter().enumerate() {
            selects.fill(false);
            let candidate = if artifact.tags.is_empty() {
                if !graph.is_dependent(i) {
                    for (k, (_, rule)) in self.rules.iter().enumerate() {
                        selects[k] = rule.tags.untagged;
                    }
                }
                selects.contains(&true)
            } else {
                let mut every_tag_covered = true;
                for tag in &artifact.tags {
                    let mut covered = false;
                    for (k, (_, rule)) in self.rules.iter().enumerate() {
                        if (!selects[k] || !covered) && rule.tags.matches(tag) {
                            selects[k] = true;
                            covered = true;
                        }
                    }
                    every_tag_covered &= covered;
                }
                every_tag_covered
            };
            facts[i].candidate = candidate;
            for (k, _) in selects.iter().enumerate().filter(|(_, s)| **s) {
                selected[k].push(i);
                facts[i].selected_by.get_or_insert(self.rules[k].0);
            }
        }

        // 4: what each rule keeps; the first rule wins the credit.
        for (k, (index, rule)) in self.rules.iter().enumerate() {
            for i in self.kept_by_rule(rule, &selected[k]) {
                facts[i].kept_by.get_or_insert(*index);
            }
        }

        // 5: roots, then what they keep.
        let immutable_tags: Vec<Option<(&String, usize)>> = artifacts
            .iter()
            .map(|a| {
                if self.immutable.is_empty() {
                    return None;
                }
                a.tags
                    .iter()
                    .find_map(|tag| self.immutable.immutable(tag).map(|rule| (tag, rule)))
            })
            .collect();
        let mut stack = Vec::new();
        for (i, artifact) in artifacts.iter().enumerate() {
            let f = &mut facts[i];
            f.root = immutable_tags[i].is_some()
                || artifact.pushed_at_ms > self.protect_pushed_after_ms
                || artifact.recently_tagged
                || (f.candidate && f.kept_by.is_some())
                || (!f.candidate && (!artifact.tags.is_empty() || !graph.is_dependent(i)));
            if f.root {
                f.kept = true;
                stack.push(i);
            }
        }
        while let Some(i) = stack.pop() {
            for &j in graph.children[i].iter().chain(&graph.referrers[i]) {
                if !facts[j].kept {
                    facts[j].kept = true;
                    stack.push(j);
                }
            }
        }

        // 6 and 7: reasons, in a safe order.
        let deleted: Vec<bool> = facts.iter().map(|f| !f.kept).collect();
        for i in order::safe_order(artifacts, &graph, &deleted) {
            let artifact = &artifacts[i];
            let reason = self.reason(i, &facts, &graph, immutable_tags[i]);
            decisions.push(Decision {
                repository: self.repository.name.clone(),
                digest: artifact.digest.clone(),
                tags: artifact.tags.clone(),
                delete: deleted[i],
                reason,
            });
        }
    }

    fn reason(
        &self,
        i: usize,
        facts: &[Facts],
        graph: &Graph,
        immutable_tag: Option<(&String, usize)>,
    ) -> Reason {
        let artifacts = &self.repository.artifacts;
        let digest = |j: usize| artifacts[j].digest.clone();
        let f = &facts[i];
        if !f.kept {
            return if let (true, Some(rule)) = (f.candidate, f.selected_by) {
                Reason::NotKept { rule }
            } else if let Some(&index) = graph.indexes[i].first() {
                Reason::ChildOfDeleted {
                    index: digest(index),
                }
            } else {
                // Only untagged dependents are deleted without being
                // candidates; not listed by an index, this one has a subject.
                Reason::ReferrerOfDeleted {
                    subject: graph.subject[i].map(digest).unwrap_or_default(),
                }
            };
        }
        if let Some((tag, rule)) = immutable_tag {
            return Reason::ImmutableTag {
                tag: tag.clone(),
                rule,
            };
        }
        if artifacts[i].pushed_at_ms > self.protect_pushed_after_ms {
            return Reason::PushedRecently;
        }
        if artifacts[i].recently_tagged {
            return Reason::RecentlyTagged;
        }
        if let Some(rule) = f.kept_by {
            return Reason::KeptByRule { rule };
        }
        if f.root {
            return Reason::NotSelected;
        }
        match graph.indexes[i].iter().find(|&&x| facts[x].kept) {
            Some(&index) => Reason::ChildOfKept {
                index: digest(index),
            },
            None => Reason::ReferrerOfKept {
                subject: graph.subject[i].map(digest).unwrap_or_default(),
            },
        }
    }

    /// The artifacts among `selected` (positions, all selected by `rule`)
    /// that the rule keeps.
    fn kept_by_rule(&self, rule: &Rule, selected: &[usize]) -> Vec<usize> {
        let artifacts = &self.repository.artifacts;
        let since = |days: u32| {
            self.now_ms
                .saturating_sub(i64::from(days).saturating_mul(DAY_MS))
        };
        let newest = |n: u32, time: &dyn Fn(&Artifact) -> Option<i64>| {
            let mut ranked: Vec<(i64, usize)> = selected
                .iter()
                .filter_map(|&i| time(&artifacts[i]).map(|t| (t, i)))
                .collect();
            ranked.sort_unstable_by(|&(ta, a), &(tb, b)| {
                tb.cmp(&ta)
                    .then_with(|| artifacts[a].digest.cmp(&artifacts[b].digest))
            });
            ranked.truncate(n as usize);
            ranked.into_iter().map(|(_, i)| i).collect()
        };
        match rule.keep {
            Keep::LatestPushed(n) => newest(n, &|a| Some(a.pushed_at_ms)),
            Keep::LatestPulled(n) => newest(n, &|a| a.pulled_at_ms),
            Keep::PushedWithinDays(d) => {
                let since = since(d);
                selected
                    .iter()
                    .copied()
                    .filter(|&i| artifacts[i].pushed_at_ms >= since)
                    .collect()
            }
            Keep::PulledWithinDays(d) => {
                let since = since(d);
                selected
                    .iter()
                    .copied()
                    .filter(|&i| artifacts[i].pulled_at_ms.is_some_and(|t| t >= since))
                    .collect()
            }
            Keep::Always => selected.to_vec(),
            Keep::LatestPatchesPerMinor(n) => self.latest_patches(rule, selected, n as usize),
            Keep::Nothing => Vec::new(),
        }
    }

    fn latest_patches(&self, rule: &Rule, selected: &[usize], n: usize) -> Vec<usize> {
        let artifacts = &self.repository.artifacts;
        let mut minors: HashMap<(u64, u64), Vec<(Version, usize)>> = HashMap::new();
        for &i in selected {
            let highest = artifacts[i]
                .tags
                .iter()
                .filter(|tag| rule.tags.matches(tag))
                .filter_map(|tag| Version::parse_tag(tag))
                .max();
            if let Some(version) = highest {
                minors
                    .entry((version.major, version.minor))
                    .or_default()
                    .push((version, i));
            }
        }
        let mut kept = Vec::new();
        for mut versions in minors.into_values() {
            versions.sort_unstable_by(|(va, a), (vb, b)| {
                let (a, b) = (&artifacts[*a], &artifacts[*b]);
                vb.cmp(va)
                    .then_with(|| Reverse(a.pushed_at_ms).cmp(&Reverse(b.pushed_at_ms)))
                    .then_with(|| a.digest.cmp(&b.digest))
            });
            kept.extend(versions.into_iter().take(n).map(|(_, i)| i));
        }
        kept
    }
}
