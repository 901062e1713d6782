//! Garbage collection under stress and across crashes.
//!
//! - `collections_race_pushes_and_deletes`: pushers push images whose layers
//!   are shared across repositories and projects, some tagged and some by
//!   digest only, while a deleter deletes some of them and collections run
//!   back to back with a one-second grace period (and, in the second test,
//!   none, so that every upload races them). Afterwards every image the
//!   test still holds pulls whole with verified digests, and once the grace
//!   period has passed and one more collection has run, the blob store holds
//!   exactly the blobs of those images: nothing unreferenced is left.
//! - `killed_during_pushes_and_collections`: a `wharf serve` process is killed
//!   with SIGKILL while pushes run, and again during collections; after each
//!   restart every push it acknowledged pulls whole and the integrity check
//!   finds nothing missing or corrupt.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use oci::Digest;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wharf::config::Config;

use crate::common::*;

/// An image the test pushed and the registry acknowledged.
#[derive(Clone, Debug)]
struct Image {
    repo: String,
    /// Its own tag; `None` for an image pushed by digest only.
    tag: Option<String>,
    manifest: Digest,
    /// Config and layers.
    blobs: Vec<(Digest, usize)>,
}

/// A registry over HTTP, as the administrator; every call returns an error
/// instead of panicking, since the server may be killed under it.
#[derive(Clone)]
struct Remote {
    base: String,
    http: Client,
}

type Outcome<T> = Result<T, String>;

