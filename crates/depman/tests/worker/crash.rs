//! A worker killed outright (SIGKILL) with 200 requests in flight, then
//! started again: every request ends, and the cluster matches.

use std::time::Duration;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json},
};

async fn count(app: &TestApp, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deployment_requests WHERE status = $1")
        .bind(status)
        .fetch_one(&app.pool)
        .await
        .expect("count requests")
}

#[tokio::test]
async fn a_killed_worker_loses_nothing() {
    let cluster = Cluster::with_namespace().await;
    let app = TestApp::spawn().await;
    let mut worker = app.worker_process(&[]);

    let bodies: Vec<_> = (0..200)
        .map(|i| deployment(&format!("w{i}"), &cluster.namespace))
        .collect();
    let mut ids = Vec::new();
    for chunk in bodies.chunks(20) {
        let posts = chunk.iter().map(|body| app.create("kim", body));
        for response in futures::future::join_all(posts).await {
            let (status, request) = status_and_json(response).await;
            assert_eq!(status, 202);
            ids.push(request["id"].as_str().unwrap().to_owned());
        }
    }
    // Kill it once it is well into the work, not done with it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count(&app, "SUCCESS").await < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.kill().expect("SIGKILL the worker");
    worker.wait().expect("reap it");
    let done_at_kill = count(&app, "SUCCESS").await;
    assert!(
        done_at_kill < 200,
        "the worker finished before it was killed; nothing was tested"
    );

    let mut worker = app.worker_process(&[]);
    for id in &ids {
        let done = app.terminal("kim", id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "SUCCESS", "{done}");
    }
    let mut managed = cluster.managed().await;
    managed.sort();
    let mut expected: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
    expected.sort();
    assert_eq!(managed, expected);

    worker.kill().expect("stop the worker");
    worker.wait().expect("reap it");
    app.finish().await;
    cluster.finish().await;
}
