//! Scale-out: several `wharf serve` processes sharing one PostgreSQL database
//! and one S3 bucket, and `wharf migrate-data` between the two modes.
//!
//! The shared services come from the environment: `TEST_WHARF_POSTGRES_URL`
//! (a role that may create databases) and `TEST_WHARF_S3_*` (`.ci/garage.sh`
//! starts a Garage and prints them). Each test makes a database and a bucket
//! prefix of its own. Without them the tests are skipped, except in CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use wharf::config::Config;

use crate::clients::{assert_same_blobs, run, skopeo};
use crate::common::*;

/// A fresh PostgreSQL database and S3 prefix, dropped at the end of the test.
pub struct Shared {
    admin_url: String,
    database: String,
    s3: storage::S3Config,
}

fn required(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{variable} is required in CI (CI=true); .ci/run sets it")
        }
        Err(_) => {
            eprintln!("skipping: {variable} is not set (set CI=true to make this a failure)");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

impl Shared {
    pub async fn create() -> Option<Shared> {
        let admin_url = required("TEST_WHARF_POSTGRES_URL")?;
        let endpoint = required("TEST_WHARF_S3_ENDPOINT")?;
        let database = unique("wharf_it");
        psql(&admin_url, &format!("CREATE DATABASE {database}")).await;
        let s3 = storage::S3Config {
            endpoint: Some(endpoint),
            region: std::env::var("TEST_WHARF_S3_REGION").ok(),
            bucket: required("TEST_WHARF_S3_BUCKET")?,
            prefix: Some(unique("it")),
            access_key_id: required("TEST_WHARF_S3_ACCESS_KEY_ID"),
            secret_access_key: required("TEST_WHARF_S3_SECRET_ACCESS_KEY"),
            ..storage::S3Config::default()
        };
        Some(Shared {
            admin_url,
            database,
            s3,
        })
    }

    pub fn database_url(&self) -> String {
        let after_scheme = self.admin_url.find("://").map_or(0, |i| i + 3);
        let server = match self.admin_url[after_scheme..].find('/') {
            Some(i) => &self.admin_url[..after_scheme + i],
            None => &self.admin_url,
        };
        format!("{server}/{}", self.database)
    }

    /// The bucket and prefix of this test.
    pub fn s3_config(&self) -> storage::S3Config {
        self.s3.clone()
    }

    /// Points `config` at the shared database and bucket.
    pub fn configure(&self, config: &mut Config) {
        config.database.url = Some(self.database_url());
        config.storage.s3 = Some(self.s3.clone());
    }

    pub async fn drop(self) {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        )
        .await;
    }
}

/// One statement through the `psql` client (the integration tests use no
/// database driver of their own).
async fn psql(url: &str, sql: &str) {
    let mut c = Command::new("psql");
    c.args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]);
    run(c).await;
}

fn base_config() -> Config {
    let mut config = Config::default();
    config.server.shutdown_grace_seconds = 2;
    with_test_auth(&mut config);
    config
}

async fn three_nodes(shared: &Shared, dir: &Path) -> Vec<Node> {
    let config = node_config(shared, dir);
    let starts = ["n1", "n2", "n3"].map(|name| Node::start(&config, dir, name));
    let [a, b, c] = starts;
    // Started together: they race to apply the schema, and one does.
    let (a, b, c) = tokio::join!(a, b, c);
    vec![a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_through_one_node_and_pulls_through_the_others() {
    if !have("skopeo") || !have("psql") {
        return;
    }
    let Some(shared) = Shared::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(&shared, dir.path()).await;
    let layout = testdata("images/multi-layer/oci");
    let image = |n: &Node| format!("docker://{}/scale/app:1.0", n.host());

    run(skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", layout.display()),
        &image(&nodes[0]),
    ]))
    .await;
    let out = run(skopeo(&[
        "inspect",
        "--tls-verify=false",
        &image(&nodes[1]),
    ]))
    .await;
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspect["Digest"],
        "sha256:b3c2f92d7aa6ba89e0b215b7d880e8998bbe8ff479eaa5227a414494f5d08525"
    );
    let out_dir = dir.path().join("pulled");
    run(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &image(&nodes[2]),
        &format!("oci:{}:copy", out_dir.display()),
    ]))
    .await;
    assert_same_blobs(&layout, &out_dir);
    let tags: serde_json::Value = client()
        .get(nodes[1].url("/v2/scale/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1.0"]));
    drop(nodes);
    shared.drop().await;
}

