//! The event log (contract: "Events"): every accepted request is an event
//! written with it; readers never miss one nor see one out of order, even
//! while transactions commit out of the order they began; streams resume
//! exactly after `Last-Event-ID`; a user sees only their own.

use std::{collections::HashSet, time::Duration};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{
    EventStream, TestApp, assert_problem, deployment, event_pages, events_eventually,
    status_and_json, unique,
};

async fn created(app: &TestApp, user: &str, name: &str) -> Value {
    let (status, request) = status_and_json(app.create(user, &deployment(name)).await).await;
    assert_eq!(status, 202, "{request}");
    request
}

#[tokio::test]
async fn an_accepted_request_is_an_event_that_shows_the_request_and_who_made_it() {
    let app = TestApp::spawn().await;
    let request = created(&app, "alice", "web").await;
    let events = events_eventually(&app, "alice", "", 1).await;
    let (_, next) = event_pages(&app, "alice", "", None).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["type"], "request.accepted");
    assert_eq!(event["actor"], "alice");
    assert_eq!(event["identifier"], request["identifier"]);
    assert_eq!(event["request_id"], request["id"]);
    assert_eq!(event["data"], request, "the request as the API shows it");
    assert_eq!(next.as_deref(), event["id"].as_str());
    // Nothing new: the cursor stays where it was.
    let (more, again) = event_pages(&app, "alice", "", next.clone()).await;
    assert!(more.is_empty());
    assert_eq!(again, next);
    app.finish().await;
}

/// The property the log exists for. Writers commit concurrently, and one
/// transaction takes its position early but commits late (the case where a
/// naive `WHERE id > $last` skips an event); a reader polling all along must
/// see every event exactly once, in one order that never goes back.
#[tokio::test]
async fn concurrent_writers_never_make_a_reader_miss_or_repeat_an_event() {
    let app = TestApp::spawn().await;
    let user_id: uuid::Uuid = {
        created(&app, "alice", "seed").await;
        events_eventually(&app, "alice", "", 1).await;
        sqlx::query_scalar("SELECT id FROM users WHERE user_external_id = 'alice'")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let (_, start) = event_pages(&app, "alice", "", None).await;

    // A transaction that writes its event first and commits last.
    let url = helpers_url(&app);
    let slow = tokio::spawn(async move {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(
            "SELECT record_event('deployment.changed', $1, 'slow', NULL, 'kubernetes',
                 (SELECT to_jsonb(d) FROM deployments d LIMIT 1), '[]')",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.commit().await.unwrap();
    });
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let url = app.url("/api/v1/deployments/requests/create");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0..25 {
                    let response = client
                        .post(&url)
                        .header("X-User-ID", "alice")
                        .json(&deployment(&format!("w{writer}-{n}")))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 202);
                }
            })
        })
        .collect();
    let expected = 8 * 25 + 1;
    let mut seen = Vec::new();
    let mut cursor = start;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < expected && tokio::time::Instant::now() < deadline {
        let (events, next) = event_pages(&app, "alice", "", cursor.clone()).await;
        seen.extend(events);
        cursor = next;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    slow.await.unwrap();
    // Anything more would be a repeat.
    let (late, _) = event_pages(&app, "alice", "", cursor).await;
    assert!(late.is_empty(), "events after the last: {late:?}");
    let ids: Vec<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), expected, "every event, once");
    assert_eq!(distinct.len(), expected, "no event twice");
    assert!(
        seen.iter().any(|e| e["identifier"] == "slow"),
        "the late committer's event"
    );
    // The order never goes back: the same events read again in one go come
    // in the order they were seen.
    let (all, _) = event_pages(&app, "alice", "", None).await;
    let again: Vec<&str> = all
        .iter()
        .skip(1)
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(again, ids);
    app.finish().await;
}

fn helpers_url(app: &TestApp) -> String {
    crate::helpers::url_with_database(&crate::helpers::environment("DATABASE_URL"), &app.database)
}

