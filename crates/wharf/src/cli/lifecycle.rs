//! `wharf gc`, `integrity`, `retention`, `immutability` and `quota`: the
//! lifecycle part of the management API from the command line.
//!
//! Runs (collections, integrity checks, retention) start on the server and
//! are followed until they finish, one request a second, unless `--detach`
//! is given; a run that fails makes the command fail. Retention policies and
//! immutability rules are JSON documents, the same the API takes (see
//! docs/lifecycle.md), read from a file or from stdin (`-`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{ApiError, Client, Page, Reply};
use super::{PagingArgs, output, usage};

#[derive(Debug, Subcommand)]
pub enum GcCommand {
    /// Collect garbage now (system administrators): unreferenced blobs and
    /// manifests older than the grace period, stale upload sessions.
    Run {
        /// Report what would be removed, and how many bytes, without removing it.
        #[arg(long)]
        dry_run: bool,
        /// Also delete untagged manifests that nothing kept refers to.
        #[arg(long, conflicts_with = "keep_untagged")]
        delete_untagged: bool,
        /// Keep untagged manifests whatever the configuration says.
        #[arg(long)]
        keep_untagged: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// Past collections, newest first.
    Runs {
        #[command(flatten)]
        paging: RunPaging,
    },
    /// One collection, with the untagged manifests it deleted.
    Show { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum IntegrityCommand {
    /// Read every stored blob and check it against its digest (system
    /// administrators); reports missing and corrupt blobs.
    Run {
        #[command(flatten)]
        follow: Follow,
    },
    /// Past checks, newest first.
    Runs {
        #[command(flatten)]
        paging: RunPaging,
    },
    /// One check, with the problems it found.
    Show { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// A project's retention policy and schedule.
    Get { project: String },
    /// Set a project's retention policy (project administrators): FILE holds
    /// the policy as JSON, `{"rules": [...]}`; `-` reads it from stdin.
    Set {
        project: String,
        file: PathBuf,
        /// When it runs: a cron expression in UTC (`0 3 * * *`, `@daily`);
        /// without it, only on demand.
        #[arg(long, value_name = "CRON")]
        schedule: Option<String>,
    },
    /// Remove a project's retention policy.
    Delete { project: String },
    /// Apply the policy now; with --dry-run, list what would be deleted and
    /// which rule decided.
    Run {
        project: String,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// Past retention runs of a project, newest first.
    Runs {
        project: String,
        #[command(flatten)]
        paging: RunPaging,
    },
    /// One retention run, with each deletion and its reason.
    Show { project: String, id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ImmutabilityCommand {
    /// A project's immutability rules.
    Get { project: String },
    /// Replace a project's rules (project administrators): FILE holds them
    /// as a JSON array; `-` reads it from stdin.
    Set { project: String, file: PathBuf },
    /// Add one rule to a project's rules.
    Add {
        project: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Remove every rule: all tags of the project become mutable.
    Clear { project: String },
}

/// One immutability rule as options.
#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    /// Repositories (names within the project) it covers: a glob (`**`,
    /// `app/*`) or `re:` and a regular expression; repeat for several.
    #[arg(long = "repository", value_name = "PATTERN", default_value = "**")]
    pub repositories: Vec<String>,
    /// Repositories it does not cover.
    #[arg(long = "exclude-repository", value_name = "PATTERN")]
    pub exclude_repositories: Vec<String>,
    /// Tags it makes immutable: glob or `re:` pattern; repeat for several.
    #[arg(long = "tag", value_name = "PATTERN", required = true)]
    pub tags: Vec<String>,
    /// Tags it leaves mutable.
    #[arg(long = "exclude-tag", value_name = "PATTERN")]
    pub exclude_tags: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// A project's limits and usage.
    Get { project: String },
    /// Set a project's limits (system administrators); an option not given
    /// keeps its value.
    Set {
        project: String,
        /// Storage limit: bytes, with an optional unit (`50GiB`, `500MB`), or
        /// `unlimited`.
        #[arg(long, value_name = "SIZE", value_parser = parse_limit_bytes)]
        storage: Option<Limit>,
        /// Artifact limit: a count, or `unlimited`.
        #[arg(long, value_name = "COUNT", value_parser = parse_limit_count)]
        artifacts: Option<Limit>,
        /// Percentage of a limit at which a `quota.warning` event is recorded.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        warn_percent: Option<u32>,
    },
}

/// Whether to follow a run until it finishes.
#[derive(Debug, Clone, Args)]
pub struct Follow {
    /// Print the run's number and return at once instead of waiting for it.
    #[arg(long)]
    pub detach: bool,
}

/// Which page of a run listing (always newest first).
#[derive(Debug, Clone, Args)]
pub struct RunPaging {
    /// The page, from 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub page: Option<u64>,
    /// Entries per page, 1 to 100 (default 25).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: Option<u32>,
}

impl RunPaging {
    fn paging(&self) -> super::api::Paging {
        PagingArgs {
            page: self.page,
            page_size: self.page_size,
            sort: None,
        }
        .paging()
    }
}

/// A limit to set: a number, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

/// `unlimited`, or a size: digits with an optional unit, decimal (`kB`,
/// `MB`, `GB`, `TB`) or binary (`KiB`, `MiB`, `GiB`, `TiB`), `B` alone or
/// nothing for bytes. Case is ignored.
pub fn parse_limit_bytes(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit(None));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 50GiB, 500MB or 1048576"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000_u64.pow(2),
        "gb" | "g" => 1000_u64.pow(3),
        "tb" | "t" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}; use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .map(|n| Limit(Some(n)))
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `unlimited`, or a count.
pub fn parse_limit_count(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit(None));
    }
    s.parse()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("{s:?} is not a count or `unlimited`"))
}

/// A garbage collection, retention or integrity run.
#[derive(Debug, Deserialize)]
pub struct Run {
    pub id: i64,
    pub kind: String,
    pub project: Option<String>,
    pub trigger: String,
    pub dry_run: bool,
    pub requested_by: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub summary: Map<String, Value>,
    #[serde(default)]
    pub items: Vec<Map<String, Value>>,
    pub error: Option<String>,
}

/// A project's limits and usage.
#[derive(Debug, Deserialize)]
pub struct Quota {
    pub storage_limit: Option<u64>,
    pub artifact_limit: Option<u64>,
    pub warn_percent: u32,
    pub usage: Usage,
}

#[derive(Debug, Deserialize)]
pub struct Usage {
    pub storage_bytes: u64,
    pub artifacts: u64,
}

impl Client {
    async fn start_run(&self, path: &[&str], body: Value) -> Result<Reply<Run>, ApiError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    async fn runs(
        &self,
        path: &[&str],
        paging: &super::api::Paging,
    ) -> Result<Reply<Page<Run>>, ApiError> {
        self.call(Method::GET, path, &paging.query(), None).await
    }

    async fn run(&self, path: &[&str], id: i64) -> Result<Reply<Run>, ApiError> {
        let id = id.to_string();
        let mut path = path.to_vec();
        path.push(&id);
        self.call(Method::GET, &path, &[], None).await
    }
}

/// Where a kind of run lives in the API: the path that starts it, and the
/// path of its runs.
struct RunPaths<'a> {
    start: Vec<&'a str>,
    runs: Vec<&'a str>,
}

impl<'a> RunPaths<'a> {
    fn system(kind: &'a str) -> Self {
        RunPaths {
            start: vec!["system", kind],
            runs: vec!["system", kind, "runs"],
        }
    }

    fn retention(project: &'a str) -> Self {
        let runs = vec!["projects", project, "retention", "runs"];
        RunPaths {
            start: runs.clone(),
            runs,
        }
    }
}

pub async fn gc(client: &Client, json: bool, command: GcCommand) -> anyhow::Result<()> {
    let paths = RunPaths::system("gc");
    match command {
        GcCommand::Run {
            dry_run,
            delete_untagged,
            keep_untagged,
            follow,
        } => {
            let mut body = json!({ "dry_run": dry_run });
            if delete_untagged || keep_untagged {
                body["delete_untagged"] = Value::Bool(delete_untagged);
            }
            start_and_follow(client, json, &paths, body, &follow).await
        }
        GcCommand::Runs { paging } => list_runs(client, json, &paths, &paging).await,
        GcCommand::Show { id } => show_run(client, json, &paths, id).await,
    }
}

pub async fn integrity(
    client: &Client,
    json: bool,
    command: IntegrityCommand,
) -> anyhow::Result<()> {
    let paths = RunPaths::system("integrity");
    match command {
        IntegrityCommand::Run { follow } => {
            start_and_follow(client, json, &paths, json!({}), &follow).await
        }
        IntegrityCommand::Runs { paging } => list_runs(client, json, &paths, &paging).await,
        IntegrityCommand::Show { id } => show_run(client, json, &paths, id).await,
    }
}

pub async fn retention(
    client: &Client,
    json: bool,
    command: RetentionCommand,
) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Get { project } => {
            let reply: Reply<Value> = client
                .call(Method::GET, &["projects", &project, "retention"], &[], None)
                .await?;
            output::reply(&reply, json, |spec| {
                let schedule = spec["schedule"].as_str().unwrap_or("manual runs only");
                output::fields(&[("schedule", schedule.to_owned())]);
                output::line("policy:");
                output::json(&spec["policy"].to_string());
            });
        }
        RetentionCommand::Set {
            project,
            file,
            schedule,
        } => {
            let policy = read_document(&file, "retention policy")?;
            if !policy.is_object() {
                return Err(usage(format!(
                    "{}: a retention policy is a JSON object, {{\"rules\": [...]}}",
                    file.display()
                )));
            }
            let reply: Reply<Value> = client
                .call(
                    Method::PUT,
                    &["projects", &project, "retention"],
                    &[],
                    Some(json!({ "policy": policy, "schedule": schedule })),
                )
                .await?;
            output::reply(&reply, json, |spec| {
                let rules = spec["policy"]["rules"].as_array().map_or(0, Vec::len);
                let when = match spec["schedule"].as_str() {
                    Some(s) => format!("on the schedule {s:?}"),
                    None => "on demand only".to_owned(),
                };
                output::line(&format!(
                    "Set the retention policy of {project}: {rules} rule(s), run {when}."
                ));
            });
        }
        RetentionCommand::Delete { project } => {
            client
                .call_empty(Method::DELETE, &["projects", &project, "retention"], None)
                .await?;
            if !json {
                output::line(&format!("Removed the retention policy of {project}."));
            }
        }
        RetentionCommand::Run {
            project,
            dry_run,
            follow,
        } => {
            let paths = RunPaths::retention(&project);
            start_and_follow(client, json, &paths, json!({ "dry_run": dry_run }), &follow).await?;
        }
        RetentionCommand::Runs { project, paging } => {
            list_runs(client, json, &RunPaths::retention(&project), &paging).await?;
        }
        RetentionCommand::Show { project, id } => {
            show_run(client, json, &RunPaths::retention(&project), id).await?;
        }
    }
    Ok(())
}