/// A body that sends `first`, then hangs until the server end goes away.
fn hanging_body(first: Bytes) -> reqwest::Body {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(futures_util::stream::pending());
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_crosses_nodes_and_survives_a_killed_node() {
    if !have("psql") {
        return;
    }
    let Some(shared) = Shared::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(&shared, dir.path()).await;
    let client = client();
    let content: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = sha256(&content);
    let (first, second, third) = (
        &content[..7_000_000],
        &content[7_000_000..13_000_000],
        &content[13_000_000..],
    );

    // Started on node 1.
    let r = client
        .post(nodes[0].url("/v2/scale/chunked/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");

    // First chunk through node 2.
    let r = client
        .patch(nodes[1].url(&location))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", text(r).await);
    let location = header(&r, "location");

    // Second chunk through node 3, which dies with half of it received.
    let sending = tokio::spawn(
        client
            .patch(nodes[2].url(&location))
            .header("content-type", "application/octet-stream")
            .header("content-length", second.len().to_string())
            .body(hanging_body(Bytes::copy_from_slice(&second[..3_000_000])))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[2].kill();
    assert!(sending.await.unwrap().is_err());

    // The client asks another node where the upload stands and resends.
    let r = client.get(nodes[0].url(&location)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), format!("0-{}", first.len() - 1));
    let r = client
        .patch(nodes[0].url(&location))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", first.len(), first.len() + second.len() - 1),
        )
        .body(second.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", text(r).await);
    let location = header(&r, "location");

    // Finished, with the last chunk, on node 2.
    let mut url = reqwest::Url::parse(&nodes[1].url(&location)).unwrap();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let r = client
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(third.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);

    // The node that died comes back and serves the blob like the others.
    let restarted = Node::start(&node_config(&shared, dir.path()), dir.path(), "n3").await;
    for node in [&nodes[0], &nodes[1], &restarted] {
        let r = client
            .get(node.url(&format!("/v2/scale/chunked/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.bytes().await.unwrap();
        assert!(body == content, "node {} served other bytes", node.base);
    }
    drop(nodes);
    drop(restarted);
    shared.drop().await;
}

/// A node's configuration: everything shared lives in PostgreSQL and S3, so
/// the nodes may share a data directory too (it stays empty).
fn node_config(shared: &Shared, dir: &Path) -> Config {
    let mut config = base_config();
    config.data_dir = dir.join("nodes");
    shared.configure(&mut config);
    config
}

/// Writes `config` (with `data_dir` under `dir`) to a file for the command line.
fn config_file(config: &Config, dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    file
}

/// What a client can see of a registry: every tag of every repository with
/// its manifest bytes, the referrers of each manifest, and every blob's bytes.
async fn snapshot(base: &str) -> Vec<String> {
    let client = client();
    let get_json = |path: String| {
        let client = client.clone();
        async move {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let mut seen = Vec::new();
    let catalog = get_json("/v2/_catalog".into()).await;
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = get_json(format!("/v2/{repo}/tags/list")).await;
        for tag in tags["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let r = client
                .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("accept", OCI_MANIFEST)
                .header("accept", OCI_INDEX)
                .send()
                .await
                .unwrap();
            let digest = header(&r, "docker-content-digest");
            let manifest: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            seen.push(format!("{repo}:{tag} {digest}"));
            let referrers = get_json(format!("/v2/{repo}/referrers/{digest}")).await;
            seen.push(format!(
                "{repo}@{digest} referrers {}",
                referrers["manifests"]
            ));
            let blobs = manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&manifest["config"]))
                .filter_map(|d| d["digest"].as_str());
            for blob in blobs {
                let r = client
                    .get(format!("{base}/v2/{repo}/blobs/{blob}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{repo}@{blob}");
                let body = r.bytes().await.unwrap();
                assert_eq!(sha256(&body).as_str(), blob);
                seen.push(format!("{repo}@{blob} {} bytes", body.len()));
            }
        }
    }
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_data_moves_a_registry_to_postgres_and_s3_and_back() {
    if !have("psql") {
        return;
    }
    let Some(shared) = Shared::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // An embedded registry with images, several tags, and a referrer.
    let embedded = TestServer::start().await;
    let (_, app1) = embedded
        .push_image("library/app", "1.0", &[b"layer one", b"layer two"])
        .await;
    embedded
        .push_image("library/app", "1.1", &[b"layer one", b"layer three"])
        .await;
    embedded
        .push_image("team/tool", "latest", &[&vec![7u8; 3_000_000]])
        .await;
    let config_blob = embedded.push_blob("library/app", b"{}").await;
    let signature = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_blob.as_str(), "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": app1.as_str(), "size": 1},
    });
    let body = serde_json::to_vec(&signature).unwrap();
    let r = embedded
        .put_manifest("library/app", sha256(&body).as_str(), OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let expected = snapshot(&embedded.base).await;
    assert!(
        expected
            .iter()
            .any(|l| l.contains("application/vnd.example.signature"))
    );

    let mut embedded = embedded;
    embedded.stop().await;
    let from = config_file(&embedded.config, dir.path(), "embedded");
    let scaled = node_config(&shared, dir.path());
    let to = config_file(&scaled, dir.path(), "scaled");
    migrate_data(&from, &to).await;

    let node = Node::start(&scaled, dir.path(), "scaled-node").await;
    assert_eq!(snapshot(&node.base).await, expected);
    drop(node);

    // And back into a new embedded registry.
    let back_dir = dir.path().join("back");
    let back = Config {
        data_dir: back_dir.clone(),
        ..base_config()
    };
    let back_file = config_file(&back, dir.path(), "back");
    migrate_data(&to, &back_file).await;
    let node = Node::start(&back, dir.path(), "back-node").await;
    assert_eq!(snapshot(&node.base).await, expected);
    drop(node);

    // A mistyped source is an error, not an empty registry copied.
    let typo = Config {
        data_dir: dir.path().join("no-such-registry"),
        ..base_config()
    };
    let typo_file = config_file(&typo, dir.path(), "typo");
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("migrate-data")
        .arg("--from")
        .arg(&typo_file)
        .arg("--to")
        .arg(&back_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no metadata database"), "{stderr}");
    shared.drop().await;
}

async fn migrate_data(from: &Path, to: &Path) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.arg("migrate-data")
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(to);
    run(c).await;
}
