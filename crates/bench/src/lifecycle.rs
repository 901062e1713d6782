//! The lifecycle group: garbage collection and retention at scale, wharf
//! alone (no peer collects the same way), on the embedded backend.
//!
//! A fresh data directory is seeded (`seed.rs`) before wharf starts on it.
//! Then, through the management API: a dry-run collection must report
//! exactly the seeded garbage; the mixed load runs alone, while a real
//! collection (default grace period) runs, and alone again; a second dry
//! run must find nothing; seeded images pull before and after; and a
//! retention policy is evaluated (dry) over the retention project's tags.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::client::{empty, full};
use crate::registry::Registry;
use crate::scenarios::{self, Measure};
use crate::seed::{self, Garbage, RETENTION_PROJECT, Seeded, Shape};
use crate::servers::{self, Backend};
use crate::{Run, registry};

/// What the collection must finish within, and the share of the load's
/// throughput it may take, and the retention evaluation's bound (issue 5).
const GC_TARGET_SECONDS: f64 = 60.0;
const RETENTION_TARGET_SECONDS: f64 = 5.0;

/// No scheduled collection or integrity check may start during the group.
const LIFECYCLE_ENV: &[(&str, &str)] = &[
    ("WHARF_LIFECYCLE__GC_SCHEDULE", ""),
    ("WHARF_LIFECYCLE__INTEGRITY_SCHEDULE", ""),
    // The collection's steps and their durations, in the kept log.
    ("WHARF_LOG__LEVEL", "warn,wharf_registry::gc=info"),
];

/// Seeds `dir` and says what it planted.
async fn seeded(dir: &Path, quick: bool) -> anyhow::Result<Seeded> {
    let shape = if quick { Shape::quick() } else { Shape::full() };
    anyhow::ensure!(
        !dir.join("wharf.db").exists(),
        "{} holds a registry already",
        dir.display()
    );
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let seeded = seed::seed(dir, &shape).await?;
    eprintln!(
        "  seeded {} blobs, {} manifests, {} tags in {} repositories in {:.0} s; garbage: {:?}",
        seeded.blobs,
        seeded.manifests,
        seeded.tags,
        seeded.repositories,
        started.elapsed().as_secs_f64(),
        seeded.garbage,
    );
    Ok(seeded)
}

/// `--seed-only`: a seeded directory to run wharf on by hand.
pub async fn seed_only(dir: &Path, quick: bool) -> anyhow::Result<()> {
    seeded(dir, quick).await?;
    Ok(())
}

