//! The API server unreachable for a while: the worker reaches it through a
//! TCP proxy the test cuts.

use std::time::Duration;

use kube::Client;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, proxy::Proxy, status_and_json},
};

const WITHIN: Duration = Duration::from_secs(60);

/// A client of the cluster of `KUBECONFIG`, through `proxy`.
async fn client_through(proxy: &Proxy) -> Client {
    let mut config = kube::Config::infer().await.expect("a kubeconfig");
    config.cluster_url = format!("https://{}", proxy.addr).parse().expect("a URL");
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    Client::try_from(config).expect("a client")
}

async fn proxy_to_api_server() -> Proxy {
    let config = kube::Config::infer().await.expect("a kubeconfig");
    let authority = config
        .cluster_url
        .authority()
        .expect("host and port")
        .to_string();
    Proxy::start(authority).await
}

async fn attempts(app: &TestApp, id: &str) -> i64 {
    let (_, request) = status_and_json(
        app.get("alice", &format!("/api/v1/deployments/requests/{id}"))
            .await,
    )
    .await;
    request["attempts"].as_i64().expect("attempts is a number")
}

#[tokio::test]
async fn requests_are_retried_until_the_api_server_is_back() {
    let cluster = Cluster::with_namespace().await;
    let proxy = proxy_to_api_server().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(client_through(&proxy).await, 8, Duration::from_millis(300));

    proxy.cut();
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + WITHIN;
    while attempts(&app, id).await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no retries seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, waiting) = status_and_json(
        app.get("alice", &format!("/api/v1/deployments/requests/{id}"))
            .await,
    )
    .await;
    assert_eq!(waiting["status"], "CREATED", "still waiting: {waiting}");

    proxy.restore();
    let done = app.terminal("alice", id, WITHIN).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(cluster.deployment("web").await.is_some());
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn requests_out_of_attempts_are_dead_lettered_and_replayed() {
    let cluster = Cluster::with_namespace().await;
    let proxy = proxy_to_api_server().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(client_through(&proxy).await, 2, Duration::from_millis(100));

    proxy.cut();
    let (_, created) = status_and_json(
        app.create("alice", &deployment("web", &cluster.namespace))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let done = app.terminal("alice", id, WITHIN).await;
    assert_eq!(done["status"], "FAILURE", "{done}");
    assert_eq!(done["attempts"], 2);
    assert!(
        done["failure_reason"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{done}"
    );
    let letters = depman::dlq::list(&app.deps)
        .await
        .expect("read the dead letters");
    let ids: Vec<String> = letters
        .iter()
        .map(|(_, l)| l.request_id.to_string())
        .collect();
    assert_eq!(ids, [id]);

    proxy.restore();
    let replayed = depman::dlq::replay(&app.deps, None).await.expect("replay");
    assert_eq!(replayed.len(), 1);
    let done = app.terminal("alice", id, WITHIN).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(cluster.deployment("web").await.is_some());
    assert!(
        depman::dlq::list(&app.deps).await.unwrap().is_empty(),
        "the dead letter is gone"
    );
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/web").await).await;
    // FAILED when the CREATE gave up; applied now.
    assert!(
        row["status"] == "UPDATING" || row["status"] == "CREATED",
        "{row}"
    );
    app.finish().await;
    cluster.finish().await;
}
