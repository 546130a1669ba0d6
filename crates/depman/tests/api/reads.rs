use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, deployment, status_and_json};

#[tokio::test]
async fn lists_filter_by_status_type_identifier_and_namespace() {
    let app = TestApp::spawn().await;
    let mut web = deployment("web");
    web["identifier"] = json!("web");
    let mut api = deployment("api");
    api["identifier"] = json!("api");
    api["namespace"] = json!("team-b");
    let (_, created) = status_and_json(app.create("alice", &web).await).await;
    status_and_json(app.create("alice", &api).await).await;
    app.patch(
        "alice",
        created["id"].as_str().unwrap(),
        &json!({"replicas": 3}),
    )
    .await;

    let count = |query: &'static str| {
        let app = &app;
        async move {
            let (status, page) = status_and_json(
                app.get("alice", &format!("/api/v1/deployments/requests{query}"))
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{query}: {page}");
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("").await, 3);
    assert_eq!(count("?request_type=UPDATE").await, 1);
    assert_eq!(count("?request_type=CREATE&namespace=team-b").await, 1);
    assert_eq!(count("?identifier=web").await, 2);
    assert_eq!(count("?status=CREATED").await, 3);
    assert_eq!(count("?status=SUCCESS").await, 0);

    let (_, deployments) = status_and_json(
        app.get("alice", "/api/v1/deployments?namespace=team-a")
            .await,
    )
    .await;
    let identifiers: Vec<&str> = deployments["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(identifiers, ["web"]);
    let (_, initiated) = status_and_json(
        app.get("alice", "/api/v1/deployments?status=INITIATED")
            .await,
    )
    .await;
    assert_eq!(initiated["items"].as_array().unwrap().len(), 2);
    app.finish().await;
}

#[tokio::test]
async fn a_deployment_shows_its_desired_and_live_fields() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["identifier"] = json!("web-1");
    app.create("alice", &body).await;
    let (status, deployment) =
        status_and_json(app.get("alice", "/api/v1/deployments/web-1").await).await;
    assert_eq!(status, 200);
    for field in [
        "identifier",
        "name",
        "namespace",
        "image",
        "status",
        "health",
        "replicas",
        "ready_replicas",
        "available_replicas",
        "updated_replicas",
        "generation",
        "observed_generation",
        "conditions",
        "resource_version",
        "created_on",
        "updated_on",
    ] {
        assert!(
            deployment.get(field).is_some(),
            "{field} missing from {deployment}"
        );
    }
    assert_eq!(deployment["conditions"], json!([]));
    assert_problem(
        app.get("alice", "/api/v1/deployments/nothing-here").await,
        404,
        None,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn list_parameters_are_checked() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=ten", "limit"),
        ("?cursor=bogus", "cursor"),
        ("?status=DONE", "status"),
        ("?request_type=PUT", "request_type"),
        ("?colour=blue", "colour"),
    ] {
        let response = app
            .get("alice", &format!("/api/v1/deployments/requests{query}"))
            .await;
        assert_problem(response, 422, Some(field)).await;
    }
    assert_problem(
        app.get("alice", "/api/v1/deployments?status=GONE").await,
        422,
        Some("status"),
    )
    .await;
    app.finish().await;
}

/// Pages through 120 requests while another client keeps creating more: no
/// request shows twice, none of the 120 is skipped, and the order is newest
/// first.
#[tokio::test]
async fn paging_is_stable_under_concurrent_inserts() {
    let app = TestApp::spawn().await;
    let mut existing = Vec::new();
    for i in 0..120 {
        let (_, request) =
            status_and_json(app.create("erin", &deployment(&format!("w{i}"))).await).await;
        existing.push(request["id"].as_str().unwrap().to_owned());
    }

    let writer = async {
        for i in 0..40 {
            assert_eq!(
                app.create("erin", &deployment(&format!("late{i}")))
                    .await
                    .status(),
                202
            );
        }
    };
    let reader = async {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(cursor) => format!("?limit=7&cursor={cursor}"),
                None => "?limit=7".to_owned(),
            };
            let (status, page) = status_and_json(
                app.get("erin", &format!("/api/v1/deployments/requests{query}"))
                    .await,
            )
            .await;
            assert_eq!(status, 200);
            seen.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break seen,
            }
        }
    };
    let ((), seen) = tokio::join!(writer, reader);

    let ids: Vec<&str> = seen.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a request showed twice");
    for id in &existing {
        assert!(unique.contains(id.as_str()), "request {id} was skipped");
    }
    let created: Vec<(chrono::DateTime<chrono::FixedOffset>, &str)> = seen
        .iter()
        .map(|r| {
            let created_on =
                chrono::DateTime::parse_from_rfc3339(r["created_on"].as_str().unwrap()).unwrap();
            (created_on, r["id"].as_str().unwrap())
        })
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "not newest first");
    app.finish().await;
}

#[tokio::test]
async fn a_wait_ends_at_its_deadline_with_the_request_as_it_is() {
    let app = TestApp::spawn().await;
    let (_, created) = status_and_json(app.create("alice", &deployment("web")).await).await;
    let id = created["id"].as_str().unwrap();
    // No worker runs: the request stays CREATED.
    let started = std::time::Instant::now();
    let (status, request) = status_and_json(
        app.get(
            "alice",
            &format!("/api/v1/deployments/requests/{id}?wait=1500ms"),
        )
        .await,
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(
        (status, request["status"].clone()),
        (200, serde_json::json!("CREATED"))
    );
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "{waited:?}"
    );

    for (query, parameter) in [
        ("wait=soon", "wait"),
        ("wait=1m", "wait"),
        ("wait=1s&until=done", "until"),
    ] {
        let path = format!("/api/v1/deployments/requests/{id}?{query}");
        assert_problem(app.get("alice", &path).await, 422, Some(parameter)).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_search_finds_deployments_by_part_of_their_identifier() {
    let app = TestApp::spawn().await;
    for identifier in ["shop-web", "shop-api", "blog"] {
        let mut body = deployment(identifier);
        body["identifier"] = json!(identifier);
        let (status, _) = status_and_json(app.create("alice", &body).await).await;
        assert_eq!(status, 202);
    }
    let found = |query: &'static str| {
        let app = &app;
        async move {
            let (status, page) = status_and_json(
                app.get("alice", &format!("/api/v1/deployments{query}"))
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{query}: {page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["identifier"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("?search=shop").await, ["shop-api", "shop-web"]);
    assert_eq!(found("?search=SHOP-W").await, ["shop-web"], "ignoring case");
    assert_eq!(found("?search=og&status=INITIATED").await, ["blog"]);
    assert_eq!(
        found("?search=%25").await,
        Vec::<String>::new(),
        "no pattern"
    );
    assert_eq!(found("?search=shop&limit=1").await, ["shop-api"]);
    let (_, bobs) = status_and_json(app.get("bob", "/api/v1/deployments?search=shop").await).await;
    assert_eq!(bobs["items"], json!([]));
    // A text no identifier can hold matches nothing (and reaches no query).
    for query in ["?search=web%00", "?search=%1Bweb", "?search=shop_web"] {
        assert_eq!(found(query).await, Vec::<String>::new(), "{query}");
    }
    for query in ["?search=", &format!("?search={}", "a".repeat(64))] {
        let response = app
            .get("alice", &format!("/api/v1/deployments{query}"))
            .await;
        assert_problem(response, 422, Some("search")).await;
    }
    app.finish().await;
}
