use std::time::Duration;

use depman::worker::{Next, process};
use serde_json::json;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json},
};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn create_update_and_delete_take_effect_in_the_cluster() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));

    let mut body = deployment("web", &cluster.namespace);
    body["replicas"] = json!(2);
    body["labels"] = json!({"tier": "frontend"});
    body["env"] = json!({"MODE": "test"});
    body["progress_deadline_seconds"] = json!(120);
    let (status, created) = status_and_json(app.create("alice", &body).await).await;
    assert_eq!(status, 202);
    let id = created["id"].as_str().unwrap();
    let done = app.terminal("alice", id, WITHIN).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(done["attempts"], 1);

    let live = cluster
        .deployment("web")
        .await
        .expect("the Deployment exists");
    let labels = live.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "depman");
    assert_eq!(labels["app.kubernetes.io/name"], "web");
    assert_eq!(labels["depman.io/identifier"], "web");
    assert_eq!(labels["tier"], "frontend");
    let annotations = live.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["depman.io/owner"], "alice");
    assert_eq!(annotations["depman.io/request-id"], id);
    assert_eq!(live.spec.replicas, Some(2));
    assert_eq!(live.spec.progress_deadline_seconds, Some(120));
    let managers = cluster.managers("web").await;
    assert!(managers.contains(&"depman".to_owned()), "{managers:?}");
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/web").await).await;
    // Applied: UPDATING until the sync (which the worker asks for once the
    // request is recorded) sees the rollout complete.
    assert!(
        row["status"] == "UPDATING" || row["status"] == "CREATED",
        "applied: {row}"
    );

    let (status, update) = status_and_json(
        app.patch("alice", id, &json!({"image": "nginx:1.28", "replicas": 3}))
            .await,
    )
    .await;
    assert_eq!(status, 202);
    let done = app
        .terminal("alice", update["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.28"));
    assert_eq!(
        cluster.deployment("web").await.unwrap().spec.replicas,
        Some(3)
    );

    let (status, delete) = status_and_json(app.delete("alice", id).await).await;
    assert_eq!(status, 202);
    let done = app
        .terminal("alice", delete["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    cluster.wait_absent("web", WITHIN).await;
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/web").await).await;
    assert_eq!(row["status"], "DELETED");

    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn handling_a_message_carries_out_every_waiting_request_up_to_it() {
    let cluster = Cluster::with_namespace().await;
    let app = TestApp::spawn().await;
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (_, update) = status_and_json(
        app.patch("alice", id, &json!({"image": "nginx:1.28"}))
            .await,
    )
    .await;
    let messages = app.published(2).await;
    assert_eq!(messages.len(), 2, "{messages:?}");

    // No worker runs: the test hands the UPDATE's message to `handle`, which
    // carries out the CREATE first, then the UPDATE.
    let ctx = app.worker_context(cluster.client.clone());
    let update_message = messages.iter().max_by_key(|m| m.sequence).unwrap();
    assert_eq!(
        process::handle(&ctx, update_message).await.unwrap(),
        Next::Done
    );
    for request in [id, update["id"].as_str().unwrap()] {
        let (_, row) = status_and_json(
            app.get("alice", &format!("/api/v1/deployments/requests/{request}"))
                .await,
        )
        .await;
        assert_eq!(row["status"], "SUCCESS", "{row}");
        assert_eq!(row["attempts"], 1, "{row}");
    }
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.28"));

    // The CREATE's message, delivered late, finds nothing left to do.
    let create_message = messages.iter().min_by_key(|m| m.sequence).unwrap();
    assert_eq!(
        process::handle(&ctx, create_message).await.unwrap(),
        Next::Done
    );
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.28"));

    app.finish().await;
    cluster.finish().await;
}
