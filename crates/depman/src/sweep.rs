//! The sweep for lost messages, beside the outbox relay in the `api` role.
//! Once the relay has published a request and removed its outbox row, JetStream alone holds its message; if
//! JetStream loses it (a purged stream, a server that lost its disk before
//! syncing it), the request would wait as `CREATED` forever. The sweep finds
//! the identifiers whose waiting requests are all older than a minute, out
//! of the outbox, and have no message at or beyond their newest sequence in
//! the requests stream, and puts that newest request back in the outbox:
//! the worker then carries out every waiting request of the identifier up to
//! it, in order. A message found twice (two api replicas sweeping at once)
//! is harmless: the second delivery finds its request finished.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{LastRawMessageErrorKind, Stream},
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::RelayMetrics,
    queue::{self, Names, RequestMessage},
    store::{outbox, requests},
};

/// How long a waiting request may be out of the outbox with no message
/// before it counts as lost: far beyond a publish, and a sweep costs at most
/// a duplicate message.
pub const LOST_AFTER: Duration = Duration::from_secs(60);
/// How often the api looks for lost messages.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Sweeps every 30 s until `stop` is cancelled.
pub async fn run(
    pool: PgPool,
    js: jetstream::Context,
    names: Names,
    metrics: RelayMetrics,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => match sweep(&pool, &js, &names, LOST_AFTER).await {
                Ok(count) => metrics.swept(count),
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "looking for lost messages failed"
                ),
            },
        }
    }
}

/// Queues again the newest waiting request of every identifier whose
/// messages were lost; returns how many.
pub async fn sweep(
    pool: &PgPool,
    js: &jetstream::Context,
    names: &Names,
    lost_after: Duration,
) -> anyhow::Result<usize> {
    let candidates = requests::long_waiting(pool, lost_after).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    // A NATS server that lost its store lost the stream too: made anew, it
    // holds no message, so every candidate counts as lost.
    queue::ensure_streams(js, names).await?;
    let stream = js.get_stream(names.requests_stream()).await?;
    let mut requeued = 0;
    for newest in candidates {
        let subject = names.request_subject(&newest.identifier);
        if queued(&stream, &subject, newest.sequence).await? {
            continue;
        }
        // A worker may have finished the request (and acknowledged its
        // message, which it does only after) since the candidates were read.
        if !outbox::enqueue_if_waiting(&mut *pool.acquire().await?, newest.id).await? {
            continue;
        }
        tracing::warn!(
            request = %newest.id,
            identifier = %newest.identifier,
            "the request's message was lost; queued it again"
        );
        requeued += 1;
    }
    Ok(requeued)
}

/// Whether the stream holds a message of `subject` for `sequence` or a
/// later request: its delivery carries out the request at `sequence` too.
async fn queued(stream: &Stream, subject: &str, sequence: i64) -> anyhow::Result<bool> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(last) => {
            let message: RequestMessage = serde_json::from_slice(&last.payload)?;
            Ok(message.sequence >= sequence)
        }
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
        Err(error) => Err(error.into()),
    }
}
