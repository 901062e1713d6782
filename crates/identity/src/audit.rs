//! The audit log writer: who did what, when, from where, and whether it
//! worked.
//!
//! Requests hand their records to [`AuditLog::record`], which never waits:
//! records queue in memory and a background task writes them in batches
//! (a pull must not pay for a database write), many rows per statement. If
//! the database is down the writer keeps its batch and retries; if the queue
//! overflows, each lost entry goes to the process log at `debug` and a
//! `warn` with the running count appears every ten seconds, so nothing
//! disappears silently. At shutdown the writer flushes what is queued.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metadata::identity::IdentityStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records waiting for the writer, at most.
const QUEUE: usize = 100_000;
/// Records per database transaction, at most.
const BATCH: usize = 500;

/// One thing that happened, as a request reports it (the time is taken
/// when it is recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub actor: String,
    pub address: String,
    pub operation: String,
    pub resource_type: String,
    pub resource: String,
    pub project: Option<String>,
    pub success: bool,
    pub detail: String,
}

#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn IdentityStore>,
    /// Entries that could not be queued since the start.
    lost: Arc<std::sync::atomic::AtomicU64>,
    last_warning: Arc<Mutex<Option<std::time::Instant>>>,
    tx: mpsc::Sender<metadata::identity::AuditRecord>,
    rx: Arc<Mutex<Option<mpsc::Receiver<metadata::identity::AuditRecord>>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    pub fn new(store: Arc<dyn IdentityStore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        AuditLog {
            store,
            lost: Arc::default(),
            last_warning: Arc::default(),
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: AuditRecord) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let stored = metadata::identity::AuditRecord {
            occurred_at_ms: at,
            actor: record.actor,
            address: record.address,
            operation: record.operation,
            resource_type: record.resource_type,
            resource: record.resource,
            project: record.project,
            success: record.success,
            detail: record.detail,
        };
        if let Err(e) = self.tx.try_send(stored) {
            let record = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            // Each lost entry goes to the process log at debug; a warning
            // with the count at most every ten seconds.
            tracing::debug!(
                actor = %record.actor,
                address = %record.address,
                operation = %record.operation,
                resource = %record.resource,
                success = record.success,
                "audit entry not queued"
            );
            let lost = self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let mut last = self.last_warning.lock().expect("audit warning lock");
            if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                *last = Some(std::time::Instant::now());
                tracing::warn!(
                    lost_total = lost,
                    "the audit queue is full (the database cannot keep up); entries are being lost"
                );
            }
        }
    }

    /// Writes queued records until `shutdown`, then flushes. Only the first
    /// call gets the queue; later calls return a task that ends at once.
    pub fn spawn_writer(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let rx = self.rx.lock().expect("audit receiver lock").take();
        let store = self.store.clone();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let stopping = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    n = rx.recv_many(&mut batch, BATCH) => n == 0,
                };
                if stopping {
                    rx.close();
                    while let Ok(r) = rx.try_recv() {
                        batch.push(r);
                    }
                }
                write(&*store, &mut batch, !stopping).await;
                if stopping {
                    return;
                }
            }
        })
    }

    /// Waits until everything queued so far has been written (for tests and
    /// for reads that must see their own entries).
    pub async fn flushed(&self) {
        for _ in 0..500 {
            if self.tx.capacity() == self.tx.max_capacity() {
                // Queue empty; give the writer a moment to commit its batch.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.tx.capacity() == self.tx.max_capacity() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Writes `batch`, retrying while the database is unavailable (if `retry`);
/// what cannot be written goes to the process log.
async fn write(
    store: &dyn IdentityStore,
    batch: &mut Vec<metadata::identity::AuditRecord>,
    retry: bool,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match store.append_audit(batch).await {
            Ok(()) => break,
            Err(metadata::MetadataError::Unavailable(e))
                if retry && delay < Duration::from_secs(30) =>
            {
                tracing::warn!(error = %e, records = batch.len(), "audit log unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not write the audit log; entries follow");
                for r in batch.iter() {
                    tracing::warn!(
                        actor = %r.actor, address = %r.address, operation = %r.operation,
                        resource = %r.resource, success = r.success, "audit entry"
                    );
                }
                break;
            }
        }
    }
    batch.clear();
}
