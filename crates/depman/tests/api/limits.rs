//! Namespaces and limits (contract: "Namespaces and limits"): where a user
//! may create, and how many live deployments they may have.

use serde_json::json;

use crate::helpers::{
    TestApp, assert_problem, deployment, status_and_json, test_api_settings, unique,
};

fn into(namespace: &str, name: &str) -> serde_json::Value {
    let mut body = deployment(name);
    body["namespace"] = json!(namespace);
    body["identifier"] = json!(unique(name).replace('_', "-"));
    body
}

#[tokio::test]
async fn reserved_namespaces_are_refused_and_a_policy_decides_the_rest() {
    let open = TestApp::spawn().await;
    for namespace in ["kube-system", "kube-public", "kube-node-lease"] {
        let refused = open.create("alice", &into(namespace, "web")).await;
        let problem = assert_problem(refused, 403, None).await;
        assert_eq!(problem["code"], "namespace-forbidden", "{namespace}");
    }
    let (status, _) = status_and_json(open.create("alice", &into("team-a", "web")).await).await;
    assert_eq!(status, 202);
    open.finish().await;

    let file = std::env::temp_dir().join(format!("{}.yaml", unique("policy")));
    std::fs::write(&file, "users:\n  alice: ['team-a-*', sandbox]\n").expect("write the policy");
    let mut settings = test_api_settings();
    settings.namespace_policy = file.display().to_string();
    settings.own_namespace = "dep-manager".into();
    let app = TestApp::spawn_with_api(settings).await;
    for (user, namespace, allowed) in [
        ("alice", "team-a-web", true),
        ("alice", "sandbox", true),
        ("alice", "team-b-web", false),
        ("alice", "dep-manager", false),
        ("alice", "kube-system", false),
        ("bob", "team-a-web", false),
    ] {
        let response = app.create(user, &into(namespace, "web")).await;
        if allowed {
            assert_eq!(response.status(), 202, "{user} in {namespace}");
        } else {
            let problem = assert_problem(response, 403, None).await;
            assert_eq!(
                problem["code"], "namespace-forbidden",
                "{user} in {namespace}"
            );
        }
    }
    // A dry run says the same, before any worker is asked.
    let dry = app
        .request(
            reqwest::Method::POST,
            "/api/v1/deployments/requests/create?dry_run=true",
            "alice",
        )
        .json(&into("team-b-web", "web"))
        .send()
        .await
        .expect("a dry run");
    assert_problem(dry, 403, None).await;
    app.finish().await;
    std::fs::remove_file(file).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quota_counts_live_deployments_even_under_concurrent_creates() {
    let mut settings = test_api_settings();
    settings.max_deployments_per_user = 3;
    let app = TestApp::spawn_with_api(settings).await;
    let body = into("team-a", "web");
    let (status, first) = status_and_json(app.create_with_key("alice", "first", &body).await).await;
    assert_eq!(status, 202, "{first}");

    // Sixteen at once for the two places left: two get them.
    let creates = (0..16).map(|i| {
        let app = &app;
        async move {
            app.create("alice", &into("team-a", &format!("web{i}")))
                .await
        }
    });
    let answers = futures::future::join_all(creates).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 202).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 403).count(),
        14,
        "{statuses:?}"
    );
    let full = app.create("alice", &into("team-a", "more")).await;
    let problem = assert_problem(full, 403, None).await;
    assert_eq!(problem["code"], "quota-exceeded");

    // A replay is still a replay, and the quota is per user.
    let (status, replay) =
        status_and_json(app.create_with_key("alice", "first", &body).await).await;
    assert_eq!((status, &replay["id"]), (200, &first["id"]));
    let (status, _) = status_and_json(app.create("bob", &into("team-a", "web")).await).await;
    assert_eq!(status, 202);
    app.finish().await;
}

#[tokio::test]
async fn changes_past_the_rate_limit_are_429_until_retry_after() {
    let mut settings = test_api_settings();
    settings.rate_limit = "1/s".parse().expect("a rate");
    settings.rate_limit_burst = 2;
    let app = TestApp::spawn_with_api(settings).await;
    for _ in 0..2 {
        let response = app.create("alice", &into("team-a", "web")).await;
        assert_eq!(response.status(), 202);
        let headers = response.headers();
        assert_eq!(headers["ratelimit-policy"], "\"changes\";q=2;w=2");
        assert!(headers.contains_key("ratelimit"));
    }
    let refused = app.create("alice", &into("team-a", "web")).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert_eq!(refused.headers()["ratelimit"], "\"changes\";r=0;t=1");
    // A bearer token, which header mode ignores, buys no fresh budget.
    let disguised = app
        .request(
            reqwest::Method::POST,
            "/api/v1/deployments/requests/create",
            "alice",
        )
        .bearer_auth("anything-at-all")
        .json(&into("team-a", "web"))
        .send()
        .await
        .expect("a response");
    assert_eq!(disguised.status(), 429);
    let problem = assert_problem(refused, 429, None).await;
    assert_eq!(problem["code"], "rate-limited");
    assert_eq!(retry_after, 1);
    // Reads are not limited, and other users have their own budget.
    let (status, _) = status_and_json(app.get("alice", "/api/v1/deployments").await).await;
    assert_eq!(status, 200);
    let (status, _) = status_and_json(app.create("bob", &into("team-a", "web")).await).await;
    assert_eq!(status, 202);

    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let (status, body) = status_and_json(app.create("alice", &into("team-a", "web")).await).await;
    assert_eq!(status, 202, "{body}");
    app.finish().await;
}

#[tokio::test]
async fn x_user_id_is_believed_only_from_a_trusted_proxy() {
    let mut settings = test_api_settings();
    settings.trusted_proxies = "10.0.0.0/8, fd00::/8".parse().expect("a list");
    let elsewhere = TestApp::spawn_with_api(settings).await;
    let refused = elsewhere.get("alice", "/api/v1/deployments").await;
    let problem = assert_problem(refused, 401, None).await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("trusted proxy")),
        "{problem}"
    );
    let (status, _) = status_and_json(elsewhere.get("alice", "/api/v1/ping").await).await;
    assert_eq!(status, 200, "liveness needs no caller");
    elsewhere.finish().await;

    let mut settings = test_api_settings();
    settings.trusted_proxies = "10.0.0.0/8, 127.0.0.1".parse().expect("a list");
    let here = TestApp::spawn_with_api(settings).await;
    let (status, _) = status_and_json(here.get("alice", "/api/v1/deployments").await).await;
    assert_eq!(status, 200);
    here.finish().await;
}
