//! The webhooks group: what webhook policies cost pushes, and how soon a
//! delivery arrives, wharf alone (Distribution's notifications are
//! configured per server and not comparable).
//!
//! A receiver in this process (hyper, HTTP/1.1) answers 200 to every
//! delivery and notes when each push's `artifact.pushed` arrived.
//! 1. Small-image pushes (8 clients) with no policy, then with three
//!    enabled (two to the receiver, one to an address nothing listens on,
//!    whose deliveries fail and are retried), three rounds interleaved; the
//!    ratio is with / without.
//! 2. Tiny images pushed at a steady 50 per second for 20 s, with one
//!    new policy sent `artifact.pushed` and `tag.created` (the three others
//!    disabled): 100 events a second.
//!    Latency is from the push's acknowledgement (the manifest PUT's
//!    answer) to the delivery's arrival; p50 and p99.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::data::Blob;
use crate::lifecycle::api;
use crate::registry::Registry;
use crate::scenarios::{self, Measure};
use crate::servers::{self, Backend};
use crate::{Run, registry};

/// Pushes with policies keep at least this share of the throughput without.
const PUSH_RATIO_TARGET: f64 = 0.90;
/// Delivery latency p99 at 100 events per second.
const LATENCY_P99_TARGET_MS: f64 = 1000.0;

/// When each pushed tag's `artifact.pushed` arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<HashMap<String, Instant>>>);

impl Arrivals {
    fn note(&self, body: &[u8]) {
        let Ok(event) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        if event["type"] == "wharf.artifact.pushed"
            && let Some(subject) = event["subject"].as_str()
        {
            let mut seen = self.0.lock().expect("arrivals lock");
            seen.entry(subject.to_owned()).or_insert_with(Instant::now);
        }
    }

    fn get(&self, subject: &str) -> Option<Instant> {
        self.0.lock().expect("arrivals lock").get(subject).copied()
    }
}

/// Serves on 127.0.0.1; returns the URL deliveries go to.
async fn receiver(arrivals: Arrivals) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let arrivals = arrivals.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            arrivals.note(&body);
                            Ok::<_, hyper::Error>(http::Response::new(
                                http_body_util::Empty::<Bytes>::new(),
                            ))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}/hook"))
}

