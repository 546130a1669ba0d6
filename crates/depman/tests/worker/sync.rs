//! The database follows Kubernetes: rollouts, changes made directly in the
//! cluster, and changes made while no watcher ran.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ResourceQuota};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment, stack},
    helpers::{TestApp, status_and_json},
};

const LEASE: Duration = Duration::from_secs(3);

/// Waits until the sync consumer has been handed every event the stream
/// holds and nothing awaits an acknowledgement (a look again held back
/// counts), twice in a row 300 ms apart. A single look right after the
/// watcher stopped could find nothing pending while an event was still to
/// come (it then read a Deployment the test had just deleted): JetStream
/// counts a stored message in a consumer's info a moment after it
/// acknowledged the publish, and a publish the stopped watcher had sent
/// but no longer awaited may be stored after it returned.
async fn sync_drained(app: &TestApp) {
    let names = &app.deps.names;
    let mut stream = app
        .deps
        .js
        .get_stream(names.sync_stream())
        .await
        .expect("the sync stream");
    let started = std::time::Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        let stored = stream
            .info()
            .await
            .expect("the sync stream")
            .state
            .last_sequence;
        let info = stream
            .consumer_info(names.sync_consumer())
            .await
            .expect("the sync consumer");
        let drained = info.num_pending == 0
            && info.num_ack_pending == 0
            && info.delivered.stream_sequence >= stored;
        quiet = if drained { quiet + 1 } else { 0 };
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sync never drained: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn created(app: &TestApp, body: &Value) -> String {
    let (status, request) = status_and_json(app.create("sam", body).await).await;
    assert_eq!(status, 202, "{request}");
    let id = request["id"].as_str().expect("a request id").to_owned();
    assert_eq!(
        app.terminal("sam", &id, Duration::from_secs(60)).await["status"],
        "SUCCESS"
    );
    id
}

fn patch(cluster: &Cluster, name: &str, change: Value) -> impl Future<Output = ()> {
    let api: Api<Deployment> = cluster.deployments();
    let name = name.to_owned();
    async move {
        api.patch(&name, &PatchParams::default(), &Patch::Merge(change))
            .await
            .expect("patch the Deployment");
    }
}

#[tokio::test]
async fn a_create_rolls_out_to_created_and_healthy() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["replicas"] = json!(2);
    created(&app, &body).await;
    let row = app
        .deployment_until("sam", "web", Duration::from_secs(60), |d| {
            d["status"] == "CREATED" && d["health"] == "HEALTHY"
        })
        .await;
    assert_eq!(row["ready_replicas"], 2);
    assert_eq!(row["replicas"], 2);
    assert_eq!(row["observed_generation"], row["generation"]);
    assert!(row["resource_version"].is_string());
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn changes_made_in_the_cluster_show_within_seconds() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    created(&app, &deployment("web", &cluster.namespace)).await;
    let within = Duration::from_secs(5);
    app.deployment_until("sam", "web", Duration::from_secs(60), |d| {
        d["status"] == "CREATED"
    })
    .await;

    patch(&cluster, "web", json!({"spec": {"replicas": 4}})).await;
    app.deployment_until("sam", "web", within, |d| d["replicas"] == 4)
        .await;
    app.deployment_until("sam", "web", Duration::from_secs(60), |d| {
        d["ready_replicas"] == 4
    })
    .await;

    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.29"}]}}}});
    patch(&cluster, "web", image).await;
    app.deployment_until("sam", "web", within, |d| d["image"] == "nginx:1.29")
        .await;

    cluster
        .deployments()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let row = app
        .deployment_until("sam", "web", within, |d| d["status"] == "DELETED")
        .await;
    assert_eq!(row["health"], "MISSING");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn changes_made_while_no_watcher_ran_show_when_one_starts() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let (first, _) = app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        LEASE,
    );
    created(&app, &deployment("gone", &cluster.namespace)).await;
    created(&app, &deployment("scaled", &cluster.namespace)).await;
    for name in ["gone", "scaled"] {
        app.deployment_until("sam", name, Duration::from_secs(60), |d| {
            d["status"] == "CREATED"
        })
        .await;
    }
    app.stop_watcher(first).await;
    // A rollout's look again (a sync event held back a few seconds), or the
    // stopped watcher's last flush of pod changes, would read the
    // Deployment without any watcher: none may be left.
    sync_drained(&app).await;
    cluster
        .deployments()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    patch(&cluster, "scaled", json!({"spec": {"replicas": 3}})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, stale) = status_and_json(app.get("sam", "/api/v1/deployments/gone").await).await;
    assert_eq!(
        stale["status"], "CREATED",
        "nothing watched meanwhile: {stale}"
    );

    app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        LEASE,
    );
    let within = Duration::from_secs(10);
    app.deployment_until("sam", "gone", within, |d| d["status"] == "DELETED")
        .await;
    app.deployment_until("sam", "scaled", within, |d| d["replicas"] == 3)
        .await;
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_quota_that_forbids_the_pods_makes_the_deployment_degraded() {
    let cluster = Cluster::with_namespace().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}});
    quotas
        .patch(
            "no-pods",
            &PatchParams::apply("depman-tests"),
            &Patch::Apply(quota),
        )
        .await
        .expect("create the quota");
    let app = stack(&cluster).await;
    created(&app, &deployment("blocked", &cluster.namespace)).await;
    // A short deadline, set beside depman's fields, as an operator would.
    patch(
        &cluster,
        "blocked",
        json!({"spec": {"progressDeadlineSeconds": 3}}),
    )
    .await;
    // The pods say it first (health_reason); the Deployment's own
    // conditions follow.
    let degraded_by_kubernetes = |d: &Value| {
        let reasons: Vec<&str> = d["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["reason"].as_str())
            .collect();
        d["health"] == "DEGRADED"
            && reasons
                .iter()
                .any(|r| ["FailedCreate", "ProgressDeadlineExceeded"].contains(r))
    };
    let row = app
        .deployment_until(
            "sam",
            "blocked",
            Duration::from_secs(60),
            degraded_by_kubernetes,
        )
        .await;
    assert!(degraded_by_kubernetes(&row), "{row}");
    assert_eq!(row["health_reason"], "QuotaExceeded", "{row}");
    assert_eq!(row["status"], "UPDATING");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn one_watcher_leads_and_another_takes_over_when_it_dies() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let namespaces = vec![cluster.namespace.clone()];
    let (first, first_metrics) =
        app.start_watcher(cluster.client.clone(), namespaces.clone(), LEASE);
    let (_, second_metrics) = app.start_watcher(cluster.client.clone(), namespaces, LEASE);
    created(&app, &deployment("web", &cluster.namespace)).await;
    app.deployment_until("sam", "web", Duration::from_secs(60), |d| {
        d["status"] == "CREATED"
    })
    .await;
    let leaders = first_metrics.leader.get() + second_metrics.leader.get();
    assert_eq!(leaders, 1, "exactly one leader");
    let (leader, leader_metrics, follower_metrics) = if first_metrics.leader.get() == 1 {
        (first, &first_metrics, &second_metrics)
    } else {
        (first + 1, &second_metrics, &first_metrics)
    };
    assert!(leader_metrics.published.get() > 0);
    assert_eq!(
        follower_metrics.published.get(),
        0,
        "only the leader publishes"
    );

    app.kill_watcher(leader);
    let killed = tokio::time::Instant::now();
    while follower_metrics.leader.get() == 0 {
        assert!(
            killed.elapsed() < LEASE * 2 + Duration::from_secs(2),
            "no takeover within two lease durations"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    patch(&cluster, "web", json!({"spec": {"replicas": 2}})).await;
    app.deployment_until("sam", "web", Duration::from_secs(5), |d| d["replicas"] == 2)
        .await;
    assert!(follower_metrics.published.get() > 0);
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn deployments_depman_did_not_create_are_never_read_nor_touched() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let apply = PatchParams::apply("someone-else");
    for (name, labels) in [
        ("plain", json!({"app": "plain"})),
        (
            "lookalike",
            json!({"app.kubernetes.io/managed-by": "depman"}),
        ),
    ] {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        });
        cluster
            .deployments()
            .patch(name, &apply, &Patch::Apply(object))
            .await
            .expect("create a foreign Deployment");
    }
    created(&app, &deployment("ours", &cluster.namespace)).await;
    app.deployment_until("sam", "ours", Duration::from_secs(60), |d| {
        d["status"] == "CREATED"
    })
    .await;

    let rows: Vec<String> = sqlx::query_scalar("SELECT identifier FROM deployments")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, ["ours"]);
    for name in ["plain", "lookalike"] {
        let managers = cluster.managers(name).await;
        assert!(
            !managers.contains(&"depman".to_owned()),
            "{name} was touched: {managers:?}"
        );
    }
    app.finish().await;
    cluster.finish().await;
}

