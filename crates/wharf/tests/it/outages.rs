//! Bad conditions: the metadata database or the object store goes away while
//! wharf runs. Requests must fail fast with `503 UNAVAILABLE`, `/readyz` must
//! say so, nothing half-written may appear, and wharf must recover by itself
//! when the dependency returns. An outage is a TCP proxy in front of the real
//! server that the test cuts, stalls and restores; a slow database is a table
//! another client keeps locked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::*;
use crate::scale_out::Shared;

/// Forwards 127.0.0.1:<port> to `target` until cut; while cut it closes new
/// connections at once and has closed the open ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// While set, connections are accepted and then never answered.
    stalled: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (flag, stall, cuts) = (up.clone(), stalled.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let target = target.clone();
                let mut cut = cuts.subscribe();
                if stall.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        let _held = inbound;
                        let _ = cut.changed().await;
                    });
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            up,
            stalled,
            cut,
        }
    }

    /// The server still accepts connections but answers nothing.
    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }
}

/// `host:port` of a URL such as `postgres://u@host:port/db` or `http://host:port`.
fn authority(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let end = rest.find('/').unwrap_or(rest.len());
    (rest[..end].to_string(), rest[end..].to_string())
}

async fn wait_ready(s: &TestServer, within: Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        if s.get("/readyz").await.status() == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("not ready again within {within:?}");
}

/// Asserts the request fails with 503 UNAVAILABLE within `within`.
async fn fails_fast(
    response: impl std::future::Future<Output = reqwest::Response>,
    within: Duration,
) {
    let started = Instant::now();
    let response = response.await;
    assert!(started.elapsed() < within, "took {:?}", started.elapsed());
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("5")
    );
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_goes_away_and_comes_back() {
    let Some(shared) = Shared::create().await else {
        return;
    };
    let database_url = shared.database_url();
    let (server, path) = authority(&database_url);
    let proxy = Proxy::start(server.clone()).await;
    let through_proxy = database_url.replacen(&server, &format!("127.0.0.1:{}", proxy.port), 1);
    let s = TestServer::start_with(|c| {
        c.database.url = Some(through_proxy);
        c.database.acquire_timeout_seconds = 2;
        c.database.statement_timeout_seconds = 5;
    })
    .await;
    assert!(path.len() > 1);
    let (_, app) = s.push_image("outage/app", "1.0", &[b"a layer"]).await;

    proxy.down();
    fails_fast(
        s.get("/v2/outage/app/manifests/1.0"),
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(
        s.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let by_digest = format!("/v2/outage/app/manifests/{app}");
    fails_fast(s.get(&by_digest), Duration::from_secs(8)).await;
    let config = sha256(b"{}");
    let push = s
        .request(reqwest::Method::PUT, "/v2/outage/app/manifests/2.0")
        .header("content-type", OCI_MANIFEST)
        .body(
            serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config.as_str(), "size": 2},
                "layers": []
            })
            .to_string(),
        )
        .send();
    fails_fast(async { push.await.unwrap() }, Duration::from_secs(8)).await;

    proxy.restore();
    wait_ready(&s, Duration::from_secs(20)).await;
    let r = s.get("/v2/outage/app/manifests/1.0").await;
    assert_eq!(r.status(), StatusCode::OK);
    // The push that failed left nothing: no tag, and it can be made now.
    let tags: serde_json::Value = s
        .get("/v2/outage/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1.0"]));
    s.push_image("outage/app", "2.0", &[b"another layer"]).await;
    drop(s);
    shared.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_store_goes_away_and_comes_back() {
    let Some(shared) = Shared::create().await else {
        return;
    };
    let mut s3 = shared.s3_config();
    let endpoint = s3.endpoint.clone().unwrap();
    let (server, _) = authority(&endpoint);
    let proxy = Proxy::start(server.clone()).await;
    s3.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port));
    let s = TestServer::start_with(|c| c.storage.s3 = Some(s3)).await;
    let content = vec![42u8; 100_000];
    let digest = s.push_blob("outage/blobs", &content).await;
    let location = s.start_upload("outage/blobs").await;
    let r = s
        .client
        .patch(s.upload_url(&location, &[]))
        .header("content-type", "application/octet-stream")
        .body(b"first chunk".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");

    proxy.down();
    fails_fast(
        s.get(&format!("/v2/outage/blobs/blobs/{digest}")),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        s.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let chunk = s
        .client
        .patch(s.upload_url(&location, &[]))
        .header("content-type", "application/octet-stream")
        .body(b" second chunk".to_vec())
        .send();
    fails_fast(async { chunk.await.unwrap() }, Duration::from_secs(20)).await;

    proxy.restore();
    wait_ready(&s, Duration::from_secs(20)).await;
    assert_eq!(
        bytes(s.get(&format!("/v2/outage/blobs/blobs/{digest}")).await).await,
        content
    );
    // The chunk sent during the outage left the session as it was.
    let r = s.get(&location).await;
    assert_eq!(
        header(&r, "range"),
        format!("0-{}", b"first chunk".len() - 1)
    );
    let whole = b"first chunk second chunk";
    let r = s
        .client
        .put(s.upload_url(&location, &[("digest", sha256(whole).as_str())]))
        .header("content-type", "application/octet-stream")
        .body(b" second chunk".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    drop(s);
    shared.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_object_store_fails_requests_in_seconds() {
    let Some(shared) = Shared::create().await else {
        return;
    };
    let mut s3 = shared.s3_config();
    let (server, _) = authority(s3.endpoint.as_deref().unwrap());
    let proxy = Proxy::start(server).await;
    s3.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port));
    let s = TestServer::start_with(|c| c.storage.s3 = Some(s3)).await;
    let digest = s.push_blob("stall/blobs", b"some bytes").await;

    // Accepts, then never answers: the small requests' read timeout (15 s)
    // ends the wait, not the long one that large transfers get.
    proxy.stall();
    let blob = format!("/v2/stall/blobs/blobs/{digest}");
    let ((), ready) = tokio::join!(fails_fast(s.get(&blob), Duration::from_secs(30)), async {
        s.get("/readyz").await.status()
    },);
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    wait_ready(&s, Duration::from_secs(30)).await;
    assert_eq!(bytes(s.get(&blob).await).await, &b"some bytes"[..]);
    drop(s);
    shared.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_fails_requests_at_the_statement_timeout() {
    if !have("psql") {
        return;
    }
    let Some(shared) = Shared::create().await else {
        return;
    };
    let database_url = shared.database_url();
    let s = TestServer::start_with(|c| {
        c.database.url = Some(database_url.clone());
        c.database.statement_timeout_seconds = 2;
    })
    .await;
    s.push_image("slow/app", "1.0", &[b"a layer"]).await;

    // Another client holds the tags table for 8 s: every read of a tag waits.
    let holder = std::process::Command::new("psql")
        .args([
            &database_url,
            "-q",
            "-c",
            "BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    fails_fast(s.get("/v2/slow/app/manifests/1.0"), Duration::from_secs(6)).await;

    let done = tokio::task::spawn_blocking(move || holder.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(done.status.success());
    assert_eq!(
        s.get("/v2/slow/app/manifests/1.0").await.status(),
        StatusCode::OK
    );
    drop(s);
    shared.drop().await;
}
