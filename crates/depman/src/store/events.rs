//! The `events` table: read in position order, only below the horizon (the
//! oldest transaction still in flight), so that no reader ever sees an event
//! after one that precedes it. Triggers write it (migration 0006).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

/// Where an event stands in the log: its transaction, then its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub xid: u64,
    pub seq: i64,
}

impl Position {
    /// The opaque cursor the API shows as an event's `id`.
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.xid.to_be_bytes());
        bytes[8..].copy_from_slice(&self.seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `None` for anything `encode` did not make.
    pub fn decode(token: &str) -> Option<Self> {
        let bytes: [u8; 16] = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
        let (xid, seq) = bytes.split_at(8);
        let position = Self {
            xid: u64::from_be_bytes(xid.try_into().ok()?),
            seq: i64::from_be_bytes(seq.try_into().ok()?),
        };
        (position.seq >= 0 && position.encode() == token).then_some(position)
    }

    /// Before every event.
    pub const START: Self = Self { xid: 0, seq: 0 };
}

/// An event as stored.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    #[sqlx(try_from = "String")]
    pub xid: XidText,
    pub seq: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub occurred_on: DateTime<Utc>,
    pub user_id: Uuid,
    pub identifier: String,
    pub request_id: Option<Uuid>,
    pub actor: String,
    /// JSON, read as text: a reader parses it once, straight into the shape
    /// it shows (make bench-list: building a `Value` and copying it cost more
    /// than the query, and even checking it as a `RawValue` cost 8 %).
    pub data: String,
    pub changes: Option<String>,
}

impl EventRow {
    pub fn position(&self) -> Position {
        Position {
            xid: self.xid.0,
            seq: self.seq,
        }
    }
}

/// An `xid8` read as text (sqlx has no type for it).
#[derive(Debug, Clone, Copy)]
pub struct XidText(pub u64);

impl TryFrom<String> for XidText {
    type Error = std::num::ParseIntError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(Self)
    }
}

/// A position as a query returns it (`xid::text AS xid, seq`).
#[derive(Debug, FromRow)]
struct StoredPosition {
    #[sqlx(try_from = "String")]
    xid: XidText,
    seq: i64,
}

impl From<StoredPosition> for Position {
    fn from(stored: StoredPosition) -> Self {
        Self {
            xid: stored.xid.0,
            seq: stored.seq,
        }
    }
}

const COLUMNS: &str = "xid::text AS xid, seq, type, occurred_on, user_id, identifier, request_id, actor, data::text AS data, changes::text AS changes";

/// Below this, every transaction has ended: no event can still appear.
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())";

/// Which events a reader wants; `None` and empty mean all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<Uuid>,
    pub identifier: Option<String>,
    pub types: Vec<String>,
}

/// Up to `limit` events after `after` that `filter` takes, oldest first.
pub async fn read(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    after: Position,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    page(db, filter, after, None, false, limit).await
}

/// Up to `limit` events between `after` and `before` (both left out) that
/// `filter` takes: the oldest of them first, or with `newest_first` the
/// newest (a look back, as an audit view starts).
///
/// The statement holds only the filters given (a generic plan of `$n IS
/// NULL OR ...` can use no filter's index). A user's events are a range of
/// the key of their index, `(user_id, xid, seq)`, bounded and ordered by
/// row comparisons: with `user_id = $1` and the order by position alone,
/// PostgreSQL priced walking the primary key and skipping other users'
/// events about the same as walking the user's index, and chose it on
/// some statistics samples. 10,000 newer events of another user then made
/// a page 5 ms instead of 0.2 (make bench-list, which seeds them so).
pub async fn page(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    after: Position,
    before: Option<Position>,
    newest_first: bool,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let user = filter.user_id;
    let (key, until_horizon) = match user {
        Some(_) => ("(user_id, xid, seq)", "(user_id, xid)"),
        None => ("(xid, seq)", "xid"),
    };
    let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE {key} > "));
    push_key(&mut query, user, after);
    query.push(format!(" AND {until_horizon} < "));
    match user {
        Some(user) => query
            .push("(")
            .push_bind(user)
            .push(format!(", {HORIZON})")),
        None => query.push(HORIZON),
    };
    if let Some(before) = before {
        query.push(format!(" AND {key} < "));
        push_key(&mut query, user, before);
    }
    if let Some(identifier) = &filter.identifier {
        query.push(" AND identifier = ").push_bind(identifier);
    }
    if !filter.types.is_empty() {
        query
            .push(" AND type = ANY(")
            .push_bind(&filter.types)
            .push(")");
    }
    // Qualified: a bare `xid` in ORDER BY names the output column, which
    // is the text of the id, and text puts 10 before 9.
    let direction = if newest_first { "DESC" } else { "ASC" };
    query.push(" ORDER BY ");
    if user.is_some() {
        query.push(format!("events.user_id {direction}, "));
    }
    query.push(format!(
        "events.xid {direction}, events.seq {direction} LIMIT "
    ));
    query.push_bind(limit);
    query.build_query_as().fetch_all(db).await
}

