use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::{TestApp, repo_path};

/// Each table's columns as `docs/schema.md` lists them ("## `table`"
/// headings, then the backticked names in the first cell of each row), with
/// the rest of the column's row.
fn documented() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(repo_path("docs/schema.md")).expect("docs/schema.md");
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = heading
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .map(str::to_owned);
        } else if let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) {
            let (cell, rest) = row.split_once(" |").unwrap_or((row, ""));
            for name in cell.split(", ") {
                let name = name.trim_matches('`').to_owned();
                tables
                    .entry(table.clone())
                    .or_default()
                    .insert(name, rest.to_owned());
            }
        }
    }
    tables
}

/// The backticked upper-case words of a text: the values a row lists.
fn values(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// docs/schema.md names every table and column the migrations make, and no
/// other, and lists the values each CHECK constraint allows.
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
    let documented = documented();
    let columns: BTreeMap<String, BTreeSet<String>> = documented
        .iter()
        .map(|(table, columns)| (table.clone(), columns.keys().cloned().collect()))
        .collect();
    assert_eq!(columns, migrated);

    let checks: Vec<(String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE contype = 'c' AND connamespace = 'public'::regnamespace",
    )
    .fetch_all(&app.pool)
    .await
    .expect("constraints");
    assert!(!checks.is_empty(), "no CHECK constraints found");
    for (table, definition) in checks {
        // CHECK ((status = ANY (ARRAY['CREATED'::text, 'SUCCESS'::text, ...])))
        let column = definition
            .trim_start_matches("CHECK ((")
            .split(' ')
            .next()
            .expect("a column");
        let allowed: BTreeSet<String> = definition
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let row = &documented[&table][column];
        assert_eq!(values(row), allowed, "{table}.{column}: {row}");
    }
    app.finish().await;
}
