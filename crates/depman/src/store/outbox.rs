//! The outbox: written in the transaction that accepts a request, so that a
//! request is published if and only if it was accepted.

use sqlx::PgConnection;
use uuid::Uuid;

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
