//! Each applied CREATE or UPDATE follows the rollout it started, tied to the
//! Deployment generation it produced: COMPLETE, FAILED with Kubernetes'
//! reason, or SUPERSEDED by a newer request; the request itself stays
//! SUCCESS.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment, stack},
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

#[tokio::test]
async fn a_good_image_rolls_out_complete_with_the_generation_it_produced() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
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
    let app = stack(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["replicas"] = json!(3);
    let (_, created) = status_and_json(app.create("alice", &body).await).await;
    let id = created["id"].as_str().unwrap();
    app.request_until("alice", id, WITHIN, ended).await;

    // The first UPDATE's pods never become ready: its rollout is still on
    // when the second is applied.
    let (_, first) = status_and_json(
        app.patch("alice", id, &json!({"image": "chaos.invalid/never-ready"}))
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

/// Creates `web` with `image` (and `extra` fields), and returns the request
/// once its rollout ended.
async fn rolled_out(app: &TestApp, cluster: &Cluster, image: &str, extra: Value) -> Value {
    let mut body = deployment("web", &cluster.namespace);
    body["image"] = json!(image);
    for (field, value) in extra.as_object().cloned().unwrap_or_default() {
        body[field] = value;
    }
    let (status, created) = status_and_json(app.create("alice", &body).await).await;
    assert_eq!(status, 202, "{created}");
    app.request_until(
        "alice",
        created["id"].as_str().expect("an id"),
        WITHIN,
        ended,
    )
    .await
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_with_the_kubelets_reason() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let failed = rolled_out(
        &app,
        &cluster,
        "chaos.invalid/image-pull-error:1",
        json!({}),
    )
    .await;
    assert_eq!(failed["status"], "SUCCESS", "applied: {failed}");
    assert_eq!(state(&failed), "FAILED", "{failed}");
    let reason = failed["rollout"]["reason"].as_str().unwrap_or_default();
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&reason),
        "{failed}"
    );
    assert!(
        failed["rollout"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("chaos.invalid")),
        "Kubernetes' words: {failed}"
    );
    let degraded = app
        .deployment_until("alice", "web", WITHIN, |d| d["health"] == "DEGRADED")
        .await;
    assert!(
        ["ErrImagePull", "ImagePullBackOff"]
            .contains(&degraded["health_reason"].as_str().unwrap_or_default()),
        "{degraded}"
    );
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_crash_loop_fails_at_its_second_restart() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let failed = rolled_out(&app, &cluster, "chaos.invalid/crash-loop", json!({})).await;
    assert_eq!(state(&failed), "FAILED", "{failed}");
    assert_eq!(failed["rollout"]["reason"], "CrashLoopBackOff", "{failed}");
    assert!(
        failed["rollout"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exit code 1")),
        "{failed}"
    );
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_pod_that_is_never_ready_fails_at_the_progress_deadline() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let failed = rolled_out(
        &app,
        &cluster,
        "chaos.invalid/never-ready",
        json!({"progress_deadline_seconds": 10}),
    )
    .await;
    assert_eq!(state(&failed), "FAILED", "{failed}");
    assert_eq!(
        failed["rollout"]["reason"], "ProgressDeadlineExceeded",
        "{failed}"
    );
    assert!(
        failed["rollout"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("progressing")),
        "Kubernetes' own words: {failed}"
    );
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_pod_that_fits_no_node_fails_as_unschedulable() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let failed = rolled_out(
        &app,
        &cluster,
        "nginx:1.27",
        json!({"resources": {"requests": {"cpu": "5000"}}}),
    )
    .await;
    assert_eq!(state(&failed), "FAILED", "{failed}");
    assert_eq!(failed["rollout"]["reason"], "Unschedulable", "{failed}");
    app.finish().await;
    cluster.finish().await;
}

/// Only the newest sync event of a Deployment waits in the stream, so one
/// carrying an object older than the row (a resync's list, say) can take
/// the place of a rollout's look-again. The worker then reads the live
/// Deployment, and the rollout still ends. No watcher runs here: the old
/// object is the only event.
#[tokio::test]
async fn an_event_older_than_the_row_still_has_the_rollout_looked_at() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let mut body = deployment("web", &cluster.namespace);
    body["resources"] = json!({"requests": {"cpu": "5000"}});
    let (status, created) = status_and_json(app.create("alice", &body).await).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().expect("an id");
    app.request_until("alice", id, WITHIN, |r| r["status"] == "SUCCESS")
        .await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut seen = loop {
        let live = cluster.deployments().get("web").await.expect("web");
        let observed = live.status.as_ref().and_then(|s| s.observed_generation);
        let pending = pods.list(&Default::default()).await.expect("pods").items;
        let unscheduled = pending
            .iter()
            .flat_map(|pod| pod.status.iter())
            .flat_map(|status| status.conditions.iter().flatten())
            .any(|c| c.type_ == "PodScheduled" && c.status == "False");
        if observed >= live.metadata.generation && unscheduled {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    seen.metadata.resource_version = Some("1".to_owned());
    app.publish_seen(&seen).await;

    let failed = app.request_until("alice", id, WITHIN, ended).await;
    assert_eq!(state(&failed), "FAILED", "{failed}");
    assert_eq!(failed["rollout"]["reason"], "Unschedulable", "{failed}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_bad_update_fails_while_the_old_pods_serve_and_a_good_one_completes_after_it() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let good = rolled_out(&app, &cluster, "nginx:1.27", json!({"replicas": 2})).await;
    assert_eq!(state(&good), "COMPLETE", "{good}");
    let id = good["id"].as_str().unwrap();

    let (_, bad) = status_and_json(
        app.patch("alice", id, &json!({"image": "chaos.invalid/crash-loop:2"}))
            .await,
    )
    .await;
    let bad = app
        .request_until("alice", bad["id"].as_str().unwrap(), WITHIN, ended)
        .await;
    assert_eq!(state(&bad), "FAILED", "{bad}");
    let live = cluster.deployment("web").await.unwrap();
    let available = live.status.and_then(|s| s.available_replicas).unwrap_or(0);
    assert_eq!(available, 2, "the old pods keep serving");

    let (_, fixed) = status_and_json(
        app.patch("alice", id, &json!({"image": "nginx:1.28"}))
            .await,
    )
    .await;
    let fixed = app
        .request_until("alice", fixed["id"].as_str().unwrap(), WITHIN, ended)
        .await;
    assert_eq!(state(&fixed), "COMPLETE", "{fixed}");
    let (_, bad_now) = status_and_json(
        app.get(
            "alice",
            &format!(
                "/api/v1/deployments/requests/{}",
                bad["id"].as_str().unwrap()
            ),
        )
        .await,
    )
    .await;
    assert_eq!(
        state(&bad_now),
        "FAILED",
        "an ended rollout stays as it ended: {bad_now}"
    );
    let healthy = app
        .deployment_until("alice", "web", WITHIN, |d| d["health"] == "HEALTHY")
        .await;
    assert_eq!(healthy["health_reason"], Value::Null, "{healthy}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_quota_that_allows_no_pod_fails_the_rollout_as_quota_exceeded() {
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
    let app = stack(&cluster).await;
    let failed = rolled_out(&app, &cluster, "nginx:1.27", json!({})).await;
    assert_eq!(
        failed["status"], "SUCCESS",
        "applied, though it will not run: {failed}"
    );
    let rollout = &failed["rollout"];
    assert_eq!(rollout["state"], "FAILED", "{failed}");
    assert_eq!(rollout["reason"], "QuotaExceeded", "{failed}");
    assert!(
        rollout["message"]
            .as_str()
            .is_some_and(|m| m.contains("exceeded quota")),
        "Kubernetes' own words: {failed}"
    );
    let degraded = app
        .deployment_until("alice", "web", WITHIN, |d| {
            d["health_reason"] == "QuotaExceeded"
        })
        .await;
    assert_eq!(degraded["health"], "DEGRADED", "{degraded}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_rollout_still_on_at_depmans_own_limit_times_out() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker_with_timeout(
        cluster.client.clone(),
        8,
        Duration::from_millis(200),
        Duration::from_secs(5),
    );
    app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        LEASE,
    );
    // Never ready, and the Deployment's own deadline far away: only
    // depman's limit ends it.
    let failed = rolled_out(&app, &cluster, "chaos.invalid/never-ready", json!({})).await;
    assert_eq!(state(&failed), "FAILED", "{failed}");
    assert_eq!(failed["rollout"]["reason"], "RolloutTimeout", "{failed}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_rollout_whose_deployment_is_deleted_by_hand_fails() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["image"] = json!("chaos.invalid/never-ready");
    let (_, created) = status_and_json(app.create("alice", &body).await).await;
    let id = created["id"].as_str().unwrap();
    app.request_until("alice", id, WITHIN, |r| state(r) == "PROGRESSING")
        .await;
    cluster
        .deployments()
        .delete("web", &kube::api::DeleteParams::default())
        .await
        .expect("delete the Deployment by hand");
    let failed = app.request_until("alice", id, WITHIN, ended).await;
    assert_eq!(state(&failed), "FAILED", "{failed}");
    assert_eq!(failed["rollout"]["reason"], "DeploymentDeleted", "{failed}");
    app.finish().await;
    cluster.finish().await;
}
