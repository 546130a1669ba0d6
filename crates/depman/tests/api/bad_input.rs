//! Input no valid request could carry is refused where it enters, naming the
//! parameter or field: never a 500 from PostgreSQL choking on it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, deployment, status_and_json};

const CREATE: &str = "/api/v1/deployments/requests/create";

/// POSTs `body` as raw text, for JSON that `serde_json::Value` cannot hold.
async fn post_raw(app: &TestApp, body: String) -> reqwest::Response {
    app.request(Method::POST, CREATE, "alice")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST")
}

/// A valid CREATE body with `field` set to the raw JSON `value`.
fn raw_body_with(field: &str, value: &str) -> String {
    let mut body = deployment("web");
    body.as_object_mut().expect("an object").remove(field);
    let mut body = body.to_string();
    body.pop();
    format!(r#"{body},"{field}":{value}}}"#)
}

#[tokio::test]
async fn a_nul_in_a_filter_is_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (path, parameter) in [
        ("/api/v1/deployments?namespace=%00abc", "namespace"),
        (
            "/api/v1/deployments/requests?identifier=a%00b",
            "identifier",
        ),
        (
            "/api/v1/deployments/requests?namespace=team%00",
            "namespace",
        ),
        ("/api/v1/deployments?cursor=%00", "cursor"),
        ("/api/v1/deployments?status=%00", "status"),
    ] {
        assert_problem(app.get("alice", path).await, 422, Some(parameter)).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_filter_that_cannot_be_a_name_is_422() {
    let app = TestApp::spawn().await;
    let too_long = "a".repeat(64);
    for (path, parameter) in [
        (
            "/api/v1/deployments?namespace=Team_A".to_owned(),
            "namespace",
        ),
        (
            format!("/api/v1/deployments/requests?identifier={too_long}"),
            "identifier",
        ),
        (
            "/api/v1/deployments/requests?namespace=".to_owned(),
            "namespace",
        ),
    ] {
        assert_problem(app.get("alice", &path).await, 422, Some(parameter)).await;
    }
    // A valid name that matches nothing is an empty page, not an error.
    let (status, page) = status_and_json(
        app.get("alice", "/api/v1/deployments?namespace=nowhere")
            .await,
    )
    .await;
    assert_eq!((status, page["items"].clone()), (200, json!([])));
    app.finish().await;
}

#[tokio::test]
async fn a_path_parameter_that_cannot_be_a_name_is_422() {
    let app = TestApp::spawn().await;
    for path in ["/api/v1/deployments/a%00b", "/api/v1/deployments/Web"] {
        assert_problem(app.get("alice", path).await, 422, Some("identifier")).await;
    }
    let not_a_uuid = app.get("alice", "/api/v1/deployments/requests/a%00b").await;
    assert_problem(not_a_uuid, 422, Some("id")).await;
    app.finish().await;
}

#[tokio::test]
async fn a_nul_in_any_body_string_is_422_naming_its_path() {
    let app = TestApp::spawn().await;
    let cases: [(&str, Value, &str); 5] = [
        ("env", json!({"A": "x\u{0}y"}), "env.A"),
        (
            "annotations",
            json!({"example.com/note": "\u{0}"}),
            "annotations.example.com/note",
        ),
        ("command", json!(["/bin/sh", "\u{0}"]), "command[1]"),
        ("args", json!(["\u{0}"]), "args[0]"),
        (
            "ports",
            json!([{"container_port": 80, "name": "a\u{0}"}]),
            "ports[0].name",
        ),
    ];
    for (field, value, path) in cases {
        let mut body = deployment("web");
        body[field] = value;
        assert_problem(app.create("alice", &body).await, 422, Some(path)).await;
    }
    let mut name = deployment("web");
    name["name"] = json!("we\u{0}b");
    assert_problem(app.create("alice", &name).await, 422, Some("name")).await;

    // The same rule holds for a PATCH, and nothing was recorded meanwhile.
    let (_, created) = status_and_json(app.create("alice", &deployment("web")).await).await;
    let id = created["id"].as_str().unwrap();
    let patch = app
        .patch("alice", id, &json!({"env": {"B": "\u{0}"}}))
        .await;
    assert_problem(patch, 422, Some("env.B")).await;
    let (_, page) = status_and_json(app.get("alice", "/api/v1/deployments/requests").await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    app.finish().await;
}

#[tokio::test]
async fn a_key_given_twice_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let twice = r#"{"name": "web", "name": "api", "namespace": "team-a", "image": "nginx"}"#;
    assert_problem(post_raw(&app, twice.into()).await, 422, Some("name")).await;
    let env_twice = raw_body_with("env", r#"{"A": "1", "A": "2"}"#);
    assert_problem(post_raw(&app, env_twice).await, 422, Some("env.A")).await;
    app.finish().await;
}

#[tokio::test]
async fn nesting_deeper_than_any_field_needs_is_422() {
    let app = TestApp::spawn().await;
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let response = post_raw(&app, raw_body_with("args", &deep)).await;
    let problem = assert_problem(response, 422, None).await;
    let field = problem["errors"][0]["field"].as_str().unwrap();
    assert!(field.starts_with("args[0]"), "{problem}");
    app.finish().await;
}

#[tokio::test]
async fn lone_surrogates_infinity_and_numbers_beyond_a_double_are_400() {
    let app = TestApp::spawn().await;
    for (field, value) in [
        ("env", r#"{"A": "\ud800"}"#),
        ("env", r#"{"A": "\udc00x"}"#),
        ("replicas", "Infinity"),
        ("replicas", "-Infinity"),
        ("replicas", "NaN"),
        ("replicas", "1e400"),
    ] {
        let response = post_raw(&app, raw_body_with(field, value)).await;
        let problem = assert_problem(response, 400, None).await;
        assert_eq!(problem["code"], "malformed-body", "{field}: {value}");
    }
    app.finish().await;
}

#[tokio::test]
async fn an_integer_too_large_for_its_field_is_422_naming_it() {
    let app = TestApp::spawn().await;
    for value in [
        "99999999999999999999999",
        "9223372036854775808",
        "-9223372036854775809",
        "1.5",
    ] {
        let response = post_raw(&app, raw_body_with("replicas", value)).await;
        assert_problem(response, 422, Some("replicas")).await;
    }
    let port = r#"[{"container_port": 18446744073709551616}]"#;
    let response = post_raw(&app, raw_body_with("ports", port)).await;
    assert_problem(response, 422, Some("ports[0].container_port")).await;
    app.finish().await;
}

#[tokio::test]
async fn a_limit_outside_1_to_500_is_422_whatever_its_size() {
    let app = TestApp::spawn().await;
    for limit in [
        "-9223372036854775808",
        "9223372036854775807",
        "9223372036854775808",
        "-1",
        "0",
        "501",
        "1.5",
        "ten",
        "",
    ] {
        for list in ["/api/v1/deployments", "/api/v1/deployments/requests"] {
            let response = app.get("alice", &format!("{list}?limit={limit}")).await;
            assert_problem(response, 422, Some("limit")).await;
        }
    }
    app.finish().await;
}
