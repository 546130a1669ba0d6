//! Request ids and the tracing span every request is handled in.

use axum::{
    extract::{MatchedPath, Request},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tower_http::trace::{DefaultOnResponse, HttpMakeClassifier, TraceLayer};
use tracing::{Level, Span};

use super::extract::REQUEST_ID_HEADER;

/// Gives every request an `X-Request-ID` (the caller's, or a new one), so
/// that logs, the idempotency key and the response all carry the same id.
pub async fn ensure_request_id(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(REQUEST_ID_HEADER) {
        Some(id) => id.clone(),
        None => {
            let id = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a uuid is a valid header value");
            request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
            id
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}

type MakeSpan = fn(&Request) -> Span;

/// One span per request, with its method, route and request id; the `user`
/// field is filled in once the caller is known. Each answer is logged at
/// `info` with its status and latency.
pub fn layer() -> TraceLayer<HttpMakeClassifier, MakeSpan> {
    TraceLayer::new_for_http()
        .make_span_with(make_span as MakeSpan)
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

fn make_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "http",
        method = %request.method(),
        route,
        request_id,
        user = tracing::field::Empty,
    )
}
