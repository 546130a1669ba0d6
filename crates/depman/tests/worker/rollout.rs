//! Each applied CREATE or UPDATE follows the rollout it started, tied to the
//! Deployment generation it produced: COMPLETE, FAILED with Kubernetes'
//! reason, or SUPERSEDED by a newer request; the request itself stays
//! SUCCESS.

use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json, unique},
};

const WITHIN: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(4);

fn state(request: &Value) -> &str {
    request["rollout"]["state"].as_str().unwrap_or("")
}

fn ended(request: &Value) -> bool {
    !matches!(state(request), "" | "PROGRESSING")
}

async fn started(cluster: &Cluster) -> TestApp {
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        LEASE,
    );
    app
}

#[tokio::test]
async fn a_good_image_rolls_out_complete_with_the_generation_it_produced() {
    let cluster = Cluster::with_namespace().await;
    let app = started(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["replicas"] = json!(2);
    let (_, created) = status_and_json(app.create("alice", &body).await).await;
    assert_eq!(created["rollout"], Value::Null, "not applied yet");
    let id = created["id"].as_str().unwrap();

    let done = app.request_until("alice", id, WITHIN, ended).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let rollout = &done["rollout"];
    assert_eq!(rollout["state"], "COMPLETE", "{done}");
    assert_eq!(rollout["reason"], Value::Null);
    let live = cluster.deployment("web").await.unwrap();
    assert_eq!(rollout["generation"], live.metadata.generation.unwrap());
    for count in [
        "desired_replicas",
        "updated_replicas",
        "available_replicas",
        "ready_replicas",
    ] {
        assert_eq!(rollout[count], 2, "{count}: {done}");
    }
    assert!(rollout["started_on"].is_string() && rollout["finished_on"].is_string());

    // A DELETE starts no rollout.
    let (_, delete) = status_and_json(app.delete("alice", id).await).await;
    let deleted = app
        .terminal("alice", delete["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(deleted["status"], "SUCCESS");
    assert_eq!(deleted["rollout"], Value::Null, "{deleted}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn an_update_applied_before_the_last_rollout_ended_supersedes_it() {
    let cluster = Cluster::with_namespace().await;
    let app = started(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["replicas"] = json!(3);
    let (_, created) = status_and_json(app.create("alice", &body).await).await;
    let id = created["id"].as_str().unwrap();
    app.request_until("alice", id, WITHIN, ended).await;

    // Two UPDATEs at once: the worker applies both before the first rollout
    // can end.
    let (_, first) = status_and_json(
        app.patch("alice", id, &json!({"image": "nginx:1.28"}))
            .await,
    )
    .await;
    let (_, second) = status_and_json(
        app.patch("alice", id, &json!({"image": "nginx:1.29"}))
            .await,
    )
    .await;
    let first = app
        .request_until("alice", first["id"].as_str().unwrap(), WITHIN, ended)
        .await;
    let second = app
        .request_until("alice", second["id"].as_str().unwrap(), WITHIN, ended)
        .await;
    assert_eq!(first["status"], "SUCCESS");
    assert_eq!(state(&first), "SUPERSEDED", "{first}");
    assert!(first["rollout"]["finished_on"].is_string());
    assert_eq!(state(&second), "COMPLETE", "{second}");
    assert!(
        second["rollout"]["generation"].as_i64() > first["rollout"]["generation"].as_i64(),
        "{first} {second}"
    );
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.29"));
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_rollout_that_cannot_make_pods_fails_at_its_progress_deadline() {
    let cluster = Cluster::with_namespace().await;
    // A quota that allows no pod: the ReplicaSet cannot create any.
    let quotas: Api<ResourceQuota> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": unique("no-pods").replace('_', "-")}, "spec": {"hard": {"pods": "0"}}});
    let name = quota["metadata"]["name"].as_str().unwrap().to_owned();
    quotas
        .patch(
            &name,
            &PatchParams::apply("depman-tests"),
            &Patch::Apply(quota),
        )
        .await
        .expect("create the quota");
    let app = started(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["progress_deadline_seconds"] = json!(10);
    let (_, created) = status_and_json(app.create("alice", &body).await).await;
    let id = created["id"].as_str().unwrap();

    let failed = app
        .request_until("alice", id, Duration::from_secs(90), ended)
        .await;
    assert_eq!(
        failed["status"], "SUCCESS",
        "applied, though it will not run: {failed}"
    );
    let rollout = &failed["rollout"];
    assert_eq!(rollout["state"], "FAILED", "{failed}");
    assert_eq!(rollout["reason"], "ProgressDeadlineExceeded", "{failed}");
    assert!(
        rollout["message"]
            .as_str()
            .is_some_and(|m| m.contains("progressing")),
        "Kubernetes' own words: {failed}"
    );
    assert_eq!(rollout["available_replicas"], 0);
    app.finish().await;
    cluster.finish().await;
}
