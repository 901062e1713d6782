//! `wharf-bench`: runs wharf beside CNCF Distribution (and nginx for blob
//! reads) on the same data with the same client in one run, and reports each
//! figure with wharf's ratio to the peer.
//!
//! The `lifecycle` group measures wharf alone: garbage collection and
//! retention over a seeded registry (see `lifecycle.rs`); so does the
//! `webhooks` group: pushes with webhook policies, and delivery latency
//! (see `webhooks.rs`).
//!
//! Usage: `cargo build --release && cargo run --release -p wharf-bench -- [--quick]`.
//! Needs `docker-registry` and `nginx` on PATH (Debian packages), except for
//! `--only lifecycle`. Results go to standard output (Markdown) and
//! `bench-results/results.{md,json}`.

// A command-line program: progress goes to stderr, the report to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod client;
mod data;
mod lifecycle;
mod registry;
mod scenarios;
mod seed;
mod servers;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::client::Client;
use crate::data::{Blob, Rng};
use crate::registry::{Registry, UploadMode};
use crate::scenarios::{Measure, Probe};
use crate::servers::{Backend, Server};

const MIB: u64 = 1024 * 1024;

#[derive(Parser, Debug)]
struct Args {
    /// The wharf binary to measure.
    #[arg(long, default_value = "target/release/wharf")]
    wharf: PathBuf,
    /// Where to write results.md and results.json.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Smaller sizes and shorter runs, to check the harness itself.
    #[arg(long)]
    quick: bool,
    /// Keep the servers' data and logs (printed at the end) instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// Only seed this (new) directory as the lifecycle group does, for
    /// running wharf on it by hand (`WHARF_DATA_DIR`), and exit.
    #[arg(long)]
    seed_only: Option<PathBuf>,
    /// Only run the mixed load against a wharf already running at this base
    /// URL (started with the bench's administrator password, say on a
    /// `--seed-only` directory), printing operations per second as they go.
    #[arg(long, value_name = "URL")]
    load: Option<String>,
    /// How long `--load` runs, in seconds.
    #[arg(long, default_value_t = 60)]
    load_seconds: u64,
    /// Run only these scenario groups (default: all).
    #[arg(long, value_delimiter = ',', value_parser = ["small", "large", "pull", "hot", "listing", "mixed", "lifecycle", "webhooks"])]
    only: Vec<String>,
    /// `local`: each server on its own directory (wharf with SQLite).
    /// `s3`: wharf on PostgreSQL + S3 and Distribution on the same S3 server,
    /// from `TEST_WHARF_POSTGRES_URL` and `TEST_WHARF_S3_*` (see `.ci/garage.sh`).
    #[arg(long, default_value = "local", value_parser = ["local", "s3"])]
    backend: String,
}

impl Args {
    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// One scenario's figures for each server.
#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    unit: &'static str,
    /// Whether larger values are better (throughput) or worse (time, memory).
    higher_is_better: bool,
    /// The server wharf's figure is compared with.
    peer: &'static str,
    results: Vec<(&'static str, Measure)>,
}

impl Row {
    fn get(&self, name: &str) -> Option<&Measure> {
        self.results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m)
    }

    /// wharf relative to the peer, oriented so that above 1 means wharf is better.
    fn ratio(&self) -> Option<f64> {
        let (w, p) = (self.get("wharf")?.value, self.get(self.peer)?.value);
        if w == 0.0 || p == 0.0 {
            return None;
        }
        Some(if self.higher_is_better { w / p } else { p / w })
    }
}

struct Run {
    args: Args,
    client: Client,
    rows: Vec<Row>,
}

