//! `/api/v1/deployments/requests`: record CREATE, UPDATE and DELETE requests,
//! and read them back.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    body::JsonBody,
    dry_run::{self, DryRunQuery, RequestOrDryRun},
    error::{ApiError, Problem},
    extract::{Caller, IdempotencyKey, PathParam, QueryParams},
    state::AppState,
    wait::WaitQuery,
};
use crate::{
    accept::{self, Accepted, Asker},
    domain::{
        names::DnsLabel,
        rollout::Rollout,
        schema,
        spec::{DeploymentInput, DeploymentPatch, DeploymentSpec},
        status::{RequestStatus, RequestType},
    },
    dry_run::Operation,
    store::{
        paging::{Cursor, Page},
        requests::{self, Filter, RequestRow},
    },
};

/// A request as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentRequest {
    pub id: Uuid,
    /// The idempotency key it was made with (`X-Request-ID`).
    pub request_id: String,
    pub identifier: String,
    pub name: String,
    pub namespace: String,
    pub request_type: RequestType,
    pub status: RequestStatus,
    pub failure_reason: Option<String>,
    /// A stable code for each failure: `cancelled`, `invalid-object`,
    /// `namespace-missing`, `forbidden`, `rejected`, `gave-up`,
    /// `superseded`, `create-failed`; `null` unless `FAILURE`.
    pub failure_code: Option<String>,
    pub attempts: i32,
    pub image: String,
    /// The full desired spec this request asks for.
    pub spec: DeploymentSpec,
    /// The rollout it started: `null` until applied, and for DELETE.
    pub rollout: Option<Rollout>,
    /// Made by a rollback: the revision whose spec it re-applies.
    pub rolled_back_to: Option<i32>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

impl From<RequestRow> for DeploymentRequest {
    fn from(row: RequestRow) -> Self {
        Self {
            id: row.id,
            request_id: row.request_id,
            identifier: row.identifier,
            name: row.name,
            namespace: row.namespace,
            request_type: row.request_type,
            status: row.status,
            failure_reason: row.failure_reason,
            failure_code: row.failure_code,
            attempts: row.attempts,
            image: row.image,
            spec: row.spec.0,
            rollout: row.rollout.map(|rollout| rollout.0),
            rolled_back_to: row.rolled_back_to,
            created_on: row.created_on,
            updated_on: row.updated_on,
        }
    }
}

/// Record a CREATE: the deployment is created asynchronously.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/requests/create",
    operation_id = "create_request",
    tag = "requests",
    params(Headers, DryRunQuery),
    request_body = DeploymentInput,
    responses(
        (status = 202, description = "Accepted", body = DeploymentRequest),
        (status = 200, description = "Replay of an earlier request with the same X-Request-ID and body; or, with `dry_run=true`, what would be applied", body = RequestOrDryRun),
        (status = 400, description = "The body is not a JSON object", body = Problem),
        (status = 403, description = "The namespace is reserved or not one the namespace policy gives the caller (`namespace-forbidden`), or the caller has the most live deployments allowed (`quota-exceeded`)", body = Problem),
        (status = 409, description = "The identifier is taken", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "A field is invalid, X-Request-ID is malformed or was used for another request, or (dry run) Kubernetes refused the object", body = Problem),
        (status = 503, description = "PostgreSQL is unavailable, or (dry run) no worker answered in time or Kubernetes is unreachable", body = Problem),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    QueryParams(query): QueryParams<DryRunQuery>,
    JsonBody(input): JsonBody<DeploymentInput>,
) -> Result<Response, ApiError> {
    if query.wanted() {
        let spec =
            accept::preview_create(&state.pool, asker(&caller, &key), input, &state.policy).await?;
        return dry_run::answer(&state, &caller, Operation::Apply, spec).await;
    }
    let accepted = accept::create(&state.pool, asker(&caller, &key), input, &state.policy).await?;
    Ok(respond(accepted))
}

