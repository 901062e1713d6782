//! Webhooks: outbox events made into deliveries, one per matching policy,
//! and sent at least once, in order per policy and artifact, with retries.
//!
//! Every node runs [`Webhooks::run`], a loop that ticks every 250 ms, as
//! soon as attempts end (gathering those that end within 100 ms), and at
//! once while events wait. Each tick writes one transaction
//! ([`metadata::WebhookStore::advance`]) that:
//! 1. records the attempts that ended;
//! 2. **dispatches** a page of the outbox events not yet dispatched: folds
//!    those of one change into webhook events ([`payload::group`]), renders
//!    one body per matching enabled policy, stores the deliveries and marks
//!    the events dispatched. Two nodes dispatching the same events make the
//!    same deliveries once (unique per policy, event and type);
//! 3. **claims** what this node sends now: due deliveries (retries, and
//!    those that waited behind one that ended), then new ones, each only if
//!    it is the oldest pending delivery of its policy and artifact, at most
//!    16 in flight per policy. A claim lasts an attempt's timeout (no other
//!    node sends the delivery meanwhile; another does if this node dies).
//!
//! Each claimed delivery is sent by a task of its own with a timeout: a slow
//! or dead target holds up only its own deliveries, never requests or other
//! targets.
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
use metadata::webhooks::{
    AttemptOutcome, Delivery, DeliveryStatus, NewDelivery, Step, WebhookPolicy,
};
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
            per_policy: 16,
        }
    }
}

