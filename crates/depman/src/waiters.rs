//! Waking the HTTP requests that wait for a request to change: one
//! PostgreSQL listener per api process turns the `depman_request`
//! notifications (a trigger sends one when a request's status or rollout
//! changes) into a broadcast, which each waiter filters by its request id.
//! A waiter holds no connection and no thread while it waits.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const CHANNEL: &str = "depman_request";

/// What a waiter may have missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This request changed.
    Request(Uuid),
    /// Notifications may have been lost (the listener reconnected): every
    /// waiter looks again.
    Any,
}

#[derive(Debug, Clone)]
pub struct Waiters {
    changes: broadcast::Sender<Change>,
    /// Cancelled when the api stops: waiters answer at once, so that a
    /// graceful stop does not wait out every wait.
    stopped: CancellationToken,
}

impl Default for Waiters {
    fn default() -> Self {
        // A waiter that falls this far behind is told it lagged, and looks
        // again: nothing is lost, it only reads once more.
        let (changes, _) = broadcast::channel(1024);
        Self {
            changes,
            stopped: CancellationToken::new(),
        }
    }
}

impl Waiters {
    /// Changes from now on. Subscribe before reading what is waited for, so
    /// that a change between the read and the wait still wakes it.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Listens until `stop` is cancelled, reconnecting after PostgreSQL
    /// outages.
    pub async fn run(self, pool: PgPool, stop: CancellationToken) {
        let _stopped = self.stopped.clone().drop_guard();
        while !stop.is_cancelled() {
            match listen(&pool).await {
                Ok(mut listener) => {
                    // Anything may have changed while no one listened.
                    let _ = self.changes.send(Change::Any);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        error = self.forward(&mut listener) => {
                            tracing::warn!(%error, "request notifications interrupted; listening again");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot listen for request notifications"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn forward(&self, listener: &mut PgListener) -> sqlx::Error {
        loop {
            // No receiver is no error: nobody waits right now.
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Ok(id) = notification.payload().parse() {
                        let _ = self.changes.send(Change::Request(id));
                    }
                }
                // The listener reconnected on its own: what was notified
                // meanwhile is lost, so every waiter looks again.
                Ok(None) => {
                    let _ = self.changes.send(Change::Any);
                }
                Err(error) => return error,
            }
        }
    }

    /// Whether the api is stopping.
    pub fn stopping(&self) -> bool {
        self.stopped.is_cancelled()
    }

    /// Waits until `changes` says `id` (or anything) may have changed, until
    /// `deadline`, or until the api stops; false at the deadline.
    pub async fn changed(
        &self,
        changes: &mut broadcast::Receiver<Change>,
        id: Uuid,
        deadline: tokio::time::Instant,
    ) -> bool {
        tokio::select! {
            _ = self.stopped.cancelled() => true,
            changed = changed(changes, id, deadline) => changed,
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Waits until `changes` says `id` (or anything) may have changed, or until
/// `deadline`; false at the deadline.
async fn changed(
    changes: &mut broadcast::Receiver<Change>,
    id: Uuid,
    deadline: tokio::time::Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Err(_) => return false,
            Ok(Ok(Change::Request(changed))) if changed != id => continue,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                tokio::time::sleep_until(deadline).await;
                return false;
            }
        }
    }
}