/// A watch or resync event carries the Deployment as the watcher saw it,
/// and its first delivery is recorded without reading the live object: a
/// seen object that says 7 replicas (the live one says 1) is what the row
/// shows. Its version is above the live one, as a change not yet read.
#[tokio::test]
async fn a_watched_change_is_recorded_from_the_object_it_carries() {
    let cluster = Cluster::with_namespace().await;
    let mut app = crate::helpers::TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    created(&app, &deployment("web", &cluster.namespace)).await;
    let row = app
        .deployment_until("sam", "web", Duration::from_secs(60), |d| {
            d["resource_version"].is_string()
        })
        .await;
    let mut seen = cluster.deployments().get("web").await.expect("web");
    let live_version: u64 = seen
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    seen.spec.replicas = Some(7);
    seen.metadata.resource_version = Some((live_version + 1_000_000).to_string());
    app.publish_seen(&seen).await;
    let recorded = app
        .deployment_until("sam", "web", Duration::from_secs(10), |d| {
            d["replicas"] == 7
        })
        .await;
    assert_ne!(recorded["resource_version"], row["resource_version"]);
    let live = cluster.deployments().get("web").await.expect("web");
    assert_eq!(live.spec.replicas, Some(1), "only the row saw 7");
    app.finish().await;
    cluster.finish().await;
}