pub async fn immutability(
    client: &Client,
    json: bool,
    command: ImmutabilityCommand,
) -> anyhow::Result<()> {
    let path = |project: &str| {
        [
            "projects".to_owned(),
            project.to_owned(),
            "immutability".to_owned(),
        ]
    };
    let (project, rules) = match command {
        ImmutabilityCommand::Get { project } => {
            let p = path(&project);
            let reply: Reply<Vec<Value>> = client
                .call(Method::GET, &p.each_ref().map(String::as_str), &[], None)
                .await?;
            output::reply(&reply, json, |rules| immutability_rules(rules));
            return Ok(());
        }
        ImmutabilityCommand::Set { project, file } => {
            let rules = read_document(&file, "immutability rules")?;
            let Value::Array(rules) = rules else {
                return Err(usage(format!(
                    "{}: immutability rules are a JSON array of rules",
                    file.display()
                )));
            };
            (project, rules)
        }
        ImmutabilityCommand::Add { project, rule } => {
            let p = path(&project);
            let mut rules: Vec<Value> = client
                .call(Method::GET, &p.each_ref().map(String::as_str), &[], None)
                .await?
                .data;
            rules.push(json!({
                "repositories": {"include": rule.repositories, "exclude": rule.exclude_repositories},
                "tags": {"include": rule.tags, "exclude": rule.exclude_tags},
            }));
            (project, rules)
        }
        ImmutabilityCommand::Clear { project } => (project, Vec::new()),
    };
    let p = path(&project);
    let reply: Reply<Vec<Value>> = client
        .call(
            Method::PUT,
            &p.each_ref().map(String::as_str),
            &[],
            Some(Value::Array(rules)),
        )
        .await?;
    output::reply(&reply, json, |rules| {
        output::line(&format!(
            "{project} has {} immutability rule(s).",
            rules.len()
        ));
        immutability_rules(rules);
    });
    Ok(())
}

