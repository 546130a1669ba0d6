//! `/api/v1/webhooks`: register, list and remove the caller's webhooks, and
//! see their deliveries. The worker role delivers them (`webhooks`).

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    body::JsonBody,
    error::{ApiError, Problem},
    extract::{Caller, PathParam, QueryParams},
    requests::{PageQuery, page_size},
    state::AppState,
};
use crate::{
    domain::{FieldError, event::EventType, names::DnsLabel},
    store::{
        events::{self, Position},
        paging::Page,
        webhooks::{self, DeliveryRow, NewWebhook, WebhookRow},
    },
    webhooks::secret,
};

/// What registers a webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Where deliveries are POSTed: `http` or `https`, resolving to public
    /// addresses only (unless the host is in DEPMAN_WEBHOOK_ALLOWED_HOSTS).
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^[^\\x00]*$",
        required = true,
        example = "https://hooks.example.com/depman"
    )]
    #[serde(default)]
    pub url: String,
    /// Only events of these types; all when absent.
    pub types: Option<Vec<EventType>>,
    /// Only this deployment's events; all of the caller's when absent.
    #[schema(value_type = Option<String>, pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub identifier: Option<DnsLabel>,
}

/// A webhook as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub types: Option<Vec<String>>,
    pub identifier: Option<String>,
    pub created_on: DateTime<Utc>,
    /// Since when deliveries fail without a success in between.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the next delivery is tried (after a failure: its backoff).
    pub next_attempt_on: DateTime<Utc>,
    /// Set when it failed for longer than DEPMAN_WEBHOOK_RETRY_FOR: nothing
    /// more is delivered (register it again).
    pub disabled_on: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            types: row.types,
            identifier: row.identifier,
            created_on: row.created_on,
            failing_since: row.failing_since,
            next_attempt_on: row.next_attempt_on,
            disabled_on: row.disabled_on,
            disabled_reason: row.disabled_reason,
        }
    }
}

/// A newly registered webhook, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` and base64: the key of each delivery's `webhook-signature`
    /// (Standard Webhooks). Keep it: it is never shown again.
    pub secret: String,
}

/// One event's delivery to a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// The event's id.
    pub event_id: String,
    pub event_type: String,
    pub attempts: i32,
    /// `PENDING` (to be tried again at `next_attempt_on`), `DELIVERED`, or
    /// `ABANDONED` (the webhook was disabled).
    pub state: String,
    /// The receiver's last answer, if it answered.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed without an answer (timeout, refused
    /// address, connection error).
    pub last_error: Option<String>,
    pub next_attempt_on: Option<DateTime<Utc>>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        Self {
            event_id: row.event().encode(),
            event_type: row.event_type,
            attempts: row.attempts,
            state: row.state,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            next_attempt_on: row.next_attempt_on,
            created_on: row.created_on,
            updated_on: row.updated_on,
        }
    }
}

/// Register a webhook: every later event of the caller's (that `types` and
/// `identifier` take) is POSTed to `url`, signed, in order, at least once.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "create_webhook",
    tag = "events",
    request_body = WebhookInput,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = CreatedWebhook,
            headers(("Location" = String, description = "The webhook's URL"))),
        (status = 400, description = "The body is not a JSON object", body = Problem),
        (status = 409, description = "The caller has 100 webhooks already", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "A field is invalid, or the URL leads to a refused address", body = Problem),
        (status = 503, description = "DEPMAN_WEBHOOK_KEY is not set: webhooks are off", body = Problem),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<WebhookInput>,
) -> Result<Response, ApiError> {
    let key = state.webhook_key.as_ref().ok_or_else(|| {
        ApiError::NotConfigured("webhooks are off: the server has no DEPMAN_WEBHOOK_KEY".into())
    })?;
    if input.url.is_empty() {
        return Err(ApiError::invalid("url", "is required"));
    }
    let url = state
        .webhook_hosts
        .check(&input.url)
        .await
        .map_err(|refused| ApiError::invalid("url", refused.to_string()))?;
    if webhooks::count(&state.pool, caller.id).await? >= webhooks::MAX_PER_USER {
        return Err(ApiError::Conflict(format!(
            "at most {} webhooks per user: delete one first",
            webhooks::MAX_PER_USER
        )));
    }
    let types = input.types.map(|types| {
        types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect::<Vec<_>>()
    });
    if types.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "types",
            "must name at least one type (leave it out for all)",
        )]));
    }
    let id = Uuid::new_v4();
    let signing_secret = secret::generate();
    let start = events::head(&state.pool).await?;
    let row = webhooks::insert(
        &state.pool,
        NewWebhook {
            id,
            user_id: caller.id,
            url: url.as_str(),
            types: types.as_deref(),
            identifier: input.identifier.as_ref().map(DnsLabel::as_str),
            sealed_secret: &key.seal(id, &signing_secret),
            start,
        },
    )
    .await?;
    let location = HeaderValue::from_str(&format!("/api/v1/webhooks/{id}"))
        .expect("a path of a uuid is a valid header");
    let created = CreatedWebhook {
        webhook: row.into(),
        secret: signing_secret,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// The caller's webhooks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "events",
    responses((status = 200, description = "Every webhook of the caller's", body = Page<Webhook>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Page<Webhook>>, ApiError> {
    let rows = webhooks::list(&state.pool, caller.id).await?;
    Ok(Json(Page {
        items: rows.into_iter().map(Webhook::from).collect(),
        next_cursor: None,
    }))
}

/// One webhook of the caller's.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "events",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 404, description = "No such webhook for this user", body = Problem),
        (status = 422, description = "`id` is not a UUID", body = Problem),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(found(&state, &caller, id).await?.into()))
}

/// Remove a webhook: nothing more is delivered to it.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "events",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Removed, with its deliveries"),
        (status = 404, description = "No such webhook for this user", body = Problem),
        (status = 422, description = "`id` is not a UUID", body = Problem),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<Uuid>,
) -> Result<StatusCode, ApiError> {
    if webhooks::delete(&state.pool, caller.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

/// A webhook's deliveries, newest event first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "events",
    params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<Delivery>),
        (status = 404, description = "No such webhook for this user", body = Problem),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<Uuid>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let limit = page_size(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(|token| {
            Position::decode(token)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))
        })
        .transpose()?;
    found(&state, &caller, id).await?;
    let mut rows = webhooks::deliveries(&state.pool, id, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|row| row.event().encode()))
        .flatten();
    Ok(Json(Page {
        items: rows.into_iter().map(Delivery::from).collect(),
        next_cursor,
    }))
}

async fn found(state: &AppState, caller: &Caller, id: Uuid) -> Result<WebhookRow, ApiError> {
    webhooks::find(&state.pool, caller.id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("webhook {id} not found"))
}
