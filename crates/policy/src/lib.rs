//! Lifecycle decisions: which artifacts a retention policy deletes, which
//! tags may not move, and when a scheduled job runs next.
//!
//! - [`pattern`]: glob and `re:` regex patterns for repository and tag names,
//!   and [`Selector`]s (include/exclude lists of them).
//! - [`semver`]: tags read as semantic versions, ordered by semver precedence.
//! - [`immutability`]: tag-immutability rules.
//! - [`retention`]: retention policies and [`evaluate`], the decision for
//!   every artifact of a set of repositories.
//! - [`schedule`]: five-field cron schedules in UTC.
//!
//! Repository names given to this crate are **relative to the project**
//! (`app`, `team/api`): the caller strips the project prefix, so one policy
//! reads the same in every project.
//!
//! What this crate must not do: I/O of any kind, async, clocks. Loading
//! artifacts, reading the time and deleting are the caller's; every decision
//! here is a function of its arguments, so it can be tested as a table and
//! shown as a dry run.

mod error;
pub mod immutability;
pub mod pattern;
pub mod retention;
pub mod schedule;
pub mod semver;

pub use error::{PatternTarget, PolicyError};
pub use immutability::{ImmutabilityRule, ImmutabilityRules};
pub use pattern::{Glob, Pattern, Selector};
pub use retention::{
    Artifact, Decision, Evaluation, Keep, Policy, Reason, Repository, Rule, TagSelector, evaluate,
};
pub use schedule::Schedule;
pub use semver::Version;