#[tokio::test]
async fn a_stream_resumes_exactly_after_the_last_event_it_delivered() {
    let app = TestApp::spawn().await;
    let mut stream = EventStream::open(&app, "alice", "", None).await;
    for name in ["a", "b", "c"] {
        created(&app, "alice", name).await;
    }
    let first = stream.take(2, Duration::from_secs(5)).await;
    assert_eq!(first[0].event, "request.accepted");
    assert_eq!(first[0].data["type"], "request.accepted");
    assert_eq!(first[0].data["id"], first[0].id.as_str());
    assert_eq!(first[0].data["data"]["name"], "a");
    assert_eq!(first[1].data["data"]["name"], "b");
    drop(stream);
    // Missed while disconnected.
    for name in ["d", "e"] {
        created(&app, "alice", name).await;
    }
    let mut resumed = EventStream::open(&app, "alice", "", Some(&first[1].id)).await;
    let names: Vec<Value> = resumed
        .take(3, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|frame| frame.data["data"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("c"), json!("d"), json!("e")]);
    // And then live.
    created(&app, "alice", "f").await;
    let live = resumed.next(Duration::from_secs(5)).await.expect("live");
    assert_eq!(live.data["data"]["name"], "f");
    assert!(
        resumed.next(Duration::from_millis(500)).await.is_none(),
        "nothing twice"
    );
    // `after` in the query resumes the same way.
    let mut by_query =
        EventStream::open(&app, "alice", &format!("after={}", first[1].id), None).await;
    let frame = by_query
        .next(Duration::from_secs(5))
        .await
        .expect("an event");
    assert_eq!(frame.data["data"]["name"], "c");
    app.finish().await;
}

