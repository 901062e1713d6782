//! Lifecycle jobs: garbage collection, retention and integrity runs.
//!
//! A run is started by a request (the management API) or by a schedule,
//! under a lease so that one node at a time runs each job (one lease for
//! garbage collection, one for integrity checks, one per project for
//! retention). Starting returns the run's record at once; the run goes on in
//! a task [`Lifecycle`] owns, and its record (`lifecycle_runs`) says how it
//! ended: counts, bytes, what was deleted and why, problems found. Every run
//! is audited, and each artifact retention deletes is audited like a
//! client's delete. The scheduler wakes every minute and starts what a cron
//! expression asks for; of several nodes, the one that takes the minute's
//! lease starts it.
//!
//! A run does its work on the background runtime (`background.rs`), whose
//! threads run at a low CPU priority; its write transactions go back to the
//! runtime requests are served on.
//!
//! What this crate must not do: know HTTP or SQL, or decide retention (the
//! `policy` crate does).

mod background;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use identity::{AuditRecord, Identity};
use metadata::{MetaStore, NewRun, Run, RunKind, RunOutcome};
use policy::retention::Policy;
use policy::schedule::Schedule;
use registry::Registry;
use registry::gc::GcOptions;
use registry::integrity::BlobHealth;
use registry::retention::Applied;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How lifecycle jobs run.
#[derive(Clone, Debug)]
pub struct LifecycleSettings {
    /// Garbage collection's defaults (a manual run may override
    /// `delete_untagged` and `dry_run`).
    pub gc: GcOptions,
    pub gc_schedule: Option<Schedule>,
    pub integrity_schedule: Option<Schedule>,
    /// How fast an integrity check reads blobs, in bytes per second.
    pub integrity_bytes_per_second: u64,
    /// Retention runs keep recently pushed artifacts this long.
    pub retention_protect: Duration,
    /// Run records older than this are forgotten.
    pub run_history: Duration,
    /// The nice value (0-19) of the threads runs work on: 19, the lowest
    /// priority, lets them take only what requests leave of the processor.
    pub background_nice: i32,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            gc: GcOptions::default(),
            gc_schedule: None,
            integrity_schedule: None,
            integrity_bytes_per_second: 64 * 1024 * 1024,
            retention_protect: Duration::from_secs(3600),
            run_history: Duration::from_secs(90 * 24 * 3600),
            background_nice: 19,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job is running already (here or on another node).
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the state of things (no policy to run).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
}

impl From<metadata::MetadataError> for JobError {
    fn from(e: metadata::MetadataError) -> Self {
        JobError::Registry(e.into())
    }
}

pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// A request to collect garbage now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcRequest {
    pub dry_run: bool,
    /// `None`: the configured default.
    pub delete_untagged: Option<bool>,
}

/// How long a job's lease lasts before it must be renewed.
const LEASE: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Starts, records and schedules lifecycle runs; see the crate documentation.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    meta: Arc<dyn MetaStore>,
    identity: Identity,
    settings: LifecycleSettings,
    /// This node's name in leases.
    holder: String,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Where runs do their work; `None` if it could not start, and runs
    /// work beside requests.
    background: Option<background::Background>,
}

/// Ends a run: what it found, for the record.
struct Finished {
    summary: serde_json::Value,
    items: serde_json::Value,
}

