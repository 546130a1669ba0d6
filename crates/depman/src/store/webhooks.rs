//! The `webhooks` and `webhook_deliveries` tables. A webhook's cursor moves
//! past an event only once it was delivered: deliveries go in event order,
//! at least once. A worker leases the webhooks it delivers (a lease, not a
//! transaction, so that nothing is held open across an HTTP call).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use super::events::{Position, XidText};

#[derive(Debug, Clone, FromRow)]
pub struct WebhookRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    pub types: Option<Vec<String>>,
    pub identifier: Option<String>,
    pub secret: Vec<u8>,
    #[sqlx(try_from = "String")]
    pub cursor_xid: XidText,
    pub cursor_seq: i64,
    pub next_attempt_on: DateTime<Utc>,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_on: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub leased_until: DateTime<Utc>,
    pub created_on: DateTime<Utc>,
}

impl WebhookRow {
    pub fn cursor(&self) -> Position {
        Position {
            xid: self.cursor_xid.0,
            seq: self.cursor_seq,
        }
    }
}

const COLUMNS: &str = "id, user_id, url, types, identifier, secret, cursor_xid::text AS cursor_xid, \
     cursor_seq, next_attempt_on, failing_since, disabled_on, disabled_reason, leased_until, created_on";

pub struct NewWebhook<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: &'a str,
    pub types: Option<&'a [String]>,
    pub identifier: Option<&'a str>,
    pub sealed_secret: &'a [u8],
    /// Events after this are delivered: the log's head when it was made.
    pub start: Position,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    new: NewWebhook<'_>,
) -> Result<WebhookRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhooks (id, user_id, url, types, identifier, secret, cursor_xid, cursor_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::xid8, $8)
         RETURNING {COLUMNS}"
    )))
    .bind(new.id)
    .bind(new.user_id)
    .bind(new.url)
    .bind(new.types)
    .bind(new.identifier)
    .bind(new.sealed_secret)
    .bind(new.start.xid.to_string())
    .bind(new.start.seq)
    .fetch_one(db)
    .await
}

pub async fn find(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE user_id = $1 AND id = $2"
    )))
    .bind(user_id)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The user's webhooks, newest first (a user has few: no paging).
pub async fn list(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<WebhookRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY created_on DESC, id DESC LIMIT 1000"
    )))
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// The most webhooks one user may have.
pub const MAX_PER_USER: i64 = 100;

pub async fn count(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await
}

pub async fn delete(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM webhooks WHERE user_id = $1 AND id = $2")
        .bind(user_id)
        .bind(id)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Leases up to `limit` enabled webhooks that are due and have an event
/// waiting for them, until `lease` from now.
pub async fn lease_due(
    db: impl PgExecutor<'_>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<WebhookRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhooks SET leased_until = clock_timestamp() + $1::interval
         WHERE id IN (
             SELECT w.id FROM webhooks w
             WHERE w.disabled_on IS NULL
               AND w.next_attempt_on <= clock_timestamp()
               AND w.leased_until < clock_timestamp()
               AND EXISTS (
                   SELECT 1 FROM events e
                   WHERE e.user_id = w.user_id
                     AND (e.xid, e.seq) > (w.cursor_xid, w.cursor_seq)
                     AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
                     AND (w.identifier IS NULL OR e.identifier = w.identifier)
                     AND (w.types IS NULL OR e.type = ANY(w.types)))
             ORDER BY w.next_attempt_on
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    )))
    .bind(lease)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Gives the lease back (or lets it run out sooner): due again at once.
pub async fn release(
    db: impl PgExecutor<'_>,
    id: Uuid,
    leased_until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhooks SET leased_until = 'epoch' WHERE id = $1 AND leased_until = $2")
        .bind(id)
        .bind(leased_until)
        .execute(db)
        .await?;
    Ok(())
}

/// What one attempt at delivering an event came to.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub webhook_id: Uuid,
    pub event: Position,
    pub event_type: &'a str,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
}

/// Records a delivered event and moves the webhook's cursor past it,
/// renewing the lease; false when the lease was lost (another worker took
/// the webhook over, or it was deleted).
pub async fn delivered(
    db: impl PgExecutor<'_>,
    attempt: &Attempt<'_>,
    leased_until: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH moved AS (
             UPDATE webhooks SET cursor_xid = $2::text::xid8, cursor_seq = $3,
                 failing_since = NULL, next_attempt_on = clock_timestamp(),
                 leased_until = clock_timestamp() + $6::interval
             WHERE id = $1 AND leased_until = $5
             RETURNING id, leased_until
         ),
         recorded AS (
             INSERT INTO webhook_deliveries
                 (webhook_id, event_xid, event_seq, event_type, attempts, state, last_status_code)
             SELECT id, $2::text::xid8, $3, $4, 1, 'DELIVERED', $7 FROM moved
             ON CONFLICT (webhook_id, event_xid, event_seq) DO UPDATE SET
                 attempts = webhook_deliveries.attempts + 1, state = 'DELIVERED',
                 last_status_code = EXCLUDED.last_status_code, last_error = NULL,
                 next_attempt_on = NULL, updated_on = clock_timestamp()
         )
         SELECT leased_until FROM moved",
    )
    .bind(attempt.webhook_id)
    .bind(attempt.event.xid.to_string())
    .bind(attempt.event.seq)
    .bind(attempt.event_type)
    .bind(leased_until)
    .bind(lease)
    .bind(attempt.status_code.map(i32::from))
    .fetch_optional(db)
    .await
}