#[tokio::test]
async fn a_user_sees_only_their_own_events_and_filters_narrow_them() {
    let app = TestApp::spawn().await;
    let mut bobs_stream = EventStream::open(&app, "bob", "", None).await;
    let web = created(&app, "alice", "web").await;
    created(&app, "alice", "api").await;
    let bobs = created(&app, "bob", "db").await;
    let frame = bobs_stream
        .next(Duration::from_secs(5))
        .await
        .expect("bob's event");
    assert_eq!(frame.data["identifier"], bobs["identifier"]);
    assert!(bobs_stream.next(Duration::from_millis(500)).await.is_none());

    let alices = events_eventually(&app, "alice", "", 2).await;
    assert_eq!(alices.len(), 2);
    assert!(alices.iter().all(|e| e["actor"] == "alice"));

    let identifier = web["identifier"].as_str().unwrap();
    let (only_web, _) = event_pages(&app, "alice", &format!("identifier={identifier}"), None).await;
    assert_eq!(only_web.len(), 1);
    assert_eq!(only_web[0]["identifier"], identifier);

    let (by_type, _) = event_pages(
        &app,
        "alice",
        "type=request.failed&type=request.accepted",
        None,
    )
    .await;
    assert_eq!(by_type.len(), 2);
    let (none, _) = event_pages(&app, "alice", "type=rollout.failed", None).await;
    assert!(none.is_empty());
    // Bob cannot read Alice's deployment's events by naming it.
    let (stolen, _) = event_pages(&app, "bob", &format!("identifier={identifier}"), None).await;
    assert!(stolen.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn a_stream_from_now_names_its_position_first_so_a_quick_reconnect_misses_nothing() {
    let app = TestApp::spawn().await;
    created(&app, "alice", "before").await;
    events_eventually(&app, "alice", "", 1).await;
    let mut response = app
        .request(reqwest::Method::GET, "/api/v1/events", "alice")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = response.chunk().await.unwrap().expect("a first frame");
        first.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let frame = first.split("\n\n").next().unwrap();
    assert!(
        frame.starts_with("id: ") && !frame.contains("data:"),
        "{frame:?}"
    );
    let position = frame.trim_start_matches("id: ").to_owned();
    // The client drops before any event came; one happens while it is away.
    drop(response);
    created(&app, "alice", "while-away").await;
    let mut resumed = EventStream::open(&app, "alice", "", Some(&position)).await;
    // "Now" is where the api's reader of the log is: under load it may not
    // have passed the event before yet, and then that one comes too.
    let mut names = Vec::new();
    while names.last().map(String::as_str) != Some("while-away") {
        let event = resumed
            .next(Duration::from_secs(5))
            .await
            .expect("the event");
        names.push(event.data["data"]["name"].as_str().unwrap().to_owned());
    }
    assert!(
        names == ["while-away"] || names == ["before", "while-away"],
        "{names:?}"
    );
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());
    app.finish().await;
}

#[tokio::test]
async fn a_page_newest_first_looks_back_from_the_newest_event_and_a_stream_goes_on_from_it() {
    let app = TestApp::spawn().await;
    for name in ["one", "two", "three"] {
        created(&app, "alice", name).await;
    }
    created(&app, "bob", "other").await;
    let oldest_first = events_eventually(&app, "alice", "", 3).await;
    let page = |query: String| {
        let app = &app;
        async move {
            let (status, page) =
                status_and_json(app.get("alice", &format!("/api/v1/events?{query}")).await).await;
            assert_eq!(status, 200, "{query}: {page}");
            page
        }
    };
    let first = page("order=newest_first&limit=2".into()).await;
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["three", "two"]);
    let before = first["next_cursor"].as_str().expect("more to come");
    assert_eq!(before, first["items"][1]["id"]);
    let second = page(format!("order=newest_first&limit=2&before={before}")).await;
    assert_eq!(names(&second), ["one"]);
    assert_eq!(second["next_cursor"], Value::Null, "nothing older");
    assert_eq!(second["items"][0]["id"], oldest_first[0]["id"]);

    // An audit view shows the newest page, then follows live from its top:
    // the next event is the first the stream sends.
    let newest = first["items"][0]["id"].as_str().unwrap();
    let mut stream = EventStream::open(&app, "alice", "", Some(newest)).await;
    created(&app, "alice", "four").await;
    let frame = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!(frame.data["data"]["name"], "four");

    // Bounded on both sides, in either order: what came between.
    let (one, three) = (
        oldest_first[0]["id"].as_str().unwrap(),
        oldest_first[2]["id"].as_str().unwrap(),
    );
    for order in ["oldest_first", "newest_first"] {
        let between = page(format!("order={order}&after={one}&before={three}")).await;
        assert_eq!(names(&between), ["two"], "{order}");
    }

    for (query, field) in [("order=sideways", "order"), ("before=x", "before")] {
        let response = app.get("alice", &format!("/api/v1/events?{query}")).await;
        assert_problem(response, 422, Some(field)).await;
    }
    // A stream goes on from its cursor, oldest first, with no end.
    for (query, field) in [
        ("order=newest_first".to_owned(), "order"),
        (format!("before={three}"), "before"),
    ] {
        let stream = app
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/events?{query}"),
                "alice",
            )
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_problem(stream, 422, Some(field)).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_cursor_into_pruned_events_is_gone_and_bad_parameters_are_named() {
    let app = TestApp::spawn().await;
    created(&app, "alice", "old").await;
    let old = events_eventually(&app, "alice", "", 1).await;
    created(&app, "alice", "new").await;
    let both = events_eventually(&app, "alice", "", 2).await;
    // The first event is eight days old: a week's retention prunes it.
    sqlx::query(
        "UPDATE events SET occurred_on = now() - interval '8 days' WHERE data->>'name' = 'old'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let pruned = depman::store::events::prune(&app.pool, Duration::from_secs(7 * 86400), 100)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    // Resuming after the pruned event misses nothing: fine.
    let cursor = old[0]["id"].as_str().unwrap();
    let (rest, _) = event_pages(&app, "alice", "", Some(cursor.to_owned())).await;
    assert_eq!(rest.len(), 1);
    // From before it: gone, for the page and the stream alike.
    let start = depman::store::events::Position::START.encode();
    let page = app
        .get("alice", &format!("/api/v1/events?after={start}"))
        .await;
    let problem = assert_problem(page, 410, None).await;
    assert_eq!(problem["code"], "cursor-expired");
    let stream = app
        .request(reqwest::Method::GET, "/api/v1/events", "alice")
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", &start)
        .send()
        .await
        .unwrap();
    assert_problem(stream, 410, None).await;
    assert_eq!(both.len(), 2);

    for (query, field) in [
        ("type=nope", "type"),
        ("after=nope", "after"),
        ("limit=0", "limit"),
        ("identifier=Not_A_Label", "identifier"),
        (&*format!("{}=1", unique("x")), ""),
    ] {
        let response = app.get("alice", &format!("/api/v1/events?{query}")).await;
        let problem = assert_problem(response, 422, None).await;
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{query}");
        }
    }
    app.finish().await;
}

/// Positions are numbers: an event of transaction 10 comes after one of
/// transaction 9 on every read, though as text "10" sorts first (the order
/// was the text's once, which put a reader past events it never saw when
/// transaction ids gained a digit).
#[tokio::test]
async fn events_follow_transaction_numbers_not_their_text() {
    let app = TestApp::spawn().await;
    created(&app, "alice", "web").await;
    let ours = events_eventually(&app, "alice", "", 1).await;
    // Two more as transactions 9 and 10 wrote them, long ago.
    sqlx::query(
        "INSERT INTO events (xid, type, user_id, identifier, actor, data)
         SELECT x::text::xid8, type, user_id, 'tx-' || x, actor, data
         FROM (SELECT * FROM events LIMIT 1) ours, unnest(ARRAY[9, 10]) x",
    )
    .execute(&app.pool)
    .await
    .expect("the old events");
    let identifiers = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["identifier"].as_str().unwrap().to_owned())
            .collect()
    };
    let web = ours[0]["identifier"].as_str().unwrap().to_owned();

    // Oldest first, one at a time: each page goes on from the one before.
    let mut read = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after
            .as_ref()
            .map(|c| format!("&after={c}"))
            .unwrap_or_default();
        let (status, page) = status_and_json(
            app.get("alice", &format!("/api/v1/events?limit=1{cursor}"))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        read.extend(items);
        after = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(identifiers(&read), ["tx-9", "tx-10", web.as_str()]);

    let (status, newest) =
        status_and_json(app.get("alice", "/api/v1/events?order=newest_first").await).await;
    assert_eq!(status, 200, "{newest}");
    assert_eq!(
        identifiers(newest["items"].as_array().unwrap()),
        [web.as_str(), "tx-10", "tx-9"]
    );
    app.finish().await;
}