/// The sync stream keeps one waiting event per Deployment, the newest:
/// superseded events are dropped instead of read one after another.
#[tokio::test]
async fn only_the_newest_waiting_sync_event_of_a_deployment_is_kept() {
    let app = crate::helpers::TestApp::spawn().await;
    let (js, names) = (&app.deps.js, &app.deps.names);
    depman::queue::ensure_streams(js, names)
        .await
        .expect("streams");
    for (name, round) in [("web", 1), ("web", 2), ("db", 1), ("web", 3)] {
        let id = depman::queue::SyncEvent::parts_id("ns", name, round);
        depman::queue::publish_sync(js, names, "ns", name, Some(id), None)
            .await
            .expect("published")
            .await
            .expect("acknowledged");
    }
    let mut stream = js.get_stream(names.sync_stream()).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
    let newest = stream
        .get_last_raw_message_by_subject(&names.sync_subject("ns", "web"))
        .await
        .expect("web's event");
    assert_eq!(newest.sequence, 4, "web's third event, published last");
    app.finish().await;
}

/// An event carries the object only while it stays small: a Deployment
/// with a 300 KB annotation goes without it (the worker reads it), so the
/// event never meets NATS's payload limit.
#[tokio::test]
async fn a_deployment_too_big_to_carry_is_sent_by_name_and_version() {
    let app = crate::helpers::TestApp::spawn().await;
    let (js, names) = (&app.deps.js, &app.deps.names);
    depman::queue::ensure_streams(js, names)
        .await
        .expect("streams");
    let stream = js.get_stream(names.sync_stream()).await.expect("stream");
    for (name, note) in [("small", "x".repeat(10)), ("big", "x".repeat(300_000))] {
        let seen: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "42",
                         "annotations": {"note": note}},
            "spec": {"selector": {}, "template": {}},
        }))
        .expect("a Deployment");
        depman::queue::publish_sync(js, names, "ns", name, None, Some(&seen))
            .await
            .expect("published")
            .await
            .expect("acknowledged");
        let message = stream
            .get_last_raw_message_by_subject(&names.sync_subject("ns", name))
            .await
            .expect("the event");
        let event: depman::queue::SyncEvent =
            serde_json::from_slice(&message.payload).expect("a sync event");
        assert_eq!(event.resource_version.as_deref(), Some("42"));
        assert_eq!(event.object.is_some(), name == "small", "{name}");
    }
    app.finish().await;
}

/// An installation whose sync stream predates the one-event limit gets it
/// at its next start: the stream is updated in place, messages kept.
#[tokio::test]
async fn an_existing_sync_stream_takes_the_one_event_limit_in_place() {
    use async_nats::jetstream::stream;

    let app = crate::helpers::TestApp::spawn().await;
    let (js, names) = (&app.deps.js, &app.deps.names);
    // The api's relay makes the streams at its start, once: replaced here
    // by the stream as an older depman made it.
    let mut made = false;
    for _ in 0..100 {
        made = js.get_stream(names.sync_stream()).await.is_ok();
        if made {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(made, "the relay made the streams");
    js.delete_stream(names.sync_stream())
        .await
        .expect("deleted");
    js.create_stream(stream::Config {
        name: names.sync_stream(),
        subjects: vec![names.sync_subject("*", "*")],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("the stream as it was");
    depman::queue::publish_sync(js, names, "ns", "web", None, None)
        .await
        .expect("published")
        .await
        .expect("acknowledged");
    depman::queue::ensure_streams(js, names)
        .await
        .expect("updated");
    let mut stream = js.get_stream(names.sync_stream()).await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.max_messages_per_subject, 1);
    assert_eq!(info.state.messages, 1, "what waited is kept");
    app.finish().await;
}
