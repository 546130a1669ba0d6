use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::TestApp;

/// Tables and their columns as `docs/schema.md` lists them: each
/// "## `table`" heading, then the backticked names in the first cell of its
/// table's rows.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    // cargo runs tests in the package's folder.
    let text = std::fs::read_to_string("../../docs/schema.md").expect("docs/schema.md");
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = heading
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .map(str::to_owned);
        } else if let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) {
            let cell = row.split(" |").next().unwrap_or_default();
            let names = cell
                .split(", ")
                .map(|name| name.trim_matches('`').to_owned());
            tables.entry(table.clone()).or_default().extend(names);
        }
    }
    tables
}

/// docs/schema.md names every table and column the migrations make, and no
/// other.
#[tokio::test]
async fn the_schema_page_matches_the_migrations() {
    let app = TestApp::spawn().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("columns");
    let mut migrated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        migrated.entry(table).or_default().insert(column);
    }
    assert_eq!(documented(), migrated);
    app.finish().await;
}