/// With no stream open, the api's feed reads none of the events written
/// (it moves to the log's head); once a stream is open it reads, and
/// broadcasts, each new one.
#[tokio::test]
async fn the_feed_reads_the_log_only_while_a_stream_is_open() {
    async fn logged(app: &TestApp) -> u64 {
        app.text("/metrics")
            .await
            .lines()
            .find_map(|line| line.strip_prefix("depman_events_logged_total "))
            .and_then(|count| count.trim().parse().ok())
            .expect("depman_events_logged_total")
    }
    let app = TestApp::spawn().await;
    for name in ["a", "b", "c"] {
        created(&app, "alice", name).await;
    }
    events_eventually(&app, "alice", "", 3).await;
    // The feed looks at the log at least every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(logged(&app).await, 0, "no stream, no event read");

    let mut stream = EventStream::open(&app, "alice", "", None).await;
    created(&app, "alice", "d").await;
    let event = stream.next(Duration::from_secs(5)).await.expect("d");
    assert_eq!(event.data["data"]["name"], "d");
    assert!(logged(&app).await >= 1, "read once a stream is open");
    app.finish().await;
}

/// The live state the sync would record for the Deployment of `request`,
/// at resource version `version` with `ready` pods.
fn live(request: &Value, version: &str, ready: i32) -> depman::store::deployments::Live {
    use depman::domain::status::{DeploymentStatus, Health};
    depman::store::deployments::Live {
        image: request["image"].as_str().map(str::to_owned),
        status: DeploymentStatus::Updating,
        health: Health::Progressing,
        health_reason: None,
        health_message: None,
        replicas: 2,
        ready_replicas: ready,
        available_replicas: ready,
        updated_replicas: ready,
        generation: 1,
        observed_generation: 1,
        conditions: Vec::new(),
        resource_version: version.to_owned(),
        metadata: json!({"annotations": {"depman.io/request-id": request["id"]}}),
    }
}

