//! Interop with real clients: skopeo, podman, buildah, umoci, oras.
//! Each test needs its program; without it the test is skipped, except in CI
//! (CI=true) where a missing program fails the test.

use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;

use crate::common::*;

/// Runs a command on a blocking thread and requires success.
pub async fn run(mut command: Command) -> Output {
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

/// skopeo, signed in as the administrator of every test registry.
pub fn skopeo(args: &[&str]) -> Command {
    let mut c = Command::new("skopeo");
    c.args(args).env("REGISTRY_AUTH_FILE", registry_auth_file());
    c
}

fn fixture_layout() -> String {
    testdata("images/fixture-mini/oci").display().to_string()
}

#[tokio::test]
async fn skopeo_copies_a_multi_layer_image_in_and_out_inspects_lists_deletes() {
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
pub fn assert_same_blobs(a: &Path, b: &Path) {
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

/// podman or buildah with storage of their own in `dir` (vfs driver: no
/// kernel overlay support needed, nothing shared with the host's images).
fn container_tool(program: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .env("TMPDIR", dir)
        .env("REGISTRY_AUTH_FILE", registry_auth_file());
    c
}

#[tokio::test]
async fn podman_push_and_pull() {
    if !have("podman") {
        return;
    }
    let s = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| container_tool("podman", work.path(), args);
    run(podman(&["pull", &format!("oci:{}", fixture_layout())])).await;
    let image = format!("{}/podman/mini:1", s.host());
    run(podman(&["tag", "658d0eef79fe", &image])).await;
    run(podman(&["push", "--tls-verify=false", &image])).await;
    run(podman(&["rmi", "-a", "-f"])).await;
    run(podman(&["pull", "--tls-verify=false", &image])).await;
    let out = run(podman(&["image", "inspect", &image])).await;
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspect[0]["Id"],
        "658d0eef79fe1c65d9df2d274ee0741c07b4cfe7b7a5e402fa9b155f5de536b4"
    );
    assert_eq!(
        s.get("/v2/podman/mini/manifests/1").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn buildah_builds_and_pushes() {
    if !have("buildah") {
        return;
    }
    let s = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let buildah = |args: &[&str]| container_tool("buildah", work.path(), args);
    let file = work.path().join("hello.txt");
    std::fs::write(&file, "hello from buildah\n").unwrap();
    let out = run(buildah(&["from", "scratch"])).await;
    let container = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    run(buildah(&[
        "copy",
        &container,
        file.to_str().unwrap(),
        "/hello.txt",
    ]))
    .await;
    run(buildah(&["config", "--cmd", "/hello", &container])).await;
    run(buildah(&["commit", &container, "wharf-test-image"])).await;
    let dest = format!("docker://{}/buildah/hello:1", s.host());
    run(buildah(&[
        "push",
        "--tls-verify=false",
        "wharf-test-image",
        &dest,
    ]))
    .await;

    // Pull it back with skopeo (if present) or check it over the API.
    let r = s.get("/v2/buildah/hello/manifests/1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes(r).await).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/v2/buildah/hello/blobs/{layer}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&bytes(r).await).as_str(), layer);
}

#[tokio::test]
async fn umoci_layout_round_trips() {
    if !have("umoci") || !have("skopeo") {
        return;
    }
    let s = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let umoci = |args: &[&str]| {
        let mut c = Command::new("umoci");
        c.args(args).current_dir(w);
        c
    };
    run(umoci(&["init", "--layout", "img"])).await;
    run(umoci(&["new", "--image", "img:base"])).await;
    run(umoci(&["unpack", "--image", "img:base", "bundle"])).await;
    std::fs::create_dir_all(w.join("bundle/rootfs/etc")).unwrap();
    std::fs::write(w.join("bundle/rootfs/etc/message"), "made by umoci\n").unwrap();
    run(umoci(&["repack", "--image", "img:base", "bundle"])).await;
    run(umoci(&[
        "config",
        "--image",
        "img:base",
        "--config.cmd",
        "/bin/true",
    ]))
    .await;

    let remote = format!("docker://{}/umoci/img:base", s.host());
    run(skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:base", w.join("img").display()),
        &remote,
    ]))
    .await;
    run(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:pulled", w.join("back").display()),
    ]))
    .await;
    run(umoci(&["unpack", "--image", "back:pulled", "out"])).await;
    assert_eq!(
        std::fs::read_to_string(w.join("out/rootfs/etc/message")).unwrap(),
        "made by umoci\n"
    );
}

/// oras (the Python client from PyPI) pushes an artifact whose subject is an
/// image; the referrers API then lists it.
#[tokio::test]
async fn oras_artifact_with_subject_is_a_referrer() {
    if !have("python3") || !python_has_oras() {
        return;
    }
    let s = TestServer::start().await;
    let (image, image_digest) = s.push_image("oras/app", "1.0", &[b"image layer"]).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("sbom.json"), "{\"sbom\":true}\n").unwrap();
    let script = r#"
import sys, oras.client, oras.oci
host, digest, size, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = oras.client.OrasClient(hostname=host, insecure=True)
# oras-py 0.2 keeps the first token it gets whatever its scope, so it is
# handed one for the whole test, from wharf's token endpoint.
client.auth.set_token_auth(token)
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest=digest, size=size)
r = client.push(target=f"{host}/oras/app:sbom", files=["sbom.json:application/vnd.example.sbom+json"],
                subject=subject, manifest_annotations={"org.example.kind": "sbom"})
