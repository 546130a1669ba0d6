//! Pruning the event log, in the worker role: events older than
//! `DEPMAN_EVENT_RETENTION` go in batches of a thousand, each one short
//! statement, so that readers and writers are never held up.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::events;

const BATCH: i64 = 1000;
/// How often to look for old events when the last look found few.
const PERIOD: Duration = Duration::from_secs(60);
/// The pause between two full batches: room for everyone else.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);

/// Prunes until `stop` is cancelled. Several workers pruning at once only
/// find less to prune.
pub async fn run(pool: PgPool, retention: Duration, stop: CancellationToken) {
    loop {
        let pause = match events::prune(&pool, retention, BATCH).await {
            Ok(pruned) if pruned as i64 == BATCH => BETWEEN_BATCHES,
            Ok(pruned) => {
                if pruned > 0 {
                    tracing::info!(pruned, "old events pruned");
                }
                PERIOD
            }
            Err(error) => {
                tracing::warn!(%error, "pruning old events failed");
                PERIOD
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
