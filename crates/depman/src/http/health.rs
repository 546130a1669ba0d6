//! Liveness and readiness.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    error::{ApiError, Problem},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/api/v1/ping",
    operation_id = "ping",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Status))
)]
pub async fn ping() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: PostgreSQL answers a query and NATS is connected.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "A dependency is down; the problem names it", body = Problem),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let query = sqlx::query("SELECT 1").execute(&state.pool);
    let postgres_up = matches!(
        tokio::time::timeout(Duration::from_secs(2), query).await,
        Ok(Ok(_))
    );
    let nats_up = state.nats.connection_state() == async_nats::connection::State::Connected;
    let down: Vec<&'static str> = [("postgres", postgres_up), ("nats", nats_up)]
        .into_iter()
        .filter_map(|(name, up)| (!up).then_some(name))
        .collect();
    if down.is_empty() {
        Ok(Json(Status { status: "ready" }))
    } else {
        Err(ApiError::NotReady(down))
    }
}
