//! Starting the servers under test: wharf, CNCF Distribution (the Debian
//! `docker-registry` package) and nginx serving wharf's blob files as the read
//! ceiling. Each gets its own directory and a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::{Method, StatusCode};

use crate::client::{Client, empty};

pub struct Server {
    pub name: &'static str,
    pub base: String,
    /// What the bench signs its requests with (wharf's administrator).
    pub authorization: Option<http::HeaderValue>,
    child: Child,
    /// Peak resident memory seen by the sampler since the last reset (KiB).
    watch: Arc<AtomicU64>,
    stop_sampler: Arc<AtomicBool>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The kernel's record of the process's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmHWM:").unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS:").unwrap_or(0)
    }

    /// Starts a new window for [`Server::window_peak_kib`].
    pub fn reset_window(&self) {
        self.watch.store(self.rss_kib(), Ordering::Relaxed);
    }

    /// Highest resident memory sampled (every 20 ms) since the last reset.
    pub fn window_peak_kib(&self) -> u64 {
        self.watch.load(Ordering::Relaxed)
    }

    fn sample(&self) {
        let pid = self.pid();
        let watch = self.watch.clone();
        let stop = self.stop_sampler.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = status_field(pid, "VmRSS:") {
                    watch.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_sampler.store(true, Ordering::Relaxed);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn started(
    name: &'static str,
    child: Child,
    port: u16,
    client: &Client,
    authorization: Option<http::HeaderValue>,
) -> anyhow::Result<Server> {
    let client = &client.with_authorization(authorization.clone());
    let server = Server {
        name,
        base: format!("http://127.0.0.1:{port}"),
        authorization,
        child,
        watch: Arc::default(),
        stop_sampler: Arc::default(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((_, _)) = client
            .expect(
                Method::GET,
                &format!("{}/v2/", server.base),
                &[],
                empty(),
                StatusCode::OK,
            )
            .await
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("{name} did not answer on {} within 30 s", server.base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.sample();
    Ok(server)
}

/// Where the servers keep their data: each its own local directory, or (for
/// the scale-out figures) one PostgreSQL database for wharf and one S3 bucket
/// for both, under prefixes of their own.
#[derive(Clone, Debug)]
pub enum Backend {
    Local,
    Shared(Shared),
}

#[derive(Clone)]
pub struct Shared {
    pub database_url: String,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Key prefix of this run; wharf and Distribution use subfolders of it.
    pub prefix: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Backend {
    pub fn is_shared(&self) -> bool {
        matches!(self, Backend::Shared(_))
    }
}

/// The administrator's password of the wharf under test.
const WHARF_ADMIN_PASSWORD: &str = "bench-admin-password";

/// wharf on `dir`, configured as the bench runs it, with `env` on top.
pub async fn wharf(
    bin: &Path,
    dir: &Path,
    backend: &Backend,
    client: &Client,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(dir)?;
    let mut command = Command::new(bin);
    if let Backend::Shared(s) = backend {
        command
            .env("WHARF_DATABASE__URL", &s.database_url)
            .env("WHARF_DATABASE__MAX_CONNECTIONS", "32")
            .env("WHARF_STORAGE__S3__ENDPOINT", &s.endpoint)
            .env("WHARF_STORAGE__S3__REGION", &s.region)
            .env("WHARF_STORAGE__S3__BUCKET", &s.bucket)
            .env("WHARF_STORAGE__S3__PREFIX", format!("{}/wharf", s.prefix))
            .env("WHARF_STORAGE__S3__ACCESS_KEY_ID", &s.access_key_id)
            .env("WHARF_STORAGE__S3__SECRET_ACCESS_KEY", &s.secret_access_key);
    }
    let child = command
        .arg("serve")
        .env("WHARF_DATA_DIR", dir)
        .env("WHARF_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WHARF_LOG__LEVEL", "warn")
        .env("WHARF_ADMIN_PASSWORD", WHARF_ADMIN_PASSWORD)
        .env("WHARF_AUTH__AUTO_CREATE_PROJECTS", "true")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("wharf.log"))?)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    started("wharf", child, port, client, Some(wharf_admin()?)).await
}

/// Basic credentials of the administrator the bench gives wharf.
pub fn wharf_admin() -> anyhow::Result<http::HeaderValue> {
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("admin:{WHARF_ADMIN_PASSWORD}"),
    );
    Ok(http::HeaderValue::from_str(&format!("Basic {basic}"))?)
}

/// CNCF Distribution with filesystem storage, access logs off and log level
/// `error`: its fastest configuration.
pub async fn distribution(
    dir: &Path,
    backend: &Backend,
    client: &Client,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(dir.join("storage"))?;
    let driver = match backend {
        Backend::Local => format!(
            "  filesystem:\n    rootdirectory: {}\n",
            dir.join("storage").display()
        ),
        // Redirects off: blob bytes flow through the registry, as with wharf.
        Backend::Shared(s) => format!(
            "  s3:\n    region: {}\n    regionendpoint: {}\n    bucket: {}\n    \
             accesskey: {}\n    secretkey: {}\n    secure: false\n    v4auth: true\n    \
             rootdirectory: /{}/distribution\n  redirect:\n    disable: true\n",
            s.region, s.endpoint, s.bucket, s.access_key_id, s.secret_access_key, s.prefix
        ),
    };
    let config = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n{driver}  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n\
         http:\n  addr: 127.0.0.1:{port}\n"
    );
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config)?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("distribution.log"))?)
        .spawn()
        .context("cannot start docker-registry (apt-get install docker-registry)")?;
    started("distribution", child, port, client, None).await
}

/// nginx serving `blob_root/blobs/sha256/xx/<hex>` at `/v2/<name>/blobs/sha256:<hex>`
/// with sendfile: the ceiling for blob reads from the same files.
pub async fn nginx(dir: &Path, blob_root: &Path, client: &Client) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let config = format!(
        r#"daemon off;
user root;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /v2/ {{ return 200; }}
    location ~ "^/v2/.+/blobs/sha256:([0-9a-f]{{2}})([0-9a-f]{{62}})$" {{
      default_type application/octet-stream;
      alias {root}/blobs/sha256/$1/$1$2;
    }}
  }}
}}
"#,
        root = blob_root.display()
    );
    let config_path: PathBuf = dir.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&config_path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nginx (apt-get install nginx-light)")?;
    started("nginx", child, port, client, None).await
}