pub async fn quota(client: &Client, json: bool, command: QuotaCommand) -> anyhow::Result<()> {
    let reply: Reply<Quota> = match command {
        QuotaCommand::Get { project } => {
            client
                .call(Method::GET, &["projects", &project, "quota"], &[], None)
                .await?
        }
        QuotaCommand::Set {
            project,
            storage,
            artifacts,
            warn_percent,
        } => {
            if storage.is_none() && artifacts.is_none() && warn_percent.is_none() {
                return Err(usage(
                    "nothing to set: give --storage, --artifacts or --warn-percent",
                ));
            }
            let mut body = Map::new();
            if let Some(Limit(l)) = storage {
                body.insert("storage_limit".into(), json!(l));
            }
            if let Some(Limit(l)) = artifacts {
                body.insert("artifact_limit".into(), json!(l));
            }
            if let Some(p) = warn_percent {
                body.insert("warn_percent".into(), json!(p));
            }
            client
                .call(
                    Method::PUT,
                    &["projects", &project, "quota"],
                    &[],
                    Some(Value::Object(body)),
                )
                .await?
        }
    };
    output::reply(&reply, json, |q| {
        let of = |used: String, limit: Option<u64>, show: fn(u64) -> String, raw: u64| match limit {
            Some(l) if l > 0 => format!("{used} of {} ({}%)", show(l), raw * 100 / l),
            Some(l) => format!("{used} of {}", show(l)),
            None => format!("{used} (unlimited)"),
        };
        output::fields(&[
            (
                "storage",
                of(
                    size(q.usage.storage_bytes),
                    q.storage_limit,
                    size,
                    q.usage.storage_bytes,
                ),
            ),
            (
                "artifacts",
                of(
                    q.usage.artifacts.to_string(),
                    q.artifact_limit,
                    |n| n.to_string(),
                    q.usage.artifacts,
                ),
            ),
            ("warn at", format!("{}%", q.warn_percent)),
        ]);
    });
    Ok(())
}

