//! The HTTP side of the metrics: every request counted and timed under its
//! route template, and `/metrics` in the Prometheus text format.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{error::ApiError, state::AppState};
use crate::metrics::{HttpLabels, Metrics};

/// Middleware: counts and times every request under its route template, so
/// that ids in paths do not make a series each.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics.http.requests.get_or_create(&labels).inc();
    metrics
        .http
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"))
)]
pub async fn render(State(state): State<AppState>) -> Response {
    exposition(&state.metrics)
}

/// The metrics as a Prometheus scrape answer.
pub fn exposition(metrics: &Metrics) -> Response {
    match metrics.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => ApiError::Unexpected(error.into()).into_response(),
    }
}
