//! The live event feed of an api process: one task reads the event log as
//! it grows (woken by the `depman_event` notification, or every second) and
//! broadcasts each event to the process's subscribers, which filter it for
//! their caller. A subscriber that starts from a cursor, or falls behind the
//! broadcast, reads what it missed from the log itself: the log, not the
//! broadcast, is what makes the stream gap-free.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{EventMetrics, Subscribed},
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
        if self.skip_to_head(pool, position).await? {
            return Ok(false);
        }
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

    /// With no stream open in this process, moves `position` to the head
    /// of the log without reading the events before it: a stream reads the
    /// log itself from where it starts, and takes from the broadcast only
    /// what comes after. Reading them anyway cost the api about a second
    /// of CPU for a burst of 110,000 events (make bench-list's seed). True
    /// if it moved; not when a stream opened meanwhile, which may have
    /// read the log to a point before the head and waits for the rest.
    async fn skip_to_head(
        &self,
        pool: &PgPool,
        position: &mut Position,
    ) -> Result<bool, sqlx::Error> {
        if self.sender.receiver_count() > 0 {
            return Ok(false);
        }
        let head = events::head(pool).await?;
        if self.sender.receiver_count() > 0 {
            return Ok(false);
        }
        *position = head.max(*position);
        self.publish(Vec::new(), *position);
        Ok(true)
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
    /// as the stream is kept and the api runs. It ends early only if the
    /// log cannot be read: the client resumes from its last event. A
    /// stream is a state machine polled by its connection: no task, no
    /// channel, no database connection while it follows.
    pub fn subscribe(
        &self,
        pool: PgPool,
        filter: Filter,
        after: Option<Position>,
    ) -> (Position, impl Stream<Item = Arc<EventRow>> + Send + 'static) {
        // Subscribed before the position is read: what is broadcast after
        // the read reaches the receiver, what was before is behind `last`.
        let receiver = self.sender.subscribe();
        let last =
            after.unwrap_or_else(|| *self.position.lock().unwrap_or_else(|p| p.into_inner()));
        let following = Following {
            pool,
            filter,
            last,
            receiver,
            backlog: VecDeque::new(),
            catching_up: true,
            metrics: self.metrics.clone(),
            _subscribed: self.metrics.subscribed(),
        };
        let events = futures::stream::unfold(following, |mut following| async move {
            let event = following.next().await?;
            Some((event, following))
        })
        .take_until(self.stopped.clone().cancelled_owned());
        (last, events)
    }
}

/// One subscriber's place in the log.
struct Following {
    pool: PgPool,
    filter: Filter,
    /// The newest position this subscriber is past.
    last: Position,
    receiver: broadcast::Receiver<Arc<EventRow>>,
    /// Events read from the log, not yet sent.
    backlog: VecDeque<EventRow>,
    /// Reading the log (at the start, and after falling behind the
    /// broadcast) rather than following the broadcast.
    catching_up: bool,
    metrics: EventMetrics,
    _subscribed: Subscribed,
}

impl Following {
    /// The next event for this subscriber; `None` ends the stream.
    async fn next(&mut self) -> Option<Arc<EventRow>> {
        loop {
            if let Some(row) = self.backlog.pop_front() {
                self.last = row.position();
                return Some(self.sent(Arc::new(row)));
            }
            if self.catching_up {
                match events::read(&self.pool, &self.filter, self.last, BATCH).await {
                    Ok(rows) => {
                        self.catching_up = rows.len() as i64 == BATCH;
                        self.backlog.extend(rows);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "an event stream ended: the log cannot be read");
                        return None;
                    }
                }
            }
            match self.receiver.recv().await {
                Ok(event) if event.position() <= self.last => {}
                Ok(event) => {
                    self.last = event.position();
                    if self.takes(&event) {
                        return Some(self.sent(event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.receiver = self.receiver.resubscribe();
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
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

    fn sent(&self, event: Arc<EventRow>) -> Arc<EventRow> {
        self.metrics.streamed(event.occurred_on);
        event
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
        Err(_) => Ok(()),
        Ok(Ok(_)) => {
            // One read catches up with every commit so far: the
            // notifications already here would only wake it again.
            while listener.next_buffered().is_some() {}
            Ok(())
        }
        Ok(Err(error)) => Err(error),
    }
}