pub async fn run_group(run: &mut Run, work: &Path) -> anyhow::Result<()> {
    let dir = work.join("lifecycle");
    let seeded = seeded(&dir, run.args.quick).await?;
    let wharf = servers::wharf(
        &run.args.wharf,
        &dir,
        &Backend::Local,
        &run.client,
        LIFECYCLE_ENV,
    )
    .await?;
    let reg = registry(run, &wharf);
    let size = format!("{} blobs, {} manifests", seeded.blobs, seeded.manifests);

    // The seed as wharf sees it.
    let (dry, took) = collect(&reg, true).await?;
    let found = garbage(&dry)?;
    ensure!(
        found == seeded.garbage,
        "the dry run found {found:?}, the seed planted {:?}",
        seeded.garbage
    );
    check_usage(&dir).await?;
    pull_samples(&reg, &seeded).await?;
    let (stale_repo, stale_blob) = &seeded.stale_blob;
    ensure!(
        blob_readable(&reg, stale_repo, stale_blob).await?,
        "a seeded stale link does not read"
    );
    run.record(
        format!("GC dry run over {size}: finds exactly the seeded garbage"),
        "s",
        false,
        "",
        vec![("wharf", seconds(took))],
    );

    // The mixed load alone, during a real collection, and alone again.
    let load = Duration::from_secs(run.scale(20, 3));
    let warm_up = tokio::time::sleep(Duration::from_secs(3));
    scenarios::mixed_during(&reg, 64, 1, false, warm_up).await?;
    let (before, ()) =
        scenarios::mixed_during(&reg, 64, 2, false, tokio::time::sleep(load)).await?;
    let (during, collected) =
        scenarios::mixed_during(&reg, 64, 3, false, collect(&reg, false)).await?;
    let (report, took) = collected?;
    eprintln!(
        "  the load during the collection, operations per second: {:?}",
        during.per_second
    );
    let (after, ()) = scenarios::mixed_during(&reg, 64, 4, false, tokio::time::sleep(load)).await?;
    let freed = garbage(&report)?;
    ensure!(
        freed == seeded.garbage,
        "the collection removed {freed:?}, the seed planted {:?}",
        seeded.garbage
    );
    run.record(
        format!(
            "GC over {size} under the mixed load: removed {} blobs ({} linked nowhere), {} stale links, {} manifests (target {GC_TARGET_SECONDS:.0} s)",
            freed.blobs, seeded.unlinked_blobs, freed.stale_links, freed.manifests
        ),
        "s",
        false,
        "target",
        vec![
            ("wharf", seconds(took)),
            ("target", value(GC_TARGET_SECONDS)),
        ],
    );
    let alone = (before.rate.value + after.rate.value) / 2.0;
    let mean = |a: f64, b: f64| (a + b) / 2.0;
    run.record(
        format!(
            "mixed load (90% pulls, 10% pushes, concurrency 64) during that GC vs alone ({alone:.0} ops/s, mean of before {:.0} and after {:.0}; target 0.90x); mean push {:.0} ms (alone {:.0}), pull {:.1} ms (alone {:.1})",
            before.rate.value,
            after.rate.value,
            during.push_ms,
            mean(before.push_ms, after.push_ms),
            during.pull_ms,
            mean(before.pull_ms, after.pull_ms),
        ),
        "ops/s",
        true,
        "wharf-alone",
        vec![("wharf", during.rate), ("wharf-alone", value(alone))],
    );

    // Nothing left, nothing kept lost.
    let (again, took) = collect(&reg, true).await?;
    let left = garbage(&again)?;
    ensure!(
        left == Garbage::default(),
        "a dry run after the collection still finds {left:?}"
    );
    pull_samples(&reg, &seeded).await?;
    ensure!(
        !blob_readable(&reg, stale_repo, stale_blob).await?,
        "a blob only a stale link held still reads after the collection"
    );
    check_files(&dir).await?;
    check_usage(&dir).await?;
    run.record(
        format!("GC dry run after the collection: finds nothing ({size} before)"),
        "s",
        false,
        "",
        vec![("wharf", seconds(took))],
    );

    // Retention, evaluated over the retention project.
    let policy = json!({"policy": seeded.retention.policy});
    api(
        &reg,
        Method::PUT,
        &format!("/api/v1/projects/{RETENTION_PROJECT}/retention"),
        Some(policy),
        StatusCode::OK,
    )
    .await?;
    let mut times = Vec::new();
    let mut summary = Value::Null;
    for _ in 0..3 {
        let started = Instant::now();
        let started_run = api(
            &reg,
            Method::POST,
            &format!("/api/v1/projects/{RETENTION_PROJECT}/retention/runs"),
            Some(json!({"dry_run": true})),
            StatusCode::ACCEPTED,
        )
        .await?;
        let path = format!(
            "/api/v1/projects/{RETENTION_PROJECT}/retention/runs/{}",
            started_run["id"]
        );
        let finished = finished(&reg, &path, Duration::from_millis(10)).await?;
        times.push(started.elapsed().as_secs_f64());
        summary = finished["summary"].clone();
    }
    let r = &seeded.retention;
    ensure!(
        summary["artifacts"] == r.artifacts && summary["would_delete"] == r.would_delete,
        "the retention dry run decided {summary}, expected {} artifacts and {} deletions",
        r.artifacts,
        r.would_delete
    );
    times.sort_by(f64::total_cmp);
    run.record(
        format!(
            "retention dry run over {} tags in {} repositories ({} artifacts, {} would go), median of 3 (target {RETENTION_TARGET_SECONDS:.0} s)",
            r.tags, r.repositories, r.artifacts, r.would_delete
        ),
        "s",
        false,
        "target",
        vec![
            ("wharf", value(times[1])),
            ("target", value(RETENTION_TARGET_SECONDS)),
        ],
    );
    run.record(
        "wharf peak resident memory over the lifecycle group",
        "MiB",
        false,
        "",
        vec![("wharf", value(wharf.peak_rss_kib() as f64 / 1024.0))],
    );
    Ok(())
}

fn value(value: f64) -> Measure {
    Measure {
        value,
        ..Default::default()
    }
}

fn seconds(d: Duration) -> Measure {
    value(d.as_secs_f64())
}

