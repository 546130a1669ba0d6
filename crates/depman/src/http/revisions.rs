//! `/api/v1/deployments/{identifier}/revisions` and `/rollback`: the specs a
//! deployment took, from depman's own records, and going back to one.

use axum::{Json, extract::State, response::Response};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    body::JsonBody,
    dry_run::{self, DryRunQuery, RequestOrDryRun},
    error::{ApiError, Problem},
    extract::{Caller, IdempotencyKey, PathParam, QueryParams},
    requests::{DeploymentRequest, Headers, PageQuery, asker, page_size, respond},
    state::AppState,
};
use crate::{
    accept,
    domain::{names::DnsLabel, rollout::Rollout, spec::DeploymentSpec},
    dry_run::Operation,
    store::{
        deployments,
        paging::Page,
        requests::{self, RevisionRow},
    },
};

/// An applied CREATE or UPDATE of a deployment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revision {
    /// 1, 2, ... in the order the requests took effect.
    pub revision: i64,
    /// The `id` of the request that made it.
    pub request_id: Uuid,
    pub request_type: crate::domain::status::RequestType,
    /// The full spec it applied.
    pub spec: DeploymentSpec,
    pub applied_on: DateTime<Utc>,
    /// The owner's `X-User-ID`.
    pub actor: String,
    /// How its rollout went.
    pub rollout: Option<Rollout>,
    /// Made by a rollback: the revision it went back to.
    pub rolled_back_to: Option<i32>,
}

impl Revision {
    fn new(row: RevisionRow, actor: &str) -> Self {
        let request = row.request;
        Self {
            revision: row.revision,
            request_id: request.id,
            request_type: request.request_type,
            spec: request.spec.0,
            applied_on: request.updated_on,
            actor: actor.to_owned(),
            rollout: request.rollout.map(|rollout| rollout.0),
            rolled_back_to: request.rolled_back_to,
        }
    }
}

/// The deployment's revisions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{identifier}/revisions",
    operation_id = "list_revisions",
    tag = "deployments",
    params(("identifier" = inline(DnsLabel), Path), PageQuery),
    responses(
        (status = 200, description = "A page of revisions", body = Page<Revision>),
        (status = 404, description = "No such deployment for this user", body = Problem),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(identifier): PathParam<DnsLabel>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<Revision>>, ApiError> {
    let limit = page_size(query.limit)?;
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    owned(&state, &caller, &identifier).await?;
    let mut rows = requests::revisions(
        &state.pool,
        caller.id,
        identifier.as_str(),
        before,
        None,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|row| encode_cursor(row.revision)))
        .flatten();
    let items = rows
        .into_iter()
        .map(|row| Revision::new(row, &caller.external_id))
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// One revision of the deployment.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{identifier}/revisions/{revision}",
    operation_id = "get_revision",
    tag = "deployments",
    params(("identifier" = inline(DnsLabel), Path), ("revision" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The revision", body = Revision),
        (status = 404, description = "No such deployment or revision for this user", body = Problem),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(RevisionPath {
        identifier,
        revision,
    }): PathParam<RevisionPath>,
) -> Result<Json<Revision>, ApiError> {
    owned(&state, &caller, &identifier).await?;
    let row = requests::revisions(
        &state.pool,
        caller.id,
        identifier.as_str(),
        None,
        Some(revision),
        1,
    )
    .await?
    .pop()
    .ok_or_else(|| {
        ApiError::NotFound(format!(
            "deployment `{}` has no revision {revision}",
            identifier.as_str()
        ))
    })?;
    Ok(Json(Revision::new(row, &caller.external_id)))
}

#[derive(Debug, Deserialize)]
pub struct RevisionPath {
    identifier: DnsLabel,
    revision: i64,
}

/// What to roll back to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackInput {
    /// The revision whose spec to apply again.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "crate::domain::json::integer")]
    pub revision: i64,
}

/// Record an UPDATE back to a revision's spec, carried out like any UPDATE.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{identifier}/rollback",
    operation_id = "rollback_deployment",
    tag = "deployments",
    params(("identifier" = inline(DnsLabel), Path), Headers, DryRunQuery),
    request_body = RollbackInput,
    responses(
        (status = 202, description = "Accepted: the UPDATE, with `rolled_back_to`", body = DeploymentRequest),
        (status = 200, description = "Replay of an earlier rollback with the same X-Request-ID; or, with `dry_run=true`, what would be applied", body = RequestOrDryRun),
        (status = 400, description = "The body is not a JSON object", body = Problem),
        (status = 404, description = "No such deployment or revision for this user", body = Problem),
        (status = 409, description = "The deployment is deleted, failed or being deleted", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "A field is invalid, X-Request-ID is malformed or was used for another request, or (dry run) Kubernetes refused the object", body = Problem),
        (status = 503, description = "PostgreSQL is unavailable, or (dry run) no worker answered in time or Kubernetes is unreachable", body = Problem),
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    PathParam(identifier): PathParam<DnsLabel>,
    QueryParams(query): QueryParams<DryRunQuery>,
    JsonBody(input): JsonBody<RollbackInput>,
) -> Result<Response, ApiError> {
    if input.revision < 1 {
        return Err(ApiError::invalid("revision", "must be 1 or more"));
    }
    let proposal =
        accept::rollback(&state.pool, caller.id, identifier.as_str(), input.revision).await?;
    if query.wanted() {
        let spec = accept::preview(&state.pool, caller.id, proposal).await?;
        return dry_run::answer(&state, &caller, Operation::Apply, spec).await;
    }
    let accepted = accept::record(&state.pool, asker(&caller, &key), proposal).await?;
    Ok(respond(accepted))
}

/// The user's deployment, or 404.
async fn owned(state: &AppState, caller: &Caller, identifier: &DnsLabel) -> Result<(), ApiError> {
    deployments::find(&state.pool, caller.id, identifier.as_str())
        .await?
        .map(drop)
        .ok_or_else(|| {
            ApiError::NotFound(format!("deployment `{}` not found", identifier.as_str()))
        })
}

fn encode_cursor(revision: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("revision:{revision}"))
}

fn decode_cursor(token: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("revision:")?.parse().ok())
        .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))
}
