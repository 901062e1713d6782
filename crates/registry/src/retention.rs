//! Retention: evaluate a project's policy over its artifacts (the decisions
//! are the `policy` crate's), then delete what it decided, each deletion
//! guarded so that an artifact whose tags changed since the evaluation, or
//! that carries an immutable tag, stays.

use std::collections::{HashMap, HashSet};

use metadata::{DeleteGuard, GraphRepository, MetadataError};
use oci::{Digest, RepoName};
use policy::immutability::ImmutabilityRules;
use policy::retention::{self, Evaluation, Policy};
use serde::Serialize;

use crate::{Registry, Result, now_ms, system_change};

/// A policy's decisions over a project, ready to apply.
#[derive(Debug)]
pub struct RetentionPlan {
    pub project: String,
    pub evaluation: Evaluation,
}

/// What became of one deletion a plan decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionOutcome {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// Why the policy deleted it (a sentence).
    pub reason: String,
    pub result: Applied,
    /// Why a deletion was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_because: Option<String>,
}

/// What a run did with one deletion its policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Deleted,
    /// A dry run.
    WouldDelete,
    /// Left alone (`skipped_because` says why).
    Skipped,
}

/// Manifests a tag stopped pointing at lately (moved away from, or was
/// deleted from), per repository: what a rollback may go back to.
pub(crate) type RecentlyTagged = HashSet<(RepoName, Digest)>;

fn to_policy_repository(
    repo: &GraphRepository,
    name: String,
    recent: &RecentlyTagged,
) -> retention::Repository {
    retention::Repository {
        name,
        artifacts: repo
            .artifacts
            .iter()
            .map(|a| retention::Artifact {
                recently_tagged: recent.contains(&(repo.name.clone(), a.digest.clone())),
                digest: a.digest.to_string(),
                pushed_at_ms: a.pushed_at_ms,
                pulled_at_ms: a.pulled_at_ms,
                tags: a.tags.clone(),
                children: a.children.iter().map(ToString::to_string).collect(),
                subject: a.subject.as_ref().map(ToString::to_string),
            })
            .collect(),
    }
}

/// Untagged manifests garbage collection may delete: those nothing kept
/// refers to, pushed before `cutoff_ms`, in a safe deletion order.
pub(crate) fn untagged_garbage(
    graph: &[GraphRepository],
    cutoff_ms: i64,
    recent: &RecentlyTagged,
) -> Vec<(RepoName, Digest)> {
    let names: HashMap<&str, &RepoName> =
        graph.iter().map(|r| (r.name.as_str(), &r.name)).collect();
    let repos: Vec<retention::Repository> = graph
        .iter()
        .map(|r| to_policy_repository(r, r.name.as_str().to_owned(), recent))
        .collect();
    let evaluation = retention::evaluate(
        &Policy::untagged_cleanup(),
        &ImmutabilityRules::default(),
        &repos,
        cutoff_ms,
        cutoff_ms,
    );
    evaluation
        .deletions()
        .into_iter()
        .filter_map(|d| {
            let repo = names.get(d.repository.as_str())?;
            let digest = d.digest.parse().ok()?;
            Some(((*repo).clone(), digest))
        })
        .collect()
}

impl Registry {
    /// Evaluates `policy` over `project` now. Artifacts pushed within
    /// `protect_ms` are kept (an in-flight multi-platform push uploads its
    /// untagged children before the index that keeps them), and so are
    /// those a tag stopped pointing at within `tag_history_ms`.
    pub async fn plan_retention(
        &self,
        project: &str,
        policy: &Policy,
        protect_ms: i64,
        tag_history_ms: i64,
    ) -> Result<RetentionPlan> {
        let now = now_ms();
        let graph = self.meta.artifact_graph(Some(project)).await?;
        let recent = self
            .recently_tagged(Some(project), now - tag_history_ms)
            .await?;
        let rules = self.immutability(project).await?;
        let repos: Vec<retention::Repository> = graph
            .iter()
            .map(|r| to_policy_repository(r, r.name.name_in_project().to_owned(), &recent))
            .collect();
        let evaluation = retention::evaluate(policy, &rules, &repos, now, now - protect_ms);
        Ok(RetentionPlan {
            project: project.to_owned(),
            evaluation,
        })
    }

    /// Manifests a tag stopped pointing at since `since_ms`; none if
    /// `since_ms` is now or later (no history window).
    pub(crate) async fn recently_tagged(
        &self,
        project: Option<&str>,
        since_ms: i64,
    ) -> Result<RecentlyTagged> {
        if since_ms >= now_ms() {
            return Ok(HashSet::new());
        }
        Ok(self
            .meta
            .tagged_since(project, since_ms)
            .await?
            .into_iter()
            .collect())
    }

    /// Deletes what `plan` decided (or, dry, reports it), as `actor`; each
    /// deletion records its events like a client's DELETE.
    pub async fn apply_retention(
        &self,
        plan: &RetentionPlan,
        actor: &str,
        dry_run: bool,
    ) -> Result<Vec<RetentionOutcome>> {
        let rules = self.immutability(&plan.project).await?;
        let mut outcomes = Vec::new();
        for decision in plan.evaluation.deletions() {
            let mut outcome = RetentionOutcome {
                repository: if decision.repository.is_empty() {
                    plan.project.clone()
                } else {
                    format!("{}/{}", plan.project, decision.repository)
                },
                digest: decision.digest.clone(),
                tags: decision.tags.clone(),
                reason: decision.reason.to_string(),
                result: Applied::WouldDelete,
                skipped_because: None,
            };
            if dry_run {
                outcomes.push(outcome);
                continue;
            }
            let (Ok(repo), Ok(digest)) = (
                RepoName::parse(&outcome.repository),
                outcome.digest.parse::<Digest>(),
            ) else {
                outcome.result = Applied::Skipped;
                outcome.skipped_because = Some("not a valid name".to_owned());
                outcomes.push(outcome);
                continue;
            };
            let (rules, within, tags, change) = (
                rules.clone(),
                decision.repository.clone(),
                decision.tags.clone(),
                system_change(actor),
            );
            let deleted = self
                .in_foreground(move |this| async move {
                    let repo_rules = rules.for_repository(&within);
                    let immutable = |tag: &str| repo_rules.immutable(tag).is_some();
                    let guard = DeleteGuard {
                        immutable: &immutable,
                        expected_tags: Some(&tags),
                    };
                    Ok(this
                        .meta
                        .delete_manifest(&repo, &digest, &guard, &change)
                        .await)
                })
                .await?;
            let skipped_because = match deleted {
                Ok(()) => None,
                Err(MetadataError::Changed(_)) => {
                    Some("its tags changed since the evaluation".to_owned())
                }
                Err(MetadataError::TagImmutable { tag }) => Some(format!("tag {tag} is immutable")),
                Err(MetadataError::ManifestUnknown(_) | MetadataError::RepositoryUnknown) => {
                    Some("already gone".to_owned())
                }
                Err(e @ MetadataError::ManifestInUse { .. }) => Some(e.to_string()),
                Err(e) => return Err(e.into()),
            };
            outcome.result = if skipped_because.is_some() {
                Applied::Skipped
            } else {
                Applied::Deleted
            };
            outcome.skipped_because = skipped_because;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}