/// Record an UPDATE of the deployment that request `id` belongs to. The body
/// is merged into the deployment's desired spec (RFC 7386 merge patch).
#[utoipa::path(
    patch,
    path = "/api/v1/deployments/requests/{id}",
    operation_id = "update_request",
    tag = "requests",
    params(("id" = Uuid, Path, description = "Any request of the deployment"), Headers, DryRunQuery),
    request_body = DeploymentPatch,
    responses(
        (status = 202, description = "Accepted; the new request carries the full merged spec", body = DeploymentRequest),
        (status = 200, description = "Replay of an earlier request; or, with `dry_run=true`, what would be applied", body = RequestOrDryRun),
        (status = 400, description = "The body is not a JSON object", body = Problem),
        (status = 404, description = "No such request for this user", body = Problem),
        (status = 409, description = "The deployment is deleted, failed or being deleted", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "A field is invalid or cannot change, `id` is not a UUID, X-Request-ID is malformed or was used for another request, or (dry run) Kubernetes refused the object", body = Problem),
        (status = 503, description = "PostgreSQL is unavailable, or (dry run) no worker answered in time or Kubernetes is unreachable", body = Problem),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    PathParam(id): PathParam<Uuid>,
    QueryParams(query): QueryParams<DryRunQuery>,
    JsonBody(patch): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let proposal = accept::update(id, patch)?;
    if query.wanted() {
        let spec = accept::preview(&state.pool, caller.id, proposal).await?;
        return dry_run::answer(&state, &caller, Operation::Apply, spec).await;
    }
    let accepted = accept::record(&state.pool, asker(&caller, &key), proposal).await?;
    Ok(respond(accepted))
}

/// Record a DELETE of the deployment that request `id` belongs to.
#[utoipa::path(
    delete,
    path = "/api/v1/deployments/requests/{id}",
    operation_id = "delete_request",
    tag = "requests",
    params(("id" = Uuid, Path, description = "Any request of the deployment"), Headers, DryRunQuery),
    responses(
        (status = 202, description = "Accepted", body = DeploymentRequest),
        (status = 200, description = "Replay of an earlier request; or, with `dry_run=true`, what would be deleted", body = RequestOrDryRun),
        (status = 404, description = "No such request for this user", body = Problem),
        (status = 409, description = "The deployment is already deleted, failed or being deleted", body = Problem),
        (status = 422, description = "`id` is not a UUID, X-Request-ID is malformed or was used for another request, or (dry run) Kubernetes refused the deletion", body = Problem),
        (status = 503, description = "PostgreSQL is unavailable, or (dry run) no worker answered in time or Kubernetes is unreachable", body = Problem),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    PathParam(id): PathParam<Uuid>,
    QueryParams(query): QueryParams<DryRunQuery>,
) -> Result<Response, ApiError> {
    let proposal = accept::delete(id);
    if query.wanted() {
        let spec = accept::preview(&state.pool, caller.id, proposal).await?;
        return dry_run::answer(&state, &caller, Operation::Delete, spec).await;
    }
    let accepted = accept::record(&state.pool, asker(&caller, &key), proposal).await?;
    Ok(respond(accepted))
}

/// Cancel a request that waits: it ends `FAILURE` with `failure_code`
/// `cancelled` and is never applied. A cancelled CREATE leaves its
/// deployment `FAILED`, and the UPDATEs queued behind it end as behind any
/// failed CREATE.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/requests/{id}/cancel",
    operation_id = "cancel_request",
    tag = "requests",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Cancelled: the request as it is now", body = DeploymentRequest),
        (status = 404, description = "No such request for this user", body = Problem),
        (status = 409, description = "The request already ended, or is being carried out right now", body = Problem),
        (status = 422, description = "`id` is not a UUID", body = Problem),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<DeploymentRequest>, ApiError> {
    let request = crate::cancel::cancel(&state.pool, caller.id, &caller.external_id, id).await?;
    Ok(Json(request.into()))
}

