//! One attempt at a delivery: the HTTP request, its signature, and what the
//! delivery becomes.

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use metadata::webhooks::{AttemptNext, AttemptOutcome, Delivery, WebhookPolicy};
use sha2::Sha256;

use crate::{Format, WebhookSettings, now_ms};

/// Header carrying the body's HMAC-SHA256 under the policy's secret,
/// `sha256=<hex>` (GitHub's convention).
pub const SIGNATURE_HEADER: &str = "X-Wharf-Signature-256";

/// `sha256=<lowercase hex HMAC-SHA256 of body under secret>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// HTTP clients: one that verifies certificates, one for the policies that
/// skip verification (internal targets with their own certificates).
#[derive(Clone, Debug)]
pub(crate) struct Sender {
    verifying: reqwest::Client,
    trusting: reqwest::Client,
}

/// At most this much of an error is kept in the delivery log.
const MAX_ERROR_CHARS: usize = 300;

impl Sender {
    pub(crate) fn new(timeout: Duration) -> Result<Sender, String> {
        storage::install_crypto_provider();
        let build = |skip_verify: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("wharf-webhooks/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .timeout(timeout)
                // A target answers for itself: a redirect could point the
                // signed body anywhere.
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(skip_verify)
                .build()
                .map_err(|e| format!("cannot set up the webhook HTTP client: {e}"))
        };
        Ok(Sender {
            verifying: build(false)?,
            trusting: build(true)?,
        })
    }

    /// Sends `delivery` once; returns what it becomes.
    pub(crate) async fn attempt(
        &self,
        policy: &WebhookPolicy,
        delivery: &Delivery,
        settings: &WebhookSettings,
    ) -> AttemptOutcome {
        let format = Format::parse(&policy.spec.format).unwrap_or(Format::Harbor);
        let client = if policy.spec.skip_tls_verify {
            &self.trusting
        } else {
            &self.verifying
        };
        let mut request = client
            .post(&policy.spec.url)
            .header(reqwest::header::CONTENT_TYPE, format.content_type())
            .header("X-Wharf-Event", &delivery.event_type)
            .header("X-Wharf-Delivery", delivery.id.to_string());
        if let Some(auth) = &policy.spec.auth_header {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(secret) = &policy.spec.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, delivery.body.as_bytes()));
        }
        let started = Instant::now();
        let result = request.body(delivery.body.clone()).send().await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (code, error) = match result {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => (
                Some(response.status().as_u16()),
                Some(format!("the target answered {}", response.status())),
            ),
            Err(e) => (None, Some(describe(&e))),
        };
        let attempts = delivery.attempts + 1;
        let next = if error.is_none() {
            AttemptNext::Succeeded
        } else if attempts >= settings.max_attempts {
            AttemptNext::Failed
        } else {
            AttemptNext::RetryAt(now_ms() + backoff(settings, attempts).as_millis() as i64)
        };
        let outcome_label = match next {
            AttemptNext::Succeeded => "succeeded",
            AttemptNext::Failed => "failed",
            AttemptNext::RetryAt(_) => "retrying",
        };
        metrics::counter!("wharf_webhook_attempts_total", "outcome" => outcome_label).increment(1);
        metrics::histogram!("wharf_webhook_attempt_seconds").record(latency_ms as f64 / 1000.0);
        if let Some(error) = &error {
            tracing::debug!(policy = policy.id, delivery = delivery.id, attempts, %error, "webhook attempt failed");
        }
        AttemptOutcome {
            delivery_id: delivery.id,
            response_code: code,
            error: error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect()),
            latency_ms,
            next,
        }
    }
}

/// The error and its causes, without the URL's query (which may hold a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        what
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

/// The wait before attempt `attempts + 1`: `retry_base` doubled for each
/// attempt after the first, at most `retry_max`, less up to half at random
/// (so that the deliveries of a target that comes back do not all return at
/// once).
pub(crate) fn backoff(settings: &WebhookSettings, attempts: u32) -> Duration {
    let full = settings
        .retry_base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(settings.retry_max);
    let mut random = [0u8; 8];
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    full.mul_f64(1.0 - fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_hmac_sha256_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = WebhookSettings {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            ..WebhookSettings::default()
        };
        for (attempts, full) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (30, 60)] {
            for _ in 0..20 {
                let wait = backoff(&settings, attempts);
                let full = Duration::from_secs(full);
                assert!(wait <= full && wait >= full / 2, "{attempts}: {wait:?}");
            }
        }
    }
}
