//! Wiring: open the stores, build the registry and the HTTP app, serve until
//! told to stop, and run the background housekeeping with the same lifetime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_api::{AppState, TlsFiles};
use identity::Identity;
use metadata::MetaStore;
use registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::stores::{self, Metadata};

/// How often the storage gauges are refreshed from the metadata store.
const USAGE_INTERVAL: Duration = Duration::from_secs(30);
/// How often noted pull times are written to the database.
const PULL_TIMES_INTERVAL: Duration = Duration::from_secs(5);
/// How often the metrics recorder folds recent samples (bounds its memory).
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A server started by [`start`].
#[derive(Debug)]
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    pub tls: bool,
    shutdown: CancellationToken,
    /// Owns the accept loop and the background tasks; resolves when all ended.
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Asks the server to stop and waits until in-flight requests are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("server task panicked")?
    }

    /// Resolves when the server stops by itself or is asked to by `token`.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// `http://addr` or `https://addr`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Opens the stores and starts serving on the configured address.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    start_on(config, listener).await
}

/// Like [`start`], on a listener the caller bound (tests bind port 0).
pub async fn start_on(config: &Config, listener: TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let tls = match &config.server.tls {
        None => None,
        Some(t) => Some(http_api::load_tls(&TlsFiles {
            cert: t.certificate.clone(),
            key: t.private_key.clone(),
        })?),
    };

    let blobs = stores::open_blobs(config).await?;
    // A wrong bucket or credentials show here, at start, with their cause;
    // a store that is only down for now is waited for (`/readyz` says 503).
    if let Err(e) = blobs.ping().await {
        tracing::warn!(error = %e, "the blob store does not answer; serving 503 until it does");
    }
    let metadata = Metadata::open(config).await?;
    if let Metadata::Sqlite(store) = &metadata {
        // The embedded database serves this one process: a lease it holds
        // now belonged to a process that is gone (killed before it could
        // give it up), whose work would otherwise not start again until the
        // lease expired.
        store
            .release_all_leases()
            .await
            .context("cannot clear the leases of a previous process")?;
        metadata::WebhookStore::release_delivery_claims(store)
            .await
            .context("cannot release the webhook deliveries of a previous process")?;
        let finished = store
            .finish_interrupted_removals()
            .await
            .context("cannot finish the blob removals of a previous process")?;
        if finished > 0 {
            tracing::info!(
                blobs = finished,
                "finished blob removals a previous process left unfinished"
            );
        }
    }
    let meta = metadata.store();
    let registry = Registry::new(blobs, meta.clone(), config.limits());
    let registry_handle = registry.clone();
    let identity = Identity::start(metadata.identity_store(), config.auth.identity()).await?;
    let lifecycle = jobs::Lifecycle::new(
        registry.clone(),
        meta.clone(),
        identity.clone(),
        config.lifecycle.settings()?,
    );
    lifecycle.spawn_scheduler();
    let webhooks = webhooks::Webhooks::new(
        meta.clone(),
        config.webhooks.settings(&config.server.listen)?,
    )
    .map_err(anyhow::Error::msg)?;
    let metrics = http_api::metrics::recorder();
    let app = http_api::router(AppState {
        registry,
        lifecycle: lifecycle.clone(),
        identity: identity.clone(),
        token_realm: config.auth.token_realm.as_deref().map(Arc::from),
        tls: tls.is_some(),
        metrics: metrics.clone(),
        body_idle_timeout: Duration::from_secs(config.server.body_idle_timeout_seconds),
    });

    let shutdown = CancellationToken::new();
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        data = %config.data_dir.display(),
        "wharf is serving the OCI distribution API"
    );
    let housekeeping = tokio::spawn(housekeeping(meta, metrics, shutdown.clone()));
    let upkeep = identity.spawn_upkeep(shutdown.clone());
    let pull_times = tokio::spawn(flush_pull_times(registry_handle, shutdown.clone()));
    let webhooks = tokio::spawn(webhooks.run(shutdown.clone()));
    let tls_on = tls.is_some();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        http_api::serve(listener, app, tls, token.clone().cancelled_owned(), grace).await?;
        token.cancel();
        housekeeping.await.context("housekeeping task panicked")?;
        for task in upkeep {
            task.await.context("identity upkeep task panicked")?;
        }
        pull_times.await.context("pull-time task panicked")?;
        webhooks.await.context("webhook task panicked")?;
        lifecycle.shutdown().await;
        metadata.close().await;
        tracing::info!("wharf stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        tls: tls_on,
        shutdown,
        task,
    })
}

/// Writes the pull times the registry noted, every few seconds and once
/// more at shutdown.
async fn flush_pull_times(registry: Registry, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PULL_TIMES_INTERVAL);
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Err(e) = registry.flush_pulls().await {
            tracing::warn!(error = %e, "cannot record pull times; keeping them for the next try");
        }
        if stopping {
            return;
        }
    }
}

/// Refreshes the storage gauges and folds metric samples until shutdown.
async fn housekeeping(
    meta: Arc<dyn MetaStore>,
    metrics: http_api::metrics::MetricsHandle,
    shutdown: CancellationToken,
) {
    let mut usage = tokio::time::interval(USAGE_INTERVAL);
    let mut upkeep = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = usage.tick() => match meta.storage_usage().await {
                Ok(u) => http_api::metrics::set_storage_usage(u.blobs, u.bytes),
                Err(e) => tracing::warn!(error = %e, "cannot read storage usage"),
            },
            _ = upkeep.tick() => metrics.run_upkeep(),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
