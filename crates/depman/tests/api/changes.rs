use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, deployment, status_and_json};

async fn created(app: &TestApp, user: &str, body: &Value) -> String {
    let (status, request) = status_and_json(app.create(user, body).await).await;
    assert_eq!(status, 202);
    request["id"]
        .as_str()
        .expect("the request has an id")
        .to_owned()
}

#[tokio::test]
async fn patch_merges_into_the_desired_spec_and_records_the_full_spec() {
    let app = TestApp::spawn().await;
    let mut body = deployment("web");
    body["identifier"] = json!("web");
    body["env"] = json!({"A": "1", "B": "2"});
    let id = created(&app, "alice", &body).await;

    let patch = json!({"image": "nginx:1.28", "env": {"B": null, "C": "3"}});
    let response = app.patch("alice", &id, &patch).await;
    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key("location"));
    let (_, update) = status_and_json(response).await;
    assert_eq!(update["request_type"], "UPDATE");
    assert_eq!(update["identifier"], "web");
    assert_eq!(update["image"], "nginx:1.28");
    assert_eq!(update["spec"]["env"], json!({"A": "1", "C": "3"}));
    assert_eq!(
        update["spec"]["replicas"], 2,
        "fields not in the patch are kept"
    );

    // A second PATCH, through the new request's id, merges into the result.
    let update_id = update["id"].as_str().unwrap();
    let (_, again) =
        status_and_json(app.patch("alice", update_id, &json!({"replicas": 5})).await).await;
    assert_eq!(again["spec"]["image"], "nginx:1.28");
    assert_eq!(again["spec"]["replicas"], 5);

    let sequences: Vec<(String, i64)> = sqlx::query_as(
        "SELECT request_type, sequence FROM deployment_requests WHERE identifier = 'web' ORDER BY sequence",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        sequences,
        [
            ("CREATE".into(), 1),
            ("UPDATE".into(), 2),
            ("UPDATE".into(), 3)
        ]
    );
    let published: Vec<i64> = app.published(3).await.iter().map(|m| m.sequence).collect();
    assert_eq!(published, [1, 2, 3], "published in acceptance order");
    app.finish().await;
}