/// `(user, xid, seq)`, or `(xid, seq)` for events of every user.
fn push_key(query: &mut QueryBuilder<Postgres>, user: Option<Uuid>, position: Position) {
    query.push("(");
    if let Some(user) = user {
        query.push_bind(user).push(", ");
    }
    query
        .push_bind(position.xid.to_string())
        .push("::text::xid8, ")
        .push_bind(position.seq)
        .push(")");
}

/// The newest position readable now: where a reader that wants only what
/// happens from now on starts.
pub async fn head(db: impl PgExecutor<'_>) -> Result<Position, sqlx::Error> {
    let newest: Option<StoredPosition> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT xid::text AS xid, seq FROM events WHERE xid < {HORIZON}
         ORDER BY events.xid DESC, events.seq DESC LIMIT 1"
    )))
    .fetch_optional(db)
    .await?;
    Ok(newest.map_or(Position::START, Position::from))
}

/// Whether committed events wait above the horizon (an older transaction is
/// still in flight): they become readable when it ends.
pub async fn held_back(db: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    // The newest event, through the primary key: an EXISTS over the
    // horizon was planned as a scan of the whole table (3 ms at 40,000
    // events, a quarter of PostgreSQL's time under make profile-api, as the
    // feed asks this after every read while writes are in flight).
    let newest_held_back: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT xid >= {HORIZON} FROM events ORDER BY xid DESC, seq DESC LIMIT 1"
    )))
    .fetch_optional(db)
    .await?;
    Ok(newest_held_back.unwrap_or(false))
}

/// The newest position pruned, if any: a cursor before it may have missed
/// events.
pub async fn pruned_through(db: impl PgExecutor<'_>) -> Result<Option<Position>, sqlx::Error> {
    let pruned: Option<StoredPosition> =
        sqlx::query_as("SELECT xid::text AS xid, seq FROM events_pruned")
            .fetch_optional(db)
            .await?;
    Ok(pruned.map(Position::from))
}

/// Removes up to `batch` of the oldest events that happened more than
/// `retention` ago, and moves the pruned mark past them; returns how many
/// went. One short statement: readers and writers are never held up.
pub async fn prune(
    db: impl PgExecutor<'_>,
    retention: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH doomed AS (
             SELECT xid, seq FROM events
             WHERE occurred_on < clock_timestamp() - $1::interval
             ORDER BY xid, seq
             LIMIT $2
         ),
         gone AS (
             DELETE FROM events e USING doomed d
             WHERE e.xid = d.xid AND e.seq = d.seq
             RETURNING e.xid, e.seq
         ),
         newest AS (
             SELECT xid, seq FROM gone ORDER BY xid DESC, seq DESC LIMIT 1
         ),
         marked AS (
             INSERT INTO events_pruned (xid, seq) SELECT xid, seq FROM newest
             ON CONFLICT (only_row) DO UPDATE SET xid = EXCLUDED.xid, seq = EXCLUDED.seq
             WHERE (events_pruned.xid, events_pruned.seq) < (EXCLUDED.xid, EXCLUDED.seq)
         )
         SELECT count(*) FROM gone",
    )
    .bind(retention)
    .bind(batch)
    .fetch_one(db)
    .await
    .map(|count: i64| count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_anything_else() {
        let position = Position {
            xid: 1_234_567,
            seq: 89,
        };
        assert_eq!(Position::decode(&position.encode()), Some(position));
        assert_eq!(
            Position::decode(&Position::START.encode()),
            Some(Position::START)
        );
        for bad in [
            "",
            "abc",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "not a cursor at all!!",
        ] {
            assert_eq!(Position::decode(bad), None, "{bad}");
        }
        let negative = URL_SAFE_NO_PAD.encode([0xffu8; 16]);
        assert_eq!(Position::decode(&negative), None);
    }

    #[test]
    fn positions_order_by_transaction_then_number() {
        let p = |xid, seq| Position { xid, seq };
        assert!(p(1, 99) < p(2, 1));
        assert!(p(2, 1) < p(2, 2));
    }
}
