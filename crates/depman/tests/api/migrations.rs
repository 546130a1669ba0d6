use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::helpers::{TestApp, unique, url_with_database};

/// Replicas starting at once on an empty database: each migration is applied
/// once, and every replica starts.
#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let database = unique("api_migrate");
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
        .execute(&mut admin)
        .await
        .expect("create");
    let url = url_with_database(&admin_url, &database);
    let (a, b, c) = tokio::join!(
        TestApp::spawn_on(&url, &database),
        TestApp::spawn_on(&url, &database),
        TestApp::spawn_on(&url, &database),
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&a.pool)
        .await
        .expect("migrations table");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations folder")
        .count();
    assert_eq!(applied, files as i64);
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