#[tokio::test]
async fn patch_cannot_change_what_names_the_deployment() {
    let app = TestApp::spawn().await;
    let id = created(&app, "alice", &deployment("web")).await;
    for field in ["name", "namespace", "identifier"] {
        let response = app.patch("alice", &id, &json!({ field: "other" })).await;
        assert_problem(response, 422, Some(field)).await;
    }
    assert_problem(
        app.patch("alice", &id, &json!({"colour": "blue"})).await,
        422,
        Some("colour"),
    )
    .await;
    assert_problem(
        app.patch("alice", &id, &json!({"replicas": -1})).await,
        422,
        Some("replicas"),
    )
    .await;
    assert_problem(
        app.patch("alice", &id, &json!({"image": null})).await,
        422,
        Some("image"),
    )
    .await;
    assert_problem(
        app.patch("alice", &id, &json!({"ports": [{"container_port": "x"}]}))
            .await,
        422,
        Some("ports[0].container_port"),
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn patch_and_delete_of_an_unknown_request_are_404() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_problem(
        app.patch("alice", &unknown, &json!({"replicas": 1})).await,
        404,
        None,
    )
    .await;
    assert_problem(app.delete("alice", &unknown).await, 404, None).await;
    assert_problem(
        app.get("alice", &format!("/api/v1/deployments/requests/{unknown}"))
            .await,
        404,
        None,
    )
    .await;
    assert_problem(app.delete("alice", "not-a-uuid").await, 422, Some("id")).await;
    app.finish().await;
}

#[tokio::test]
async fn delete_is_accepted_once_and_then_the_deployment_cannot_change() {
    let app = TestApp::spawn().await;
    let id = created(&app, "alice", &deployment("web")).await;
    let response = app.delete("alice", &id).await;
    assert_eq!(response.status(), 202);
    let (_, delete) = status_and_json(response).await;
    assert_eq!(delete["request_type"], "DELETE");
    assert_eq!(delete["spec"]["image"], "nginx:1.27");

    let being_deleted = assert_problem(app.delete("alice", &id).await, 409, None).await;
    assert!(
        being_deleted["detail"]
            .as_str()
            .unwrap()
            .contains("being deleted"),
        "{being_deleted}"
    );
    assert_problem(
        app.patch("alice", &id, &json!({"replicas": 3})).await,
        409,
        None,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_deleted_or_failed_deployment_cannot_change() {
    let app = TestApp::spawn().await;
    for status in ["DELETED", "FAILED"] {
        let id = created(&app, "alice", &deployment("web")).await;
        sqlx::query("UPDATE deployments SET status = $1 WHERE identifier = (SELECT identifier FROM deployment_requests WHERE id = $2)")
            .bind(status)
            .bind(id.parse::<uuid::Uuid>().unwrap())
            .execute(&app.pool)
            .await
            .unwrap();
        assert_problem(
            app.patch("alice", &id, &json!({"replicas": 3})).await,
            409,
            None,
        )
        .await;
        assert_problem(app.delete("alice", &id).await, 409, None).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn patch_and_delete_replay_with_the_same_key() {
    let app = TestApp::spawn().await;
    let id = created(&app, "alice", &deployment("web")).await;
    let patch = |key: &'static str, body: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.request(
                reqwest::Method::PATCH,
                &format!("/api/v1/deployments/requests/{id}"),
                "alice",
            )
            .header("X-Request-ID", key)
            .json(&body)
            .send()
            .await
            .unwrap()
        }
    };
    assert_eq!(patch("p-1", json!({"replicas": 3})).await.status(), 202);
    let replay = patch("p-1", json!({"replicas": 3})).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_problem(patch("p-1", json!({"replicas": 4})).await, 422, None).await;
    app.finish().await;
}

#[tokio::test]
async fn the_progress_deadline_is_part_of_the_spec_from_10_to_3600_seconds() {
    let app = TestApp::spawn().await;
    let (_, plain) = status_and_json(app.create("alice", &deployment("web")).await).await;
    assert_eq!(plain["spec"]["progress_deadline_seconds"], 600, "{plain}");

    for bad in [json!(9), json!(3601), json!(30.5), json!("60")] {
        let mut body = deployment("api");
        body["progress_deadline_seconds"] = bad;
        assert_problem(
            app.create("alice", &body).await,
            422,
            Some("progress_deadline_seconds"),
        )
        .await;
    }
    let mut body = deployment("api");
    body["progress_deadline_seconds"] = json!(30);
    let id = created(&app, "alice", &body).await;
    let (_, patched) = status_and_json(
        app.patch("alice", &id, &json!({"progress_deadline_seconds": 120}))
            .await,
    )
    .await;
    assert_eq!(
        patched["spec"]["progress_deadline_seconds"], 120,
        "{patched}"
    );
    // `null` puts Kubernetes' default back.
    let (_, reset) = status_and_json(
        app.patch("alice", &id, &json!({"progress_deadline_seconds": null}))
            .await,
    )
    .await;
    assert_eq!(reset["spec"]["progress_deadline_seconds"], 600, "{reset}");
    app.finish().await;
}

#[tokio::test]
async fn a_patch_removing_a_key_names_a_key_the_field_could_hold() {
    let app = TestApp::spawn().await;
    let id = created(&app, "alice", &deployment("web")).await;
    for (patch, field) in [
        (json!({"labels": {"": null}}), "labels"),
        (json!({"labels": {"depman.io/owner": null}}), "labels"),
        (json!({"env": {"1X": null}}), "env"),
        (json!({"annotations": {"bad key": null}}), "annotations"),
    ] {
        assert_problem(app.patch("alice", &id, &patch).await, 422, Some(field)).await;
    }
    let removes = app
        .patch("alice", &id, &json!({"labels": {"tier": null}}))
        .await;
    assert_eq!(
        removes.status(),
        202,
        "removing a valid key that is absent is fine"
    );
    app.finish().await;
}
