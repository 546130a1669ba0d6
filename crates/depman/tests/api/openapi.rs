//! The OpenAPI document is generated from the routes: it is valid OpenAPI 3
//! and lists every route of the contract.

use crate::helpers::TestApp;

const ROUTES: [(&str, &str); 10] = [
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
];

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_with_every_route() {
    let app = TestApp::spawn().await;
    let text = reqwest::get(app.url("/api-docs/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    assert_eq!(documented, 10);
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
