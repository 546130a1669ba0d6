use std::time::Duration;

use serde_json::json;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json},
};

const WITHIN: Duration = Duration::from_secs(120);

/// Three workers; for each of 20 deployments a CREATE, two UPDATEs and a
/// DELETE sent back to back. Whatever worker takes whatever message, each
/// deployment's requests take effect in order: all succeed, none is left.
#[tokio::test]
async fn requests_of_one_deployment_take_effect_in_acceptance_order() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    for _ in 0..3 {
        app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    }
    let lifecycles = (0..20).map(|i| {
        let app = &app;
        let body = deployment(&format!("web-{i}"), &cluster.namespace);
        async move {
            let (status, created) = status_and_json(app.create("olga", &body).await).await;
            assert_eq!(status, 202);
            let id = created["id"].as_str().unwrap().to_owned();
            let mut ids = vec![id.clone()];
            for image in ["nginx:1.28", "nginx:1.29"] {
                let (status, update) =
                    status_and_json(app.patch("olga", &id, &json!({"image": image})).await).await;
                assert_eq!(status, 202, "{update}");
                ids.push(update["id"].as_str().unwrap().to_owned());
            }
            let (status, delete) = status_and_json(app.delete("olga", &id).await).await;
            assert_eq!(status, 202, "{delete}");
            ids.push(delete["id"].as_str().unwrap().to_owned());
            ids
        }
    });
    let all: Vec<String> = futures::future::join_all(lifecycles)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all.len(), 80);
    for id in &all {
        let done = app.terminal("olga", id, WITHIN).await;
        assert_eq!(done["status"], "SUCCESS", "{done}");
    }
    for i in 0..20 {
        cluster.wait_absent(&format!("web-{i}"), WITHIN).await;
    }
    assert_eq!(cluster.managed().await, Vec::<String>::new());
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn the_last_update_wins_whatever_the_delivery_order() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    for _ in 0..3 {
        app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    }
    let (_, created) = status_and_json(
        app.create("olga", &deployment("app", &cluster.namespace))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (_, b) = status_and_json(app.patch("olga", id, &json!({"image": "nginx:b"})).await).await;
    let (_, c) = status_and_json(app.patch("olga", id, &json!({"image": "nginx:c"})).await).await;
    for request in [&created, &b, &c] {
        let done = app
            .terminal("olga", request["id"].as_str().unwrap(), WITHIN)
            .await;
        assert_eq!(done["status"], "SUCCESS", "{done}");
    }
    assert_eq!(cluster.image("app").await.as_deref(), Some("nginx:c"));
    app.finish().await;
    cluster.finish().await;
}
