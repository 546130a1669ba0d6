//! Dry runs when no worker can answer (contract: "Dry run"): the api holds
//! no Kubernetes credentials, so it says so within its timeout instead of
//! waiting, and records nothing either way.

use std::time::{Duration, Instant};

use depman::dry_run::{Ask, Operation};
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{DRY_RUN_TIMEOUT, TestApp, assert_problem, deployment};

const CREATE: &str = "/api/v1/deployments/requests/create";

async fn dry_run_create(app: &TestApp, query: &str, body: &serde_json::Value) -> reqwest::Response {
    app.request(Method::POST, &format!("{CREATE}?{query}"), "alice")
        .json(body)
        .send()
        .await
        .expect("a dry run")
}

#[tokio::test]
async fn a_dry_run_nobody_answers_is_unavailable_within_the_timeout() {
    let app = TestApp::spawn().await;
    let body = deployment("web");

    // No worker at all: NATS says so at once.
    let started = Instant::now();
    let problem =
        assert_problem(dry_run_create(&app, "dry_run=true", &body).await, 503, None).await;
    assert_eq!(problem["code"], "dry-run-unavailable");
    assert!(
        started.elapsed() < DRY_RUN_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    // A worker that takes the question and never answers: the timeout.
    let names = &app.deps.names;
    let mut silent = app
        .deps
        .nats
        .queue_subscribe(names.dry_run_subject(), names.dry_run_group())
        .await
        .expect("subscribe");
    app.deps.nats.flush().await.expect("flush");
    let started = Instant::now();
    let problem =
        assert_problem(dry_run_create(&app, "dry_run=true", &body).await, 503, None).await;
    let waited = started.elapsed();
    assert!(
        waited >= DRY_RUN_TIMEOUT && waited < DRY_RUN_TIMEOUT + Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("within")),
        "{problem}"
    );
    let question = silent.next().await.expect("the question");
    let question: Ask = serde_json::from_slice(&question.payload).expect("an Ask");
    assert_eq!(question.operation, Operation::Apply);
    assert_eq!(question.owner, "alice");
    assert_eq!(question.spec.name, "web");

    // Input is checked before anyone is asked.
    let mut bad = body.clone();
    bad["replicas"] = json!(-1);
    assert_problem(
        dry_run_create(&app, "dry_run=true", &bad).await,
        422,
        Some("replicas"),
    )
    .await;
    assert_problem(
        dry_run_create(&app, "dry_run=maybe", &body).await,
        422,
        Some("dry_run"),
    )
    .await;
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(recorded, 0, "a dry run records nothing");
    app.finish().await;
}
