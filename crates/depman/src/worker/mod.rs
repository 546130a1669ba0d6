//! The `worker` role: takes request messages from the shared durable
//! consumer and carries them out, many at once, acknowledging each only once
//! its request is finished.

pub mod process;
pub mod sync;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::queue::{self, RequestMessage};
pub use process::{Context, Next};

pub struct Worker {
    ctx: Context,
    concurrency: usize,
    shutdown_timeout: Duration,
}

impl Worker {
    pub fn new(ctx: Context, concurrency: u32, shutdown_timeout: Duration) -> Self {
        let pool_size = ctx.pool.options().get_max_connections();
        let capped = capped_concurrency(concurrency, pool_size);
        if capped < concurrency {
            tracing::warn!(
                requested = concurrency,
                concurrency = capped,
                pool_size,
                "worker concurrency capped at half the database pool"
            );
        }
        Self {
            ctx,
            concurrency: capped as usize,
            shutdown_timeout,
        }
    }

    /// Consumes until `stop` is cancelled: then stops fetching, gives the
    /// requests in flight `shutdown_timeout` to finish, and leaves the rest
    /// to be redelivered.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let sync = tokio::spawn(sync::run(self.ctx.clone(), self.concurrency, stop.clone()));
        let requests = self.run_requests(stop).await;
        sync.await??;
        requests
    }

    async fn run_requests(self, stop: CancellationToken) -> anyhow::Result<()> {
        let consumer = loop {
            match queue::worker_consumer(&self.ctx.js, &self.ctx.names).await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "worker: JetStream not ready; retrying"
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.concurrency)
            .messages()
            .await?;
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut in_flight = JoinSet::new();
        tracing::info!(concurrency = self.concurrency, "worker consuming");
        loop {
            let slot = tokio::select! {
                _ = stop.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot?,
            };
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = messages.next() => message,
            };
            match message {
                Some(Ok(message)) => {
                    let ctx = self.ctx.clone();
                    in_flight.spawn(async move {
                        settle(&ctx, message).await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => tracing::warn!(%error, "worker: fetching messages failed"),
                None => break,
            }
            while in_flight.try_join_next().is_some() {}
        }
        drop(messages);
        tracing::info!(in_flight = in_flight.len(), "worker stopping");
        if tokio::time::timeout(self.shutdown_timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                "worker: requests still in flight at the deadline; they will be redelivered"
            );
            in_flight.abort_all();
        }
        // Acks are plain publishes: make sure they left before the process does.
        let _ = self.ctx.js.client().flush().await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Handles one message and acknowledges it, or asks for it again later.
async fn settle(ctx: &Context, message: Message) {
    let parsed: Result<RequestMessage, _> = serde_json::from_slice(&message.payload);
    let request = match parsed {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, "unreadable request message; terminated");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let span =
        tracing::info_span!("request", id = %request.request_id, identifier = %request.identifier);
    let next = match process::handle(ctx, &request).instrument(span).await {
        Ok(next) => next,
        Err(error) => {
            // PostgreSQL or NATS trouble: nothing was recorded as finished.
            tracing::warn!(error = format!("{error:#}"), "handling failed; will retry");
            Next::RetryAfter(process::backoff(ctx.retry_backoff, 1))
        }
    };
    let acked = match next {
        // A lost acknowledgement only means a redelivery, which finds the
        // request finished; the worker flushes its acks when it stops.
        Next::Done => message.ack().await,
        Next::RetryAfter(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
    };
    if let Err(error) = acked {
        tracing::warn!(%error, "acknowledging failed; the message will be redelivered");
    }
}

/// A request in flight holds two connections, both taken before its
/// deployment's lock, so a lock holder never waits for the pool: more than
/// half the pool in flight would leave lock holders waiting on each other.
fn capped_concurrency(requested: u32, pool_size: u32) -> u32 {
    requested.min(pool_size / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::capped_concurrency;

    #[test]
    fn concurrency_is_capped_at_half_the_pool() {
        assert_eq!(capped_concurrency(16, 40), 16);
        assert_eq!(capped_concurrency(32, 40), 20);
        assert_eq!(capped_concurrency(8, 3), 1);
    }
}
