use serde_json::json;

use crate::helpers::{
    DEX_CLIENT, TestApp, assert_problem, deployment, environment, status_and_json,
};

#[tokio::test]
async fn another_user_sees_and_changes_nothing_of_alices() {
    nothing_of_alices(TestApp::spawn().await).await;
}

/// The same with users named by Dex tokens (`DEPMAN_AUTH=jwt`).
#[tokio::test]
async fn with_tokens_another_user_sees_and_changes_nothing_of_alices() {
    let issuer = environment("DEPMAN_TEST_OIDC_ISSUER");
    let settings = crate::auth::jwt_settings(&issuer, DEX_CLIENT.0);
    nothing_of_alices(TestApp::spawn_with_api(settings).await).await;
}

async fn nothing_of_alices(app: TestApp) {
    let mut body = deployment("web");
    body["identifier"] = json!("alices");
    let (_, request) = status_and_json(app.create("alice", &body).await).await;
    let id = request["id"].as_str().expect("an id");

    assert_problem(
        app.get("bob", &format!("/api/v1/deployments/requests/{id}"))
            .await,
        404,
        None,
    )
    .await;
    assert_problem(
        app.patch("bob", id, &json!({"replicas": 9})).await,
        404,
        None,
    )
    .await;
    assert_problem(app.delete("bob", id).await, 404, None).await;
    assert_problem(
        app.get("bob", "/api/v1/deployments/alices").await,
        404,
        None,
    )
    .await;
    let (_, requests) = status_and_json(app.get("bob", "/api/v1/deployments/requests").await).await;
    assert_eq!(requests["items"], json!([]));
    let (_, deployments) = status_and_json(app.get("bob", "/api/v1/deployments").await).await;
    assert_eq!(deployments["items"], json!([]));

    // Alice's deployment is as she left it.
    let (_, deployment) =
        status_and_json(app.get("alice", "/api/v1/deployments/alices").await).await;
    assert_eq!(deployment["status"], "INITIATED");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(&app.pool)
        .await
        .expect("count the requests");
    assert_eq!(count, 1);
    app.finish().await;
}
