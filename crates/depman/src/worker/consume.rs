//! The one loop both of the worker's consumers run: pull from a shared
//! durable consumer, handle up to `concurrency` messages at once, and on
//! stop give the messages in flight a deadline to finish; what does not
//! finish is redelivered to another worker.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::queue::{self, Feed, Names};

pub struct Consume {
    pub js: jetstream::Context,
    pub names: Names,
    pub feed: Feed,
    pub concurrency: usize,
    pub shutdown_timeout: Duration,
}

impl Consume {
    /// Hands every message of the feed to `handle`, which acknowledges it,
    /// until `stop` is cancelled.
    pub async fn run<H, F>(self, stop: CancellationToken, handle: H) -> anyhow::Result<()>
    where
        H: Fn(Message) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let feed = self.feed.as_str();
        let Some(consumer) = self.wait_for_consumer(&stop).await else {
            return Ok(());
        };
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.concurrency)
            .messages()
            .await?;
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut in_flight = JoinSet::new();
        tracing::info!(feed, concurrency = self.concurrency, "consuming");
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
                    let handled = handle(message);
                    in_flight.spawn(async move {
                        handled.await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => tracing::warn!(feed, %error, "fetching messages failed"),
                None => break,
            }
            while in_flight.try_join_next().is_some() {}
        }
        drop(messages);
        tracing::info!(feed, in_flight = in_flight.len(), "consumer stopping");
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                feed,
                "messages still in flight at the deadline; they will be redelivered"
            );
            in_flight.abort_all();
        }
        // Acks are plain publishes: make sure they left before the process does.
        let _ = self.js.client().flush().await;
        tracing::info!(feed, "consumer stopped");
        Ok(())
    }

    /// The durable consumer, once JetStream answers; `None` if stopped first.
    async fn wait_for_consumer(
        &self,
        stop: &CancellationToken,
    ) -> Option<jetstream::consumer::PullConsumer> {
        loop {
            match queue::consumer(&self.js, &self.names, self.feed).await {
                Ok(consumer) => return Some(consumer),
                Err(error) => {
                    tracing::warn!(
                        feed = self.feed.as_str(),
                        error = format!("{error:#}"),
                        "JetStream not ready; retrying"
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}
