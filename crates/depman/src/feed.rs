//! The live event feed of an api process: one task reads the event log as
//! it grows (woken by the `depman_event` notification, or every second) and
//! broadcasts each event to the process's subscribers, which filter it for
//! their caller. A subscriber that starts from a cursor, or falls behind the
//! broadcast, reads what it missed from the log itself: the log, not the
//! broadcast, is what makes the stream gap-free.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::EventMetrics,
    store::events::{self, EventRow, Filter, Position},
};

pub const CHANNEL: &str = "depman_event";

/// Events read from the log at once.
const BATCH: i64 = 500;
/// How often the log is read without a notification: a transaction that
/// wrote no event may have held others back, and notifications can be lost.
const POLL: Duration = Duration::from_secs(1);
/// How soon to look again when events wait behind an older transaction.
const HELD_BACK_RETRY: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct EventFeed {
    sender: broadcast::Sender<Arc<EventRow>>,
    /// The newest position broadcast: a subscriber that starts "now"
    /// starts here.
    position: Arc<Mutex<Position>>,
    /// Cancelled when the api stops: every stream ends, so that a graceful
    /// stop is not held open by them.
    stopped: CancellationToken,
    metrics: EventMetrics,
}

impl EventFeed {
    pub fn new(metrics: EventMetrics) -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self {
            sender,
            position: Arc::new(Mutex::new(Position::START)),
            stopped: CancellationToken::new(),
            metrics,
        }
    }

    /// Reads the log until `stop` is cancelled, through PostgreSQL outages.
    pub async fn run(self, pool: PgPool, stop: CancellationToken) {
        let _stopped = self.stopped.clone().drop_guard();
        let mut position = loop {
            match events::head(&pool).await {
                Ok(head) => break head,
                Err(error) => tracing::warn!(%error, "cannot read the event log; trying again"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        };
        self.publish(Vec::new(), position);
        let mut listener: Option<PgListener> = None;
        while !stop.is_cancelled() {
            if listener.is_none() {
                listener = listen(&pool)
                    .await
                    .inspect_err(|error| tracing::warn!(%error, "cannot listen for events"))
                    .ok();
            }
            let wait = match self.catch_up(&pool, &mut position).await {
                Ok(true) => HELD_BACK_RETRY,
                Ok(false) => POLL,
                Err(error) => {
                    tracing::warn!(%error, "reading the event log failed");
                    POLL
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                notified = notified(listener.as_mut(), wait) => {
                    if let Err(error) = notified {
                        tracing::warn!(%error, "event notifications interrupted; listening again");
                        listener = None;
                    }
                }
            }
        }
    }

    /// Broadcasts every readable event after `position`; true when more
    /// wait behind a transaction still in flight.
    async fn catch_up(&self, pool: &PgPool, position: &mut Position) -> Result<bool, sqlx::Error> {
        loop {
            let rows = events::read(pool, &Filter::default(), *position, BATCH).await?;
            let full = rows.len() as i64 == BATCH;
            if let Some(last) = rows.last() {
                *position = last.position();
                self.metrics.logged(rows.len());
                self.publish(rows, *position);
            }
            if !full {
                return events::held_back(pool).await;
            }
        }
    }

    fn publish(&self, rows: Vec<EventRow>, position: Position) {
        // The position first: a subscriber that reads it, then receives
        // these events, skips them as already behind it.
        *self.position.lock().unwrap_or_else(|p| p.into_inner()) = position;
        for row in rows {
            // No receiver is no error: nobody follows right now.
            let _ = self.sender.send(Arc::new(row));
        }
    }

    /// The events `filter` takes after `after` (or from now on), for as long
    /// as the receiver is kept and the api runs. The stream ends early only
    /// if the log cannot be read: the client resumes from its last event.
    pub fn subscribe(
        &self,
        pool: PgPool,
        filter: Filter,
        after: Option<Position>,
    ) -> mpsc::Receiver<Arc<EventRow>> {
        let (tx, rx) = mpsc::channel(64);
        let receiver = self.sender.subscribe();
        let start =
            after.unwrap_or_else(|| *self.position.lock().unwrap_or_else(|p| p.into_inner()));
        let subscriber = Subscriber {
            pool,
            filter,
            last: start,
            tx,
            metrics: self.metrics.clone(),
        };
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            let _gauge = subscriber.metrics.subscribed();
            tokio::select! {
                _ = stopped.cancelled() => {}
                _ = subscriber.tx.closed() => {}
                result = subscriber.forward(receiver) => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "an event stream ended: the log cannot be read");
                    }
                }
            }
        });
        rx
    }
}

struct Subscriber {
    pool: PgPool,
    filter: Filter,
    /// The newest position this subscriber is past.
    last: Position,
    tx: mpsc::Sender<Arc<EventRow>>,
    metrics: EventMetrics,
}

impl Subscriber {
    /// Reads what the log holds after `last`, then follows the broadcast;
    /// when it falls behind the broadcast, reads the log again.
    async fn forward(
        &self,
        mut receiver: broadcast::Receiver<Arc<EventRow>>,
    ) -> Result<(), sqlx::Error> {
        let mut last = self.last;
        loop {
            last = self.read_log(last).await?;
            loop {
                match receiver.recv().await {
                    Ok(event) if event.position() <= last => {}
                    Ok(event) => {
                        last = event.position();
                        if self.takes(&event) && self.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        receiver = receiver.resubscribe();
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }

    async fn read_log(&self, mut last: Position) -> Result<Position, sqlx::Error> {
        loop {
            let rows = events::read(&self.pool, &self.filter, last, BATCH).await?;
            let full = rows.len() as i64 == BATCH;
            for row in rows {
                last = row.position();
                if self.send(Arc::new(row)).await.is_err() {
                    return Ok(last);
                }
            }
            if !full {
                return Ok(last);
            }
        }
    }

    fn takes(&self, event: &EventRow) -> bool {
        let filter = &self.filter;
        filter.user_id.is_none_or(|user| user == event.user_id)
            && filter
                .identifier
                .as_ref()
                .is_none_or(|identifier| *identifier == event.identifier)
            && (filter.types.is_empty() || filter.types.contains(&event.kind))
    }

    async fn send(
        &self,
        event: Arc<EventRow>,
    ) -> Result<(), mpsc::error::SendError<Arc<EventRow>>> {
        self.metrics.streamed(event.occurred_on);
        self.tx.send(event).await
    }
}

/// A listener for the `depman_event` notification.
pub async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Waits for a notification, or `wait`; without a listener, just `wait`.
pub async fn notified(
    listener: Option<&mut PgListener>,
    wait: Duration,
) -> Result<(), sqlx::Error> {
    let Some(listener) = listener else {
        tokio::time::sleep(wait).await;
        return Ok(());
    };
    match tokio::time::timeout(wait, listener.try_recv()).await {
        Err(_) | Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error),
    }
}
