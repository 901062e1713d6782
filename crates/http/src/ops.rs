//! Operational endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Both stores answer; the node can take traffic.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: a store does not answer\n",
            )
                .into_response()
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
