//! The OpenAPI document is generated from the routes: it is valid OpenAPI 3
//! and lists every route of the contract.

use crate::helpers::TestApp;

const ROUTES: [(&str, &str); 20] = [
    ("post", "/api/v1/deployments/requests/create"),
    ("get", "/api/v1/deployments/requests"),
    ("get", "/api/v1/deployments/requests/{id}"),
    ("patch", "/api/v1/deployments/requests/{id}"),
    ("delete", "/api/v1/deployments/requests/{id}"),
    ("get", "/api/v1/deployments"),
    ("get", "/api/v1/deployments/{identifier}"),
    ("get", "/api/v1/ping"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/events"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{id}"),
    ("delete", "/api/v1/webhooks/{id}"),
    ("get", "/api/v1/webhooks/{id}/deliveries"),
    ("get", "/api/v1/deployments/{identifier}/revisions"),
    (
        "get",
        "/api/v1/deployments/{identifier}/revisions/{revision}",
    ),
    ("post", "/api/v1/deployments/{identifier}/rollback"),
    ("post", "/api/v1/deployments/requests/{id}/cancel"),
];

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_with_every_route() {
    let app = TestApp::spawn().await;
    let text = app.text("/api-docs/openapi.json").await;
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);

    let paths = spec.paths.as_ref().expect("paths");
    for (method, path) in ROUTES {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        let operation = match method {
            "get" => &item.get,
            "post" => &item.post,
            "patch" => &item.patch,
            "delete" => &item.delete,
            _ => unreachable!(),
        };
        assert!(operation.is_some(), "{method} {path} is not documented");
    }
    // Every documented operation is one of the contract's: nothing extra.
    let documented: usize = paths
        .values()
        .map(|item| {
            [&item.get, &item.post, &item.patch, &item.delete, &item.put]
                .iter()
                .filter(|o| o.is_some())
                .count()
        })
        .sum();
    assert_eq!(documented, ROUTES.len());
    // Clients and fuzzers name operations, and link them, by operationId.
    let ids: std::collections::BTreeSet<_> = paths
        .values()
        .flat_map(|item| [&item.get, &item.post, &item.patch, &item.delete])
        .flatten()
        .filter_map(|operation| operation.operation_id.clone())
        .collect();
    assert_eq!(ids.len(), ROUTES.len(), "operationIds are unique: {ids:?}");
    app.finish().await;
}

/// The served document, as JSON.
async fn document(app: &TestApp) -> serde_json::Value {
    reqwest::get(app.url("/api-docs/openapi.json"))
        .await
        .expect("GET the document")
        .json()
        .await
        .expect("a JSON document")
}

#[tokio::test]
async fn every_caller_route_declares_the_caller_scheme_and_its_401_and_503() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let scheme = &doc["components"]["securitySchemes"]["caller"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "X-User-ID");
    for (method, path) in ROUTES {
        let operation = &doc["paths"][path][method];
        let responses = operation["responses"].as_object().unwrap();
        if path.starts_with("/api/v1/") && path != "/api/v1/ping" {
            assert_eq!(
                operation["security"],
                serde_json::json!([{"caller": []}]),
                "{method} {path}"
            );
            for status in ["401", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        } else {
            assert!(operation.get("security").is_none(), "{method} {path}");
        }
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            parameters.iter().all(|p| p["name"] != "X-User-ID"),
            "{method} {path}: X-User-ID is the security scheme, not a parameter"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn errors_are_documented_as_problem_details_and_successes_as_json() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    for (method, path) in ROUTES {
        let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
        for (status, response) in responses {
            let content = response["content"].as_object().cloned().unwrap_or_default();
            let expected: &[&str] = match (path, status.as_str()) {
                ("/metrics", _) => &["application/openmetrics-text"],
                ("/api/v1/events", "200") => &["application/json", "text/event-stream"],
                (_, "204") => &[],
                (_, s) if s.starts_with('2') => &["application/json"],
                _ => &["application/problem+json"],
            };
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                expected,
                "{method} {path} {status}"
            );
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn the_schemas_carry_the_rules_validation_enforces() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let input = &schemas["DeploymentInput"];
    assert_eq!(input["additionalProperties"], false);
    assert_eq!(
        input["required"],
        serde_json::json!(["name", "namespace", "image"])
    );
    assert_eq!(input["properties"]["name"]["maxLength"], 50);
    assert_eq!(input["properties"]["replicas"]["minimum"], 0);
    assert_eq!(input["properties"]["replicas"]["maximum"], 1000);
    for field in ["name", "namespace", "identifier", "image"] {
        assert!(input["properties"][field]["pattern"].is_string(), "{field}");
    }
    assert_eq!(
        schemas["Port"]["properties"]["container_port"]["maximum"],
        65535
    );
    assert_eq!(
        schemas["Port"]["properties"]["protocol"]["enum"],
        serde_json::json!(["TCP", "UDP", "SCTP"])
    );
    let patch = &doc["paths"]["/api/v1/deployments/requests/{id}"]["patch"];
    assert_eq!(
        patch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/DeploymentPatch"
    );
    assert_eq!(schemas["DeploymentPatch"]["additionalProperties"], false);
    let list = doc["paths"]["/api/v1/deployments"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let limit = list.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].clone(),
            limit["schema"]["maximum"].clone()
        ),
        (1.into(), 500.into())
    );
    app.finish().await;
}

/// Every `$ref` in `value`.
fn references(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("$ref", Some(reference)) => found.push(reference.to_owned()),
                    _ => references(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference {reference}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{reference} is not in the document"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = reqwest::get(app.url("/swagger/index.html")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let config = reqwest::get(app.url("/swagger/swagger-initializer.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("/api-docs/openapi.json"), "{config}");
    app.finish().await;
}

/// The event types are documented as the API spells them.
#[tokio::test]
async fn event_types_are_documented_as_spelled() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let spelled: Vec<&str> = depman::domain::event::EventType::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    assert_eq!(
        doc["components"]["schemas"]["EventType"]["enum"],
        serde_json::json!(spelled)
    );
    app.finish().await;
}
