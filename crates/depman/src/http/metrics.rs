//! Prometheus metrics of the API: request counts and latency by route,
//! method and status, served at `/metrics`.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use super::{AppState, error::ApiError};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

type LatencyFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// The registry and the metrics in it. Each process (and each test app) has
/// its own: no global recorder.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<HttpLabels, Counter>,
    latency: LatencyFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("depman");
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
        }
    }
}

/// 1 ms to about 4 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 13,
    ))
}

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
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut body = String::new();
    encode(&mut body, &state.metrics.registry).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
