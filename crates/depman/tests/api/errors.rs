//! Every error, whatever its cause, answers in RFC 9457 problem details.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, deployment};

const CREATE: &str = "/api/v1/deployments/requests/create";

#[tokio::test]
async fn the_caller_must_name_themselves() {
    let app = TestApp::spawn().await;
    let anonymous = reqwest::Client::new()
        .get(app.url("/api/v1/deployments"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, None).await;
    for bad in ["", "has space", "a/b", &"x".repeat(129)] {
        let response = app.get(bad, "/api/v1/deployments").await;
        assert_problem(response, 401, None).await;
    }
    let ping = reqwest::Client::new()
        .get(app.url("/api/v1/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_400_or_415() {
    let app = TestApp::spawn().await;
    let post = |content_type: &'static str, body: &'static str| {
        app.request(Method::POST, CREATE, "alice")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        post("application/json", "{not json").await.unwrap(),
        400,
        None,
    )
    .await;
    assert_problem(post("application/json", "[1, 2]").await.unwrap(), 400, None).await;
    assert_problem(post("application/json", "").await.unwrap(), 400, None).await;
    assert_problem(
        post("text/plain", r#"{"name": "web"}"#).await.unwrap(),
        415,
        None,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["annotations"] = json!({"example.com/big": "x".repeat(70 * 1024)});
    assert_problem(app.create("alice", &body).await, 413, None).await;
    app.finish().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = TestApp::spawn().await;
    assert_problem(app.get("alice", "/api/v1/nothing").await, 404, None).await;
    let wrong = app
        .request(Method::PUT, "/api/v1/deployments", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["allow"], "GET,HEAD");
    assert_problem(wrong, 405, None).await;
    let get_create = app.get("alice", CREATE).await;
    assert_problem(get_create, 405, None).await;
    app.finish().await;
}

#[tokio::test]
async fn a_malformed_request_id_is_named() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, CREATE, "alice")
        .header("X-Request-ID", "has space")
        .json(&deployment("web"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, Some("X-Request-ID")).await;
    app.finish().await;
}

#[tokio::test]
async fn responses_carry_the_request_id_and_metrics_count_them() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/api/v1/deployments", "alice")
        .header("X-Request-ID", "trace-me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me");
    let generated = app.get("alice", "/api/v1/deployments").await;
    assert_eq!(
        generated.headers()["x-request-id"].len(),
        36,
        "a uuid is made up"
    );

    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains(
            r#"depman_http_requests_total{method="GET",route="/api/v1/deployments",status="200"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("depman_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    app.finish().await;
}
