//! Interop with real clients: skopeo, podman, buildah, umoci, oras.
//! Each test needs its program; without it the test is skipped, except in CI
//! (CI=true) where a missing program fails the test.

use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;

use crate::common::*;

/// Runs a command on a blocking thread and requires success.
async fn run(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{shown} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args);
    c
}

fn fixture_layout() -> String {
    testdata("images/fixture-mini/oci").display().to_string()
}

#[tokio::test]
async fn skopeo_copy_in_and_out_inspect_list_delete() {
    if !have("skopeo") {
        return;
    }
    let s = TestServer::start().await;
    let host = s.host();
    let work = tempfile::tempdir().unwrap();
    let dest = format!("docker://{host}/library/mini:1.0");
    run(skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", fixture_layout()),
        &dest,
    ]))
    .await;

    let out = run(skopeo(&["inspect", "--tls-verify=false", &dest])).await;
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspect["Digest"],
        "sha256:1c1cd64519360c149f71608e2bca9bc7d8cbbf74ec74d45a94759f5461eefae4"
    );
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);

    let out_dir = work.path().join("out");
    run(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:copy", out_dir.display()),
    ]))
    .await;
    // Every blob came back byte for byte: compare the two layouts' blob sets.
    assert_same_blobs(&testdata("images/fixture-mini/oci"), &out_dir);

    run(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &dest,
        &format!("docker://{host}/library/mini:1.1"),
    ]))
    .await;
    let out = run(skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{host}/library/mini"),
    ]))
    .await;
    let tags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["1.0", "1.1"]));

    run(skopeo(&["delete", "--tls-verify=false", &dest])).await;
    assert_eq!(
        s.get("/v2/library/mini/manifests/1.0").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/v2/library/mini/manifests/1.1").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn skopeo_multi_arch_index_with_all() {
    if !have("skopeo") {
        return;
    }
    let s = TestServer::start().await;
    let host = s.host();
    let layout = testdata("images/multi-arch/oci").display().to_string();
    let dest = format!("docker://{host}/multi/arch:1");
    run(skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{layout}"),
        &dest,
    ]))
    .await;
    let out = run(skopeo(&["inspect", "--raw", "--tls-verify=false", &dest])).await;
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    for arch in ["amd64", "arm64"] {
        let out = run(skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &dest,
        ]))
        .await;
        let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspect["Architecture"], arch);
    }
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    run(skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:x", out_dir.display()),
    ]))
    .await;
    assert_same_blobs(&testdata("images/multi-arch/oci"), &out_dir);
}

/// The blobs of two OCI layouts are the same set of files with the same bytes.
fn assert_same_blobs(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (left, right) = (list(a), list(b));
    assert_eq!(left, right);
    for name in left {
        let bytes = std::fs::read(b.join("blobs/sha256").join(&name)).unwrap();
        assert_eq!(sha256(&bytes).encoded(), name, "blob {name} is corrupt");
    }
}
