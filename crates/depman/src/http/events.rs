//! `/api/v1/events`: the caller's events, oldest first, as a live
//! Server-Sent Events stream (`Accept: text/event-stream`) or as JSON pages.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::{RawQuery, State},
    http::{HeaderMap, header},
    response::{
        IntoResponse, Response,
        sse::{self, KeepAlive, Sse},
    },
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    deployments::Deployment,
    error::{ApiError, Problem},
    extract::Caller,
    requests::{DeploymentRequest, MAX_LIMIT},
    state::AppState,
};
use crate::{
    domain::{event::EventType, names::check_dns_label},
    store::{
        deployments::DeploymentRow,
        events::{self, EventRow, Filter, Position},
        requests::RequestRow,
    },
};

/// An event as the API (and a webhook delivery) shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// Opaque cursor: give it as `Last-Event-ID` or `after` to resume after
    /// this event.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub occurred_on: DateTime<Utc>,
    pub identifier: String,
    /// The id of the request the event is about, if any.
    pub request_id: Option<Uuid>,
    /// The owner's `X-User-ID`, or `kubernetes` for a change made outside
    /// depman.
    pub actor: String,
    /// The request (`request.*`, `rollout.*`) or the deployment
    /// (`deployment.*`) as the API showed it right after the event.
    pub data: EventData,
    /// `deployment.changed`: each field that changed, before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<FieldChange>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventData {
    Request(Box<DeploymentRequest>),
    Deployment(Box<Deployment>),
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

impl Event {
    /// The event as shown; an error for a row this version cannot read (a
    /// type it does not know, data that is not the row it should be).
    pub fn from_row(row: &EventRow) -> Result<Self, anyhow::Error> {
        let kind = EventType::parse(&row.kind)
            .ok_or_else(|| anyhow::anyhow!("unknown event type `{}`", row.kind))?;
        let data = if kind.is_about_deployment() {
            let row: DeploymentRow = serde_json::from_str(&row.data)?;
            EventData::Deployment(Box::new(row.into()))
        } else {
            let row: RequestRow = serde_json::from_str(&row.data)?;
            EventData::Request(Box::new(row.into()))
        };
        let changes = row
            .changes
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?;
        Ok(Self {
            id: row.position().encode(),
            kind,
            occurred_on: row.occurred_on,
            identifier: row.identifier.clone(),
            request_id: row.request_id,
            actor: row.actor.clone(),
            data,
            changes,
        })
    }
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Where to go on from: the `id` of the last item, or the `after` given
    /// when there is nothing new (`null` only when the log holds nothing
    /// for the caller yet). Poll with it as `after`.
    pub next_cursor: Option<String>,
}

/// The query of `GET /api/v1/events`, for the document (`type` repeats,
/// which the parser below reads by hand).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // never built: it exists for its `IntoParams` description
struct EventsQuery {
    /// Only this deployment's events.
    #[param(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    identifier: Option<String>,
    /// Only events of these types (repeat the parameter for several).
    #[param(rename = "type", style = Form, explode, inline)]
    kind: Option<Vec<EventType>>,
    /// Resume after this event id (as `Last-Event-ID`, which wins when
    /// both are given). Without it: a stream starts from now, a page from
    /// the oldest event kept.
    after: Option<String>,
    /// Page size, 1 to 500; default 100. Not used by the stream.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `newest_first`: the page starts at the newest event (before
    /// `before`, if given), looking back, as an audit view starts; its
    /// `next_cursor` goes as `before` to the page after it, and is `null`
    /// once a page is not full. Pages only.
    #[param(inline)]
    order: Option<Order>,
    /// Only events before this id (pages only).
    before: Option<String>,
}

/// The order of a page of events (for the document; the parser below
/// reads it by hand).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Order {
    OldestFirst,
    NewestFirst,
}

