//! The PostgreSQL pool and the embedded migrations.

use std::time::Duration;

use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::settings::DatabaseSettings;

/// The migrations under `migrations/`, compiled into the binary. Applying
/// them takes a PostgreSQL advisory lock, so replicas starting together apply
/// each migration once.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Each role's pool size unless `DEPMAN_DB_MAX_CONNECTIONS` is set. Small
/// pools are faster: the pool hands its idle connections out oldest first,
/// so each is used in turn, and 40 of them cost the api 10 to 15 % of its
/// throughput at one client against 16 (make bench-api), where 16 held the
/// p99 at 16 clients to 15 to 17 ms against 21 to 31 ms with 40.
pub mod pool_size {
    /// A connection per request in flight, and three held by the relay's,
    /// the feed's and the waiters' `LISTEN`.
    pub const API: u32 = 16;
    /// Two per request in flight at the default concurrency of 16.
    pub const WORKER: u32 = 40;
    /// Reads the database only to resync.
    pub const WATCHER: u32 = 4;
    /// The api, the worker and the watcher in one process.
    pub const ALL: u32 = 40;
    /// `depman migrate` and `depman dlq`.
    pub const TOOL: u32 = 2;
}

/// A pool that connects on first use: the process starts (and answers 503)
/// while PostgreSQL is down, and recovers when it is back. [`warm`] opens
/// its kept connections.
pub fn pool(settings: &DatabaseSettings, role_size: u32) -> anyhow::Result<PgPool> {
    let (max, min) = settings.pool_size(role_size)?;
    let pool = PgPoolOptions::new()
        .max_connections(max)
        // Kept open, and reopened in the background when one closes (its
        // lifetime is up, or PostgreSQL restarted): a request that finds no
        // idle connection opens one itself, which took 0.1 to 2 s on a busy
        // machine (make bench-list).
        .min_connections(min)
        .acquire_timeout(Duration::from_secs(3))
        // The default, 2 s, hides most of a wait that already hurts.
        .acquire_slow_threshold(Duration::from_millis(250))
        // No ping before each use: it costs a round trip per request. A
        // connection that died (PostgreSQL restarted) fails its next query,
        // which answers 503, and is dropped from the pool.
        .test_before_acquire(false)
        .connect_lazy(settings.database_url.expose())?;
    Ok(pool)
}

/// Opens the pool's kept connections at once, as a lazy pool does not. A
/// failure is only logged: the pool opens connections on demand anyway.
pub async fn warm(pool: &PgPool) {
    let started = tokio::time::Instant::now();
    let wanted = pool.options().get_min_connections();
    let tries = futures::future::join_all((0..wanted).map(|_| pool.acquire())).await;
    let (opened, failed): (Vec<_>, Vec<_>) = tries.into_iter().partition(Result::is_ok);
    match failed.into_iter().find_map(Result::err) {
        Some(error) => {
            tracing::warn!(%error, opened = opened.len(), wanted, "could not open every kept PostgreSQL connection")
        }
        None => tracing::info!(
            opened = wanted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "PostgreSQL connections open"
        ),
    }
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