/// One request of the caller's; with `wait`, as soon as it is applied or
/// rolled out (`until`), or when the wait ends, as it is then.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/requests/{id}",
    operation_id = "get_request",
    tag = "requests",
    params(("id" = Uuid, Path), WaitQuery),
    responses(
        (status = 200, description = "The request", body = DeploymentRequest),
        (status = 404, description = "No such request for this user", body = Problem),
        (status = 422, description = "`id` is not a UUID, or `wait` or `until` is invalid", body = Problem),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<Uuid>,
    QueryParams(query): QueryParams<WaitQuery>,
) -> Result<Json<DeploymentRequest>, ApiError> {
    let wait = query.parse()?;
    // Subscribed before the first read: a change between the read and the
    // wait still wakes it.
    let mut changes = state.waiters.subscribe();
    let deadline = tokio::time::Instant::now() + wait.map_or(Duration::ZERO, |(wait, _)| wait);
    loop {
        let request = requests::find(&state.pool, caller.id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("request {id} not found")))?;
        let done = wait.is_none_or(|(_, until)| until.reached(&request));
        // A stopping api answers with the request as it is.
        if done || tokio::time::Instant::now() >= deadline || state.waiters.stopping() {
            return Ok(Json(request.into()));
        }
        state.waiters.changed(&mut changes, id, deadline).await;
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRequests {
    pub status: Option<RequestStatus>,
    pub request_type: Option<RequestType>,
    #[param(inline)]
    pub identifier: Option<DnsLabel>,
    #[param(inline)]
    pub namespace: Option<DnsLabel>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's requests, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/requests",
    operation_id = "list_requests",
    tag = "requests",
    params(ListRequests),
    responses(
        (status = 200, description = "A page of requests", body = Page<DeploymentRequest>),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListRequests>,
) -> Result<Json<Page<DeploymentRequest>>, ApiError> {
    let (limit, cursor) = paging(query.limit, query.cursor.as_deref())?;
    let filter = Filter {
        status: query.status,
        request_type: query.request_type,
        identifier: query.identifier.map(DnsLabel::into_inner),
        namespace: query.namespace.map(DnsLabel::into_inner),
    };
    let page = requests::list(&state.pool, caller.id, &filter, cursor.as_ref(), limit).await?;
    Ok(Json(page.map(DeploymentRequest::from)))
}

/// The headers of a mutating request, for the document only: the
/// extractors read them (`X-User-ID` is the document's security scheme).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // never built: it exists for its `IntoParams` description
pub struct Headers {
    /// Idempotency key: 1 to 128 characters of `A-Za-z0-9._@-`; made up
    /// when absent.
    #[param(rename = "X-Request-ID", schema_with = schema::request_id)]
    request: Option<String>,
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// The query of a list that pages but filters nothing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page size: `limit`, or the default; 422 outside 1 to [`MAX_LIMIT`].
pub fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// Checks `limit` and decodes `cursor`, naming the one that is wrong.
pub fn paging(limit: Option<i64>, cursor: Option<&str>) -> Result<(i64, Option<Cursor>), ApiError> {
    let limit = page_size(limit)?;
    let cursor = cursor
        .map(|token| {
            Cursor::decode(token)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))
        })
        .transpose()?;
    Ok((limit, cursor))
}

pub fn asker<'a>(caller: &'a Caller, key: &'a IdempotencyKey) -> Asker<'a> {
    Asker {
        user_id: caller.id,
        name: &caller.external_id,
        groups: &caller.groups,
        key: &key.0,
    }
}

const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// 202 with `Location` for a new request; 200 and `Idempotent-Replayed` for
/// a replay.
pub fn respond(accepted: Accepted) -> Response {
    match accepted {
        Accepted::New(request) => {
            let request = DeploymentRequest::from(request);
            let location = format!("/api/v1/deployments/requests/{}", request.id);
            let location =
                HeaderValue::from_str(&location).expect("a path of a uuid is a valid header");
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(request),
            )
                .into_response()
        }
        Accepted::Replayed(request) => (
            StatusCode::OK,
            [(REPLAYED, HeaderValue::from_static("true"))],
            Json(DeploymentRequest::from(request)),
        )
            .into_response(),
    }
}
