//! Registering webhooks (contract: "Webhooks"): the secret is shown once,
//! a user sees only their own, and a URL that is not http(s) or leads to an
//! inside address is refused, naming the field.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, status_and_json};

async fn post(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    app.request(reqwest::Method::POST, "/api/v1/webhooks", user)
        .json(&body)
        .send()
        .await
        .expect("the request is sent")
}

#[tokio::test]
async fn a_webhook_is_registered_listed_and_removed_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let body =
        json!({"url": "http://127.0.0.1:9/hook", "types": ["rollout.failed"], "identifier": "web"});
    let response = post(&app, "alice", body).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, created) = status_and_json(response).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/webhooks/{id}"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["types"], json!(["rollout.failed"]));
    assert_eq!(created["identifier"], "web");

    // The secret is never shown again, nor stored as given.
    let (_, shown) = status_and_json(app.get("alice", &location).await).await;
    assert_eq!(shown["id"], id);
    assert!(shown.get("secret").is_none());
    let (_, listed) = status_and_json(app.get("alice", "/api/v1/webhooks").await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(listed["items"][0].get("secret").is_none());
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().as_bytes();
    assert!(!stored.windows(secret.len()).any(|w| w == secret));

    // Bob sees none of it.
    let (_, bobs) = status_and_json(app.get("bob", "/api/v1/webhooks").await).await;
    assert!(bobs["items"].as_array().unwrap().is_empty());
    assert_problem(app.get("bob", &location).await, 404, None).await;
    let bob_deletes = app
        .request(reqwest::Method::DELETE, &location, "bob")
        .send()
        .await
        .unwrap();
    assert_problem(bob_deletes, 404, None).await;
    let deliveries = app.get("bob", &format!("{location}/deliveries")).await;
    assert_problem(deliveries, 404, None).await;

    let (status, page) =
        status_and_json(app.get("alice", &format!("{location}/deliveries")).await).await;
    assert_eq!(status, 200);
    assert!(page["items"].as_array().unwrap().is_empty());
    let deleted = app
        .request(reqwest::Method::DELETE, &location, "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_problem(app.get("alice", &location).await, 404, None).await;
    app.finish().await;
}

#[tokio::test]
async fn bad_webhooks_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://user:pw@127.0.0.1/"}), "url"),
        (json!({"url": "http://10.0.0.1/hook"}), "url"),
        (json!({"url": "http://169.254.169.254/latest"}), "url"),
        (json!({"url": "http://[::1]:9/hook"}), "url"),
        (json!({"url": "http://localhost:9/hook"}), "url"),
        (
            json!({"url": format!("http://127.0.0.1/{}", "a".repeat(2100))}),
            "url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "types": ["nope"]}),
            "types[0]",
        ),
        (json!({"url": "http://127.0.0.1:9/", "types": []}), "types"),
        (
            json!({"url": "http://127.0.0.1:9/", "identifier": "Not_A_Label"}),
            "identifier",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "secret": "mine"}),
            "secret",
        ),
        (json!({"types": ["request.accepted"]}), "url"),
    ] {
        let problem = assert_problem(post(&app, "alice", body.clone()).await, 422, None).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let response = app.get("alice", "/api/v1/webhooks/not-a-uuid").await;
    assert_problem(response, 422, Some("id")).await;
    app.finish().await;
}

/// A webhook's deliveries are listed newest event first by transaction
/// number: 10 before 9, though as text "10" sorts after "9".
#[tokio::test]
async fn deliveries_are_listed_by_event_position_not_its_text() {
    let app = TestApp::spawn().await;
    let response = post(&app, "alice", json!({"url": "http://127.0.0.1:9/hook"})).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, created) = status_and_json(response).await;
    assert_eq!(status, 201, "{created}");
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_xid, event_seq, event_type)
         SELECT $1, x::text::xid8, 1, 'type-' || x FROM unnest(ARRAY[9, 10]) x",
    )
    .bind(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap())
    .execute(&app.pool)
    .await
    .expect("two deliveries");
    let (status, page) = status_and_json(
        app.get("alice", &format!("{location}/deliveries?limit=1"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["event_type"], "type-10");
    let next = page["next_cursor"].as_str().expect("one more");
    let (_, rest) = status_and_json(
        app.get(
            "alice",
            &format!("{location}/deliveries?limit=1&cursor={next}"),
        )
        .await,
    )
    .await;
    assert_eq!(rest["items"][0]["event_type"], "type-9", "{rest}");
    app.finish().await;
}