/// Outbox events read per dispatch transaction.
const DISPATCH_PAGE: u32 = 500;
/// Due deliveries looked at per tick.
const DUE_PAGE: u32 = 500;
/// After an attempt ends, how long the loop waits for others to record
/// them in one transaction.
const GATHER: Duration = Duration::from_millis(100);
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
        // Targets failing now, per policy.
        let mut health: HashMap<i64, Health> = HashMap::new();
        let mut last_prune = tokio::time::Instant::now();
        let mut failures = 0u32;
        // A full page of events is waiting: the next tick comes at once.
        let mut backlog = false;
        loop {
            let mut ended = Vec::new();
            let wait = if backlog {
                Duration::ZERO
            } else {
                self.settings.poll_interval
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                // An attempt ended: its policy may send the next one now.
                Some(first) = done_rx.recv() => {
                    ended.push(first);
                    // Those ending about now are recorded together.
                    tokio::time::sleep(GATHER).await;
                }
            }
            while let Ok(done) = done_rx.try_recv() {
                ended.push(done);
            }
            let mut outcomes = Vec::with_capacity(ended.len());
            for (policy, outcome) in ended {
                if let Some(set) = in_flight.get_mut(&policy) {
                    set.remove(&outcome.delivery_id);
                }
                let h = health.entry(policy).or_default();
                if outcome.error.is_none() {
                    *h = Health::default();
                } else {
                    h.failed(&self.settings);
                }
                outcomes.push(outcome);
            }
            health.retain(|_, h| h.failures > 0);
            match self
                .tick(&outcomes, &mut in_flight, &health, &done_tx)
                .await
            {
                Ok(more) => {
                    backlog = more;
                    failures = 0;
                }
                Err(e) => {
                    // Attempts whose outcome could not be written are sent
                    // again once their claim lapses: at least once.
                    backlog = false;
                    failures += 1;
                    if failures % 40 == 1 {
                        tracing::warn!(error = %e, "webhook dispatch or delivery failed");
                    }
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                let before = now_ms() - self.settings.history.as_millis() as i64;
                if let Err(e) = self.meta.prune_deliveries(before).await {
                    tracing::warn!(error = %e, "pruning the webhook delivery log failed");
                }
            }
        }
    }

    /// One step, written in one transaction: records `outcomes`, makes
    /// deliveries of a page of new events, claims what this node can send
    /// now (due deliveries first, then new ones) and starts sending it.
    /// Returns whether more events wait.
    async fn tick(
        &self,
        outcomes: &[AttemptOutcome],
        in_flight: &mut HashMap<i64, HashSet<i64>>,
        health: &HashMap<i64, Health>,
        done: &mpsc::UnboundedSender<(i64, AttemptOutcome)>,
    ) -> metadata::Result<bool> {
        let now = now_ms();
        // Held for an attempt's timeout and some slack for recording it; on
        // the embedded database, a restart drops the claims at once.
        let until = now + (self.settings.timeout + Duration::from_secs(10)).as_millis() as i64;
        let policies = self.meta.enabled_webhooks().await?;
        let by_id: HashMap<i64, &WebhookPolicy> = policies.iter().map(|p| (p.id, p)).collect();
        let mut room: HashMap<i64, usize> = policies
            .iter()
            .map(|p| {
                let busy = in_flight.get(&p.id).map_or(0, HashSet::len);
                let limit = health
                    .get(&p.id)
                    .and_then(Health::limit)
                    .unwrap_or(self.settings.per_policy);
                (p.id, limit.saturating_sub(busy))
            })
            .collect();
        let mut take = |policy: i64| match room.get_mut(&policy) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };

        // Due deliveries (retries, and those behind one that ended).
        let mut starting: Vec<Delivery> = Vec::new();
        for d in self.meta.due_deliveries(now, DUE_PAGE).await? {
            let mine = in_flight
                .get(&d.policy_id)
                .is_some_and(|set| set.contains(&d.id));
            if !mine && take(d.policy_id) {
                starting.push(d);
            }
        }

        // New events: deliveries of each to the policies that ask.
        let page = self.meta.events_to_dispatch(DISPATCH_PAGE).await?;
        let full = page.len() == DISPATCH_PAGE as usize;
        let ready = if full {
            &page[..payload::complete_prefix(&page)]
        } else {
            &page[..]
        };
        let mut deliveries = Vec::new();
        for event in payload::group(ready) {
            for policy in policies.iter().filter(|p| wants(p, &event)) {
                let format = Format::parse(&policy.spec.format).unwrap_or(Format::Harbor);
                deliveries.push(NewDelivery {
                    policy_id: policy.id,
                    event_id: event.event_id,
                    event_type: event.kind.as_str().to_owned(),
                    ordering_key: event.ordering_key(),
                    body: payload::render(&event, policy, format, &self.settings.registry_host),
                    claim: take(policy.id),
                });
            }
        }
        let events: Vec<i64> = ready.iter().map(|e| e.event.id).collect();
        let claims: Vec<i64> = starting.iter().map(|d| d.id).collect();
        if outcomes.is_empty() && events.is_empty() && claims.is_empty() {
            return Ok(false);
        }
        let advanced = self
            .meta
            .advance(&Step {
                now_ms: now,
                until_ms: until,
                outcomes,
                events: &events,
                deliveries: &deliveries,
                claims: &claims,
            })
            .await?;
        metrics::counter!("wharf_webhook_deliveries_created_total")
            .increment(advanced.created.iter().flatten().count() as u64);

        let claimed: HashSet<i64> = advanced.claimed.into_iter().collect();
        starting.retain(|d| claimed.contains(&d.id));
        for (new, created) in deliveries.into_iter().zip(advanced.created) {
            if let Some((id, true)) = created {
                starting.push(Delivery {
                    id,
                    policy_id: new.policy_id,
                    event_id: new.event_id,
                    event_type: new.event_type,
                    body: new.body,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_at_ms: now,
                    response_code: None,
                    error: None,
                    latency_ms: None,
                    created_at_ms: now,
                    finished_at_ms: None,
                });
            }
        }
        for delivery in starting {
            let Some(policy) = by_id.get(&delivery.policy_id).map(|p| (*p).clone()) else {
                continue;
            };
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
        Ok(full)
    }
}

/// How a policy's target has answered lately, on this node. After a few
/// failed attempts in a row the target is taken as down: its deliveries
/// wait (they are not attempted, so an outage does not use up their
/// attempts), and one attempt at a time probes it, each after a pause that
/// doubles like a delivery's backoff. The first success ends it.
#[derive(Debug, Default)]
struct Health {
    failures: u32,
    paused_until: Option<tokio::time::Instant>,
}

/// Failed attempts in a row after which a target is taken as down.
const DOWN_AFTER: u32 = 3;

impl Health {
    fn failed(&mut self, settings: &WebhookSettings) {
        self.failures += 1;
        if self.failures >= DOWN_AFTER {
            let pause = send::backoff(settings, self.failures - DOWN_AFTER + 1);
            self.paused_until = Some(tokio::time::Instant::now() + pause);
        }
    }

    /// Attempts the policy may have in flight now, if it is down.
    fn limit(&self) -> Option<usize> {
        match self.paused_until {
            Some(until) if tokio::time::Instant::now() < until => Some(0),
            Some(_) => Some(1),
            None => None,
        }
    }
}

/// Whether `policy` asks for `event`.
fn wants(policy: &WebhookPolicy, event: &WebhookEvent) -> bool {
    policy.project == event.project && policy.spec.events.iter().any(|e| e == event.kind.as_str())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
