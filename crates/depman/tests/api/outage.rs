//! PostgreSQL going away: the API answers 503 naming it, never 500, and
//! recovers on its own when the database is back. The outage is real: the
//! API reaches PostgreSQL through a TCP proxy that the test cuts.

use crate::helpers::{
    TestApp, assert_problem, create_database, deployment, proxy::Proxy, url_with_database,
};

/// `host:port` of a postgres URL.
fn server_of(url: &str) -> &str {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    after_at.split('/').next().unwrap_or(after_at)
}

#[tokio::test]
async fn a_database_outage_answers_503_and_the_api_recovers() {
    let direct = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let proxy = Proxy::start(server_of(&direct).to_owned()).await;
    let database = create_database("api_outage").await;
    let proxied = url_with_database(
        &direct.replace(server_of(&direct), &proxy.addr.to_string()),
        &database,
    );
    let app = TestApp::spawn_on(&proxied, &database).await;
    assert_eq!(
        app.create("alice", &deployment("before")).await.status(),
        202
    );

    proxy.cut();
    let problem = assert_problem(app.create("alice", &deployment("during")).await, 503, None).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("postgres"),
        "{problem}"
    );
    assert_problem(
        app.get("alice", "/api/v1/deployments/requests").await,
        503,
        None,
    )
    .await;
    let ready = assert_problem(reqwest::get(app.url("/readyz")).await.unwrap(), 503, None).await;
    assert!(
        ready["detail"].as_str().unwrap().contains("postgres"),
        "{ready}"
    );
    assert_eq!(
        reqwest::get(app.url("/api/v1/ping"))
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.restore();
    // A pooled connection that died in the outage fails its next query (a
    // 503, never a 500) and is replaced; the API is back within seconds.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = app.create("alice", &deployment("after")).await.status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API did not recover within 10 s"
        );
    }
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.unwrap().status(),
        200
    );
    let accepted: Vec<String> =
        sqlx::query_scalar("SELECT name FROM deployment_requests ORDER BY created_on")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(accepted, ["before", "after"]);
    app.finish().await;
}
