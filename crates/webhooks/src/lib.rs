//! Webhooks: outbox events made into deliveries, one per matching policy,
//! and sent at least once, in order per policy and artifact, with retries.
//!
//! Every node runs [`Webhooks::run`], a loop that each tick (a quarter of a
//! second by default):
//! 1. **dispatches**: reads the outbox events not yet dispatched, folds those
//!    of one change into webhook events ([`payload::group`]), renders one
//!    body per matching enabled policy and stores the deliveries while
//!    marking the events dispatched, in one transaction. Two nodes
//!    dispatching the same events make the same deliveries once (they are
//!    unique per policy, event and type).
//! 2. **sends** the due deliveries: each the oldest pending one of its policy
//!    and artifact, claimed for the length of an attempt (so that no other
//!    node sends it meanwhile, and another does if this node dies), at most
//!    a few per policy at once, each in a task of its own with a timeout: a
//!    slow or dead target holds up only its own deliveries, never requests
//!    or other targets. Outcomes are recorded together at the next tick.
//!
//! A failed attempt (a transport error, a timeout or a status other than
//! 2xx) is tried again after an exponential backoff with jitter, until
//! `max_attempts`; then the delivery is failed and a user can redeliver it.
//! Deliveries are rows of the metadata database: after a restart, pending
//! ones go on where they were (one being sent when the process died is sent
//! again once its claim lapses).
//!
//! What this crate must not do: decide who may manage policies (the HTTP
//! layer checks), or write the outbox (every change writes its own events).

pub mod payload;
mod send;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use metadata::MetaStore;
use metadata::webhooks::{AttemptOutcome, Delivery, NewDelivery, WebhookPolicy};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use payload::{EventType, Format, WebhookEvent};
pub use send::sign;

/// How webhooks are sent.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// How often the outbox and the due deliveries are looked at.
    pub poll_interval: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Attempts before a delivery is failed.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub retry_base: Duration,
    /// Longest wait between two attempts.
    pub retry_max: Duration,
    /// Ended deliveries are kept this long in the log.
    pub history: Duration,
    /// The registry's address as clients name it (`host[:port]`), for
    /// Harbor's `resource_url`.
    pub registry_host: String,
    /// Attempts in flight at once for one policy.
    pub per_policy: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            poll_interval: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            history: Duration::from_secs(14 * 86_400),
            registry_host: "127.0.0.1:5000".into(),
            per_policy: 4,
        }
    }
}

/// Outbox events read per dispatch transaction.
const DISPATCH_PAGE: u32 = 500;
/// Due deliveries looked at per tick.
const DUE_PAGE: u32 = 500;
/// Ended deliveries are pruned this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The webhook dispatcher and sender of one node.
#[derive(Debug)]
pub struct Webhooks {
    meta: Arc<dyn MetaStore>,
    settings: WebhookSettings,
    sender: send::Sender,
}

impl Webhooks {
    pub fn new(meta: Arc<dyn MetaStore>, settings: WebhookSettings) -> Result<Webhooks, String> {
        let sender = send::Sender::new(settings.timeout)?;
        Ok(Webhooks {
            meta,
            settings,
            sender,
        })
    }