impl Run {
    fn record(
        &mut self,
        scenario: impl Into<String>,
        unit: &'static str,
        higher_is_better: bool,
        peer: &'static str,
        results: Vec<(&'static str, Measure)>,
    ) {
        let row = Row {
            scenario: scenario.into(),
            unit,
            higher_is_better,
            peer,
            results,
        };
        eprintln!("  {:<52} {}", row.scenario, summary(&row));
        self.rows.push(row);
    }

    fn scale(&self, full: u64, quick: u64) -> u64 {
        if self.args.quick { quick } else { full }
    }
}

fn summary(row: &Row) -> String {
    let mut parts: Vec<String> = row
        .results
        .iter()
        .map(|(n, m)| format!("{n} {:.1}", m.value))
        .collect();
    if let Some(r) = row.ratio() {
        parts.push(format!("ratio {r:.2}x"));
    }
    parts.join(", ")
}

/// A client that reads `repo` as docker and podman do: with a registry
/// token where the server issues them (wharf), as configured otherwise.
async fn reader(run: &Run, server: &Server, repo: &str) -> anyhow::Result<Registry> {
    let reg = registry(run, server);
    match reg.token(&format!("repository:{repo}:pull")).await? {
        Some(token) => reg.with_token(&token),
        None => Ok(reg),
    }
}

fn registry(run: &Run, server: &Server) -> Registry {
    Registry {
        client: run.client.with_authorization(server.authorization.clone()),
        base: server.base.clone(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.seed_only {
        return lifecycle::seed_only(dir, args.quick).await;
    }
    if let Some(base) = &args.load {
        let reg = Registry {
            client: Client::new().with_authorization(Some(servers::wharf_admin()?)),
            base: base.trim_end_matches('/').to_owned(),
        };
        let seconds = Duration::from_secs(args.load_seconds);
        // A seed of its own per start, so that loads one after the other
        // push new content.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let (mixed, ()) =
            scenarios::mixed_during(&reg, 64, seed, true, tokio::time::sleep(seconds)).await?;
        eprintln!(
            "mixed load: {:.0} ops/s, mean push {:.0} ms, pull {:.1} ms",
            mixed.rate.value, mixed.push_ms, mixed.pull_ms
        );
        return Ok(());
    }
    anyhow::ensure!(
        args.wharf.exists(),
        "{} not found: build it first with cargo build --release",
        args.wharf.display()
    );
    let work = tempfile::Builder::new().prefix("wharf-bench").tempdir()?;
    let mut run = Run {
        args,
        client: Client::new(),
        rows: Vec::new(),
    };
    let backend = match run.args.backend.as_str() {
        "s3" => Backend::Shared(shared_backend().await?),
        _ => Backend::Local,
    };
    // Groups that compare wharf with its peers, then wharf's own.
    let compared = ["small", "large", "pull", "hot", "listing", "mixed"];
    if compared.iter().any(|g| run.args.runs(g)) {
        compare_with_peers(&mut run, &backend, work.path()).await?;
    }
    if run.args.runs("lifecycle") {
        if backend.is_shared() {
            eprintln!("the lifecycle group seeds an embedded registry; skipped with --backend s3");
        } else {
            lifecycle::run_group(&mut run, work.path()).await?;
        }
    }
    if run.args.runs("webhooks") {
        if backend.is_shared() {
            eprintln!("the webhooks group runs on the embedded backend; skipped with --backend s3");
        } else {
            webhooks::run_group(&mut run, work.path()).await?;
        }
    }
    report(&run, &backend)?;
    if let Backend::Shared(shared) = &backend {
        psql(
            &admin_url()?,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                database_name(shared)
            ),
        )
        .await?;
    }
    if run.args.keep {
        eprintln!("kept data and logs in {}", work.keep().display());
    }
    Ok(())
}

/// The groups that measure wharf beside Distribution (and nginx), each
/// server on its own directory under `work`.
async fn compare_with_peers(run: &mut Run, backend: &Backend, work: &Path) -> anyhow::Result<()> {
    let wharf = servers::wharf(
        &run.args.wharf,
        &work.join("wharf"),
        backend,
        &run.client,
        &[],
    )
    .await?;
    let dist = servers::distribution(&work.join("distribution"), backend, &run.client).await?;
    let targets = [&wharf, &dist];
    eprintln!("wharf at {}, distribution at {}", wharf.base, dist.base);

    // 1. Small images.
    if run.args.runs("small") {
        let per_client = run.scale(40, 4);
        let mut results = Vec::new();
        for s in targets {
            results.push((
                s.name,
                scenarios::small_push(&registry(run, s), 8, per_client, 1).await?,
            ));
        }
        run.record(
            "push small images (config + 3 layers of 4-256 KiB), 8 clients",
            "images/s",
            true,
            "distribution",
            results,
        );
    }
    // 2. Large pushes.
    let base = Rng::new(3).bytes(64 * MIB as usize);
    let huge = run.scale(1024, 128) * MIB;
    if run.args.runs("large") {
        let big = run.scale(64, 8) * MIB;
        let count = run.scale(8, 4);
        for (m, (mode, label)) in [
            (UploadMode::Chunked(16 * MIB), "chunked (16 MiB PATCHes)"),
            (UploadMode::Streamed, "streamed (one PATCH, no length)"),
            (UploadMode::Monolithic, "monolithic (POST then PUT)"),
        ]
        .into_iter()
        .enumerate()
        {
            let (results, _) = interleaved(&targets, 3, |s, round| {
                // Fresh content every time, so nothing is deduplicated.
                let seed =
                    100_000 * (m as u64 + 1) + 1000 * round as u64 + u64::from(s.pid()) % 997 * 10;
                let blobs: Vec<Blob> = (0..count)
                    .map(|k| Blob::large(&base.slice(..big as usize), seed + k, big))
                    .collect();
                let reg = registry(run, s);
                async move { scenarios::large_push(&reg, "large/push", blobs, mode, 4).await }
            })
            .await?;
            run.record(
                format!(
                    "push {} MiB blobs {label}, 4 clients, median of 3",
                    big / MIB
                ),
                "MB/s",
                true,
                "distribution",
                results,
            );
        }
        let (results, memory) = interleaved(&targets, 3, |s, round| {
            let blob = Blob::large(
                &base,
                9_000 + 10 * round as u64 + u64::from(s.pid()) % 997 * 100,
                huge,
            );
            let reg = registry(run, s);
            async move {
                scenarios::large_push(&reg, "large/huge", vec![blob], UploadMode::Streamed, 1).await
            }
        })
        .await?;
        run.record(
            format!("push one {} MiB blob (streamed), median of 3", huge / MIB),
            "MB/s",
            true,
            "distribution",
            results,
        );
        record_memory_window(
            run,
            format!("memory while one {} MiB blob is pushed", huge / MIB),
            &memory,
        );
    }
    // 3. Pulls, with nginx serving wharf's own blob files as the ceiling
    // (with the object store, against Distribution on the same store).
    if run.args.runs("pull") {
        let nginx = if backend.is_shared() {
            None
        } else {
            Some(servers::nginx(&work.join("nginx"), &work.join("wharf/blobs"), &run.client).await?)
        };
        let pull_64 = Blob::large(&base, 77, 64 * MIB);
        let pull_huge = Blob::large(&base, 78, huge);
        for s in targets {
            for b in [&pull_64, &pull_huge] {
                registry(run, s)
                    .push_blob("pull/blobs", b, UploadMode::Streamed)
                    .await?;
            }
        }
        let mut readers = vec![&wharf, &dist];
        readers.extend(nginx.as_ref());
        let pull_peer = if nginx.is_some() {
            "nginx"
        } else {
            "distribution"
        };
        for (blob, label) in [
            (&pull_64, "64 MiB"),
            (&pull_huge, if run.args.quick { "128 MiB" } else { "1 GiB" }),
        ] {
            for &s in &readers {
                // Warm the page cache the same way for everyone.
                let reg = reader(run, s, "pull/blobs").await?;
                scenarios::pull(&reg, &reg.blob_url("pull/blobs", blob), blob, 1, 1).await?;
            }
            for concurrency in [1usize, 8, 32] {
                let pulls = if blob.size > 64 * MIB {
                    concurrency.max(2)
                } else {
                    (2 * concurrency).max(16)
                };
                let (results, mut memory) = interleaved(&readers, 3, |s, _| {
                    let reg = reader(run, s, "pull/blobs");
                    async move {
                        let reg = reg.await?;
                        let url = reg.blob_url("pull/blobs", blob);
                        scenarios::pull(&reg, &url, blob, concurrency, pulls).await
                    }
                })
                .await?;
                run.record(
                    format!(
                        "pull {label} blob, concurrency {concurrency}, median of 3 (ratio to {pull_peer})"
                    ),
                    "MB/s",
                    true,
                    pull_peer,
                    results,
                );
                if blob.size > 64 * MIB && concurrency == 1 {
                    memory.retain(|(n, _, _)| *n != "nginx");
                    record_memory_window(
                        run,
                        format!("memory while one {label} blob is pulled"),
                        &memory,
                    );
                }
            }
        }
        drop(nginx);
    }
    // 4. Manifest GET by tag and blob HEAD at concurrency 64, in the public
    // `library` project. wharf is read with a registry token, as docker and
    // podman read it; and beside that anonymously, the unauthenticated
    // figure the token's cost is measured against.
    if run.args.runs("hot") {
        let duration = Duration::from_secs(run.scale(8, 2));
        let (config, layers) = scenarios::small_image(5);
        let mut get_results = Vec::new();
        let mut head_results = Vec::new();
        let mut auth_results = Vec::new();
        for s in targets {
            let reg = registry(run, s);
            let manifest = reg
                .push_image("library/hot", "stable", &config, &layers)
                .await?;
            let digest = oci::Digest::compute(oci::DigestAlgorithm::Sha256, &manifest);
            let reg = match reg.token("repository:library/hot:pull").await? {
                Some(token) => reg.with_token(&token)?,
                None => reg,
            };
            let probe = Probe::ManifestGet {
                repo: "library/hot".into(),
                tag: "stable".into(),
                digest,
            };
            if s.name == "wharf" {
                // Alternating rounds, so that drift of the machine falls on both.
                let anonymous = reg.anonymous();
                let (mut with_token, mut without) = (Vec::new(), Vec::new());
                for _ in 0..2 {
                    without
                        .push(scenarios::latency(&anonymous, probe.clone(), 64, duration).await?);
                    with_token.push(scenarios::latency(&reg, probe.clone(), 64, duration).await?);
                }
                auth_results.push(("wharf", Measure::mean(&with_token)));
                auth_results.push(("wharf-anonymous", Measure::mean(&without)));
            }
            get_results.push((s.name, scenarios::latency(&reg, probe, 64, duration).await?));
            let probe = Probe::BlobHead {
                repo: "library/hot".into(),
                blob: layers[1].clone(),
            };
            head_results.push((s.name, scenarios::latency(&reg, probe, 64, duration).await?));
        }
        run.record(
            "manifest GET by tag, concurrency 64 (wharf with a token)",
            "req/s",
            true,
            "distribution",
            get_results,
        );
        run.record(
            "blob HEAD, concurrency 64 (wharf with a token)",
            "req/s",
            true,
            "distribution",
            head_results,
        );
        if !auth_results.is_empty() {
            let anonymous = auth_results
                .iter()
                .find(|(n, _)| *n == "wharf-anonymous")
                .map_or(0.0, |(_, m)| m.value);
            run.record(
                format!(
                    "wharf manifest GET with a token vs anonymous ({anonymous:.0} req/s), concurrency 64, mean of 2"
                ),
                "req/s",
                true,
                "wharf-anonymous",
                auth_results,
            );
        }
    }
    // 5. Listings.
    if run.args.runs("listing") {
        let tags = run.scale(10_000, 500) as usize;
        let repos = run.scale(5_000, 300) as usize;
        let mut tag_results = Vec::new();
        let mut catalog_results = Vec::new();
        for s in targets {
            let reg = registry(run, s);
            scenarios::setup_tags(&reg, "listing/app", tags).await?;
            scenarios::setup_repositories(&reg, repos).await?;
            tag_results.push((
                s.name,
                scenarios::listing(&reg, "/v2/listing/app/tags/list", "tags", tags, 10).await?,
            ));
            catalog_results.push((
                s.name,
                scenarios::listing(&reg, "/v2/_catalog?n=1000", "repositories", repos, 10).await?,
            ));
        }
        run.record(
            format!("list {tags} tags (no n, Link followed if given; median of 10)"),
            "ms",
            false,
            "distribution",
            tag_results,
        );
        run.record(
            format!("catalog of {repos}+ repositories (pages of 1000, median of 10)"),
            "ms",
            false,
            "distribution",
            catalog_results,
        );
    }
    // 6. Mixed load.
    if run.args.runs("mixed") {
        let mut results = Vec::new();
        for s in targets {
            results.push((
                s.name,
                scenarios::mixed(&registry(run, s), 64, Duration::from_secs(run.scale(10, 2)))
                    .await?,
            ));
        }
        run.record(
            "mixed: 90% pulls (manifest + 64 KiB layer), 10% pushes, concurrency 64",
            "ops/s",
            true,
            "distribution",
            results,
        );
    }
    // 7. Peak memory over the whole run.
    let results = targets
        .iter()
        .map(|s| {
            (
                s.name,
                Measure {
                    value: s.peak_rss_kib() as f64 / 1024.0,
                    ..Default::default()
                },
            )
        })
        .collect();
    run.record(
        "peak resident memory over the whole run",
        "MiB",
        false,
        "distribution",
        results,
    );

    Ok(())
}

/// Measures each server in `rounds` interleaved rounds, the order rotating
/// every round so that none always runs first or last, and keeps each server's
/// median. Also returns each server's resident memory before and at the peak
/// of its first round (KiB).
async fn interleaved<'a, F, Fut>(
    servers: &[&'a Server],
    rounds: usize,
    mut measure: F,
) -> anyhow::Result<(Vec<(&'static str, Measure)>, Vec<(&'static str, u64, u64)>)>
where
    F: FnMut(&'a Server, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Measure>>,
{
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    let mut memory = Vec::new();
    for round in 0..rounds {
        for k in 0..servers.len() {
            let index = (k + round) % servers.len();
            let s = servers[index];
            s.reset_window();
            let before = s.rss_kib();
            let m = measure(s, round).await?;
            samples[index].push(m.value);
            if round == 0 {
                memory.push((s.name, before, s.window_peak_kib()));
            }
        }
    }
    let results = servers
        .iter()
        .zip(samples)
        .map(|(s, mut values)| {
            values.sort_by(f64::total_cmp);
            (
                s.name,
                Measure {
                    value: values[values.len() / 2],
                    ..Default::default()
                },
            )
        })
        .collect();
    Ok((results, memory))
}

fn record_memory_window(run: &mut Run, scenario: String, memory: &[(&'static str, u64, u64)]) {
    let results = memory
        .iter()
        .map(|(n, before, peak)| {
            (
                *n,
                Measure {
                    value: peak.saturating_sub(*before) as f64 / 1024.0,
                    ..Default::default()
                },
            )
        })
        .collect();
    run.record(
        format!("{scenario}: growth of resident memory"),
        "MiB",
        false,
        "distribution",
        results,
    );
}

fn report(run: &Run, backend: &Backend) -> anyhow::Result<()> {
    let mut md = String::new();
    md.push_str(&format!("Machine: {}\n\nDate: {}\n\n", machine(), today()));
    if let Backend::Shared(s) = backend {
        md.push_str(&format!(
            "Backends: wharf on PostgreSQL ({}) + S3 ({}); Distribution on the same S3 server \
             (s3 driver, redirects off); both under prefixes of bucket `{}`.\n\n",
            version_of("psql", &["--version"]),
            version_of("garage", &["--version"]),
            s.bucket
        ));
    }
    md.push_str(&format!(
        "Versions: wharf {} ({}), {}, {}\n\n",
        env!("CARGO_PKG_VERSION"),
        git_commit(),
        version_of("docker-registry", &["--version"]),
        version_of("nginx", &["-v"])
    ));
    md.push_str("| scenario | unit | wharf | distribution | nginx | wharf vs peer |\n|---|---|---|---|---|---|\n");
    for row in &run.rows {
        let cell = |name: &str| {
            row.get(name)
                .map_or_else(String::new, |m| match (m.p50_ms, m.p99_ms) {
                    (Some(p50), Some(p99)) => {
                        format!("{:.0} (p50 {p50:.2} ms, p99 {p99:.2} ms)", m.value)
                    }
                    _ => format!("{:.1}", m.value),
                })
        };
        let ratio = row
            .ratio()
            .map_or_else(String::new, |r| format!("{r:.2}x vs {}", row.peer));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.unit,
            cell("wharf"),
            cell("distribution"),
            cell("nginx"),
            ratio
        ));
    }
    md.push_str("\nRatios are oriented so that above 1.00x means wharf is better (faster, or less time or memory).\n");
    println!("{md}");
    std::fs::create_dir_all(&run.args.out)?;
    let name = if backend.is_shared() {
        "results-s3"
    } else {
        "results"
    };
    std::fs::write(run.args.out.join(format!("{name}.md")), &md)?;
    std::fs::write(
        run.args.out.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&run.rows)?,
    )?;
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024 / 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem} GiB RAM, Linux {}",
        kernel.trim()
    )
}

