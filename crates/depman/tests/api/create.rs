use serde_json::json;

use crate::helpers::{TestApp, assert_problem, deployment, status_and_json};

#[tokio::test]
async fn create_answers_202_with_the_request_and_its_location() {
    let app = TestApp::spawn().await;
    let response = app.create("alice", &deployment("web")).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, request) = status_and_json(response).await;
    assert_eq!(
        location,
        format!(
            "/api/v1/deployments/requests/{}",
            request["id"].as_str().unwrap()
        )
    );
    assert_eq!(request["request_type"], "CREATE");
    assert_eq!(request["status"], "CREATED");
    assert_eq!(request["attempts"], 0);
    assert_eq!(request["image"], "nginx:1.27");
    assert_eq!(request["spec"]["replicas"], 2);
    assert_eq!(request["spec"]["namespace"], "team-a");
    assert!(request["failure_reason"].is_null());

    let (status, fetched) = status_and_json(app.get("alice", &location).await).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, request);
    app.finish().await;
}

#[tokio::test]
async fn create_reserves_the_identifier_and_queues_the_request_in_one_transaction() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["identifier"] = json!("web-prod");
    let (_, request) = status_and_json(app.create("alice", &body).await).await;

    let (status, deployment) =
        status_and_json(app.get("alice", "/api/v1/deployments/web-prod").await).await;
    assert_eq!(status, 200);
    assert_eq!(deployment["status"], "INITIATED");
    assert_eq!(deployment["health"], "MISSING");
    assert_eq!(deployment["name"], "web");

    let published = app.published(1).await;
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].request_id.to_string(),
        request["id"].as_str().unwrap()
    );
    assert_eq!(published[0].identifier, "web-prod");
    assert_eq!(published[0].sequence, 1);
    // The relay deletes its rows once JetStream acknowledged them, which is
    // a moment after the message shows in the stream.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay removes what it published: {waiting} left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn create_without_identifier_generates_one_from_the_name() {
    let app = TestApp::spawn().await;
    let (_, first) = status_and_json(app.create("alice", &deployment("web")).await).await;
    let (_, second) = status_and_json(app.create("alice", &deployment("web")).await).await;
    let identifier = first["identifier"].as_str().unwrap();
    assert!(
        identifier.starts_with("web-") && identifier.len() == "web-".len() + 5,
        "{identifier}"
    );
    assert_ne!(first["identifier"], second["identifier"]);
    app.finish().await;
}

#[tokio::test]
async fn create_with_a_taken_identifier_is_409() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["identifier"] = json!("shared");
    assert_eq!(app.create("alice", &body).await.status(), 202);
    assert_problem(app.create("alice", &body).await, 409, None).await;
    assert_problem(app.create("bob", &body).await, 409, None).await;
    app.finish().await;
}

#[tokio::test]
async fn a_deleted_identifier_can_be_created_again_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["identifier"] = json!("again");
    assert_eq!(app.create("alice", &body).await.status(), 202);
    // What the worker and the sync record once Kubernetes no longer has it.
    sqlx::query("UPDATE deployments SET status = 'DELETED' WHERE identifier = 'again'")
        .execute(&app.pool)
        .await
        .unwrap();

    assert_problem(app.create("bob", &body).await, 409, None).await;
    assert_eq!(app.create("alice", &body).await.status(), 202);
    let (_, deployment) =
        status_and_json(app.get("alice", "/api/v1/deployments/again").await).await;
    assert_eq!(deployment["status"], "INITIATED");
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM deployment_requests WHERE identifier = 'again' ORDER BY sequence",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(sequences, [1, 2]);
    app.finish().await;
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_original_request() {
    let app = TestApp::spawn().await;
    let first = app
        .create_with_key("alice", "key-1", &deployment("web"))
        .await;
    assert_eq!(first.status(), 202);
    let (_, original) = status_and_json(first).await;

    let replay = app
        .create_with_key("alice", "key-1", &deployment("web"))
        .await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let (_, replayed) = status_and_json(replay).await;
    assert_eq!(replayed, original);
    assert_eq!(original["request_id"], "key-1");
    app.finish().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.create_with_key("alice", "key-1", &deployment("web"))
            .await
            .status(),
        202
    );
    let problem = assert_problem(
        app.create_with_key("alice", "key-1", &deployment("api"))
            .await,
        422,
        None,
    )
    .await;
    assert_eq!(problem["code"], "idempotency-key-reused");
    app.finish().await;
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.create_with_key("alice", "key-1", &deployment("web"))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.create_with_key("bob", "key-1", &deployment("web"))
            .await
            .status(),
        202
    );
    app.finish().await;
}

#[tokio::test]
async fn concurrent_posts_with_the_same_key_make_one_request() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["identifier"] = json!("racy");
    let posts = (0..8).map(|_| app.create_with_key("carol", "same-key", &body));
    let statuses: Vec<u16> = futures::future::join_all(posts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // Published once (give the relay time to publish a second one, if any).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.published(1).await.len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn concurrent_first_requests_create_the_user_once() {
    let app = TestApp::spawn().await;
    let bodies: Vec<_> = (0..8).map(|i| deployment(&format!("web-{i}"))).collect();
    let posts = bodies.iter().map(|body| app.create("dave", body));
    for response in futures::future::join_all(posts).await {
        assert_eq!(response.status(), 202);
    }
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE user_external_id = 'dave'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(users, 1);
    app.finish().await;
}

#[tokio::test]
async fn every_invalid_field_is_named() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"namespace": "a", "image": "nginx"}), "name"),
        (
            json!({"name": "Web", "namespace": "a", "image": "nginx"}),
            "name",
        ),
        (
            json!({"name": "web", "namespace": "a_b", "image": "nginx"}),
            "namespace",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx:"}),
            "image",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "identifier": "-x"}),
            "identifier",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "replicas": 1001}),
            "replicas",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "replicas": "two"}),
            "replicas",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "env": {"1X": "y"}}),
            "env",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "ports": [{"container_port": 0}]}),
            "ports[0].container_port",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "resources": {"limits": {"cpu": "x"}}}),
            "resources.limits.cpu",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "labels": {"depman.io/x": "y"}}),
            "labels",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "annotations": {"a b": "y"}}),
            "annotations",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "command": "sh"}),
            "command",
        ),
        (
            json!({"name": "web", "namespace": "a", "image": "nginx", "colour": "blue"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let response = app.create("alice", &body).await;
        assert_problem(response, 422, Some(field)).await;
    }
    let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(requests, 0);
    app.finish().await;
}
