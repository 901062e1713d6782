//! Prometheus metrics: names, the recorder, and the per-request middleware.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::InternalErrorDetail;

pub const REQUESTS: &str = "wharf_http_requests_total";
pub const REQUEST_DURATION: &str = "wharf_http_request_duration_seconds";
pub const BYTES_RECEIVED: &str = "wharf_http_received_bytes_total";
pub const BYTES_SENT: &str = "wharf_http_sent_bytes_total";
pub const STORAGE_BYTES: &str = "wharf_storage_bytes";
pub const STORAGE_BLOBS: &str = "wharf_storage_blobs";

/// The endpoint a response answered, set by the handler for the middleware.
#[derive(Clone, Copy, Debug)]
pub struct EndpointName(pub &'static str);

/// Renders the metrics; cheap to clone.
pub type MetricsHandle = PrometheusHandle;

/// Publishes how much the registry stores.
pub fn set_storage_usage(blobs: u64, bytes: u64) {
    metrics::gauge!(STORAGE_BLOBS).set(blobs as f64);
    metrics::gauge!(STORAGE_BYTES).set(bytes as f64);
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &buckets)
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding several
            // servers); the handle still renders what this recorder sees.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "HTTP requests answered, by endpoint and status");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to the response headers, by endpoint"
    );
    metrics::describe_counter!(
        BYTES_RECEIVED,
        metrics::Unit::Bytes,
        "Request body bytes received"
    );
    metrics::describe_counter!(
        BYTES_SENT,
        metrics::Unit::Bytes,
        "Response body bytes sent, by endpoint"
    );
    metrics::describe_gauge!(STORAGE_BYTES, metrics::Unit::Bytes, "Bytes of blobs held");
    metrics::describe_gauge!(STORAGE_BLOBS, "Blobs held");
}

/// Records every request, and logs 5xx details exactly once.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let endpoint = response
        .extensions()
        .get::<EndpointName>()
        .map_or("other", |e| e.0);
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::histogram!(REQUEST_DURATION, "endpoint" => endpoint).record(elapsed.as_secs_f64());
    metrics::counter!(REQUESTS, "endpoint" => endpoint, "status" => status_label(status.as_u16()))
        .increment(1);
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && method != http::Method::HEAD
    {
        metrics::counter!(BYTES_SENT, "endpoint" => endpoint).increment(len);
    }
    if status.is_server_error() {
        let detail = response
            .extensions()
            .get::<InternalErrorDetail>()
            .map_or("", |d| d.0.as_str());
        tracing::error!(endpoint, %method, status = status.as_u16(), error = detail, "request failed");
    } else {
        tracing::debug!(endpoint, %method, status = status.as_u16(), micros = elapsed.as_micros() as u64, "request");
    }
    response
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        414 => "414",
        416 => "416",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