    /// Dispatches and sends until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i64, AttemptOutcome)>();
        // Deliveries this node is sending, per policy.
        let mut in_flight: HashMap<i64, HashSet<i64>> = HashMap::new();
        let mut last_prune = tokio::time::Instant::now();
        let mut failures = 0u32;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
            // Outcomes of the attempts that ended since the last tick.
            let mut outcomes = Vec::new();
            while let Ok((policy, outcome)) = done_rx.try_recv() {
                if let Some(set) = in_flight.get_mut(&policy) {
                    set.remove(&outcome.delivery_id);
                }
                outcomes.push(outcome);
            }
            let tick = async {
                if !outcomes.is_empty() {
                    self.meta.finish_attempts(&outcomes, now_ms()).await?;
                }
                let policies = self.meta.enabled_webhooks().await?;
                self.dispatch(&policies).await?;
                self.send_due(&policies, &mut in_flight, &done_tx).await?;
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = tokio::time::Instant::now();
                    let before = now_ms() - self.settings.history.as_millis() as i64;
                    self.meta.prune_deliveries(before).await?;
                }
                Ok::<_, metadata::MetadataError>(())
            };
            match tick.await {
                Ok(()) => failures = 0,
                Err(e) => {
                    // Attempts whose outcome could not be written are sent
                    // again once their claim lapses: at least once.
                    failures += 1;
                    if failures % 40 == 1 {
                        tracing::warn!(error = %e, "webhook dispatch or delivery failed");
                    }
                }
            }
        }
    }

    /// Makes deliveries of the outbox events not yet dispatched.
    async fn dispatch(&self, policies: &[WebhookPolicy]) -> metadata::Result<()> {
        loop {
            let page = self.meta.events_to_dispatch(DISPATCH_PAGE).await?;
            let full = page.len() == DISPATCH_PAGE as usize;
            let ready = if full {
                &page[..payload::complete_prefix(&page)]
            } else {
                &page[..]
            };
            if ready.is_empty() {
                return Ok(());
            }
            let mut deliveries = Vec::new();
            for event in payload::group(ready) {
                for policy in policies.iter().filter(|p| wants(p, &event)) {
                    let format = Format::parse(&policy.format).unwrap_or(Format::Harbor);
                    deliveries.push(NewDelivery {
                        policy_id: policy.id,
                        event_id: event.event_id,
                        event_type: event.kind.as_str().to_owned(),
                        ordering_key: event.ordering_key(),
                        body: payload::render(&event, policy, format, &self.settings.registry_host),
                    });
                }
            }
            let ids: Vec<i64> = ready.iter().map(|e| e.event.id).collect();
            self.meta.dispatch(&ids, &deliveries, now_ms()).await?;
            metrics::counter!("wharf_webhook_deliveries_created_total")
                .increment(deliveries.len() as u64);
            if !full {
                return Ok(());
            }
        }
    }

    /// Claims the due deliveries this node can start and starts them.
    async fn send_due(
        &self,
        policies: &[WebhookPolicy],
        in_flight: &mut HashMap<i64, HashSet<i64>>,
        done: &mpsc::UnboundedSender<(i64, AttemptOutcome)>,
    ) -> metadata::Result<()> {
        let now = now_ms();
        let due = self.meta.due_deliveries(now, DUE_PAGE).await?;
        let by_id: HashMap<i64, &WebhookPolicy> = policies.iter().map(|p| (p.id, p)).collect();
        let mut starting: Vec<Delivery> = Vec::new();
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for d in due {
            let running = in_flight.get(&d.policy_id).map_or(0, HashSet::len);
            let count = counts.entry(d.policy_id).or_insert(running);
            let mine = in_flight
                .get(&d.policy_id)
                .is_some_and(|set| set.contains(&d.id));
            if mine || *count >= self.settings.per_policy || !by_id.contains_key(&d.policy_id) {
                continue;
            }
            *count += 1;
            starting.push(d);
        }
        if starting.is_empty() {
            return Ok(());
        }
        // Held for an attempt's timeout and some slack for recording it; on
        // the embedded database, a restart drops the claims at once.
        let until = now + (self.settings.timeout + Duration::from_secs(10)).as_millis() as i64;
        let ids: Vec<i64> = starting.iter().map(|d| d.id).collect();
        let claimed: HashSet<i64> = self
            .meta
            .claim_deliveries(&ids, now, until)
            .await?
            .into_iter()
            .collect();
        for delivery in starting.into_iter().filter(|d| claimed.contains(&d.id)) {
            let policy = by_id[&delivery.policy_id].clone();
            in_flight.entry(policy.id).or_default().insert(delivery.id);
            let (sender, settings, done) =
                (self.sender.clone(), self.settings.clone(), done.clone());
            tokio::spawn(async move {
                let outcome = sender.attempt(&policy, &delivery, &settings).await;
                // The loop is gone only at shutdown: the claim then lapses
                // and the delivery is sent again.
                let _ = done.send((policy.id, outcome));
            });
        }
        Ok(())
    }
}

/// Whether `policy` asks for `event`.
fn wants(policy: &WebhookPolicy, event: &WebhookEvent) -> bool {
    policy.project == event.project && policy.events.iter().any(|e| e == event.kind.as_str())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
