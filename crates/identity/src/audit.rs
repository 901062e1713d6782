//! The audit log writer: who did what, when, from where, and whether it
//! worked.
//!
//! Requests hand their records to [`AuditLog::record`], which never waits:
//! records queue in memory and a background task writes them in batches
//! about once a second (a pull must not pay for a database write, nor a push
//! for a second commit), many rows per statement. If
//! the database is down the writer keeps its batch and retries; if the queue
//! overflows, each lost entry goes to the process log at `debug` and a
//! `warn` with the running count appears every ten seconds, so nothing
//! disappears silently. At shutdown the writer flushes what is queued.
//!
//! Pulls are coalesced: the same actor pulling the same artifact from the
//! same address within one second is one entry ("pulled N times"), so a busy
//! registry records every pull without writing a row for each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metadata::identity::IdentityStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records waiting for the writer, at most.
const QUEUE: usize = 100_000;
/// Records per database transaction, at most.
const BATCH: usize = 500;
/// How often coalesced pulls are written.
const PULL_WINDOW: Duration = Duration::from_secs(1);
/// Distinct (actor, address, artifact) pulls coalesced at once, at most;
/// beyond that pulls are queued one by one.
const MAX_COALESCED: usize = 10_000;

type PullKey = (String, String, String);
type Coalesced =
    Arc<Mutex<std::collections::HashMap<PullKey, (metadata::identity::AuditRecord, u64)>>>;

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
    /// Pulls of the current window, with their count.
    pulls: Coalesced,
    /// Entries queued and not yet written.
    unwritten: Arc<std::sync::atomic::AtomicUsize>,
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
            pulls: Arc::default(),
            unwritten: Arc::default(),
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
        if stored.operation == "pull" && stored.success {
            let mut pulls = self.pulls.lock().expect("audit pulls lock");
            let key = (
                stored.actor.clone(),
                stored.address.clone(),
                stored.resource.clone(),
            );
            if let Some((_, count)) = pulls.get_mut(&key) {
                *count += 1;
                return;
            }
            if pulls.len() < MAX_COALESCED {
                pulls.insert(key, (stored, 1));
                return;
            }
        }
        // Counted before it is sent, so the writer never subtracts it first.
        self.unwritten
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(stored) {
            self.unwritten
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
        let pulls = self.pulls.clone();
        let unwritten = self.unwritten.clone();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            let mut batch = Vec::with_capacity(BATCH);
            let mut window = tokio::time::interval(PULL_WINDOW);
            loop {
                // Entries gather for up to a window (or a full batch), so
                // that a busy registry commits the log about once a second
                // instead of once per request.
                let (stopping, due) = tokio::select! {
                    _ = shutdown.cancelled() => (true, true),
                    n = rx.recv_many(&mut batch, BATCH), if batch.len() < BATCH => (n == 0, batch.len() >= BATCH),
                    _ = window.tick() => (false, true),
                };
                if stopping {
                    rx.close();
                    while let Ok(r) = rx.try_recv() {
                        batch.push(r);
                    }
                }
                if !due {
                    continue;
                }
                let queued = batch.len();
                batch.extend(drain_pulls(&pulls));
                if !batch.is_empty() {
                    write(&*store, &mut batch, !stopping).await;
                }
                unwritten.fetch_sub(queued, std::sync::atomic::Ordering::Relaxed);
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
            let pulls_pending = !self.pulls.lock().expect("audit pulls lock").is_empty();
            let unwritten = self.unwritten.load(std::sync::atomic::Ordering::Relaxed);
            if !pulls_pending && unwritten == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The pulls of the window that ends now, one entry each.
fn drain_pulls(pulls: &Coalesced) -> Vec<metadata::identity::AuditRecord> {
    let drained = std::mem::take(&mut *pulls.lock().expect("audit pulls lock"));
    drained
        .into_values()
        .map(|(mut record, count)| {
            if count > 1 {
                record.detail = format!("pulled {count} times within a second");
            }
            record
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn new_log() -> (tempfile::TempDir, AuditLog, Arc<dyn IdentityStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = metadata::SqliteMetaStore::open(&metadata::SqliteOptions {
            path: dir.path().join("meta.db"),
            readers: 1,
            fsync_every_commit: false,
        })
        .await
        .unwrap();
        let store: Arc<dyn IdentityStore> = Arc::new(store);
        (dir, AuditLog::new(store.clone()), store)
    }

    fn pull(actor: &str) -> AuditRecord {
        AuditRecord {
            actor: actor.into(),
            address: "192.0.2.7".into(),
            operation: "pull".into(),
            resource_type: "artifact".into(),
            resource: "team/app:1".into(),
            project: Some("team".into()),
            success: true,
            detail: String::new(),
        }
    }

    /// Regression: an idle writer once spun forever after shutdown instead
    /// of returning.
    #[tokio::test]
    async fn the_writer_stops_at_shutdown_when_idle_and_flushes_when_busy() {
        let (_dir, log, store) = new_log().await;
        let shutdown = CancellationToken::new();
        let writer = log.spawn_writer(shutdown.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer stops")
            .unwrap();

        let (_dir2, log, _) = new_log().await;
        let shutdown = CancellationToken::new();
        let writer = log.spawn_writer(shutdown.clone());
        log.record(pull("alice"));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .unwrap()
            .unwrap();
        let _ = store;
    }

    #[tokio::test]
    async fn pulls_in_one_window_are_one_entry() {
        let (_dir, log, store) = new_log().await;
        let shutdown = CancellationToken::new();
        let writer = log.spawn_writer(shutdown.clone());
        for _ in 0..5 {
            log.record(pull("alice"));
        }
        log.record(pull("bob"));
        log.flushed().await;
        let listed = store
            .list_audit(
                &metadata::identity::AuditFilter::default(),
                &metadata::identity::Sort::default(),
                metadata::identity::Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(listed.total, 2);
        let alice = listed
            .items
            .iter()
            .find(|e| e.record.actor == "alice")
            .unwrap();
        assert_eq!(alice.record.detail, "pulled 5 times within a second");
        shutdown.cancel();
        writer.await.unwrap();
    }
}
