//! `?dry_run=true` on the routes that record a request (CREATE, UPDATE,
//! DELETE, rollback): nothing is recorded; the answer is the spec that
//! would be, the object a worker would apply, and what it would change.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{error::ApiError, extract::Caller, requests::DeploymentRequest, state::AppState};
use crate::{
    domain::spec::DeploymentSpec,
    dry_run::{self, Ask, Operation, Preview},
};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DryRunQuery {
    /// `true`: record nothing, and answer `200` with what would be applied
    /// and what it would change (the API server checks it, `dryRun=All`).
    pub dry_run: Option<bool>,
}

impl DryRunQuery {
    pub fn wanted(&self) -> bool {
        self.dry_run == Some(true)
    }
}

/// What a request would do, had it been recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunResult {
    /// The full desired spec the request would carry (for a DELETE, the
    /// current one).
    pub spec: DeploymentSpec,
    #[serde(flatten)]
    pub preview: Preview,
}

/// What a route that records a request answers with `200`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // never built: it exists for its schema
pub enum RequestOrDryRun {
    Replayed(DeploymentRequest),
    DryRun(DryRunResult),
}

/// Asks a worker to dry-run `operation` of `spec` as the caller, and
/// answers `200` with the result.
pub async fn answer(
    state: &AppState,
    caller: &Caller,
    operation: Operation,
    spec: DeploymentSpec,
) -> Result<Response, ApiError> {
    let question = Ask {
        operation,
        owner: caller.external_id.clone(),
        spec,
    };
    let preview = dry_run::ask(&state.nats, &state.names, &question, state.dry_run_timeout).await?;
    let result = DryRunResult {
        spec: question.spec,
        preview,
    };
    Ok((StatusCode::OK, Json(result)).into_response())
}
