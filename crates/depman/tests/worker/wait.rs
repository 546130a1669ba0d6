//! `GET /api/v1/deployments/requests/{id}?wait=` answers as soon as the
//! request is applied or rolled out, woken by a notification: a waiter
//! holds no connection, so hundreds wait on a pool of 20.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json},
};

async fn get(app: &TestApp, id: &str, query: &str) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let (status, request) = status_and_json(
        app.get(
            "alice",
            &format!("/api/v1/deployments/requests/{id}?{query}"),
        )
        .await,
    )
    .await;
    (status, request, started.elapsed())
}

#[tokio::test]
async fn a_wait_returns_once_the_request_is_applied_and_once_it_is_rolled_out() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    // No worker yet: the waiter waits.
    let waiter = {
        let url = app.url(&format!(
            "/api/v1/deployments/requests/{id}?wait=50s&until=applied"
        ));
        tokio::spawn(async move {
            let started = Instant::now();
            let response = reqwest::Client::new()
                .get(url)
                .header("X-User-ID", "alice")
                .send()
                .await
                .unwrap();
            (
                response.json::<serde_json::Value>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    // The watcher reports the rollout's progress.
    app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        Duration::from_secs(4),
    );
    let (applied, waited) = waiter.await.unwrap();
    assert_eq!(applied["status"], "SUCCESS", "{applied}");
    assert!(
        waited < Duration::from_secs(50),
        "woken, not timed out: {waited:?}"
    );

    let (status, rolled_out, waited) = get(&app, &id, "wait=50s").await;
    assert_eq!(status, 200);
    assert_eq!(rolled_out["rollout"]["state"], "COMPLETE", "{rolled_out}");
    assert!(waited < Duration::from_secs(50), "{waited:?}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn two_hundred_waiters_on_one_process_are_all_woken() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let request = client
                .get(app.url(&format!(
                    "/api/v1/deployments/requests/{id}?wait=50s&until=applied"
                )))
                .header("X-User-ID", "alice");
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    // The API's pool has 20 connections: 200 waiters holding one each could
    // not all be answered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    for waiter in waiters {
        let (status, request) = waiter.await.unwrap();
        assert_eq!(
            (status, request["status"].clone()),
            (200, json!("SUCCESS")),
            "{request}"
        );
    }
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_wait_returns_when_the_rollout_fails() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        Duration::from_secs(4),
    );
    let mut body = deployment("web", &cluster.namespace);
    body["image"] = json!("chaos.invalid/crash-loop");
    let (_, created) = status_and_json(app.create("alice", &body).await).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, failed, waited) = get(&app, &id, "wait=55s").await;
    assert_eq!(status, 200);
    assert_eq!(failed["status"], "SUCCESS", "{failed}");
    assert_eq!(failed["rollout"]["state"], "FAILED", "{failed}");
    assert_eq!(failed["rollout"]["reason"], "CrashLoopBackOff", "{failed}");
    assert!(
        waited < Duration::from_secs(55),
        "woken by the failure: {waited:?}"
    );
    app.finish().await;
    cluster.finish().await;
}
