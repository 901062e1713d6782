//! Running it: health, readiness, metrics, TLS, graceful shutdown, the
//! command line and its configuration.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = TestServer::start().await;
    assert_eq!(text(s.get("/healthz").await).await, "ok\n");
    assert_eq!(s.get("/readyz").await.status(), StatusCode::OK);
    s.push_image("metrics/app", "1", &[b"layer"]).await;
    s.get("/v2/metrics/app/manifests/1").await;
    s.get("/v2/metrics/app/manifests/missing").await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = text(r).await;
    for expected in [
        r#"wharf_http_requests_total{endpoint="manifest_get",status="200"}"#,
        r#"wharf_http_requests_total{endpoint="manifest_get",status="404"}"#,
        r#"wharf_http_requests_total{endpoint="manifest_put",status="201"}"#,
        r#"wharf_http_request_duration_seconds_bucket{endpoint="manifest_get""#,
        "wharf_http_received_bytes_total",
        r#"wharf_http_sent_bytes_total{endpoint="manifest_get"}"#,
        "wharf_storage_bytes",
    ] {
        assert!(body.contains(expected), "metrics lack {expected}:\n{body}");
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = TestServer::start().await;
    let location = s.start_upload("slow/app").await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // A body that sends half, then the rest only once the shutdown has begun.
    let first = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"first half "))
    });
    let rest = futures_util::stream::once(async move {
        let _ = rx.await;
        Ok::<_, std::io::Error>(Bytes::from_static(b"second half"))
    });
    let body = reqwest::Body::wrap_stream(futures_util::StreamExt::chain(first, rest));
    let in_flight = tokio::spawn(s.client.patch(s.url(&location)).body(body).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tx.send(());
    });
    s.stop().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&response, "range"),
        format!("0-{}", "first half second half".len() - 1)
    );
    // And it no longer accepts connections.
    assert!(s.client.get(s.url("/v2/")).send().await.is_err());
}

#[tokio::test]
async fn tls_with_rustls() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let s = TestServer::start_with(|c| {
        c.server.tls = Some(wharf::config::TlsConfig {
            certificate: cert.clone(),
            private_key: key.clone(),
        })
    })
    .await;
    assert!(s.base.starts_with("https://"));
    let out = tokio::task::spawn_blocking({
        let url = format!("{}/v2/", s.base);
        let cert = cert.clone();
        move || {
            Command::new("curl")
                .args([
                    "-sS",
                    "--http2",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                    "-u",
                    &format!("admin:{ADMIN_PASSWORD}"),
                    "--cacert",
                ])
                .arg(cert)
                .arg(url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wharf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
}

#[test]
fn the_binary_rejects_unknown_configuration_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:0\"\nlistne = \"typo\"\n",
    )
    .unwrap();
    let out = wharf()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listne"), "{stderr}");

    let out = wharf()
        .arg("config")
        .env("WHARF_SERVER__LISTN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));
}

#[test]
fn the_binary_prints_its_effective_configuration() {
    let out = wharf()
        .arg("config")
        .env("WHARF_SERVER__LISTEN", "127.0.0.1:7000")
        .env("WHARF_LIMITS__MAX_MANIFEST_BYTES", "8388608")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listen = \"127.0.0.1:7000\""), "{stdout}");
    assert!(stdout.contains("max_manifest_bytes = 8388608"), "{stdout}");
}

#[test]
fn the_binary_serves_with_json_logs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = wharf()
        .arg("serve")
        .current_dir(dir.path())
        .env("WHARF_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WHARF_LOG__FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if an assertion fails before the orderly stop below.
    let mut child = KillOnDrop(Some(child));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // The port accepts as soon as it is bound, before the stores are open:
    // wait for /readyz instead.
    while !ready(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "wharf did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The default data directory is ./wharf-data.
    assert!(dir.path().join("wharf-data/wharf.db").exists());
    let child = child.0.take().unwrap();
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(stderr.contains("wharf stopped"), "{stderr}");
    // Without WHARF_ADMIN_PASSWORD the first administrator's password is
    // generated and written to the log exactly once.
    let created: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("first administrator"))
        })
        .collect();
    assert_eq!(created.len(), 1, "{stderr}");
    let password = created[0]["password"].as_str().unwrap();
    assert_eq!(password.len(), 43);
    assert_eq!(stderr.matches(password).count(), 1);
}

struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET /readyz` answers 200, by hand over a socket (the test is not async).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut response = String::new();
    stream.write_all(request).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}