/// Records a failed attempt: the webhook waits until `retry_at`, or, when it
/// has failed for `retry_for` without a success, is disabled and the
/// delivery abandoned. Returns whether it was disabled.
pub async fn failed(
    db: impl PgExecutor<'_>,
    attempt: &Attempt<'_>,
    leased_until: DateTime<Utc>,
    retry_in: Duration,
    retry_for: Duration,
) -> Result<bool, sqlx::Error> {
    let disabled: Option<bool> = sqlx::query_scalar(
        "WITH failing AS (
             UPDATE webhooks SET
                 failing_since = coalesce(failing_since, clock_timestamp()),
                 next_attempt_on = clock_timestamp() + $6::interval,
                 leased_until = 'epoch',
                 disabled_on = CASE WHEN coalesce(failing_since, clock_timestamp()) + $7::interval
                                         <= clock_timestamp() + $6::interval
                                    THEN clock_timestamp() END,
                 disabled_reason = CASE WHEN coalesce(failing_since, clock_timestamp()) + $7::interval
                                             <= clock_timestamp() + $6::interval
                                        THEN 'deliveries failed for longer than DEPMAN_WEBHOOK_RETRY_FOR' END
             WHERE id = $1 AND leased_until = $5
             RETURNING id, disabled_on IS NOT NULL AS disabled, next_attempt_on
         ),
         recorded AS (
             INSERT INTO webhook_deliveries
                 (webhook_id, event_xid, event_seq, event_type, attempts, state,
                  last_status_code, last_error, next_attempt_on)
             SELECT id, $2::text::xid8, $3, $4, 1,
                    CASE WHEN disabled THEN 'ABANDONED' ELSE 'PENDING' END,
                    $8, $9, CASE WHEN disabled THEN NULL ELSE next_attempt_on END
             FROM failing
             ON CONFLICT (webhook_id, event_xid, event_seq) DO UPDATE SET
                 attempts = webhook_deliveries.attempts + 1, state = EXCLUDED.state,
                 last_status_code = EXCLUDED.last_status_code, last_error = EXCLUDED.last_error,
                 next_attempt_on = EXCLUDED.next_attempt_on, updated_on = clock_timestamp()
         )
         SELECT disabled FROM failing",
    )
    .bind(attempt.webhook_id)
    .bind(attempt.event.xid.to_string())
    .bind(attempt.event.seq)
    .bind(attempt.event_type)
    .bind(leased_until)
    .bind(retry_in)
    .bind(retry_for)
    .bind(attempt.status_code.map(i32::from))
    .bind(attempt.error)
    .fetch_optional(db)
    .await?;
    Ok(disabled.unwrap_or(false))
}

/// The attempts made so far at delivering `event` to the webhook.
pub async fn attempts(
    db: impl PgExecutor<'_>,
    webhook_id: Uuid,
    event: Position,
) -> Result<i32, sqlx::Error> {
    let attempts: Option<i32> = sqlx::query_scalar(
        "SELECT attempts FROM webhook_deliveries
         WHERE webhook_id = $1 AND event_xid = $2::text::xid8 AND event_seq = $3",
    )
    .bind(webhook_id)
    .bind(event.xid.to_string())
    .bind(event.seq)
    .fetch_optional(db)
    .await?;
    Ok(attempts.unwrap_or(0))
}

#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    #[sqlx(try_from = "String")]
    pub event_xid: XidText,
    pub event_seq: i64,
    pub event_type: String,
    pub attempts: i32,
    pub state: String,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_on: Option<DateTime<Utc>>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

impl DeliveryRow {
    pub fn event(&self) -> Position {
        Position {
            xid: self.event_xid.0,
            seq: self.event_seq,
        }
    }
}

/// A webhook's deliveries, newest event first, before `before`.
pub async fn deliveries(
    db: impl PgExecutor<'_>,
    webhook_id: Uuid,
    before: Option<Position>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let before = before.unwrap_or(Position {
        xid: i64::MAX as u64,
        seq: i64::MAX,
    });
    sqlx::query_as(
        "SELECT event_xid::text AS event_xid, event_seq, event_type, attempts, state,
                last_status_code, last_error, next_attempt_on, created_on, updated_on
         FROM webhook_deliveries
         WHERE webhook_id = $1 AND (event_xid, event_seq) < ($2::text::xid8, $3)
         -- Qualified, so that the order is the ids' and not their text's.
         ORDER BY webhook_deliveries.event_xid DESC, webhook_deliveries.event_seq DESC
         LIMIT $4",
    )
    .bind(webhook_id)
    .bind(before.xid.to_string())
    .bind(before.seq)
    .bind(limit)
    .fetch_all(db)
    .await
}
