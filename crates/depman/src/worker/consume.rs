//! The one loop both of the worker's consumers run: pull from a shared
//! durable consumer, handle up to `concurrency` messages at once, and on
//! stop give the messages in flight a deadline to finish; what does not
//! finish is redelivered to another worker.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, Message,
    consumer::{PullConsumer, pull},
};
use futures::StreamExt;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff,
    queue::{self, Feed, Names},
};

/// How long one pull request waits on the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The server holding a pull request says it is alive this often; two
/// missed mean the request is lost (its server died, or the consumer's
/// leader moved in a cluster) and a new one is sent. Without this a lost
/// request is only replaced when it would have expired plus 5 s: with the
/// client's default 30 s expiry, the worker sat idle for 35 s after a
/// NATS node died (tests/worker/nats_cluster.rs, in CI).
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// The pause before pulling again after a lost request, doubled while
/// requests keep being lost (a cluster electing the consumer's leader
/// answers each at once, with no one).
const REPULL_PAUSE: Duration = Duration::from_millis(250);
const MAX_REPULL_PAUSE: Duration = Duration::from_secs(2);

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
        let mut messages = self.pull(&consumer).await?;
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut in_flight = JoinSet::new();
        let mut unanswered = 0;
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
                    unanswered = 0;
                    let handled = handle(message);
                    in_flight.spawn(async move {
                        handled.await;
                        drop(slot);
                    });
                }
                Some(Err(error)) if is_lost(&error) => {
                    unanswered += 1;
                    if unanswered == 1 {
                        tracing::warn!(feed, %error, "pull request lost; pulling anew until a server takes one");
                    }
                    let pause = backoff::jittered(REPULL_PAUSE, unanswered, MAX_REPULL_PAUSE);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    messages = self.pull(&consumer).await?;
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

    /// A new pull request and the messages it brings.
    async fn pull(&self, consumer: &PullConsumer) -> anyhow::Result<pull::Stream> {
        Ok(consumer
            .stream()
            .max_messages_per_batch(self.concurrency)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await?)
    }

    /// The durable consumer, once JetStream answers; `None` if stopped first.
    async fn wait_for_consumer(&self, stop: &CancellationToken) -> Option<PullConsumer> {
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

/// The pull request is gone: its server stopped sending heartbeats, or no
/// server took it. Nothing comes of it; only a new one brings messages.
fn is_lost(error: &pull::MessagesError) -> bool {
    matches!(
        error.kind(),
        pull::MessagesErrorKind::MissingHeartbeat | pull::MessagesErrorKind::NoResponders
    )
}
