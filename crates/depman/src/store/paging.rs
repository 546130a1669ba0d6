//! Keyset paging: newest first by (created_on, id), with an opaque cursor
//! naming the last row of the page. Rows inserted while a client pages
//! through are newer than its cursor, so no row shows twice and none is
//! skipped.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub created_on: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn new(created_on: DateTime<Utc>, id: Uuid) -> Self {
        Self { created_on, id }
    }

    pub fn encode(&self) -> String {
        let text = format!("{}|{}", self.created_on.timestamp_micros(), self.id);
        URL_SAFE_NO_PAD.encode(text)
    }

    /// `None` for anything `encode` did not make.
    pub fn decode(token: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let (micros, id) = text.split_once('|')?;
        Some(Self {
            created_on: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// Ends a list's query: rows after `after`, newest first, one more than
/// `limit` (which says another page follows).
pub fn push_page(query: &mut QueryBuilder<Postgres>, after: Option<&Cursor>, limit: i64) {
    if let Some(cursor) = after {
        query
            .push(" AND (created_on, id) < (")
            .push_bind(cursor.created_on)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    query
        .push(" ORDER BY created_on DESC, id DESC LIMIT ")
        .push_bind(limit + 1);
}

/// One page of a list, and the cursor of the next page if there is one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` holds up to `limit + 1` rows: the extra one only says that
    /// another page follows.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|last| cursor_of(last).encode()))
            .flatten();
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// The same page, each item turned into `U` (a row into what the API
    /// shows of it).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_the_round_trip() {
        let cursor = Cursor::new(
            DateTime::from_timestamp_micros(1_790_000_000_123_456).expect("valid"),
            Uuid::new_v4(),
        );
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for token in ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("12|not-a-uuid")] {
            assert_eq!(Cursor::decode(token), None, "{token}");
        }
    }

    #[test]
    fn the_extra_row_makes_a_next_cursor() {
        let cursor = |n: &i64| {
            Cursor::new(
                DateTime::from_timestamp_micros(*n).expect("valid"),
                Uuid::nil(),
            )
        };
        let page = Page::from_rows(vec![3, 2, 1], 2, cursor);
        assert_eq!(page.items, [3, 2]);
        assert_eq!(page.next_cursor, Some(cursor(&2).encode()));
        let last = Page::from_rows(vec![1], 2, cursor);
        assert_eq!(last.next_cursor, None);
    }
}