/// Records `live` as the sync does; it must be taken.
async fn record_live(app: &TestApp, request: &Value, live: depman::store::deployments::Live) {
    let (namespace, identifier) = (
        request["namespace"].as_str().expect("a namespace"),
        request["identifier"].as_str().expect("an identifier"),
    );
    let taken = depman::store::deployments::record_live(&app.pool, namespace, identifier, &live)
        .await
        .expect("the write");
    assert!(taken, "the row takes version {}", live.resource_version);
}

fn request_id(request: &Value) -> uuid::Uuid {
    request["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a request id")
}

/// Between a request's apply and its record, the sync may record the object
/// twice (its creation, then its controller's first status): counts that
/// move then are the request's rollout, not a change made outside depman.
/// Once no request is applied nor its rollout followed, the same kind of
/// write is one.
#[tokio::test]
async fn counts_that_move_while_a_request_is_applied_are_no_outside_change() {
    use depman::{domain::status::RequestStatus, store::requests};
    let app = TestApp::spawn().await;
    let request = created(&app, "alice", "web").await;
    let id = request_id(&request);
    assert!(requests::start_applying(&app.pool, id).await.unwrap());
    record_live(&app, &request, live(&request, "101", 0)).await;
    record_live(&app, &request, live(&request, "102", 1)).await;
    requests::finish(&app.pool, id, RequestStatus::Success, None)
        .await
        .unwrap();
    record_live(&app, &request, live(&request, "103", 2)).await;

    let events = events_eventually(&app, "alice", "type=deployment.changed", 1).await;
    assert_eq!(
        events.len(),
        1,
        "only the change after the request: {events:?}"
    );
    assert_eq!(events[0]["actor"], "kubernetes");
    assert_eq!(
        events[0]["changes"],
        json!([{"field": "ready_replicas", "before": 1, "after": 2}])
    );
    app.finish().await;
}

/// A request that failed and was put back in the queue (`depman dlq
/// replay`) waits again, like a new one: no worker is applying it, so it
/// can be cancelled, and counts that move meanwhile are an outside change.
#[tokio::test]
async fn a_request_put_back_after_failing_waits_and_is_not_being_applied() {
    use depman::{domain::status::RequestStatus, store::requests};
    let app = TestApp::spawn().await;
    let request = created(&app, "alice", "web").await;
    let id = request_id(&request);
    assert!(requests::start_applying(&app.pool, id).await.unwrap());
    record_live(&app, &request, live(&request, "101", 0)).await;
    let failure = Some(("the API server refused it", "rejected"));
    requests::finish(&app.pool, id, RequestStatus::Failure, failure)
        .await
        .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    assert!(requests::requeue(&mut conn, id).await.unwrap());
    drop(conn);

    record_live(&app, &request, live(&request, "102", 1)).await;
    let events = events_eventually(&app, "alice", "type=deployment.changed", 1).await;
    assert_eq!(
        events[0]["changes"],
        json!([{"field": "ready_replicas", "before": 0, "after": 1}])
    );
    let cancelled = requests::cancel(&app.pool, id, "no longer wanted")
        .await
        .unwrap();
    assert!(cancelled.is_ok(), "{cancelled:?}");
    app.finish().await;
}