/// The caller's events: a live stream that resumes exactly after
/// `Last-Event-ID`, or (without `Accept: text/event-stream`) a page.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "list_events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "A page of events, oldest first; or, with `Accept: text/event-stream`, a Server-Sent Events stream of them (`id:` the event id, `event:` its type, `data:` the event JSON; a comment every 15 s)", body = EventPage,
            content(
                (EventPage = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 410, description = "The cursor is older than the events kept (`DEPMAN_EVENT_RETENTION`): start again without it", body = Problem),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let query = parse_query(query.as_deref().unwrap_or_default(), last_event_id)?;
    if let Some(after) = query.after {
        check_retained(&state, after).await?;
    }
    let filter = Filter {
        user_id: Some(caller.id),
        identifier: query.identifier,
        types: query.types,
    };
    if wants_stream(&headers) {
        if query.newest_first {
            return Err(ApiError::invalid(
                "order",
                "a stream is always oldest first",
            ));
        }
        if query.before.is_some() {
            return Err(ApiError::invalid("before", "a stream has no end"));
        }
        return Ok(stream(&state, filter, query.after).into_response());
    }
    let start = query.after.unwrap_or(Position::START);
    let rows = events::page(
        &state.pool,
        &filter,
        start,
        query.before,
        query.newest_first,
        query.limit,
    )
    .await?;
    let last = rows.last().map(EventRow::position);
    let next_cursor = if query.newest_first {
        // Looking back: the next page is before the oldest shown, if this
        // one was full.
        last.filter(|_| rows.len() as i64 == query.limit)
    } else {
        last.or(query.after)
    };
    let items = rows.iter().filter_map(shown).collect();
    let next_cursor = next_cursor.map(|position| position.encode());
    Ok(Json(EventPage { items, next_cursor }).into_response())
}

/// The keep-alive comment's period: below the idle timeout of common proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn stream(state: &AppState, filter: Filter, after: Option<Position>) -> impl IntoResponse {
    let (start, events) = state.feed.subscribe(state.pool.clone(), filter, after);
    // A stream from now first names where now is: a frame with an id and
    // no data, which sets a client's last event id without being an event.
    // A client that reconnects before any event came then resumes from
    // there, and misses nothing that happened while it was away.
    let position = after
        .is_none()
        .then(|| sse::Event::default().id(start.encode()));
    let events = futures::stream::iter(position)
        .chain(events.map(|row| frame(&row)))
        .map(Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

fn frame(row: &EventRow) -> sse::Event {
    let frame = sse::Event::default()
        .id(row.position().encode())
        .event(&row.kind);
    match shown(row).map(|event| serde_json::to_string(&event)) {
        Some(Ok(json)) => frame.data(json),
        _ => frame.data("null"),
    }
}

/// The event as shown, or `None` (logged) if its row cannot be read.
fn shown(row: &EventRow) -> Option<Event> {
    Event::from_row(row)
        .inspect_err(|error| {
            tracing::error!(error = format!("{error:#}"), kind = %row.kind, "an event cannot be shown")
        })
        .ok()
}

/// Whether the client asks for Server-Sent Events.
pub fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"))
}

