//! Events of rollouts and of the cluster (contract: "Events"): a request is
//! told from acceptance to the end of its rollout; a change made outside
//! depman is a `deployment.changed` naming the fields, before and after; a
//! deletion says who made it.

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment, stack},
    helpers::{TestApp, event_pages, status_and_json},
};

async fn create(app: &TestApp, body: &Value) -> Value {
    let (status, request) = status_and_json(app.create("alice", body).await).await;
    assert_eq!(status, 202, "{request}");
    request
}

/// The events of `identifier` once one of type `last` is among them.
async fn events_until(app: &TestApp, identifier: &str, last: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (events, _) =
            event_pages(app, "alice", &format!("identifier={identifier}"), None).await;
        if events.iter().any(|e| e["type"] == last) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {last} among {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == kind)
        .expect("an event of that type")
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("a string"))
        .collect()
}

#[tokio::test]
async fn a_request_is_told_from_acceptance_to_its_completed_rollout() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["replicas"] = json!(3);
    let request = create(&app, &body).await;
    let events = events_until(&app, "web", "rollout.completed").await;
    let kinds = types(&events);
    assert_eq!(kinds[0], "request.accepted");
    assert_eq!(kinds[1], "request.succeeded");
    assert_eq!(*kinds.last().unwrap(), "rollout.completed", "{kinds:?}");
    assert!(
        kinds[2..kinds.len() - 1]
            .iter()
            .all(|k| *k == "rollout.progressed"),
        "{kinds:?}"
    );
    for event in &events {
        assert_eq!(event["request_id"], request["id"]);
        assert_eq!(event["actor"], "alice");
    }
    let completed = events.last().unwrap();
    assert_eq!(completed["data"]["rollout"]["state"], "COMPLETE");
    assert_eq!(completed["data"]["rollout"]["ready_replicas"], 3);
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_failed_rollout_is_an_event_with_its_reason() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let mut body = deployment("crash", &cluster.namespace);
    body["image"] = json!("chaos.invalid/crash-loop");
    create(&app, &body).await;
    let events = events_until(&app, "crash", "rollout.failed").await;
    let failed = of_type(&events, "rollout.failed");
    assert_eq!(failed["type"], "rollout.failed");
    assert_eq!(failed["data"]["rollout"]["reason"], "CrashLoopBackOff");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_change_made_outside_depman_names_each_field_before_and_after() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    create(&app, &deployment("scaled", &cluster.namespace)).await;
    events_until(&app, "scaled", "rollout.completed").await;
    // Someone scales it by hand, under another field manager.
    cluster
        .deployments()
        .patch(
            "scaled",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "spec": {"replicas": 2}
            })),
        )
        .await
        .expect("scale by hand");
    let events = events_until(&app, "scaled", "deployment.changed").await;
    let changed = events
        .iter()
        .find(|e| e["type"] == "deployment.changed")
        .unwrap();
    assert_eq!(changed["actor"], "kubernetes");
    assert!(changed["request_id"].is_null());
    let changes = changed["changes"].as_array().unwrap();
    assert!(
        changes.contains(&json!({"field": "replicas", "before": 1, "after": 2})),
        "{changes:?}"
    );
    assert_eq!(
        changed["data"]["replicas"], 2,
        "the deployment as it is now"
    );
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_deletion_says_whether_a_request_or_someone_else_made_it() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let by_request = create(&app, &deployment("asked", &cluster.namespace)).await;
    create(&app, &deployment("by-hand", &cluster.namespace)).await;
    events_until(&app, "asked", "rollout.completed").await;
    events_until(&app, "by-hand", "rollout.completed").await;

    let (status, delete) = status_and_json(
        app.delete("alice", by_request["id"].as_str().unwrap())
            .await,
    )
    .await;
    assert_eq!(status, 202, "{delete}");
    let events = events_until(&app, "asked", "deployment.deleted").await;
    // The DELETE request's own `request.succeeded` may come before or after.
    let deleted = of_type(&events, "deployment.deleted");
    assert_eq!(deleted["actor"], "alice");
    assert_eq!(deleted["request_id"], delete["id"]);
    assert_eq!(deleted["data"]["status"], "DELETED");

    cluster
        .deployments()
        .delete("by-hand", &DeleteParams::default())
        .await
        .expect("delete by hand");
    let events = events_until(&app, "by-hand", "deployment.deleted").await;
    let deleted = of_type(&events, "deployment.deleted");
    assert_eq!(deleted["actor"], "kubernetes");
    assert!(deleted["request_id"].is_null());
    app.finish().await;
    cluster.finish().await;
}
