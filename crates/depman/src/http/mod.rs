//! The HTTP API: its state, and the router assembled in one place from the
//! route modules, so that the OpenAPI document and the routes come from the
//! same registrations and cannot drift.

pub mod body;
pub mod deployments;
pub mod dry_run;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod limit;
pub mod metrics;
pub mod openapi;
pub mod requests;
pub mod revisions;
pub mod state;
pub mod trace;
pub mod trusted;
pub mod ui;
pub mod wait;
pub mod webhooks;

use axum::{Router, extract::DefaultBodyLimit, middleware};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use error::ApiError;
pub use state::AppState;

/// Bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "depman",
        description = "Create, update and delete Kubernetes Deployments, asynchronously. \
                       Every /api/v1 route but /api/v1/ping needs X-User-ID (Authorize). \
                       Errors are RFC 9457 problem details naming each offending field.",
    ),
    tags(
        (name = "requests", description = "What users ask for: CREATE, UPDATE and DELETE requests"),
        (name = "deployments", description = "The deployments those requests manage, with their live state"),
        (name = "events", description = "Everything that happened to the caller's requests and deployments: a log, a live stream and webhooks"),
        (name = "operations", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// The whole application: API routes, OpenAPI document, Swagger UI, the
/// dashboard, and the layers every request passes through.
pub fn router(state: AppState) -> Router {
    let (api, mut document) = api_routes().split_for_parts();
    openapi::complete(&mut document, state.verifier.is_some());
    let metrics = state.metrics.clone();
    let limited = state.clone();
    api.merge(SwaggerUi::new("/swagger").url("/api-docs/openapi.json", document))
        .merge(ui::routes())
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        })
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn_with_state(limited, limit::limit))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(trace::layer())
        .layer(middleware::from_fn(trace::ensure_request_id))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(wait::time_limit))
        .with_state(state)
}

/// What a role without the API serves: its metrics and a liveness check.
pub fn operations_router(metrics: crate::metrics::Metrics) -> Router {
    use axum::routing::get;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|axum::extract::State(metrics): axum::extract::State<crate::metrics::Metrics>| async move {
                metrics::exposition(&metrics)
            }),
        )
        .with_state(metrics)
}

/// Every documented route: `routes!` registers a handler with the router and
/// its `#[utoipa::path]` with the document at once.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(requests::create))
        .routes(routes!(requests::list))
        .routes(routes!(requests::get, requests::update, requests::delete))
        .routes(routes!(requests::cancel))
        .routes(routes!(deployments::list))
        .routes(routes!(deployments::get))
        .routes(routes!(revisions::list))
        .routes(routes!(revisions::get))
        .routes(routes!(revisions::rollback))
        .routes(routes!(events::list))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(health::ping))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::render))
}
