//! The measured scenarios. Each takes the server's [`Registry`] handle and
//! returns a [`Measure`]; content is generated before the clock starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;

use crate::client::{empty, resolve};
use crate::data::{Blob, Rng};
use crate::registry::{Registry, UploadMode, image_manifest};

/// One figure for one server.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measure {
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

impl Measure {
    /// The mean of several runs' values and percentiles.
    pub fn mean(runs: &[Measure]) -> Self {
        let n = runs.len().max(1) as f64;
        let avg = |f: fn(&Measure) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(f).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        Measure {
            value: runs.iter().map(|m| m.value).sum::<f64>() / n,
            p50_ms: avg(|m| m.p50_ms),
            p99_ms: avg(|m| m.p99_ms),
        }
    }

    fn rate(count: f64, elapsed: Duration) -> Self {
        Measure {
            value: count / elapsed.as_secs_f64(),
            ..Default::default()
        }
    }
}

/// A small image: a config of a few hundred bytes and three layers of 4-256 KiB.
pub fn small_image(seed: u64) -> (Blob, Vec<Blob>) {
    let mut rng = Rng::new(seed);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["SEED={seed}"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let config = Blob::from_parts(vec![Bytes::from(config)]);
    let layers = (0..3)
        .map(|_| {
            let size = 4096 + rng.below(252 * 1024) as usize;
            Blob::from_parts(vec![rng.bytes(size)])
        })
        .collect();
    (config, layers)
}

/// Pushes `per_client` small images from each of `clients` concurrent clients.
pub async fn small_push(
    reg: &Registry,
    clients: u64,
    per_client: u64,
    seed: u64,
) -> anyhow::Result<Measure> {
    small_push_to(reg, "small/client", clients, per_client, seed).await
}

/// [`small_push`] into `<prefix><client>` repositories.
pub async fn small_push_to(
    reg: &Registry,
    prefix: &str,
    clients: u64,
    per_client: u64,
    seed: u64,
) -> anyhow::Result<Measure> {
    let work: Vec<Vec<(Blob, Vec<Blob>)>> = (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|i| small_image(seed + c * 1_000_000 + i))
                .collect()
        })
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, images) in work.into_iter().enumerate() {
        let (reg, prefix) = (reg.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            for (i, (config, layers)) in images.iter().enumerate() {
                reg.push_image(&format!("{prefix}{c}"), &format!("v{i}"), config, layers)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(Measure::rate(
        (clients * per_client) as f64,
        start.elapsed(),
    ))
}

/// Pushes `blobs` (all of one size) with `concurrency` clients; MB/s.
pub async fn large_push(
    reg: &Registry,
    repo: &str,
    blobs: Vec<Blob>,
    mode: UploadMode,
    concurrency: usize,
) -> anyhow::Result<Measure> {
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let queue = Arc::new(std::sync::Mutex::new(blobs));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (reg, queue, repo) = (reg.clone(), queue.clone(), repo.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("not poisoned").pop();
                let Some(blob) = next else {
                    return anyhow::Ok(());
                };
                reg.push_blob(&repo, &blob, mode).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(Measure::rate(total as f64 / 1e6, start.elapsed()))
}

/// `pulls` verified GETs of one blob from `url` with `concurrency` clients; MB/s.
pub async fn pull(
    reg: &Registry,
    url: &str,
    blob: &Blob,
    concurrency: usize,
    pulls: usize,
) -> anyhow::Result<Measure> {
    let remaining = Arc::new(AtomicU64::new(pulls as u64));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, digest) = (reg.client.clone(), url.to_owned(), blob.digest.clone());
        let (remaining, bytes) = (remaining.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .is_ok()
            {
                let n = client.pull_verified(&url, &digest).await?;
                bytes.fetch_add(n, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let received = bytes.load(Ordering::Relaxed);
    anyhow::ensure!(
        received == blob.size * pulls as u64,
        "received {received} bytes"
    );
    Ok(Measure::rate(received as f64 / 1e6, start.elapsed()))
}

/// A request repeated under load.
#[derive(Clone, Debug)]
pub enum Probe {
    ManifestGet {
        repo: String,
        tag: String,
        digest: oci::Digest,
    },
    BlobHead {
        repo: String,
        blob: Blob,
    },
}

/// Runs `probe` from `concurrency` clients for `duration`; requests/s with
/// latency percentiles.
pub async fn latency(
    reg: &Registry,
    probe: Probe,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measure> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (reg, probe, stop) = (reg.clone(), probe.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<u32> = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match &probe {
                    Probe::ManifestGet { repo, tag, digest } => {
                        reg.get_manifest(repo, tag, digest).await?
                    }
                    Probe::BlobHead { repo, blob } => {
                        anyhow::ensure!(reg.blob_exists(repo, blob).await?, "blob HEAD failed");
                    }
                }
                samples.push(t.elapsed().as_micros() as u32);
            }
            anyhow::Ok(samples)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|&us| us as f64 / 1000.0)
    };
    Ok(Measure {
        value: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// Follows `Link` headers from `first` until the list ends; returns the
/// number of entries under `key`.
async fn list_all(reg: &Registry, first: &str, key: &str) -> anyhow::Result<usize> {
    let mut next = Some(format!("{}{first}", reg.base));
    let mut count = 0;
    while let Some(url) = next.take() {
        let (headers, body) = reg
            .client
            .expect(Method::GET, &url, &[], empty(), StatusCode::OK)
            .await?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        count += json[key].as_array().map_or(0, Vec::len);
        if let Some(link) = headers.get("link").and_then(|l| l.to_str().ok())
            && let (Some(a), Some(b)) = (link.find('<'), link.find('>'))
        {
            next = Some(resolve(&reg.base, &link[a + 1..b]));
        }
    }
    Ok(count)
}

/// Time to read a whole listing, median of `repeats`; also checks its length.
pub async fn listing(
    reg: &Registry,
    first: &str,
    key: &str,
    expected: usize,
    repeats: usize,
) -> anyhow::Result<Measure> {
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let n = list_all(reg, first, key).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            n >= expected,
            "{first}: listed {n} entries, expected {expected}"
        );
    }
    times.sort_by(f64::total_cmp);
    Ok(Measure {
        value: times[times.len() / 2],
        ..Default::default()
    })
}

/// A repository with `tags` tags on one manifest.
pub async fn setup_tags(reg: &Registry, repo: &str, tags: usize) -> anyhow::Result<()> {
    let (config, layers) = small_image(7);
    let manifest = reg.push_image(repo, "t0", &config, &layers).await?;
    run_concurrently(16, tags, |i| {
        let (reg, manifest, repo) = (reg.clone(), manifest.clone(), repo.to_owned());
        async move {
            reg.put_manifest(&repo, &format!("t{i:05}"), &manifest)
                .await
        }
    })
    .await
}

/// `repos` repositories, each with a tagged image mounted from a seed repository.
pub async fn setup_repositories(reg: &Registry, repos: usize) -> anyhow::Result<()> {
    let (config, layers) = small_image(9);
    let layers = vec![layers[0].clone()];
    reg.push_image("catalog/seed", "1", &config, &layers)
        .await?;
    let manifest = image_manifest(&config, &layers);
    run_concurrently(16, repos, |i| {
        let (reg, manifest, config, layer) = (
            reg.clone(),
            manifest.clone(),
            config.clone(),
            layers[0].clone(),
        );
        async move {
            let repo = format!("catalog/r{i:05}");
            for blob in [&config, &layer] {
                if !reg.mount(&repo, "catalog/seed", blob).await? {
                    reg.push_blob(&repo, blob, UploadMode::Monolithic).await?;
                }
            }
            reg.put_manifest(&repo, "1", &manifest).await
        }
    })
    .await
}

async fn run_concurrently<F, Fut>(concurrency: usize, count: usize, make: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for i in 0..count {
        if pending.len() >= concurrency {
            use futures_util::StreamExt;
            pending.next().await.expect("not empty")??;
        }
        pending.push(tokio::spawn(make(i)));
    }
    use futures_util::StreamExt;
    while let Some(r) = pending.next().await {
        r??;
    }
    Ok(())
}

/// 90% pulls (a manifest and a 64 KiB layer, both verified) and 10% pushes (a
/// small image) from `concurrency` clients for `duration`; operations/s.
pub async fn mixed(
    reg: &Registry,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measure> {
    let (mixed, ()) =
        mixed_during(reg, concurrency, 0, false, tokio::time::sleep(duration)).await?;
    Ok(mixed.rate)
}

/// What a run of the mixed load did.
#[derive(Clone, Debug)]
pub struct Mixed {
    /// Operations/s.
    pub rate: Measure,
    /// Mean time of a push (config and layer uploaded, manifest put), ms.
    pub push_ms: f64,
    /// Mean time of a pull (manifest and layer, both verified), ms.
    pub pull_ms: f64,
    /// Operations finished in each whole second of the run.
    pub per_second: Vec<u64>,
}

/// The load of [`mixed`] while `work` runs (started once the load is);
/// returns what the load did and `work`'s output. Each `seed` pushes
/// content of its own, so that loads run one after the other against one
/// server push new content every time.
pub async fn mixed_during<T>(
    reg: &Registry,
    concurrency: usize,
    seed: u64,
    live: bool,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<(Mixed, T)> {
    let mut rng = Rng::new(42);
    let config = Blob::from_parts(vec![Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux"}"#,
    )]);
    let layer = Blob::from_parts(vec![rng.bytes(64 * 1024)]);
    let manifest = reg
        .push_image("mixed/app", "stable", &config, std::slice::from_ref(&layer))
        .await?;
    let manifest_digest = oci::Digest::compute(oci::DigestAlgorithm::Sha256, &manifest);
    // Push work prepared before the clock starts: enough for any plausible rate.
    let pushes_per_client = 400;
    let images: Vec<Vec<(Blob, Vec<Blob>)>> = (0..concurrency)
        .map(|c| {
            (0..pushes_per_client)
                .map(|i| {
                    let n = (c * pushes_per_client + i) as u64;
                    let mut r = Rng::new(1_000_000 + seed * 10_000_000 + n);
                    let cfg = Blob::from_parts(vec![Bytes::from(format!(
                        r#"{{"os":"linux","seed":"{seed}-{c}-{i}"}}"#
                    ))]);
                    (cfg, vec![Blob::from_parts(vec![r.bytes(64 * 1024)])])
                })
                .collect()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // Operations per whole second, printed as they come when `live`.
    let sampler = {
        let (stop, ops) = (stop.clone(), ops.clone());
        tokio::spawn(async move {
            let mut per_second = Vec::new();
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(start) + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            let mut last = 0;
            loop {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break per_second;
                }
                let now = ops.load(Ordering::Relaxed);
                per_second.push(now - last);
                last = now;
                if live {
                    eprintln!(
                        "  {:>4} s  {:>5} ops/s",
                        per_second.len(),
                        per_second[per_second.len() - 1]
                    );
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for (c, work) in images.into_iter().enumerate() {
        let (reg, stop, ops, layer, manifest_digest) = (
            reg.clone(),
            stop.clone(),
            ops.clone(),
            layer.clone(),
            manifest_digest.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(c as u64);
            let mut work = work.into_iter();
            // (count, total time) of pushes and of pulls.
            let mut times = [(0u64, Duration::ZERO); 2];
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let push = rng.below(10) == 0;
                if push {
                    let Some((cfg, layers)) = work.next() else {
                        break;
                    };
                    reg.push_image(
                        &format!("mixed/push{c}"),
                        &format!("v{}", rng.next_u64() % 1_000_000),
                        &cfg,
                        &layers,
                    )
                    .await?;
                } else {
                    reg.get_manifest("mixed/app", "stable", &manifest_digest)
                        .await?;
                    reg.client
                        .pull_verified(&reg.blob_url("mixed/app", &layer), &layer.digest)
                        .await?;
                }
                ops.fetch_add(1, Ordering::Relaxed);
                let kind = &mut times[usize::from(!push)];
                kind.0 += 1;
                kind.1 += started.elapsed();
            }
            anyhow::Ok(times)
        }));
    }
    let output = work.await;
    stop.store(true, Ordering::Relaxed);
    let mut times = [(0u64, Duration::ZERO); 2];
    for t in tasks {
        for (total, part) in times.iter_mut().zip(t.await??) {
            total.0 += part.0;
            total.1 += part.1;
        }
    }
    let mean_ms = |(n, total): (u64, Duration)| total.as_secs_f64() * 1000.0 / n.max(1) as f64;
    let mixed = Mixed {
        rate: Measure::rate(ops.load(Ordering::Relaxed) as f64, start.elapsed()),
        push_ms: mean_ms(times[0]),
        pull_ms: mean_ms(times[1]),
        per_second: sampler.await?,
    };
    Ok((mixed, output))
}
