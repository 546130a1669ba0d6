use crate::helpers::{TestApp, create_database, environment, url_with_database};

/// Replicas starting at once on an empty database: each migration is applied
/// once, and every replica starts.
#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let database = create_database("api_migrate").await;
    let url = url_with_database(&environment("DATABASE_URL"), &database);
    let (a, b, c) = tokio::join!(
        TestApp::spawn_on(&url, &database),
        TestApp::spawn_on(&url, &database),
        TestApp::spawn_on(&url, &database),
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&a.pool)
        .await
        .expect("migrations table");
    // The embedded set, not the folder: a test binary built in another
    // checkout (the target folder is shared) has no folder to read.
    let embedded = depman::db::MIGRATOR.iter().count();
    assert_eq!(applied, embedded as i64);
    for app in [&a, &b, &c] {
        assert_eq!(
            reqwest::get(app.url("/api/v1/ping"))
                .await
                .expect("ping")
                .status(),
            200
        );
    }
    // Each app drops the database in finish; only the last one can.
    b.stop().await;
    c.stop().await;
    a.finish().await;
}