/// A JSON document from a file, or from stdin for `-`.
fn read_document(file: &PathBuf, what: &str) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
        text
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the {what} from {}", file.display()))?
    };
    serde_json::from_str(&text)
        .map_err(|e| usage(format!("{}: the {what} is not JSON: {e}", file.display())))
}

async fn start_and_follow(
    client: &Client,
    json: bool,
    paths: &RunPaths<'_>,
    body: Value,
    follow: &Follow,
) -> anyhow::Result<()> {
    let started = client.start_run(&paths.start, body).await?;
    if follow.detach {
        output::reply(&started, json, |r| {
            output::line(&format!(
                "Started {} run {}; follow it with `wharf {} show {}{}`.",
                r.kind,
                r.id,
                r.kind,
                r.project
                    .as_ref()
                    .map(|p| format!("{p} "))
                    .unwrap_or_default(),
                r.id
            ));
        });
        return Ok(());
    }
    let mut reply = started;
    while reply.data.status == "running" {
        tokio::time::sleep(Duration::from_secs(1)).await;
        reply = client.run(&paths.runs, reply.data.id).await?;
    }
    output::reply(&reply, json, run);
    if reply.data.status != "succeeded" {
        bail!(
            "{} run {} {}: {}",
            reply.data.kind,
            reply.data.id,
            reply.data.status,
            reply.data.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

async fn list_runs(
    client: &Client,
    json: bool,
    paths: &RunPaths<'_>,
    paging: &RunPaging,
) -> anyhow::Result<()> {
    let reply = client.runs(&paths.runs, &paging.paging()).await?;
    output::reply(&reply, json, |page| {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.status.clone(),
                    if r.dry_run { "dry run" } else { "real" }.to_owned(),
                    r.trigger.clone(),
                    r.requested_by.clone(),
                    r.started_at.clone(),
                    r.finished_at.clone().unwrap_or_else(|| "-".to_owned()),
                    summary_line(&r.summary),
                ]
            })
            .collect();
        output::table(
            &[
                "ID", "STATUS", "MODE", "TRIGGER", "BY", "STARTED", "FINISHED", "SUMMARY",
            ],
            &rows,
        );
        output::paged(page);
    });
    Ok(())
}

async fn show_run(
    client: &Client,
    json: bool,
    paths: &RunPaths<'_>,
    id: i64,
) -> anyhow::Result<()> {
    let reply = client.run(&paths.runs, id).await?;
    output::reply(&reply, json, run);
    Ok(())
}

