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