impl Remote {
    fn new(base: &str) -> Remote {
        Remote {
            base: base.to_owned(),
            http: client(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Outcome<reqwest::Response> {
        request.send().await.map_err(|e| format!("transport: {e}"))
    }

    /// Pushes a blob as a client does: skipped when the repository already
    /// has it, else POST then PUT.
    async fn push_blob(&self, repo: &str, content: &[u8]) -> Outcome<Digest> {
        let digest = sha256(content);
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        if self.send(self.http.head(&url)).await?.status() == StatusCode::OK {
            return Ok(digest);
        }
        let started = self
            .send(
                self.http
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
                    .header("content-length", "0"),
            )
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(format!("upload start: {}", started.status()));
        }
        let location = header(&started, "location");
        let mut put = reqwest::Url::parse(&self.base)
            .and_then(|b| b.join(&location))
            .map_err(|e| e.to_string())?;
        put.query_pairs_mut().append_pair("digest", digest.as_str());
        let done = self
            .send(
                self.http
                    .put(put)
                    .header("content-type", "application/octet-stream")
                    .body(content.to_vec()),
            )
            .await?;
        if done.status() != StatusCode::CREATED {
            return Err(format!("upload: {} {}", done.status(), text(done).await));
        }
        Ok(digest)
    }

    /// Pushes config, layers and manifest; the manifest by `tag` or, without
    /// one, by its digest.
    async fn push_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        config: &[u8],
        layers: &[&[u8]],
    ) -> Outcome<Image> {
        let mut blobs = vec![(self.push_blob(repo, config).await?, config.len())];
        for layer in layers {
            blobs.push((self.push_blob(repo, layer).await?, layer.len()));
        }
        let descriptor = |(d, size): &(Digest, usize), media_type: &str| json!({"mediaType": media_type, "digest": d.as_str(), "size": size});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(&blobs[0], OCI_CONFIG),
            "layers": blobs[1..].iter().map(|b| descriptor(b, OCI_LAYER)).collect::<Vec<_>>(),
        }))
        .map_err(|e| e.to_string())?;
        let digest = sha256(&manifest);
        let reference = tag.map_or_else(|| digest.to_string(), str::to_owned);
        let put = self
            .send(
                self.http
                    .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
                    .header("content-type", OCI_MANIFEST)
                    .body(manifest),
            )
            .await?;
        if put.status() != StatusCode::CREATED {
            return Err(format!("manifest: {} {}", put.status(), text(put).await));
        }
        Ok(Image {
            repo: repo.to_owned(),
            tag: tag.map(str::to_owned),
            manifest: digest,
            blobs,
        })
    }

    /// Pulls an image whole (by its tag when it has one), checking every
    /// digest.
    async fn pull_whole(&self, image: &Image) -> Outcome<()> {
        let reference = image
            .tag
            .clone()
            .unwrap_or_else(|| image.manifest.to_string());
        let response = self
            .send(
                self.http
                    .get(format!(
                        "{}/v2/{}/manifests/{reference}",
                        self.base, image.repo
                    ))
                    .header("accept", OCI_MANIFEST),
            )
            .await?;
        if response.status() != StatusCode::OK {
            return Err(format!("{image:?}: manifest {}", response.status()));
        }
        let body = bytes(response).await;
        if sha256(&body) != image.manifest {
            return Err(format!("{image:?}: the manifest changed"));
        }
        for (digest, size) in &image.blobs {
            let response = self
                .send(
                    self.http
                        .get(format!("{}/v2/{}/blobs/{digest}", self.base, image.repo)),
                )
                .await?;
            if response.status() != StatusCode::OK {
                return Err(format!(
                    "{image:?}: blob {digest} {} {}",
                    response.status(),
                    text(response).await
                ));
            }
            let body = bytes(response).await;
            if body.len() != *size || sha256(&body) != *digest {
                return Err(format!("{image:?}: blob {digest} is not whole"));
            }
        }
        Ok(())
    }

    /// Every tagged image of a repository, as the registry has it.
    async fn tagged_images(&self, repo: &str) -> Vec<Image> {
        let response = self
            .http
            .get(format!("{}/v2/{repo}/tags/list", self.base))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let list: Value = response.json().await.unwrap();
        let mut images = Vec::new();
        for tag in list["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            let url = format!("{}/v2/{repo}/manifests/{tag}", self.base);
            let body = bytes(
                self.http
                    .get(url)
                    .header("accept", OCI_MANIFEST)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            let manifest: Value = serde_json::from_slice(&body).unwrap();
            let blobs = std::iter::once(&manifest["config"])
                .chain(manifest["layers"].as_array().into_iter().flatten())
                .map(|d| {
                    (
                        d["digest"].as_str().unwrap().parse().unwrap(),
                        d["size"].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            images.push(Image {
                repo: repo.to_owned(),
                tag: Some(tag.to_owned()),
                manifest: sha256(&body),
                blobs,
            });
        }
        images
    }

    async fn delete(&self, image: &Image) -> Outcome<()> {
        let response = self
            .send(self.http.delete(format!(
                "{}/v2/{}/manifests/{}",
                self.base, image.repo, image.manifest
            )))
            .await?;
        match response.status() {
            StatusCode::ACCEPTED => Ok(()),
            s => Err(format!("delete {image:?}: {s} {}", text(response).await)),
        }
    }

    /// Starts a run (`gc`, `integrity`) and returns its record when it has ended.
    async fn run(&self, kind: &str, body: Value) -> Outcome<Value> {
        let started = self
            .send(
                self.http
                    .post(format!("{}/api/v1/system/{kind}", self.base))
                    .json(&body),
            )
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(format!(
                "{kind}: {} {}",
                started.status(),
                text(started).await
            ));
        }
        let run: Value = started.json().await.map_err(|e| e.to_string())?;
        self.finished(kind, &run["id"]).await
    }

    async fn finished(&self, kind: &str, id: &Value) -> Outcome<Value> {
        loop {
            let run = self.try_run_record(kind, id).await?;
            if run["status"] != "running" {
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_run_record(&self, kind: &str, id: &Value) -> Outcome<Value> {
        self.send(
            self.http
                .get(format!("{}/api/v1/system/{kind}/runs/{id}", self.base)),
        )
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())
    }

    async fn run_record(&self, kind: &str, id: &Value) -> Value {
        self.try_run_record(kind, id).await.unwrap()
    }
}

/// A small deterministic generator (xorshift64), so each task draws its own
/// reproducible choices without a dependency.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Layers several images share: a few KiB each.
fn shared_layers() -> Vec<Vec<u8>> {
    (0..12)
        .map(|i| {
            format!("shared layer {i} ")
                .repeat(200 + 150 * i)
                .into_bytes()
        })
        .collect()
}

const REPOSITORIES: [&str; 3] = ["stress/a", "stress/b", "stress-other/c"];

/// How often a pusher tries an image again after losing a race with a
/// collection.
const RETRIES: u32 = 200;

/// A push failed because a collection took its layers (after the grace
/// period): the manifest names a blob the repository no longer has, or the
/// upload's bytes were removed as it finished. A client pushes again.
fn is_collection_race(error: &str) -> bool {
    error.contains("MANIFEST_BLOB_UNKNOWN")
        || (error.contains("BLOB_UPLOAD_INVALID") && error.contains("garbage collection"))
}

/// Where pushers put what the registry acknowledged: tagged images, which
/// must stay until the test deletes them, and images pushed by digest only,
/// which a collection that deletes untagged manifests may take.
#[derive(Clone, Default)]
struct Pushed {
    tagged: Arc<Mutex<Vec<Image>>>,
    untagged: Arc<Mutex<Vec<Image>>>,
}

/// Pushes `count` images (one in five by digest only), retrying an image
/// whose layers a collection took between the client's check and its
/// manifest (which the one-second grace period allows). Stops at the first
/// error that is not such a race, or when `stop` is set.
async fn pusher(
    remote: Remote,
    task: usize,
    count: usize,
    pushed: Pushed,
    stop: Arc<AtomicBool>,
    retries: Arc<AtomicU64>,
) -> Outcome<usize> {
    let shared = shared_layers();
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1));
    let mut done = 0;
    for n in 0..count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let repo = REPOSITORIES[draw.below(REPOSITORIES.len())];
        let tag = (draw.below(5) != 0).then(|| format!("t{task}-{n}"));
        let config = format!(r#"{{"architecture":"amd64","os":"linux","task":{task},"n":{n}}}"#);
        // Pairs of images share a layer too, so that content comes back
        // after a deletion, perhaps while a collection removes it.
        let own = format!("own layer {task}-{} ", n / 2)
            .repeat(100)
            .into_bytes();
        let (a, b) = (draw.below(shared.len()), draw.below(shared.len()));
        let layers: Vec<&[u8]> = vec![&shared[a], &shared[b], &own];
        let mut attempt = 0;
        let image = loop {
            match remote
                .push_image(repo, tag.as_deref(), config.as_bytes(), &layers)
                .await
            {
                Ok(image) => break image,
                Err(e) if is_collection_race(&e) && attempt < RETRIES => {
                    retries.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
                Err(e) => return Err(format!("pusher {task}, image {n}: {e}")),
            }
        };
        let list = if tag.is_some() {
            &pushed.tagged
        } else {
            &pushed.untagged
        };
        list.lock().await.push(image);
        done += 1;
    }
    Ok(done)
}

fn stress_config(config: &mut Config, grace_seconds: u64) {
    config.lifecycle.gc_grace_period_seconds = grace_seconds;
    config.lifecycle.gc_schedule = String::new();
    config.lifecycle.integrity_schedule = String::new();
}

/// Every blob file under the filesystem store's root.
fn stored_blobs(root: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let dir = root.join("blobs").join("sha256");
    for prefix in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.insert(format!("sha256:{}", file.file_name().to_string_lossy()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_race_pushes_and_deletes() {
    race(1).await;
}

/// With no grace period at all, every upload races the collections (and
/// many pushes must start again): what was acknowledged must still be whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_without_a_grace_period_race_pushes_and_deletes() {
    race(0).await;
}

async fn race(grace_seconds: u64) {
    let s = TestServer::start_with(|c| stress_config(c, grace_seconds)).await;
    let remote = Remote::new(&s.base);
    let pushed = Pushed::default();
    let held = pushed.tagged.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));

    let pushers: Vec<_> = (0..4)
        .map(|task| {
            tokio::spawn(pusher(
                remote.clone(),
                task,
                60,
                pushed.clone(),
                stop.clone(),
                retries.clone(),
            ))
        })
        .collect();
    let pushing = Arc::new(AtomicBool::new(true));
    // The deleter: deletes one image in three, about every 15 ms.
    let deleter = {
        let (remote, held, pushing) = (remote.clone(), held.clone(), pushing.clone());
        tokio::spawn(async move {
            let mut draw = Draw(42);
            let mut deleted = 0u32;
            while pushing.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(15)).await;
                let victim = {
                    let mut held = held.lock().await;
                    if held.len() < 3 || draw.below(3) != 0 {
                        continue;
                    }
                    let i = draw.below(held.len());
                    held.swap_remove(i)
                };
                remote.delete(&victim).await?;
                deleted += 1;
            }
            Outcome::Ok(deleted)
        })
    };
    // Collections back to back, deleting untagged manifests every other run.
    let collector = {
        let (remote, pushing) = (remote.clone(), pushing.clone());
        tokio::spawn(async move {
            let mut runs = Vec::new();
            while pushing.load(Ordering::Relaxed) {
                let untagged = runs.len() % 2 == 1;
                runs.push(
                    remote
                        .run("gc", json!({"delete_untagged": untagged}))
                        .await?,
                );
                // Without a grace period a push can only win between runs.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Outcome::Ok(runs)
        })
    };

    let mut count = 0;
    for p in pushers {
        count += p.await.unwrap().unwrap_or_else(|e| {
            stop.store(true, Ordering::Relaxed);
            panic!("{e}")
        });
    }
    pushing.store(false, Ordering::Relaxed);
    let deleted = deleter.await.unwrap().unwrap();
    let runs = collector.await.unwrap().unwrap();
    assert!(runs.len() >= 3, "only {} collections ran", runs.len());
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["summary"]["errors"], json!([]), "{run}");
    }
    let collected: u64 = runs
        .iter()
        .map(|r| r["summary"]["blobs"].as_u64().unwrap())
        .sum();
    assert!(
        collected > 0,
        "the collections removed nothing while racing"
    );
    eprintln!(
        "grace {grace_seconds} s: {count} images pushed, {deleted} deleted, {} collections removed {collected} blobs, \
         {} pushes retried",
        runs.len(),
        retries.load(Ordering::Relaxed)
    );

    let held = held.lock().await.clone();
    for image in &held {
        remote.pull_whole(image).await.unwrap();
    }

    // Once the grace period has passed, a collection deletes the untagged
    // manifests, which starts the grace period of their layers; after that
    // one more collection leaves exactly what the held images use, and
    // nothing for a dry run to find.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let last = remote
            .run("gc", json!({"delete_untagged": true}))
            .await
            .unwrap();
        assert_eq!(last["status"], "succeeded", "{last}");
    }
    let dry = remote
        .run("gc", json!({"dry_run": true, "delete_untagged": true}))
        .await
        .unwrap();
    for count in ["untagged_manifests", "stale_links", "manifests", "blobs"] {
        assert_eq!(dry["summary"][count], 0, "{count} left: {dry}");
    }
    for image in pushed.untagged.lock().await.iter() {
        let url = format!("{}/v2/{}/manifests/{}", s.base, image.repo, image.manifest);
        let response = remote.http.head(url).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{image:?} is untagged"
        );
    }
    let expected: BTreeSet<String> = held
        .iter()
        .flat_map(|i| i.blobs.iter().map(|(d, _)| d.to_string()))
        .collect();
    let root = s.blob_file(&held[0].blobs[0].0);
    let root = root.ancestors().nth(4).unwrap();
    let stored = stored_blobs(root);
    let extra: Vec<_> = stored.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&stored).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "the blob store should hold exactly the held images' {} blobs; \
         it also holds {} others: {extra:?}; it lacks {missing:?}",
        expected.len(),
        extra.len()
    );
    for image in &held {
        remote.pull_whole(image).await.unwrap();
    }
    let check = remote.run("integrity", json!({})).await.unwrap();
    assert_eq!(check["summary"]["missing"], 0, "{check}");
    assert_eq!(check["summary"]["corrupt"], 0, "{check}");
}