fn version_of(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_else(|_| format!("{program} (version unknown)"))
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn env(variable: &str) -> anyhow::Result<String> {
    std::env::var(variable).map_err(|_| {
        anyhow::anyhow!(
            "--backend s3 needs {variable} (eval \"$(.ci/garage.sh)\" sets the S3 ones)"
        )
    })
}

fn admin_url() -> anyhow::Result<String> {
    env("TEST_WHARF_POSTGRES_URL")
}

fn database_name(shared: &servers::Shared) -> String {
    shared
        .database_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A fresh database and a fresh bucket prefix for this run.
async fn shared_backend() -> anyhow::Result<servers::Shared> {
    let admin = admin_url()?;
    let name = format!("wharf_bench_{}", std::process::id());
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}")).await?;
    psql(&admin, &format!("CREATE DATABASE {name}")).await?;
    let after_scheme = admin.find("://").map_or(0, |i| i + 3);
    let server = match admin[after_scheme..].find('/') {
        Some(i) => &admin[..after_scheme + i],
        None => admin.as_str(),
    };
    Ok(servers::Shared {
        database_url: format!("{server}/{name}"),
        endpoint: env("TEST_WHARF_S3_ENDPOINT")?,
        region: env("TEST_WHARF_S3_REGION")?,
        bucket: env("TEST_WHARF_S3_BUCKET")?,
        access_key_id: env("TEST_WHARF_S3_ACCESS_KEY_ID")?,
        secret_access_key: env("TEST_WHARF_S3_SECRET_ACCESS_KEY")?,
        prefix: format!(
            "bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        ),
    })
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()?;
    anyhow::ensure!(status.success(), "psql failed: {sql}");
    Ok(())
}
