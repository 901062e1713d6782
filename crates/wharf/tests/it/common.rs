//! Test harness: real wharf servers on 127.0.0.1:0, each with its own data
//! directory, and helpers that speak the distribution API with reqwest.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use oci::{Digest, DigestAlgorithm};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use wharf::config::Config;
use wharf::server::Running;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config: Config,
    running: Option<Running>,
    pub base: String,
    pub client: Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        config.server.listen = "127.0.0.1:0".into();
        config.server.shutdown_grace_seconds = 5;
        config.database.fsync_every_commit = false;
        with_test_auth(&mut config);
        adjust(&mut config);
        let running = wharf::server::start(&config).await.unwrap();
        let base = running.base_url();
        register_registry(&running.addr.to_string());
        TestServer {
            dir,
            config,
            running: Some(running),
            base,
            client: client(),
        }
    }

    /// Stops the server (finishing in-flight requests) and starts a new one
    /// on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = wharf::server::start(&self.config).await.unwrap();
        self.base = running.base_url();
        register_registry(&running.addr.to_string());
        self.running = Some(running);
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    /// Where the filesystem blob store keeps a blob's bytes.
    pub fn blob_file(&self, digest: &Digest) -> PathBuf {
        let root = (self.config.storage.filesystem.path.clone())
            .unwrap_or_else(|| self.config.data_dir.join("blobs"));
        let encoded = digest.encoded();
        root.join("blobs")
            .join(digest.algorithm().as_str())
            .join(&encoded[..2])
            .join(encoded)
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// `host:port`, as container tools name a registry.
    pub fn host(&self) -> String {
        self.running().addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// An access token for `scope`, issued to the administrator.
    pub async fn token(&self, scope: &str) -> String {
        let response = self
            .client
            .get(self.upload_url("/auth/token", &[("service", "wharf"), ("scope", scope)]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// Pushes a blob with POST then PUT, returning its digest.
    pub async fn push_blob(&self, repo: &str, content: &[u8]) -> Digest {
        let digest = sha256(content);
        let location = self.start_upload(repo).await;
        let response = self.finish_upload(&location, &digest, content).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            text(response).await
        );
        digest
    }

    /// PUTs `content` as the whole of the upload at `location`, closing it
    /// with `digest`.
    pub async fn finish_upload(&self, location: &str, digest: &Digest, content: &[u8]) -> Response {
        self.client
            .put(self.upload_url(location, &[("digest", digest.as_str())]))
            .header("content-type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// POSTs a new upload session, returning its Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let response = self
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        header(&response, "location")
    }

    /// An absolute URL for an upload Location, with extra query parameters.
    pub fn upload_url(&self, location: &str, params: &[(&str, &str)]) -> String {
        let mut url = reqwest::Url::parse(&self.url(location)).unwrap();
        for (k, v) in params {
            url.query_pairs_mut().append_pair(k, v);
        }
        url.to_string()
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes config and layers and an OCI manifest tagged `tag`; returns the
    /// manifest bytes and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (Vec<u8>, Digest) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":"{repo}:{tag}"}}"#
        );
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let mut descriptors = Vec::new();
        for layer in layers {
            let d = self.push_blob(repo, layer).await;
            descriptors
                .push(json!({"mediaType": OCI_LAYER, "digest": d.as_str(), "size": layer.len()}));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
            "layers": descriptors,
        }))
        .unwrap();
        let response = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            text(response).await
        );
        let digest = sha256(&manifest);
        (manifest, digest)
    }
}

/// The first administrator's password on every test server.
pub const ADMIN_PASSWORD: &str = "wharf-test-admin-password";

/// Test servers start with a known administrator, who may push to projects
/// that do not exist yet (they are created), so tests of the registry core
/// need not create projects first.
pub fn with_test_auth(config: &mut Config) {
    config.auth.admin_password = Some(ADMIN_PASSWORD.into());
    config.auth.auto_create_projects = true;
}

/// `Basic` credentials of the administrator.
pub fn admin_basic() -> String {
    basic("admin", ADMIN_PASSWORD)
}