/// Pushes from four tasks until the node goes away; what was acknowledged.
async fn push_until_killed(remote: &Remote, round: usize, acknowledged: &Pushed) {
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            tokio::spawn(pusher(
                remote.clone(),
                round * 10 + task,
                1000,
                acknowledged.clone(),
                stop.clone(),
                retries.clone(),
            ))
        })
        .collect();
    // The tasks end with the kill (their next request fails).
    drop(tasks);
}

/// After a restart: every acknowledged image pulls whole, and the integrity
/// check finds nothing missing or corrupt.
async fn check_after_restart(remote: &Remote, acknowledged: &[Image]) {
    for image in acknowledged {
        remote
            .pull_whole(image)
            .await
            .unwrap_or_else(|e| panic!("an acknowledged push was lost: {e}"));
    }
    let check = remote.run("integrity", json!({})).await.unwrap();
    assert_eq!(check["status"], "succeeded", "{check}");
    assert_eq!(check["summary"]["missing"], 0, "{check}");
    assert_eq!(check["summary"]["corrupt"], 0, "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_during_pushes_and_collections() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.server.shutdown_grace_seconds = 2;
    with_test_auth(&mut config);
    stress_config(&mut config, 1);
    // The default that matters here: a push is acknowledged only once its
    // blob and its database commit are on disk.
    assert!(config.database.fsync_every_commit);

    let pushed = Pushed::default();
    let acknowledged = pushed.tagged.clone();
    let mut node = Node::start(&config, dir.path(), "node").await;

    // 1. Killed while four clients push.
    push_until_killed(&Remote::new(&node.base), 0, &pushed).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill();
    node = Node::start(&config, dir.path(), "node").await;
    let mut remote = Remote::new(&node.base);
    let images = acknowledged.lock().await.clone();
    assert!(
        images.len() >= 4,
        "only {} pushes got through",
        images.len()
    );
    check_after_restart(&remote, &images).await;

    // 2. Killed during collections, with pushes going on: at once, and a
    // little into the run, with garbage to sweep each time.
    let mut interrupted = 0;
    for (round, delay_ms) in [0u64, 15, 40].into_iter().enumerate() {
        let victims: Vec<Image> = {
            let mut held = acknowledged.lock().await;
            let half = held.len() / 2;
            let keep = held.split_off(half);
            std::mem::replace(&mut *held, keep)
        };
        for v in &victims {
            remote.delete(v).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        push_until_killed(&remote, round + 1, &pushed).await;
        let started = remote
            .send(
                remote
                    .http
                    .post(format!("{}/api/v1/system/gc", remote.base))
                    .json(&json!({"delete_untagged": true})),
            )
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let id = started.json::<Value>().await.unwrap()["id"].clone();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        node.kill();

        node = Node::start(&config, dir.path(), "node").await;
        remote = Remote::new(&node.base);
        let record = remote.run_record("gc", &id).await;
        let images = acknowledged.lock().await.clone();
        check_after_restart(&remote, &images).await;
        // The lease of the killed node does not hold up the next
        // collection, which marks the interrupted run as failed.
        let next = remote.run("gc", json!({})).await.unwrap();
        assert_eq!(next["status"], "succeeded", "{next}");
        if record["status"] == "running" {
            interrupted += 1;
            let record = remote.run_record("gc", &id).await;
            assert_eq!(record["status"], "failed", "{record}");
        } else {
            assert_eq!(record["status"], "succeeded", "{record}");
        }
        check_after_restart(&remote, &images).await;
    }
    assert!(interrupted >= 1, "no kill landed during a collection");

    // Once the grace period has passed, the integrity check removes bytes
    // the kills left unrecorded and two collections (the untagged images,
    // then their layers) the rest: the store holds exactly the blobs of the
    // images still held.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let run = remote.run("gc", json!({"delete_untagged": true})).await;
        assert_eq!(run.unwrap()["status"], "succeeded");
    }
    let check = remote.run("integrity", json!({})).await.unwrap();
    assert_eq!(check["summary"]["missing"], 0, "{check}");
    let held = acknowledged.lock().await.clone();
    // A push the kill cut off after its commit but before its answer is in
    // the registry without having been acknowledged: what is referenced is
    // what the registry's tags reach.
    let mut expected = BTreeSet::new();
    for repo in REPOSITORIES {
        for image in remote.tagged_images(repo).await {
            expected.extend(image.blobs.iter().map(|(d, _)| d.to_string()));
        }
    }
    for image in &held {
        for (d, _) in &image.blobs {
            assert!(expected.contains(d.as_str()), "{image:?} is not tagged");
        }
    }
    let stored = stored_blobs(&config.data_dir.join("blobs"));
    let extra: Vec<_> = stored.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&stored).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "after the crashes the store should hold exactly the {} blobs of the tagged images \
         (the integrity check removed {} unrecorded); it also holds {extra:?} and lacks {missing:?}",
        expected.len(),
        check["summary"]["unrecorded_removed"]
    );
    eprintln!(
        "crashes: {} images held, {} unrecorded blobs removed",
        held.len(),
        check["summary"]["unrecorded_removed"]
    );
}