pub async fn run_group(run: &mut Run, work: &Path) -> anyhow::Result<()> {
    let wharf = servers::wharf(
        &run.args.wharf,
        &work.join("wharf-webhooks"),
        &Backend::Local,
        &run.client,
        &[
            ("WHARF_LIFECYCLE__GC_SCHEDULE", ""),
            ("WHARF_LIFECYCLE__INTEGRITY_SCHEDULE", ""),
        ],
    )
    .await?;
    let reg = registry(run, &wharf);
    let arrivals = Arrivals::default();
    let url = receiver(arrivals.clone()).await?;
    // The project the pushes go to, with three policies, disabled for now.
    api(
        &reg,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "hooks"})),
        StatusCode::CREATED,
    )
    .await?;
    let dead = format!("http://127.0.0.1:{}/hook", servers::free_port()?);
    let mut policies = Vec::new();
    for (name, target) in [("ci", &url), ("chat", &url), ("gone", &dead)] {
        let p = api(
            &reg,
            Method::POST,
            "/api/v1/projects/hooks/webhooks",
            Some(json!({
                "name": name, "url": target, "format": "cloudevents",
                "events": ["artifact.pushed", "tag.created"], "enabled": false,
            })),
            StatusCode::CREATED,
        )
        .await?;
        policies.push((p["id"].clone(), name, target.clone()));
    }
    let set_enabled = |enabled: bool, which: usize| {
        let (reg, policies) = (reg.clone(), policies.clone());
        async move {
            for (id, name, target) in policies.iter().take(which) {
                api(
                    &reg,
                    Method::PUT,
                    &format!("/api/v1/projects/hooks/webhooks/{id}"),
                    Some(json!({
                        "name": name, "url": target, "format": "cloudevents",
                        "events": ["artifact.pushed", "tag.created"], "enabled": enabled,
                    })),
                    StatusCode::OK,
                )
                .await?;
            }
            anyhow::Ok(())
        }
    };

    // 1. Push throughput without and with the three policies.
    let per_client = run.scale(40, 4);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..3u64 {
        set_enabled(false, 3).await?;
        without.push(push_round(&reg, per_client, 10 * round + 1).await?);
        set_enabled(true, 3).await?;
        with.push(push_round(&reg, per_client, 10 * round + 2).await?);
    }
    set_enabled(false, 3).await?;
    let (without, with) = (median(&without), median(&with));
    eprintln!("  pushes per second without policies {without:.1}, with three (one dead) {with:.1}");
    run.record(
        format!(
            "push small images (8 clients) with 3 webhook policies (1 at a dead address) vs none ({without:.1} images/s), median of 3 (target {PUSH_RATIO_TARGET:.2}x)"
        ),
        "images/s",
        true,
        "wharf-none",
        vec![
            ("wharf", Measure { value: with, ..Default::default() }),
            ("wharf-none", Measure { value: without, ..Default::default() }),
        ],
    );

    // 2. Delivery latency at 100 events per second, to a policy of its own
    // (the others are disabled, their backlogs left unsent).
    api(
        &reg,
        Method::POST,
        "/api/v1/projects/hooks/webhooks",
        Some(json!({
            "name": "latency", "url": url, "format": "cloudevents",
            "events": ["artifact.pushed", "tag.created"],
        })),
        StatusCode::CREATED,
    )
    .await?;
    let seconds = run.scale(20, 5);
    let latencies = paced_pushes(&reg, &arrivals, 50, seconds).await?;
    let expected = (50 * seconds) as usize;
    ensure!(
        latencies.len() == expected,
        "{} of {expected} pushes were delivered within 10 s of the last",
        latencies.len()
    );
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    run.record(
        format!(
            "webhook delivery latency at 100 events/s (50 pushes/s, artifact.pushed and tag.created), push acknowledged to delivery received, p99 (p50 {p50:.0} ms; target {LATENCY_P99_TARGET_MS:.0} ms)"
        ),
        "ms",
        false,
        "target",
        vec![
            ("wharf", Measure { value: p99, p50_ms: Some(p50), p99_ms: Some(p99) }),
            ("target", Measure { value: LATENCY_P99_TARGET_MS, ..Default::default() }),
        ],
    );
    Ok(())
}

/// Small images from 8 clients into `hooks/`; images per second.
async fn push_round(reg: &Registry, per_client: u64, seed: u64) -> anyhow::Result<f64> {
    let measure = scenarios::small_push_to(reg, "hooks/app", 8, per_client, seed * 7919).await?;
    Ok(measure.value)
}

/// Pushes tiny images at `per_second` for `seconds`; the latency of each
/// push's delivery in ms.
async fn paced_pushes(
    reg: &Registry,
    arrivals: &Arrivals,
    per_second: u64,
    seconds: u64,
) -> anyhow::Result<Vec<f64>> {
    let every = Duration::from_secs(1) / per_second as u32;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..per_second * seconds {
        ticks.tick().await;
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            let tag = format!("paced-{n}");
            let config = Blob::from_parts(vec![Bytes::from(format!(
                r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["N={n}"]}}}}"#
            ))]);
            let layer = Blob::from_parts(vec![Bytes::from(format!("layer {n} ").repeat(64))]);
            reg.push_image("hooks/paced", &tag, &config, &[layer])
                .await?;
            anyhow::Ok((format!("hooks/paced:{tag}"), Instant::now()))
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.push(t.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = acknowledged
            .iter()
            .filter(|(subject, _)| arrivals.get(subject).is_none())
            .count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(acknowledged
        .iter()
        .filter_map(|(subject, acked)| {
            let arrived = arrivals.get(subject)?;
            // A delivery can beat the client's reading of the answer.
            Some(arrived.saturating_duration_since(*acked).as_secs_f64() * 1000.0)
        })
        .collect())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
