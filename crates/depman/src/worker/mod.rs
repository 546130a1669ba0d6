//! The `worker` role: takes request messages and sync events from the
//! shared durable consumers and handles them, many at once, acknowledging
//! each only once it is handled; delivers webhooks and prunes old events.

mod consume;
pub mod decision;
pub mod process;
pub mod sync;

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    dependencies::Dependencies,
    dry_run,
    queue::{Feed, RequestMessage},
    retention,
    settings::{WebhookSettings, WorkerSettings},
    webhooks::delivery::Deliveries,
};
use consume::Consume;
pub use process::{Context, Next};

pub struct Worker {
    ctx: Context,
    nats: async_nats::Client,
    concurrency: usize,
    shutdown_timeout: Duration,
    deliveries: Deliveries,
    event_retention: Duration,
}

impl Worker {
    pub fn build(
        deps: &Dependencies,
        kube: kube::Client,
        settings: &WorkerSettings,
        webhooks: &WebhookSettings,
    ) -> anyhow::Result<Self> {
        let ctx = Context {
            pool: deps.pool.clone(),
            kube,
            js: deps.js.clone(),
            names: deps.names.clone(),
            max_attempts: settings.max_attempts,
            retry_backoff: settings.retry_backoff,
            thresholds: settings.thresholds(),
            rollout_timeout: settings.rollout_timeout,
            metrics: deps.metrics.worker.clone(),
        };
        let pool_size = ctx.pool.options().get_max_connections();
        let concurrency = capped_concurrency(settings.concurrency, pool_size);
        if concurrency < settings.concurrency {
            tracing::warn!(
                requested = settings.concurrency,
                concurrency,
                pool_size,
                "worker concurrency capped at half the database pool"
            );
        }
        let deliveries = Deliveries::new(
            deps.pool.clone(),
            webhooks,
            settings.retry_backoff,
            settings.webhook_retry_for,
            deps.metrics.webhooks.clone(),
        )?;
        Ok(Self {
            ctx,
            nats: deps.nats.clone(),
            concurrency: concurrency as usize,
            shutdown_timeout: settings.shutdown_timeout,
            deliveries,
            event_retention: settings.event_retention,
        })
    }

    /// Consumes requests and sync events, answers dry runs, delivers
    /// webhooks and prunes old events until `stop` is cancelled: then stops
    /// fetching, gives the messages in flight `shutdown_timeout` to finish,
    /// and leaves the rest to be redelivered.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let deliveries = tokio::spawn(self.deliveries.clone().run(stop.clone()));
        let dry_runs = tokio::spawn(dry_run::serve(
            self.nats.clone(),
            self.ctx.names.clone(),
            self.ctx.kube.clone(),
            stop.clone(),
        ));
        let pruning = tokio::spawn(retention::run(
            self.ctx.pool.clone(),
            self.event_retention,
            stop.clone(),
        ));
        let sync_ctx = self.ctx.clone();
        let sync = tokio::spawn(self.consume(Feed::Sync).run(stop.clone(), move |message| {
            sync::settle(sync_ctx.clone(), message)
        }));
        let ctx = self.ctx.clone();
        let requests = self
            .consume(Feed::Requests)
            .run(stop, move |message| settle(ctx.clone(), message))
            .await;
        sync.await??;
        deliveries.await?;
        pruning.await?;
        dry_runs.await??;
        tracing::info!("worker stopped");
        requests
    }

    fn consume(&self, feed: Feed) -> Consume {
        Consume {
            js: self.ctx.js.clone(),
            names: self.ctx.names.clone(),
            feed,
            concurrency: self.concurrency,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

/// Handles one request message and acknowledges it, or asks for it again
/// later.
async fn settle(ctx: Context, message: Message) {
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
    let next = match process::handle(&ctx, &request).instrument(span).await {
        Ok(next) => next,
        Err(error) => {
            // PostgreSQL or NATS trouble: nothing was recorded as finished.
            tracing::warn!(error = format!("{error:#}"), "handling failed; will retry");
            Next::RetryAfter(process::backoff(ctx.retry_backoff, 1))
        }
    };
    let acked = match next {
        // A lost acknowledgement only means a redelivery, which finds the
        // request finished; the consumer flushes its acks when it stops.
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