/// A cursor before the newest pruned event may have missed some: 410.
async fn check_retained(state: &AppState, after: Position) -> Result<(), ApiError> {
    match events::pruned_through(&state.pool).await? {
        Some(pruned) if after < pruned => Err(ApiError::Gone(
            "events after this cursor were pruned (older than DEPMAN_EVENT_RETENTION): \
             start again without a cursor"
                .into(),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, PartialEq)]
struct Query {
    identifier: Option<String>,
    types: Vec<String>,
    after: Option<Position>,
    before: Option<Position>,
    newest_first: bool,
    limit: i64,
}

const DEFAULT_LIMIT: i64 = 100;

fn parse_query(query: &str, last_event_id: Option<&str>) -> Result<Query, ApiError> {
    let mut parsed = Query {
        identifier: None,
        types: Vec::new(),
        after: None,
        before: None,
        newest_first: false,
        limit: DEFAULT_LIMIT,
    };
    let mut after = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "identifier" => {
                check_dns_label(&value, 63).map_err(|e| ApiError::invalid("identifier", e))?;
                parsed.identifier = Some(value.into_owned());
            }
            "type" => {
                let kind = EventType::parse(&value).ok_or_else(|| {
                    ApiError::invalid("type", format!("must be one of {}", EventType::listing()))
                })?;
                parsed.types.push(kind.as_str().to_owned());
            }
            "after" => after = Some(("after", value.into_owned())),
            "order" => {
                parsed.newest_first = match value.as_ref() {
                    "oldest_first" => false,
                    "newest_first" => true,
                    _ => {
                        return Err(ApiError::invalid(
                            "order",
                            "must be `oldest_first` or `newest_first`",
                        ));
                    }
                }
            }
            "before" => parsed.before = Some(decode("before", &value)?),
            "limit" => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", format!("must be between 1 and {MAX_LIMIT}"))
                    })?;
            }
            other => {
                return Err(ApiError::invalid(other, "is not a parameter of this route"));
            }
        }
    }
    if let Some(id) = last_event_id {
        after = Some(("Last-Event-ID", id.to_owned()));
    }
    if let Some((field, token)) = after {
        parsed.after = Some(decode(field, &token)?);
    }
    Ok(parsed)
}

fn decode(field: &str, token: &str) -> Result<Position, ApiError> {
    Position::decode(token)
        .ok_or_else(|| ApiError::invalid(field, "is not an event id this API returned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(result: Result<Query, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid(errors)) => errors[0].field.clone(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn types_repeat_and_the_header_wins_over_after() {
        let header = Position { xid: 9, seq: 3 };
        let query = parse_query(
            &format!(
                "type=request.accepted&type=rollout.failed&after={}&identifier=web",
                Position { xid: 1, seq: 1 }.encode()
            ),
            Some(&header.encode()),
        )
        .expect("valid");
        assert_eq!(query.types, ["request.accepted", "rollout.failed"]);
        assert_eq!(query.after, Some(header));
        assert_eq!(query.identifier.as_deref(), Some("web"));
        assert_eq!(query.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(invalid_field(parse_query("type=request.*", None)), "type");
        assert_eq!(
            invalid_field(parse_query("identifier=A%00", None)),
            "identifier"
        );
        assert_eq!(invalid_field(parse_query("after=nope", None)), "after");
        assert_eq!(
            invalid_field(parse_query("", Some("nope"))),
            "Last-Event-ID"
        );
        assert_eq!(invalid_field(parse_query("limit=0", None)), "limit");
        assert_eq!(invalid_field(parse_query("limit=501", None)), "limit");
        assert_eq!(invalid_field(parse_query("cursor=x", None)), "cursor");
        assert_eq!(invalid_field(parse_query("order=random", None)), "order");
        assert_eq!(invalid_field(parse_query("before=x", None)), "before");
        assert_eq!(
            invalid_field(parse_query("order=newest_first&before=x", None)),
            "before"
        );
        assert_eq!(
            invalid_field(parse_query("order=newest_first", Some("nope"))),
            "Last-Event-ID"
        );
    }

    #[test]
    fn a_page_may_be_bounded_on_both_sides_in_either_order() {
        let query = parse_query("order=newest_first", None).expect("valid");
        assert!(query.newest_first);
        assert_eq!((query.after, query.before), (None, None));
        let (after, before) = (Position { xid: 3, seq: 1 }, Position { xid: 7, seq: 2 });
        for order in ["oldest_first", "newest_first"] {
            let query = parse_query(
                &format!(
                    "order={order}&before={}&after={}",
                    before.encode(),
                    after.encode()
                ),
                None,
            )
            .expect("valid");
            assert_eq!(query.newest_first, order == "newest_first");
            assert_eq!((query.after, query.before), (Some(after), Some(before)));
        }
    }
}