assert r.status_code == 201, r.text
print(r.headers["OCI-Subject"])
pulled = client.pull(target=f"{host}/oras/app:sbom", outdir="pulled")
print(open(pulled[0]).read(), end="")
"#;
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(script)
        .arg(s.host())
        .arg(image_digest.as_str())
        .arg(image.len().to_string())
        .arg(s.token("repository:oras/app:pull,push").await)
        .current_dir(work.path());
    let out = run(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, format!("{image_digest}\n{{\"sbom\":true}}\n"));

    let r = s
        .get(&format!("/v2/oras/app/referrers/{image_digest}"))
        .await;
    let index: serde_json::Value = serde_json::from_slice(&bytes(r).await).unwrap();
    let referrers = index["manifests"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{index}");
    assert_eq!(referrers[0]["annotations"]["org.example.kind"], "sbom");
    let sbom_tag = s.head("/v2/oras/app/manifests/sbom").await;
    assert_eq!(
        referrers[0]["digest"],
        header(&sbom_tag, "docker-content-digest")
    );
    let artifact_type = referrers[0]["artifactType"].as_str().unwrap().to_owned();
    let r = s
        .get(&format!(
            "/v2/oras/app/referrers/{image_digest}?artifactType={}",
            artifact_type.replace('+', "%2B")
        ))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
}

fn python_has_oras() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the Python package oras is required in CI (CI=true); .ci/run installs it");
        }
        eprintln!("skipping: the Python package oras is not installed");
    }
    ok
}

/// Runs a command on a blocking thread and returns its output, success or not.
async fn attempt(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// `podman login` and `skopeo login` write the docker/podman credentials
/// file and the clients then sign in with tokens: a developer pushes and
/// pulls a private project, a guest's push is refused with a message that
/// says why, anonymous clients pull the public project and nothing else.
#[tokio::test]
async fn podman_and_skopeo_log_in_push_pull_and_are_refused_clearly() {
    use crate::access::{PASSWORD, add_member, create_project, create_user};
    use serde_json::json;
    if !have("podman") || !have("skopeo") {
        return;
    }
    let s = TestServer::start().await;
    create_project(&s, "team", false).await;
    for (user, role) in [("dev", "developer"), ("viewer", "guest")] {
        create_user(&s, user).await;
        add_member(&s, "team", json!({"user": user}), None, role).await;
    }
    s.push_image("library/hello", "1", &[b"public layer"]).await;
    let work = tempfile::tempdir().unwrap();
    let dev_auth = work.path().join("dev-auth.json");
    let dev_auth = dev_auth.to_str().unwrap();
    let podman = |args: &[&str]| container_tool("podman", work.path(), args);
    let host = s.host();

    run(podman(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        dev_auth,
        "-u",
        "dev",
        "-p",
        PASSWORD,
        &host,
    ]))
    .await;
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dev_auth).unwrap()).unwrap();
    assert!(stored["auths"][&host]["auth"].is_string(), "{stored}");
    run(podman(&["pull", &format!("oci:{}", fixture_layout())])).await;
    let image = format!("{host}/team/mini:1");
    run(podman(&["tag", "658d0eef79fe", &image])).await;
    run(podman(&[
        "push",
        "--tls-verify=false",
        "--authfile",
        dev_auth,
        &image,
    ]))
    .await;
    run(podman(&["rmi", "-a", "-f"])).await;
    run(podman(&[
        "pull",
        "--tls-verify=false",
        "--authfile",
        dev_auth,
        &image,
    ]))
    .await;

    // A guest may pull but not push; the refusal names the reason.
    let viewer_auth = work.path().join("viewer-auth.json");
    let viewer_auth = viewer_auth.to_str().unwrap();
    let mut login = skopeo(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        viewer_auth,
        "-u",
        "viewer",
        "--password-stdin",
        &host,
    ]);
    login.stdin(std::process::Stdio::piped());
    let mut child = login.stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), PASSWORD.as_bytes()).unwrap();
    assert!(
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
            .status
            .success()
    );
    run(skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--authfile",
        viewer_auth,
        &format!("docker://{image}"),
    ]))
    .await;
    let out = attempt(skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-authfile",
        viewer_auth,
        &format!("oci:{}", fixture_layout()),
        &format!("docker://{host}/team/denied:1"),
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("viewer may not push team/denied") && stderr.contains("developer role"),
        "{stderr}"
    );

    // Anonymous: the public project, and nothing private.
    run(skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--no-creds",
        &format!("docker://{host}/library/hello:1"),
    ]))
    .await;
    let out = attempt(skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--no-creds",
        &format!("docker://{image}"),
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authentication required"), "{stderr}");

    run(podman(&["logout", "--authfile", dev_auth, &host])).await;
    let out = attempt(podman(&[
        "pull",
        "--tls-verify=false",
        "--authfile",
        dev_auth,
        &image,
    ]))
    .await;
    assert!(
        !out.status.success(),
        "logged out, the private image is out of reach"
    );
}
