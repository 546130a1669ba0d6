//! JetStream losing a published request's message (here the stream is
//! purged, as an operator might do by mistake): the relay's sweep queues the
//! request again, and it is carried out in order with the rest.

use std::time::Duration;

use depman::sweep::{self, LOST_AFTER};
use serde_json::json;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json},
};

const WITHIN: Duration = Duration::from_secs(60);

async fn sweep(app: &TestApp, lost_after: Duration) -> usize {
    sweep::sweep(&app.pool, &app.deps.js, &app.deps.names, lost_after)
        .await
        .expect("sweep")
}

async fn outbox_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.pool)
        .await
        .expect("outbox count")
}

/// Waits until the relay has published and removed every outbox row, so a
/// sweep judges the stream alone.
async fn relayed(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox_rows(app).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn requests_whose_messages_were_lost_are_queued_again() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let create_id = created["id"].as_str().unwrap();
    let (_, updated) =
        status_and_json(app.patch("alice", create_id, &json!({"replicas": 3})).await).await;
    assert_eq!(app.published(2).await.len(), 2);
    relayed(&app).await;

    app.deps
        .js
        .get_stream(app.deps.names.requests_stream())
        .await
        .expect("requests stream")
        .purge()
        .await
        .expect("purge");
    assert_eq!(
        sweep(&app, LOST_AFTER).await,
        0,
        "too recent to count as lost"
    );
    // A sweep once they have waited long enough: one message, for the
    // newest request, carries out both in order.
    assert_eq!(sweep(&app, Duration::ZERO).await, 1);
    let republished = app.published(1).await;
    assert_eq!(republished.len(), 1);
    assert_eq!(republished[0].request_id.to_string(), updated["id"]);

    app.start_worker(cluster.client.clone(), 4, Duration::from_millis(200));
    for id in [create_id, updated["id"].as_str().unwrap()] {
        let done = app.terminal("alice", id, WITHIN).await;
        assert_eq!(done["status"], "SUCCESS", "{done}");
    }
    let web = cluster.deployment("web").await.expect("web exists");
    assert_eq!(web.spec.replicas, Some(3));
    assert_eq!(
        sweep(&app, Duration::ZERO).await,
        0,
        "nothing waits any more"
    );

    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_lost_stream_is_made_anew_and_its_requests_queued_again() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(app.published(1).await.len(), 1);
    relayed(&app).await;

    // As a NATS server that lost its store: no stream at all.
    app.deps
        .js
        .delete_stream(app.deps.names.requests_stream())
        .await
        .expect("delete the requests stream");
    assert_eq!(sweep(&app, Duration::ZERO).await, 1);

    app.start_worker(cluster.client.clone(), 4, Duration::from_millis(200));
    let done = app
        .terminal("alice", created["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(done["status"], "SUCCESS", "{done}");

    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn requests_whose_messages_wait_in_the_stream_are_left_alone() {
    let cluster = Cluster::with_namespace().await;
    let app = TestApp::spawn().await;
    status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(app.published(1).await.len(), 1);
    relayed(&app).await;

    assert_eq!(sweep(&app, Duration::ZERO).await, 0);
    assert_eq!(outbox_rows(&app).await, 0, "nothing put back in the outbox");

    app.finish().await;
    cluster.finish().await;
}
