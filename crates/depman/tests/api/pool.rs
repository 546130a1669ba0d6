use crate::helpers::TestApp;

/// The api opens its kept connections before it answers: a burst at start
/// does not wait while connections are opened, and `/metrics` shows them.
#[tokio::test]
async fn the_pool_opens_its_kept_connections_at_start_and_metrics_count_them() {
    let app = TestApp::spawn().await;

    let backends: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(backends >= 8, "{backends} connections besides the test's");

    let metrics = app.text("/metrics").await;
    let count = |state: &str| -> u32 {
        let prefix = format!("depman_db_connections{{state=\"{state}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(count("idle") + count("in_use") >= 8, "{metrics}");
    app.finish().await;
}
