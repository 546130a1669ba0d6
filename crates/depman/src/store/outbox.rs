//! The outbox: written in the transaction that accepts a request, so that a
//! request is published if and only if it was accepted.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::status::RequestType;

pub async fn enqueue(conn: &mut PgConnection, request_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (request_id) VALUES ($1)")
        .bind(request_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts a request back in the outbox if it still waits (`CREATED`); returns
/// whether it did.
pub async fn enqueue_if_waiting(
    conn: &mut PgConnection,
    request_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO outbox (request_id)
         SELECT id FROM deployment_requests WHERE id = $1 AND status = 'CREATED'",
    )
    .bind(request_id)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// An outbox row claimed for publishing, with what its message carries.
#[derive(Debug, sqlx::FromRow)]
pub struct Pending {
    pub id: Uuid,
    pub request_id: Uuid,
    pub identifier: String,
    pub sequence: i64,
    pub request_type: RequestType,
    pub created_on: DateTime<Utc>,
}

/// Claims up to `limit` rows, oldest first, until the transaction ends;
/// rows another relay holds are skipped, so replicas share the work.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.id, o.request_id, r.identifier, r.sequence, r.request_type, o.created_on
         FROM outbox o JOIN deployment_requests r ON r.id = o.request_id
         ORDER BY o.created_on
         LIMIT $1
         FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Removes rows once JetStream acknowledged their messages.
pub async fn remove(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Accepted requests not yet published.
pub async fn depth(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
}
