//! What webhook delivery needs from the metadata store: per-project
//! policies, the outbox events not yet made into deliveries, and the
//! deliveries themselves with their log.
//!
//! The outbox is the `events` table every change writes in its own
//! transaction. The dispatcher reads the events not yet dispatched
//! ([`WebhookStore::events_to_dispatch`]), renders one delivery per matching
//! policy and stores them while marking the events dispatched, in one
//! transaction ([`WebhookStore::dispatch`]): an event is made into its
//! deliveries exactly once, even when two nodes dispatch at once (a delivery
//! is unique per policy, event and type). Deliveries are then sent at least
//! once, in order per policy and artifact (see [`WebhookStore::due_deliveries`]).
//!
//! Policies hold their authorization header and signing secret in clear:
//! the sender needs them. They are never returned by the API once set.

use async_trait::async_trait;

use crate::Result;
use crate::model::Event;

/// A webhook policy of a project: its spec, and what the store adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookPolicy {
    pub id: i64,
    pub project: String,
    pub spec: WebhookSpec,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What a policy is made or replaced from.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub name: String,
    pub url: String,
    /// Event types (`artifact.pushed`...), as the webhooks crate names them.
    pub events: Vec<String>,
    /// `harbor` or `cloudevents`.
    pub format: String,
    /// Sent as the `Authorization` header, verbatim.
    pub auth_header: Option<String>,
    /// Key of the HMAC-SHA256 signature header.
    pub secret: Option<String>,
    pub skip_tls_verify: bool,
    pub enabled: bool,
}

impl std::fmt::Debug for WebhookSpec {
    // Never prints the header or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("format", &self.format)
            .field("auth_header", &self.auth_header.as_ref().map(|_| "<set>"))
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("skip_tls_verify", &self.skip_tls_verify)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// An outbox event with what a payload needs about its repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    pub event: Event,
    /// `None` if the repository's project is gone.
    pub project_id: Option<i64>,
    pub project_public: bool,
    pub repository_created_at_ms: Option<i64>,
    /// For a pushed manifest: its artifact type and subject, if any.
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
}

/// A delivery the dispatcher made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub policy_id: i64,
    pub event_id: i64,
    pub event_type: String,
    /// Deliveries of one policy with the same key are sent in order.
    pub ordering_key: String,
    pub body: String,
    /// Claim it at once (in [`WebhookStore::advance`]) if it is the only
    /// pending delivery of its policy and key.
    pub claim: bool,
}

/// One step of the delivery loop, written in one transaction by
/// [`WebhookStore::advance`].
#[derive(Clone, Debug, Default)]
pub struct Step<'a> {
    pub now_ms: i64,
    /// Claims taken in this step last until then.
    pub until_ms: i64,
    /// Attempts that ended.
    pub outcomes: &'a [AttemptOutcome],
    /// Outbox events made into `deliveries`.
    pub events: &'a [i64],
    pub deliveries: &'a [NewDelivery],
    /// Pending deliveries to claim.
    pub claims: &'a [i64],
}

/// What a step claimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advanced {
    /// Of the step's `claims`, those taken.
    pub claimed: Vec<i64>,
    /// For each of the step's `deliveries`: its id and whether it was
    /// claimed, or `None` if it existed already.
    pub created: Vec<Option<(i64, bool)>>,
}

/// Where a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A delivery, as the log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub policy_id: i64,
    pub event_id: i64,
    pub event_type: String,
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    /// The last attempt's HTTP status, error and time taken.
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    /// What the delivery becomes: succeeded, failed for good, or pending
    /// again with its next attempt at this time.
    pub next: AttemptNext,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptNext {
    Succeeded,
    Failed,
    RetryAt(i64),
}

/// Webhook policies, dispatch and deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Creates a policy in `project`; [`crate::MetadataError::Conflict`] if
    /// the project has one of that name.
    async fn create_webhook(&self, project: &str, spec: &WebhookSpec) -> Result<WebhookPolicy>;

    /// Replaces policy `id` of `project`; `None` if there is none.
    async fn update_webhook(
        &self,
        project: &str,
        id: i64,
        spec: &WebhookSpec,
    ) -> Result<Option<WebhookPolicy>>;

    async fn webhooks(&self, project: &str) -> Result<Vec<WebhookPolicy>>;

    async fn webhook(&self, project: &str, id: i64) -> Result<Option<WebhookPolicy>>;

    /// Deletes a policy and its deliveries; false if there was none.
    async fn delete_webhook(&self, project: &str, id: i64) -> Result<bool>;

    /// Every enabled policy, of every project.
    async fn enabled_webhooks(&self) -> Result<Vec<WebhookPolicy>>;

    /// Up to `limit` outbox events not yet dispatched, oldest first.
    async fn events_to_dispatch(&self, limit: u32) -> Result<Vec<OutboxEvent>>;

    /// Records a step of the delivery loop, in one transaction: ends the
    /// attempts, stores the new deliveries and marks their events
    /// dispatched, and takes the claims.
    async fn advance(&self, step: &Step<'_>) -> Result<Advanced>;

    /// Stores `deliveries` (skipping any already made) and marks `events`
    /// dispatched, in one transaction.
    async fn dispatch(&self, events: &[i64], deliveries: &[NewDelivery], now_ms: i64)
    -> Result<()>;

    /// Up to `limit` pending deliveries of enabled policies due at
    /// `now_ms`, not being sent by anyone, each the oldest pending one of its
    /// policy and ordering key; oldest first.
    async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>>;

    /// Takes deliveries `ids` for an attempt until `until_ms`; returns those
    /// taken (not those no longer pending or held by someone else).
    async fn claim_deliveries(&self, ids: &[i64], now_ms: i64, until_ms: i64) -> Result<Vec<i64>>;

    /// Records attempts and what their deliveries become.
    async fn finish_attempts(&self, outcomes: &[AttemptOutcome], now_ms: i64) -> Result<()>;

    /// A policy's deliveries, newest first, with ids below `before` if given.
    async fn deliveries(
        &self,
        policy_id: i64,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;

    async fn delivery(&self, policy_id: i64, id: i64) -> Result<Option<Delivery>>;

    /// Makes an ended delivery pending again, due now, attempts counted
    /// from zero; false if there is none or it is still pending.
    async fn redeliver(&self, policy_id: i64, id: i64, now_ms: i64) -> Result<bool>;

    /// Drops every claim: for the embedded database at startup, when the
    /// claims are those of a process that is gone.
    async fn release_delivery_claims(&self) -> Result<u64>;

    /// Removes ended deliveries that ended before `before_ms`; returns how many.
    async fn prune_deliveries(&self, before_ms: i64) -> Result<u64>;
}
