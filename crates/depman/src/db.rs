//! The PostgreSQL pool and the embedded migrations.

use std::time::Duration;

use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::settings::DatabaseSettings;

/// The migrations under `migrations/`, compiled into the binary. Applying
/// them takes a PostgreSQL advisory lock, so replicas starting together apply
/// each migration once.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// A pool that connects on first use: the process starts (and answers 503)
/// while PostgreSQL is down, and recovers when it is back.
pub fn pool(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        // No ping before each use: it costs a round trip per request. A
        // connection that died (PostgreSQL restarted) fails its next query,
        // which answers 503, and is dropped from the pool.
        .test_before_acquire(false)
        .connect_lazy(settings.database_url.expose())?;
    Ok(pool)
}

/// Applies pending migrations, waiting up to `patience` for PostgreSQL to
/// accept connections (it may start after us).
pub async fn migrate(pool: &PgPool, patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_),
            )) if tokio::time::Instant::now() < deadline => {
                tracing::warn!("PostgreSQL not reachable yet; retrying migrations");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