impl Lifecycle {
    pub fn new(
        registry: Registry,
        meta: Arc<dyn MetaStore>,
        identity: Identity,
        settings: LifecycleSettings,
    ) -> Self {
        let background = background::Background::start(settings.background_nice)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "lifecycle runs will share the request threads: their runtime did not start");
            })
            .ok();
        Lifecycle {
            inner: Arc::new(Inner {
                registry,
                meta,
                identity,
                settings,
                holder: format!("node-{}", uuid::Uuid::new_v4()),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                background,
            }),
        }
    }

    /// Starts a garbage collection; fails with [`JobError::Busy`] while one runs.
    pub async fn start_gc(
        &self,
        requested_by: &str,
        trigger: &str,
        request: GcRequest,
    ) -> Result<Run> {
        let mut options = self.inner.settings.gc.clone();
        options.dry_run = request.dry_run;
        if let Some(untagged) = request.delete_untagged {
            options.delete_untagged = untagged;
        }
        let this = self.clone();
        self.start(
            RunKind::Gc,
            None,
            requested_by,
            trigger,
            request.dry_run,
            move || async move {
                let (report, untagged) = this.inner.registry.collect_garbage(&options).await?;
                metrics::counter!("wharf_gc_blobs_deleted_total").increment(if options.dry_run {
                    0
                } else {
                    report.blobs
                });
                metrics::counter!("wharf_gc_bytes_freed_total").increment(if options.dry_run {
                    0
                } else {
                    report.bytes_freed()
                });
                let mut summary = serde_json::to_value(&report).unwrap_or_default();
                summary["bytes_freed"] = report.bytes_freed().into();
                summary["delete_untagged"] = options.delete_untagged.into();
                summary["grace_period_seconds"] = options.grace.as_secs().into();
                Ok(Finished {
                    summary,
                    items: serde_json::to_value(&untagged).unwrap_or_default(),
                })
            },
        )
        .await
    }

    /// Starts a retention run over `project` with its stored policy.
    pub async fn start_retention(
        &self,
        project: &str,
        requested_by: &str,
        trigger: &str,
        dry_run: bool,
    ) -> Result<Run> {
        let settings = self
            .inner
            .registry
            .project_settings(project)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("project {project:?} does not exist")))?;
        let Some(policy) = settings.retention else {
            return Err(JobError::Conflict(format!(
                "project {project:?} has no retention policy; set one first"
            )));
        };
        let policy: Policy = serde_json::from_str(&policy).map_err(|e| {
            JobError::Invalid(format!("the stored retention policy does not parse: {e}"))
        })?;
        let this = self.clone();
        let project_name = project.to_owned();
        let actor = if trigger == "schedule" {
            "system:retention".to_owned()
        } else {
            requested_by.to_owned()
        };
        self.start(
            RunKind::Retention,
            Some(project),
            requested_by,
            trigger,
            dry_run,
            move || async move {
                let registry = &this.inner.registry;
                let protect = this.inner.settings.retention_protect.as_millis() as i64;
                let history = this.inner.settings.gc.tag_history.as_millis() as i64;
                let plan = registry
                    .plan_retention(&project_name, &policy, protect, history)
                    .await?;
                let kept = plan.evaluation.kept().count();
                let outcomes = registry.apply_retention(&plan, &actor, dry_run).await?;
                let count = |a: Applied| outcomes.iter().filter(|o| o.result == a).count();
                for o in outcomes.iter().filter(|o| o.result == Applied::Deleted) {
                    this.inner.identity.audit().record(AuditRecord {
                        actor: actor.clone(),
                        address: String::new(),
                        operation: "delete".into(),
                        resource_type: "artifact".into(),
                        resource: format!("{}@{}", o.repository, o.digest),
                        project: Some(project_name.clone()),
                        success: true,
                        detail: format!("retention: {}", o.reason),
                    });
                }
                Ok(Finished {
                    summary: serde_json::json!({
                        "artifacts": plan.evaluation.decisions.len(),
                        "kept": kept,
                        "deleted": count(Applied::Deleted),
                        "would_delete": count(Applied::WouldDelete),
                        "skipped": count(Applied::Skipped),
                    }),
                    items: serde_json::to_value(&outcomes).unwrap_or_default(),
                })
            },
        )
        .await
    }

    /// Starts an integrity check of every stored blob.
    pub async fn start_integrity(&self, requested_by: &str, trigger: &str) -> Result<Run> {
        let this = self.clone();
        self.start(
            RunKind::Integrity,
            None,
            requested_by,
            trigger,
            false,
            move || async move { this.check_integrity().await },
        )
        .await
    }

    async fn check_integrity(&self) -> Result<Finished> {
        #[derive(Serialize)]
        struct Problem {
            digest: String,
            size: u64,
            #[serde(flatten)]
            health: BlobHealth,
        }
        let rate = self.inner.settings.integrity_bytes_per_second.max(1) as f64;
        let started = tokio::time::Instant::now();
        let mut read = 0u64;
        let (mut checked, mut bytes) = (0u64, 0u64);
        let mut problems = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .inner
                .registry
                .recorded_blobs(after.as_ref(), 500)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (digest, size) in &page {
                if self.inner.cancel.is_cancelled() {
                    return Err(JobError::Invalid("stopped by shutdown".into()));
                }
                let health = self
                    .inner
                    .registry
                    .check_blob(digest, *size, |n| {
                        read += n as u64;
                        // Sleep until the bytes read so far fit the rate.
                        let due = started + Duration::from_secs_f64(read as f64 / rate);
                        tokio::time::sleep_until(due)
                    })
                    .await?;
                checked += 1;
                bytes += size;
                if health != BlobHealth::Ok {
                    tracing::error!(%digest, ?health, "integrity check found a damaged blob");
                    problems.push(Problem {
                        digest: digest.to_string(),
                        size: *size,
                        health,
                    });
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        metrics::gauge!("wharf_integrity_problems").set(problems.len() as f64);
        // Bytes nothing records are not checked above; they are removed here,
        // once older than the collection's grace period.
        let (unrecorded, unrecorded_bytes) = self
            .inner
            .registry
            .sweep_unrecorded_blobs(self.inner.settings.gc.grace, false)
            .await?;
        Ok(Finished {
            summary: serde_json::json!({
                "blobs": checked,
                "bytes": bytes,
                "unrecorded_removed": unrecorded,
                "unrecorded_bytes": unrecorded_bytes,
                "missing": problems.iter().filter(|p| p.health == BlobHealth::Missing).count(),
                "corrupt": problems.iter().filter(|p| matches!(p.health, BlobHealth::Corrupt { .. })).count(),
            }),
            items: serde_json::to_value(&problems).unwrap_or_default(),
        })
    }

    /// Takes the job's lease, records the run, and runs `job` in a task.
    async fn start<F, Fut>(
        &self,
        kind: RunKind,
        project: Option<&str>,
        requested_by: &str,
        trigger: &str,
        dry_run: bool,
        job: F,
    ) -> Result<Run>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Finished>> + Send + 'static,
    {
        let inner = &self.inner;
        let lease = match project {
            Some(p) => format!("{}:{p}", kind.as_str()),
            None => kind.as_str().to_owned(),
        };
        let now = now_ms();
        if !inner
            .meta
            .acquire_lease(&lease, &inner.holder, now, now + LEASE.as_millis() as i64)
            .await?
        {
            return Err(JobError::Busy(format!(
                "a {} run{} is in progress; wait for it to finish",
                kind.as_str(),
                project
                    .map(|p| format!(" for project {p:?}"))
                    .unwrap_or_default()
            )));
        }
        // We hold the lease: a run still marked running lost its node.
        inner.meta.abandon_runs(kind, project).await?;
        let new = NewRun {
            kind,
            project: project.map(str::to_owned),
            trigger: trigger.to_owned(),
            dry_run,
            requested_by: requested_by.to_owned(),
            started_at_ms: now,
        };
        let id = inner.meta.start_run(&new).await?;
        let run = new.started(id);
        let this = self.clone();
        let requested_by = requested_by.to_owned();
        let project = project.map(str::to_owned);
        inner.tasks.spawn(async move {
            let renew = this.renew_lease(lease.clone());
            // Without the background runtime, runs work beside requests.
            let mut work = match &this.inner.background {
                Some(background) => background.spawn(job()),
                None => tokio::spawn(job()),
            };
            let outcome = tokio::select! {
                outcome = &mut work => outcome.unwrap_or_else(|e| {
                    Err(JobError::Invalid(format!("the run stopped: {e}")))
                }),
                () = renew => {
                    work.abort();
                    Err(JobError::Busy("lost the job's lease".into()))
                }
            };
            this.finish(
                id,
                kind,
                project.as_deref(),
                &requested_by,
                dry_run,
                outcome,
            )
            .await;
            if let Err(e) = this
                .inner
                .meta
                .release_lease(&lease, &this.inner.holder)
                .await
            {
                tracing::warn!(lease, error = %e, "could not release a lease");
            }
        });
        Ok(run)
    }

    /// Renews a lease until it cannot; returns only when the lease is lost.
    async fn renew_lease(&self, lease: String) {
        loop {
            tokio::time::sleep(LEASE / 4).await;
            let now = now_ms();
            match self
                .inner
                .meta
                .acquire_lease(
                    &lease,
                    &self.inner.holder,
                    now,
                    now + LEASE.as_millis() as i64,
                )
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                // A passing database outage: keep trying while the lease lasts.
                Err(e) => tracing::warn!(lease, error = %e, "could not renew a lease"),
            }
        }
    }

    async fn finish(
        &self,
        id: i64,
        kind: RunKind,
        project: Option<&str>,
        requested_by: &str,
        dry_run: bool,
        outcome: Result<Finished>,
    ) {
        let (succeeded, summary, items, error) = match outcome {
            Ok(f) => (true, f.summary, f.items, None),
            Err(e) => (
                false,
                serde_json::json!({}),
                serde_json::json!([]),
                Some(e.to_string()),
            ),
        };
        metrics::counter!(
            "wharf_lifecycle_runs_total",
            "kind" => kind.as_str(),
            "status" => if succeeded { "succeeded" } else { "failed" }
        )
        .increment(1);
        match &error {
            None => {
                tracing::info!(run = id, kind = kind.as_str(), project, dry_run, %summary, "lifecycle run finished")
            }
            Some(e) => {
                tracing::error!(run = id, kind = kind.as_str(), project, error = %e, "lifecycle run failed")
            }
        }
        self.inner.identity.audit().record(AuditRecord {
            actor: requested_by.to_owned(),
            address: String::new(),
            operation: if dry_run { "dry-run" } else { "run" }.to_owned(),
            resource_type: kind.as_str().to_owned(),
            resource: format!("run {id}"),
            project: project.map(str::to_owned),
            success: succeeded,
            detail: error.clone().unwrap_or_else(|| summary.to_string()),
        });
        let outcome = RunOutcome {
            succeeded,
            finished_at_ms: now_ms(),
            summary: summary.to_string(),
            items: items.to_string(),
            error,
        };
        if let Err(e) = self.inner.meta.finish_run(id, &outcome).await {
            tracing::error!(run = id, error = %e, "could not record the end of a lifecycle run");
        }
    }

    pub async fn run(&self, id: i64) -> Result<Run> {
        self.inner
            .meta
            .run(id)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("run {id} does not exist")))
    }

    pub async fn runs(
        &self,
        kind: RunKind,
        project: Option<&str>,
        page: metadata::identity::Page,
    ) -> Result<metadata::identity::Listed<Run>> {
        Ok(self.inner.meta.runs(kind, project, page).await?)
    }

    /// Starts the scheduler: every minute, starts the runs whose cron
    /// expression names that minute, and forgets old run records.
    pub fn spawn_scheduler(&self) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let mut last = now_ms();
            loop {
                let next_minute = (last / 60_000 + 1) * 60_000;
                let wait = Duration::from_millis((next_minute - now_ms()).max(0) as u64 + 200);
                tokio::select! {
                    () = this.inner.cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                let now = now_ms();
                this.tick(last, now).await;
                last = now;
            }
        });
    }

    /// Starts what is due in `(after, until]`.
    async fn tick(&self, after: i64, until: i64) {
        let due = |s: &Schedule| s.next_after(after).is_some_and(|t| t <= until);
        let minute = until / 60_000;
        if let Some(s) = &self.inner.settings.gc_schedule
            && due(s)
            && self.claim_minute("gc", minute).await
        {
            self.log_start(
                self.start_gc("system:schedule", "schedule", GcRequest::default())
                    .await,
            );
        }
        if let Some(s) = &self.inner.settings.integrity_schedule
            && due(s)
            && self.claim_minute("integrity", minute).await
        {
            self.log_start(self.start_integrity("system:schedule", "schedule").await);
        }
        let projects = match self.inner.meta.retention_projects().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read retention schedules");
                return;
            }
        };
        let mut parsed: HashMap<String, Schedule> = HashMap::new();
        for settings in projects {
            let Some(expression) = &settings.retention_schedule else {
                continue;
            };
            let Ok(schedule) = Schedule::parse(expression) else {
                continue;
            };
            parsed.insert(settings.project, schedule);
        }
        for (project, schedule) in parsed {
            if due(&schedule)
                && self
                    .claim_minute(&format!("retention:{project}"), minute)
                    .await
            {
                self.log_start(
                    self.start_retention(&project, "system:schedule", "schedule", false)
                        .await,
                );
            }
        }
        let history = self.inner.settings.run_history.as_millis() as i64;
        if let Err(e) = self.inner.meta.prune_runs(until - history).await {
            tracing::warn!(error = %e, "could not forget old lifecycle runs");
        }
    }

    /// Of the nodes whose scheduler wakes in one minute, one starts the
    /// job: the lease lasts until the minute ends and is never released.
    async fn claim_minute(&self, job: &str, minute: i64) -> bool {
        let now = now_ms();
        let name = format!("schedule:{job}");
        let taken = self
            .inner
            .meta
            .acquire_lease(&name, &self.inner.holder, now, (minute + 1) * 60_000)
            .await;
        // Held by this node from an earlier minute: it renews, which is fine,
        // as this node starts the job once per minute anyway.
        taken.unwrap_or(false)
    }

    fn log_start(&self, started: Result<Run>) {
        match started {
            Ok(run) => tracing::info!(
                run = run.id,
                kind = run.kind.as_str(),
                "scheduled lifecycle run started"
            ),
            Err(JobError::Busy(why)) => tracing::info!(why, "scheduled lifecycle run skipped"),
            Err(e) => tracing::warn!(error = %e, "scheduled lifecycle run did not start"),
        }
    }

    /// Stops the scheduler and waits for runs in progress to end.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