pub fn basic(name: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"))
    )
}

/// An HTTP client that signs every request as the administrator (with the
/// process's TLS provider installed first).
pub fn client() -> Client {
    storage::install_crypto_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        admin_basic().parse().unwrap(),
    );
    Client::builder().default_headers(headers).build().unwrap()
}

/// An HTTP client without credentials.
pub fn anonymous_client() -> Client {
    storage::install_crypto_provider();
    Client::new()
}

/// A credentials file in the docker/podman format (`REGISTRY_AUTH_FILE`)
/// holding the administrator's credentials for every registry the tests
/// started, so skopeo, podman and buildah push and pull as the administrator.
pub fn registry_auth_file() -> PathBuf {
    auth_dir().path().join("auth.json")
}

fn auth_dir() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

/// Adds `host` (`host:port`) to [`registry_auth_file`].
pub fn register_registry(host: &str) {
    use base64::Engine;
    static HOSTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut hosts = HOSTS.lock().unwrap();
    hosts.push(host.to_owned());
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let auths: serde_json::Map<String, Value> = hosts
        .iter()
        .map(|h| (h.clone(), json!({ "auth": auth })))
        .collect();
    let file = registry_auth_file();
    let partial = file.with_extension("partial");
    std::fs::write(
        &partial,
        serde_json::to_vec(&json!({ "auths": auths })).unwrap(),
    )
    .unwrap();
    std::fs::rename(&partial, &file).unwrap();
}

pub fn sha256(content: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, content)
}

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("response has no {name} header: {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub async fn text(response: Response) -> String {
    response.text().await.unwrap_or_default()
}

pub async fn bytes(response: Response) -> Bytes {
    response.bytes().await.unwrap()
}

/// Asserts an error response: status, and the spec's JSON body with `code` first.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    let got = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = text(response).await;
    assert_eq!(got, status, "body: {body}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "body: {body}"
    );
    let json: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let errors = json["errors"].as_array().expect("errors array");
    assert!(!errors.is_empty());
    assert_eq!(errors[0]["code"], code, "body: {body}");
    assert!(
        errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
    json
}

/// Whether an external program is installed. In CI (CI=true) a missing
/// program is a failure, never a silent skip.
pub fn have(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{program} is required in CI (CI=true) but is not installed; .ci/run installs it"
            );
        }
        eprintln!("skipping: {program} is not installed (set CI=true to make this a failure)");
    }
    found
}

/// Where test data lives in the repository.
pub fn testdata(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(path)
        .canonicalize()
        .unwrap_or_else(|e| panic!("test data {path}: {e}"))
}

/// A `wharf serve` process.
pub struct Node {
    child: Child,
    pub base: String,
}

impl Node {
    /// Starts a node on a free port with `config` and waits until it is ready.
    pub async fn start(config: &Config, dir: &Path, name: &str) -> Node {
        let port = free_port();
        let mut config = config.clone();
        config.server.listen = format!("127.0.0.1:{port}");
        config.log.level = "warn".into();
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
        command.args(["serve", "--config"]).arg(&file);
        // Only the file configures the node (not the tests' own TEST_WHARF_*).
        for (variable, _) in std::env::vars().filter(|(v, _)| v.starts_with("WHARF_")) {
            command.env_remove(variable);
        }
        let child = command.stdin(Stdio::null()).spawn().unwrap();
        register_registry(&format!("127.0.0.1:{port}"));
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        node.wait_ready().await;
        node
    }

    pub async fn wait_ready(&self) {
        let client = client();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {} did not become ready", self.base);
    }

    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no graceful anything.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free now and never handed out before in this process, so nodes
/// started together cannot be given the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A management API call at `base` as the administrator: the status and
/// the JSON body (`null` if there is none).
pub async fn api_at(
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client().request(method, format!("{base}/api/v1{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = text(response).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits for the lifecycle run at `path` (under `/api/v1`) to end; returns it.
pub async fn run_finished(base: &str, path: &str) -> Value {
    for _ in 0..500 {
        let (status, run) = api_at(base, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        if run["status"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {path} did not finish");
}