/// A run: its record, its counts, and what it deleted or found.
fn run(r: &Run) {
    let mut fields = vec![("run", r.id.to_string()), ("kind", r.kind.clone())];
    if let Some(p) = &r.project {
        fields.push(("project", p.clone()));
    }
    fields.extend([
        ("status", r.status.clone()),
        (
            "mode",
            if r.dry_run { "dry run" } else { "real" }.to_owned(),
        ),
        ("trigger", r.trigger.clone()),
        ("requested by", r.requested_by.clone()),
        ("started", r.started_at.clone()),
        (
            "finished",
            r.finished_at.clone().unwrap_or_else(|| "-".to_owned()),
        ),
    ]);
    if let Some(e) = &r.error {
        fields.push(("error", e.clone()));
    }
    let counts: Vec<(String, String)> = r
        .summary
        .iter()
        .filter(|(_, v)| !v.is_array())
        .map(|(k, v)| (k.replace('_', " "), summary_value(k, v)))
        .collect();
    fields.extend(counts.iter().map(|(k, v)| (k.as_str(), v.clone())));
    output::fields(&fields);
    for error in r
        .summary
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        output::line(&format!("error: {}", error.as_str().unwrap_or_default()));
    }
    if !r.items.is_empty() {
        output::line("");
        items(&r.items);
    }
}

/// Items as a table, one column per field: the fields people look for first
/// in a fixed order, then any others met.
fn items(items: &[Map<String, Value>]) {
    const FIRST: [&str; 6] = ["repository", "digest", "tags", "size", "state", "result"];
    let mut columns: Vec<&str> = FIRST
        .into_iter()
        .filter(|c| items.iter().any(|i| i.contains_key(*c)))
        .collect();
    for item in items {
        for key in item.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| match item.get(*c) {
                    None | Some(Value::Null) => "-".to_owned(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(v) => v.to_string(),
                })
                .collect()
        })
        .collect();
    let header: Vec<String> = columns
        .iter()
        .map(|c| c.replace('_', " ").to_uppercase())
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    output::table(&header, &rows);
}

/// A summary's counts on one line: `blobs=3 blob_bytes=1.0 MiB`.
fn summary_line(summary: &Map<String, Value>) -> String {
    let parts: Vec<String> = summary
        .iter()
        .filter(|(_, v)| v.is_number())
        .map(|(k, v)| format!("{k}={}", summary_value(k, v)))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// A count as it reads best: sizes of fields named `*bytes*` with a unit.
fn summary_value(key: &str, value: &Value) -> String {
    match value.as_u64() {
        Some(n) if key.contains("bytes") => size(n),
        _ => value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
    }
}

/// Bytes with a binary unit: `0 B`, `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Immutability rules, one line each.
fn immutability_rules(rules: &[Value]) {
    let patterns = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    };
    let rows: Vec<Vec<String>> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                patterns(&r["repositories"]["include"]),
                patterns(&r["repositories"]["exclude"]),
                patterns(&r["tags"]["include"]),
                patterns(&r["tags"]["exclude"]),
            ]
        })
        .collect();
    output::table(
        &["RULE", "REPOSITORIES", "EXCEPT", "TAGS", "EXCEPT TAGS"],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let bytes = |s| parse_limit_bytes(s).unwrap().0;
        assert_eq!(bytes("unlimited"), None);
        assert_eq!(bytes("1048576"), Some(1 << 20));
        assert_eq!(bytes("50GiB"), Some(50 << 30));
        assert_eq!(bytes("500MB"), Some(500_000_000));
        assert_eq!(bytes("2 tib"), Some(2 << 40));
        assert_eq!(bytes("7B"), Some(7));
        for bad in [
            "",
            "GiB",
            "1.5GiB",
            "-1",
            "10 parsecs",
            "99999999999999999999",
        ] {
            assert!(parse_limit_bytes(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_limit_bytes("20000000TiB").unwrap_err(),
            "\"20000000TiB\" is too large"
        );
        assert_eq!(parse_limit_count("UNLIMITED").unwrap().0, None);
        assert_eq!(parse_limit_count("12").unwrap().0, Some(12));
        assert!(parse_limit_count("12k").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(50 << 30), "50.0 GiB");
    }

    #[test]
    fn summaries() {
        let summary = json!({"blobs": 3, "blob_bytes": 2048, "errors": []});
        let Value::Object(summary) = summary else {
            unreachable!()
        };
        let line = summary_line(&summary);
        assert!(line.contains("blob_bytes=2.0 KiB"), "{line}");
        assert!(line.contains("blobs=3"), "{line}");
        assert!(!line.contains("errors"), "{line}");
    }
}
