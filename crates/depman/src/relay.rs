//! The outbox relay, run by the `api` role: publishes accepted requests to
//! JetStream. Rows are claimed with a lease (several api replicas share the
//! work; no transaction stays open across the publish), published with
//! `Nats-Msg-Id` = the row's id and deleted only once JetStream acknowledged
//! them: a row is published at least once, and JetStream drops the
//! duplicates.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use chrono::Utc;
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    metrics::RelayMetrics,
    queue::{self, Names, RequestMessage},
    store::outbox,
    sweep,
};

/// Rows claimed at once.
const BATCH: i64 = 256;
/// How long claimed rows are this relay's: far beyond a batch's publish.
const LEASE: Duration = Duration::from_secs(30);
/// The safety net under LISTEN/NOTIFY: a notification lost while the
/// listener reconnects costs at most this delay.
const POLL: Duration = Duration::from_secs(2);
/// How long the relay waits for JetStream to confirm its streams after a
/// failure before it tries publishing anyway. During a cluster's leader
/// election a stream request can go unanswered until the client's request
/// timeout (10 s): publishing held up behind it stalled well past the
/// election (tests/worker/nats_cluster.rs).
const ENSURE_WITHIN: Duration = Duration::from_secs(1);
/// The longest pause between two failed publishes.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(1600);
pub const CHANNEL: &str = "depman_outbox";

pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    names: Names,
    metrics: RelayMetrics,
}

impl Relay {
    pub fn new(pool: PgPool, js: jetstream::Context, names: Names, metrics: RelayMetrics) -> Self {
        Self {
            pool,
            js,
            names,
            metrics,
        }
    }

    /// Publishes until `stop` is cancelled. Keeps going through PostgreSQL
    /// and NATS outages: rows wait in the outbox and drain when both are back.
    pub async fn run(self, stop: CancellationToken) {
        // Its own task: a sweep of many identifiers must not hold up
        // publishing.
        let sweep = tokio::spawn(sweep::run(
            self.pool.clone(),
            self.js.clone(),
            self.names.clone(),
            self.metrics.clone(),
            stop.clone(),
        ));
        let mut listener: Option<PgListener> = None;
        let mut streams_ready = false;
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            if listener.is_none() {
                listener = self.listen().await;
            }
            if !streams_ready {
                let ensured = tokio::time::timeout(
                    ENSURE_WITHIN,
                    queue::ensure_streams(&self.js, &self.names),
                );
                streams_ready = matches!(ensured.await, Ok(Ok(())));
            }
            match self.publish_batch().await {
                Ok(published) if published as i64 == BATCH => continue,
                Ok(_) => failures = 0,
                Err(error) => {
                    failures += 1;
                    streams_ready = false;
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "outbox relay: publishing failed; rows wait"
                    );
                }
            }
            let pause = if failures == 0 {
                POLL
            } else {
                (Duration::from_millis(200) * 2u32.pow(failures.min(5))).min(MAX_RETRY_PAUSE)
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                // Quiet: a good moment to sample the outbox depth.
                _ = tokio::time::sleep(pause) => self.observe_depth().await,
                notified = wait_for_notification(&mut listener) => {
                    if notified.is_err() {
                        listener = None;
                    }
                }
            }
        }
        let _ = sweep.await;
        tracing::info!("outbox relay stopped");
    }

    async fn observe_depth(&self) {
        if let Ok(depth) = outbox::depth(&self.pool).await {
            self.metrics.set_depth(depth);
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Claims, publishes and deletes one batch; returns how many rows.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        let rows = outbox::claim(&self.pool, BATCH, LEASE).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        if let Err(error) = self.publish(&rows).await {
            // Back to the outbox at once, for the next try (of any relay).
            let _ = outbox::release(&self.pool, &ids).await;
            return Err(error);
        }
        outbox::remove(&self.pool, &ids).await?;
        let now = Utc::now();
        for row in &rows {
            self.metrics.published(now - row.created_on);
        }
        Ok(rows.len())
    }

    /// Publishes the whole batch, then waits for every acknowledgement.
    async fn publish(&self, rows: &[outbox::Pending]) -> anyhow::Result<()> {
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(rows.len());
        for row in rows {
            let message = RequestMessage {
                request_id: row.request_id,
                identifier: row.identifier.clone(),
                sequence: row.sequence,
                request_type: row.request_type,
            };
            let publish = PublishMessage::build()
                .payload(serde_json::to_vec(&message)?.into())
                .message_id(row.id.to_string());
            acks.push(
                self.js
                    .send_publish(self.names.request_subject(&row.identifier), publish)
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }
}

/// Resolves on the next notification; pends forever without a listener.
async fn wait_for_notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