/// A management API call answering `expect`, with its JSON body.
pub(crate) async fn api(
    reg: &Registry,
    method: Method,
    path: &str,
    body: Option<Value>,
    expect: StatusCode,
) -> anyhow::Result<Value> {
    let body = match body {
        Some(json) => full(serde_json::to_vec(&json)?.into()),
        None => empty(),
    };
    let (_, bytes) = reg
        .client
        .expect(
            method,
            &format!("{}{path}", reg.base),
            &[("content-type", "application/json")],
            body,
            expect,
        )
        .await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Polls a run every `every` until it ends; fails unless it succeeded.
async fn finished(reg: &Registry, path: &str, every: Duration) -> anyhow::Result<Value> {
    loop {
        let run = api(reg, Method::GET, path, None, StatusCode::OK).await?;
        match run["status"].as_str() {
            Some("running") => tokio::time::sleep(every).await,
            Some("succeeded") => return Ok(run),
            _ => bail!("run {path} ended as {run}"),
        }
    }
}

/// Runs a collection (untagged manifests kept, the configured grace
/// period); returns its summary and its wall time.
async fn collect(reg: &Registry, dry_run: bool) -> anyhow::Result<(Value, Duration)> {
    let started = Instant::now();
    let run = api(
        reg,
        Method::POST,
        "/api/v1/system/gc",
        Some(json!({"dry_run": dry_run, "delete_untagged": false})),
        StatusCode::ACCEPTED,
    )
    .await?;
    let path = format!("/api/v1/system/gc/runs/{}", run["id"]);
    let run = finished(reg, &path, Duration::from_millis(100)).await?;
    let took = started.elapsed();
    eprintln!(
        "  GC{} in {:.1} s: {}",
        if dry_run { " dry run" } else { "" },
        took.as_secs_f64(),
        run["summary"]
    );
    Ok((run["summary"].clone(), took))
}

fn garbage(summary: &Value) -> anyhow::Result<Garbage> {
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("the run's summary has no {key}: {summary}"))
    };
    ensure!(
        count("untagged_manifests")? == 0 && count("uploads")? == 0,
        "the collection removed more kinds than planted: {summary}"
    );
    ensure!(
        summary["errors"].as_array().is_some_and(Vec::is_empty),
        "the collection met problems: {summary}"
    );
    Ok(Garbage {
        stale_links: count("stale_links")?,
        manifests: count("manifests")?,
        manifest_bytes: count("manifest_bytes")?,
        blobs: count("blobs")?,
        blob_bytes: count("blob_bytes")?,
    })
}

/// Pulls every sample as a client does, checking every digest.
async fn pull_samples(reg: &Registry, seeded: &Seeded) -> anyhow::Result<()> {
    for sample in &seeded.samples {
        let scope = format!("repository:{}:pull", sample.repository);
        let reader = match reg.token(&scope).await? {
            Some(token) => reg.with_token(&token)?,
            None => reg.clone(),
        };
        reader
            .get_manifest(&sample.repository, &sample.reference, &sample.digest)
            .await?;
        for blob in &sample.blobs {
            let url = format!("{}/v2/{}/blobs/{blob}", reg.base, sample.repository);
            reader.client.pull_verified(&url, blob).await?;
        }
    }
    Ok(())
}

async fn blob_readable(reg: &Registry, repo: &str, digest: &oci::Digest) -> anyhow::Result<bool> {
    let url = format!("{}/v2/{repo}/blobs/{digest}", reg.base);
    let response = reg.client.request(Method::HEAD, &url, &[], empty()).await?;
    Ok(response.status() == StatusCode::OK)
}

async fn read_only(dir: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("wharf.db"))
        .read_only(true);
    Ok(sqlx::SqliteConnection::connect_with(&options).await?)
}

/// Every blob row has its file and every file its row.
async fn check_files(dir: &Path) -> anyhow::Result<()> {
    let root = dir.join("blobs/blobs/sha256");
    let files = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
        let mut files = 0;
        for fan in std::fs::read_dir(root)? {
            files += std::fs::read_dir(fan?.path())?.count();
        }
        Ok(files)
    })
    .await??;
    let mut conn = read_only(dir).await?;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blobs")
        .fetch_one(&mut conn)
        .await?;
    ensure!(
        files as i64 == rows,
        "{files} blob files on disk, {rows} blob rows"
    );
    Ok(())
}

/// Each project's usage, as pushes, deletes and collections kept it, equals
/// a count from scratch (the one migration 0005 starts from).
async fn check_usage(dir: &Path) -> anyhow::Result<()> {
    let mut conn = read_only(dir).await?;
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.name,
           COALESCE((SELECT SUM(bytes) FROM project_usage u WHERE u.project_id = p.id), 0),
           COALESCE((SELECT SUM(artifacts) FROM project_usage u WHERE u.project_id = p.id), 0),
           COALESCE((SELECT SUM(b.size) FROM blobs b WHERE b.digest IN
               (SELECT rb.digest FROM repository_blobs rb
                JOIN repositories r ON r.id = rb.repository_id WHERE r.project_id = p.id)), 0)
         + COALESCE((SELECT SUM(c.size) FROM manifest_contents c WHERE c.digest IN
               (SELECT m.digest FROM manifests m
                JOIN repositories r ON r.id = m.repository_id WHERE r.project_id = p.id)), 0),
           (SELECT COUNT(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id
            WHERE r.project_id = p.id)
         FROM projects p ORDER BY p.name",
    )
    .fetch_all(&mut conn)
    .await?;
    for (project, bytes, artifacts, counted_bytes, counted_artifacts) in rows {
        ensure!(
            (bytes, artifacts) == (counted_bytes, counted_artifacts),
            "project {project} records {bytes} bytes and {artifacts} artifacts; counted, {counted_bytes} and {counted_artifacts}"
        );
    }
    Ok(())
}
