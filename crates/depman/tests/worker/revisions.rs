//! Revisions and rollback (contract: "Revisions and rollback"): every
//! applied CREATE and UPDATE is a revision with its outcome, and a rollback
//! is an UPDATE back to one, carried out like any other.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment, stack},
    helpers::{TestApp, assert_problem, status_and_json},
};

async fn rolled_out(app: &TestApp, id: &str) -> Value {
    app.request_until("alice", id, Duration::from_secs(60), |r| {
        r["rollout"]["state"] == "COMPLETE"
    })
    .await
}

async fn accepted(response: reqwest::Response) -> Value {
    let (status, request) = status_and_json(response).await;
    assert_eq!(status, 202, "{request}");
    request
}

fn id(request: &Value) -> String {
    request["id"].as_str().expect("an id").to_owned()
}

async fn rollback(app: &TestApp, user: &str, key: &str, body: Value) -> reqwest::Response {
    app.request(
        reqwest::Method::POST,
        "/api/v1/deployments/web/rollback",
        user,
    )
    .header("X-Request-ID", key)
    .json(&body)
    .send()
    .await
    .expect("POST rollback")
}

#[tokio::test]
async fn revisions_list_what_took_effect_and_a_rollback_goes_back() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let mut body = deployment("web", &cluster.namespace);
    body["env"] = json!({"MODE": "one"});
    let first = accepted(app.create("alice", &body).await).await;
    rolled_out(&app, &id(&first)).await;
    let second = accepted(
        app.patch(
            "alice",
            &id(&first),
            &json!({"image": "nginx:1.28", "replicas": 2}),
        )
        .await,
    )
    .await;
    rolled_out(&app, &id(&second)).await;
    let third = accepted(
        app.patch("alice", &id(&first), &json!({"env": {"MODE": "three"}}))
            .await,
    )
    .await;
    rolled_out(&app, &id(&third)).await;

    let (status, page) =
        status_and_json(app.get("alice", "/api/v1/deployments/web/revisions").await).await;
    assert_eq!(status, 200, "{page}");
    let revisions = page["items"].as_array().expect("items");
    let numbers: Vec<i64> = revisions
        .iter()
        .map(|r| r["revision"].as_i64().expect("a number"))
        .collect();
    assert_eq!(numbers, [3, 2, 1], "newest first");
    for (revision, request) in revisions.iter().zip([&third, &second, &first]) {
        assert_eq!(revision["request_id"], request["id"]);
        assert_eq!(revision["actor"], "alice");
        assert_eq!(revision["rollout"]["state"], "COMPLETE");
        assert!(revision["rolled_back_to"].is_null());
    }
    assert_eq!(revisions[1]["spec"]["image"], "nginx:1.28");
    // Paging, as the other lists.
    let (_, one) = status_and_json(
        app.get("alice", "/api/v1/deployments/web/revisions?limit=1")
            .await,
    )
    .await;
    let cursor = one["next_cursor"].as_str().expect("a next page");
    let (_, next) = status_and_json(
        app.get(
            "alice",
            &format!("/api/v1/deployments/web/revisions?limit=1&cursor={cursor}"),
        )
        .await,
    )
    .await;
    assert_eq!(next["items"][0]["revision"], 2);

    // Back to revision 1, once however often the key is sent.
    let back = accepted(rollback(&app, "alice", "back-to-1", json!({"revision": 1})).await).await;
    assert_eq!(back["request_type"], "UPDATE");
    assert_eq!(back["rolled_back_to"], 1);
    assert_eq!(back["spec"]["image"], "nginx:1.27");
    let (status, replay) =
        status_and_json(rollback(&app, "alice", "back-to-1", json!({"revision": 1})).await).await;
    assert_eq!(status, 200);
    assert_eq!(replay["id"], back["id"]);
    rolled_out(&app, &id(&back)).await;
    let live = cluster.deployment("web").await.expect("the Deployment");
    let spec = live.spec;
    assert_eq!(spec.replicas, Some(1));
    let container = &spec.template.spec.expect("a pod spec").containers[0];
    assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
    let env = container.env.clone().unwrap_or_default();
    assert_eq!(env[0].value.as_deref(), Some("one"));

    let (_, latest) = status_and_json(
        app.get("alice", "/api/v1/deployments/web/revisions/4")
            .await,
    )
    .await;
    assert_eq!(latest["rolled_back_to"], 1);
    assert_eq!(latest["request_id"], back["id"]);
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn rollbacks_to_nothing_of_others_or_of_the_deleted_are_refused() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let created = accepted(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    rolled_out(&app, &id(&created)).await;

    let unknown = rollback(&app, "alice", "k1", json!({"revision": 9})).await;
    assert_problem(unknown, 404, None).await;
    let zero = rollback(&app, "alice", "k2", json!({"revision": 0})).await;
    assert_problem(zero, 422, Some("revision")).await;
    let missing = app
        .get("alice", "/api/v1/deployments/web/revisions/9")
        .await;
    assert_problem(missing, 404, None).await;
    // Bob cannot see or move Alice's deployment.
    for path in [
        "/api/v1/deployments/web/revisions",
        "/api/v1/deployments/web/revisions/1",
    ] {
        assert_problem(app.get("bob", path).await, 404, None).await;
    }
    let bobs = rollback(&app, "bob", "k3", json!({"revision": 1})).await;
    assert_problem(bobs, 404, None).await;

    let deleted = accepted(app.delete("alice", &id(&created)).await).await;
    app.terminal("alice", &id(&deleted), Duration::from_secs(60))
        .await;
    let gone = rollback(&app, "alice", "k4", json!({"revision": 1})).await;
    assert_problem(gone, 409, None).await;
    app.finish().await;
    cluster.finish().await;
}
