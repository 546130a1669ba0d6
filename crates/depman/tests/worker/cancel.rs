//! Cancelling (contract: "Cancel"): a request that waits, even behind one
//! being carried out, ends `FAILURE`/`cancelled` and is never applied; a
//! cancelled CREATE fails its deployment and what was queued behind it.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::{
    cluster::{Cluster, deployment, stack},
    helpers::{TestApp, assert_problem, environment, status_and_json, url_with_database},
};

async fn cancel(app: &TestApp, user: &str, id: &str) -> reqwest::Response {
    app.request(
        reqwest::Method::POST,
        &format!("/api/v1/deployments/requests/{id}/cancel"),
        user,
    )
    .send()
    .await
    .expect("POST cancel")
}

fn id(request: &Value) -> String {
    request["id"].as_str().expect("an id").to_owned()
}

/// Holds the worker's lock on `identifier` until the transaction ends, as a
/// worker carrying out a slow request would.
async fn hold_lock(app: &TestApp, identifier: &str) -> PgConnection {
    let url = url_with_database(&environment("DATABASE_URL"), &app.database);
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(identifier)
        .execute(&mut conn)
        .await
        .expect("the lock");
    conn
}

#[tokio::test]
async fn a_waiting_update_is_cancelled_and_never_applied() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let done = app
        .terminal("alice", &id(&created), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESS");
    let problem = assert_problem(cancel(&app, "alice", &id(&created)).await, 409, None).await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("a detail")
            .contains("already ended")
    );

    let mut lock = hold_lock(&app, "web").await;
    let (status, update) = status_and_json(
        app.patch("alice", &id(&created), &json!({"image": "nginx:1.28"}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{update}");
    assert_problem(cancel(&app, "bob", &id(&update)).await, 404, None).await;
    let (status, cancelled) = status_and_json(cancel(&app, "alice", &id(&update)).await).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "FAILURE");
    assert_eq!(cancelled["failure_code"], "cancelled");
    assert_eq!(cancelled["failure_reason"], "cancelled by alice");
    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("release");
    // The worker gets the message and the lock, and finds nothing to do.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, after) = status_and_json(
        app.get(
            "alice",
            &format!("/api/v1/deployments/requests/{}", id(&update)),
        )
        .await,
    )
    .await;
    assert_eq!(after["failure_code"], "cancelled");
    let live = cluster.deployment("web").await.expect("the Deployment");
    let pod = live.spec.template.spec.expect("a pod spec");
    assert_eq!(pod.containers[0].image.as_deref(), Some("nginx:1.27"));
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_cancelled_create_fails_its_deployment_and_what_waits_behind_it() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let mut lock = hold_lock(&app, "db").await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("db", &cluster.namespace))
            .await,
    )
    .await;
    let (status, update) = status_and_json(
        app.patch("alice", &id(&created), &json!({"replicas": 3}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{update}");
    let (status, cancelled) = status_and_json(cancel(&app, "alice", &id(&created)).await).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["failure_code"], "cancelled");
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/db").await).await;
    assert_eq!(row["status"], "FAILED");
    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("release");
    let behind = app
        .terminal("alice", &id(&update), Duration::from_secs(60))
        .await;
    assert_eq!(behind["status"], "FAILURE", "{behind}");
    assert_eq!(behind["failure_code"], "create-failed");
    assert!(
        cluster.deployment("db").await.is_none(),
        "nothing was created"
    );
    app.finish().await;
    cluster.finish().await;
}
