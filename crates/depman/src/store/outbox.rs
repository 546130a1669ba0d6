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

/// Claims up to `limit` unclaimed rows, oldest first, for `lease`: rows
/// another relay holds are skipped, so replicas share the work. One short
/// statement: nothing stays open while the rows are published.
pub async fn claim(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<Pending>, sqlx::Error> {
    let mut rows: Vec<Pending> = sqlx::query_as(
        "UPDATE outbox o SET claimed_until = clock_timestamp() + $2::interval
         FROM deployment_requests r
         WHERE r.id = o.request_id
           AND o.id IN (SELECT id FROM outbox
                        WHERE claimed_until < clock_timestamp()
                        ORDER BY created_on
                        LIMIT $1
                        FOR UPDATE SKIP LOCKED)
         RETURNING o.id, o.request_id, r.identifier, r.sequence, r.request_type, o.created_on",
    )
    .bind(limit)
    .bind(lease)
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|row| row.created_on);
    Ok(rows)
}

/// Removes rows once JetStream acknowledged their messages.
pub async fn remove(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives claimed rows back (publishing failed): any relay may take them.
pub async fn release(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET claimed_until = 'epoch' WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Accepted requests not yet published.
pub async fn depth(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
}
