//! The quota counts live deployments: one carried-out DELETE frees a place.

use std::time::Duration;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, assert_problem, status_and_json, test_api_settings},
};

#[tokio::test]
async fn a_deleted_deployment_frees_its_place_in_the_quota() {
    let cluster = Cluster::with_namespace().await;
    let mut settings = test_api_settings();
    settings.max_deployments_per_user = 1;
    let mut app = TestApp::spawn_with_api(settings).await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let (status, first) = status_and_json(
        app.create("alice", &deployment("one", &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{first}");
    let second = deployment("two", &cluster.namespace);
    let problem = assert_problem(app.create("alice", &second).await, 403, None).await;
    assert_eq!(problem["code"], "quota-exceeded");

    let id = first["id"].as_str().expect("an id");
    let (status, deleted) = status_and_json(app.delete("alice", id).await).await;
    assert_eq!(status, 202, "{deleted}");
    let deleted_id = deleted["id"].as_str().expect("an id");
    let done = app
        .terminal("alice", deleted_id, Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let (status, again) = status_and_json(app.create("alice", &second).await).await;
    assert_eq!(status, 202, "{again}");
    app.finish().await;
    cluster.finish().await;
}
