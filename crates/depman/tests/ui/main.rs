//! The dashboard in a real Chromium against a real depman (api, worker and
//! watcher in the test's process) on the local environment: each test has
//! its own database, stream prefix, namespace and browser. Screenshots of
//! each page go to `<target>/tmp/ui-screenshots/<test>/`.

mod browser;
#[allow(dead_code)] // the worker tests use the rest
#[path = "../worker/cluster.rs"]
mod cluster;
#[path = "../support/mod.rs"]
mod helpers;

use std::time::Duration;

use serde_json::{Value, json};

use browser::Browser;
use cluster::{Cluster, deployment, stack};
use helpers::{DEX_CLIENT, DEX_USERS, TestApp, dex_token, environment, status_and_json};

const WITHIN: Duration = Duration::from_secs(60);

/// Creates `name` for alice and waits until its rollout is complete.
async fn created(app: &TestApp, cluster: &Cluster, name: &str) -> Value {
    let (status, request) = status_and_json(
        app.create("alice", &deployment(name, &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{request}");
    rolled_out(app, &request).await
}

async fn rolled_out(app: &TestApp, request: &Value) -> Value {
    let id = request["id"].as_str().expect("an id");
    app.request_until("alice", id, WITHIN, |r| {
        r["rollout"]["state"]
            .as_str()
            .is_some_and(|s| s != "PROGRESSING")
            || r["status"] == "FAILURE"
    })
    .await
}

/// Ends a test: the page logged no error, and everything it started stops.
async fn finish(browser: Browser, app: TestApp, cluster: Option<Cluster>) {
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    app.finish().await;
    if let Some(cluster) = cluster {
        cluster.finish().await;
    }
}

/// Nothing on the page runs off the side of the window.
async fn assert_fits(browser: &Browser) {
    let overflow = browser
        .script("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "overflow {overflow}"
    );
}

/// The identifiers the deployments page shows, top to bottom.
async fn listed(browser: &Browser) -> Vec<String> {
    browser
        .texts("table.deployments tbody tr td:first-child")
        .await
}

/// The text of the row of `identifier` on the deployments page.
fn row(identifier: &str) -> String {
    format!("table.deployments tr[data-identifier=\"{identifier}\"]")
}

#[tokio::test]
async fn the_deployments_page_lists_what_the_api_lists_and_follows_it_live() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    created(&app, &cluster, "alpha").await;
    created(&app, &cluster, "beta").await;

    let browser = Browser::open(app.addr, "deployments").await;
    browser.sign_in("alice", "#/").await;
    browser
        .wait_text(&row("beta"), |text| text.contains("HEALTHY"))
        .await;
    let (_, page) = status_and_json(app.get("alice", "/api/v1/deployments").await).await;
    let from_api: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["identifier"].as_str().expect("identifier").to_owned())
        .collect();
    assert_eq!(listed(&browser).await, from_api);
    assert_eq!(from_api, ["beta", "alpha"]);
    let alpha = browser.wait_text(&row("alpha"), |_| true).await;
    for shown in [
        cluster.namespace.as_str(),
        "nginx:1.27",
        "1/1",
        "CREATED",
        "HEALTHY",
    ] {
        assert!(alpha.contains(shown), "{shown} in {alpha:?}");
    }
    browser.screenshot("deployments").await;

    // Created through the API while the page is open: it appears, and turns
    // healthy, without a reload (the mark set on this page survives).
    browser.script("window.notReloaded = true").await;
    let (status, _) = status_and_json(
        app.create("alice", &deployment("gamma", &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(status, 202);
    browser
        .wait_text(&row("gamma"), |text| {
            text.contains("HEALTHY") && text.contains("1/1")
        })
        .await;
    assert_eq!(listed(&browser).await, ["gamma", "beta", "alpha"]);
    assert_eq!(
        browser.script("return window.notReloaded").await,
        json!(true)
    );

    // The search asks the API, which matches part of the identifier.
    browser.fill("search", "amm").await;
    browser
        .wait_text("table.deployments tbody", |text| !text.contains("alpha"))
        .await;
    assert_eq!(listed(&browser).await, ["gamma"]);

    // On a phone-width screen nothing runs off the side.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("resize");
    browser.fill("search", "a").await;
    browser
        .wait_text("table.deployments tbody", |text| text.contains("alpha"))
        .await;
    assert_fits(&browser).await;
    browser.screenshot("deployments-phone").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    // Bob sees none of it, in the list or by its address.
    browser
        .client
        .set_window_size(1280, 900)
        .await
        .expect("resize");
    browser.click("#who button").await;
    browser.sign_in("bob", "#/").await;
    browser
        .wait_text(".summary", |text| text.contains("No deployments"))
        .await;
    assert!(listed(&browser).await.is_empty());
    browser.go("#/d/alpha").await;
    browser
        .wait_text("main h1", |text| text == "Not found")
        .await;
    finish(browser, app, Some(cluster)).await;
}

#[tokio::test]
async fn a_crash_loop_shows_degraded_with_its_reason_on_every_page() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let first = created(&app, &cluster, "web").await;

    let browser = Browser::open(app.addr, "degraded").await;
    browser.sign_in("alice", "#/d/web").await;
    browser
        .wait_text(".deployment-head", |text| text.contains("HEALTHY"))
        .await;
    let (status, update) = status_and_json(
        app.patch(
            "alice",
            first["id"].as_str().expect("id"),
            &json!({"image": "chaos.invalid/crash-loop"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{update}");
    let head = browser
        .wait_text(".deployment-head", |text| text.contains("DEGRADED"))
        .await;
    assert!(
        head.contains("The container keeps crashing (CrashLoopBackOff)"),
        "{head}"
    );
    let rollout = browser
        .wait_text(".rollout", |text| text.contains("FAILED"))
        .await;
    assert!(rollout.contains("CrashLoopBackOff"), "{rollout}");
    browser.screenshot("deployment-degraded").await;
    // The reason stays readable on a phone: nothing runs off the side.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("resize");
    assert_fits(&browser).await;
    browser.screenshot("deployment-degraded-phone").await;
    browser
        .client
        .set_window_size(1280, 900)
        .await
        .expect("resize");

    browser.go("#/").await;
    let listed = browser.wait_text(&row("web"), |_| true).await;
    assert!(
        listed.contains("DEGRADED") && listed.contains("CrashLoopBackOff"),
        "{listed}"
    );

    // The event log says the same, newest first, and filters by type. The
    // crash loop may still add events, which the page shows live: compare
    // once the two agree on the newest.
    browser.go("#/events").await;
    browser
        .wait_text("table.events tbody", |text| text.contains("rollout.failed"))
        .await;
    let started = std::time::Instant::now();
    loop {
        let (_, log) = status_and_json(app.get("alice", "/api/v1/events?limit=500").await).await;
        let mut from_api: Vec<String> = log["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["type"].as_str().expect("type").to_owned())
            .collect();
        from_api.reverse();
        let shown = browser.texts("table.events tbody tr td:nth-child(2)").await;
        if shown == from_api {
            break;
        }
        assert!(started.elapsed() < WITHIN, "{shown:?} against {from_api:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    browser.screenshot("events").await;
    let select = browser.find("[name=type]").await;
    select
        .select_by_value("rollout.failed")
        .await
        .expect("choose a type");
    browser
        .wait_text("table.events tbody", |text| {
            !text.is_empty() && !text.contains("request.accepted")
        })
        .await;
    let types = browser.texts("table.events tbody tr td:nth-child(2)").await;
    assert_eq!(types, ["rollout.failed"]);
    finish(browser, app, Some(cluster)).await;
}

#[tokio::test]
async fn the_create_form_shows_the_servers_field_errors_and_creates() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let browser = Browser::open(app.addr, "create").await;
    browser.sign_in("alice", "#/create").await;

    browser.fill("name", "shop").await;
    browser.fill("namespace", &cluster.namespace).await;
    browser.fill("image", "nginx:1.27").await;
    browser.fill("replicas", "5000").await;
    // The hint, as it is typed: the server's rule, said on the page.
    let hint = browser
        .wait_text("[data-field=replicas] .field-error", |t| !t.is_empty())
        .await;
    assert_eq!(hint, "0 to 1000");
    browser.fill("env", "1BAD=x").await;
    browser.click("form.create button[type=submit]").await;
    // Then the server's own words, naming the field.
    let replicas = browser
        .wait_text("[data-field=replicas] .field-error", |t| {
            t.starts_with("replicas:")
        })
        .await;
    assert_eq!(replicas, "replicas: must be between 0 and 1000");
    let env = browser
        .wait_text("[data-field=env] .field-error", |_| true)
        .await;
    assert!(env.starts_with("env: "), "{env}");
    assert_eq!(
        browser.script("return document.activeElement.name").await,
        json!("replicas"),
        "the first invalid field has the focus"
    );
    let (_, requests) =
        status_and_json(app.get("alice", "/api/v1/deployments/requests").await).await;
    assert_eq!(requests["items"], json!([]), "nothing was recorded");
    browser.screenshot("create-errors").await;

    browser.fill("replicas", "2").await;
    browser.fill("env", "MODE=shop").await;
    browser.click("form.create button[type=submit]").await;
    browser
        .wait_text(".deployment-head", |text| text.contains("HEALTHY"))
        .await;
    let identifier = browser.wait_text("main h1", |_| true).await;
    assert!(identifier.starts_with("shop-"), "{identifier}");
    let live = cluster
        .deployment(&identifier)
        .await
        .expect("in the cluster");
    assert_eq!(live.spec.replicas, Some(2));
    let rollout = browser.wait_text(".rollout", |_| true).await;
    assert!(
        rollout.contains("COMPLETE") && rollout.contains("Ready: 2/2"),
        "{rollout}"
    );
    browser.screenshot("deployment").await;
    finish(browser, app, Some(cluster)).await;
}

#[tokio::test]
async fn an_edit_shows_its_diff_first_and_a_rollback_restores_the_image() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    created(&app, &cluster, "api").await;
    let browser = Browser::open(app.addr, "edit").await;
    browser.sign_in("alice", "#/d/api").await;
    browser
        .wait_text(".deployment-head", |text| text.contains("HEALTHY"))
        .await;

    browser.click(".deployment-head .actions button").await;
    browser.fill("image", "nginx:1.28").await;
    browser.click("form.edit button[type=submit]").await;
    let diff = browser.wait_text("dialog .diff", |t| !t.is_empty()).await;
    assert!(
        diff.contains("/spec/template/spec/containers/0/image")
            && diff.contains("nginx:1.27")
            && diff.contains("nginx:1.28"),
        "{diff}"
    );
    browser.screenshot("edit-diff").await;
    assert_eq!(
        cluster.image("api").await.as_deref(),
        Some("nginx:1.27"),
        "a preview changes nothing"
    );
    browser.click("dialog button.primary").await;
    browser
        .wait_text(".revisions tbody tr:first-child", |t| {
            t.contains("nginx:1.28")
        })
        .await;
    assert_eq!(cluster.image("api").await.as_deref(), Some("nginx:1.28"));
    browser
        .wait_text(".deployment-head", |text| text.contains("HEALTHY"))
        .await;

    // Revision 1 was nginx:1.27: roll back to it from the history.
    browser
        .click(".revisions tr[data-revision=\"1\"] button")
        .await;
    let diff = browser.wait_text("dialog .diff", |t| !t.is_empty()).await;
    assert!(
        diff.contains("nginx:1.28") && diff.contains("nginx:1.27"),
        "{diff}"
    );
    browser.click("dialog button.primary").await;
    let top = browser
        .wait_text(".revisions tbody tr:first-child", |t| t.contains("← 1"))
        .await;
    assert!(top.contains("nginx:1.27"), "{top}");
    let started = std::time::Instant::now();
    while cluster.image("api").await.as_deref() != Some("nginx:1.27") {
        assert!(
            started.elapsed() < WITHIN,
            "the rollback never reached the cluster"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("history").await;

    // Delete asks first, showing what would go; then the Deployment goes.
    browser.click(".deployment-head button.danger").await;
    let going = browser.wait_text("dialog .diff", |t| !t.is_empty()).await;
    assert!(going.contains("/spec/replicas"), "{going}");
    assert!(
        cluster.deployment("api").await.is_some(),
        "asking deletes nothing"
    );
    browser.click("dialog button.danger").await;
    browser
        .wait_text(".deployment-head .status", |t| t == "DELETED")
        .await;
    assert!(cluster.deployment("api").await.is_none());
    finish(browser, app, Some(cluster)).await;
}

#[tokio::test]
async fn a_waiting_request_can_be_cancelled_from_its_deployment_page() {
    // No worker: the CREATE waits in the queue.
    let app = TestApp::spawn().await;
    let (status, _) =
        status_and_json(app.create("alice", &deployment("queued", "default")).await).await;
    assert_eq!(status, 202);
    let browser = Browser::open(app.addr, "cancel").await;
    browser.sign_in("alice", "#/d/queued").await;
    let waiting = browser
        .wait_text(".requests tbody tr:first-child", |t| t.contains("WAITING"))
        .await;
    assert!(waiting.contains("CREATE"), "{waiting}");
    browser.click(".requests tbody tr:first-child button").await;
    let cancelled = browser
        .wait_text(".requests tbody tr:first-child", |t| t.contains("FAILURE"))
        .await;
    assert!(cancelled.contains("cancelled by alice"), "{cancelled}");
    browser
        .wait_text(".deployment-head .status", |t| t == "FAILED")
        .await;
    finish(browser, app, None).await;
}

#[tokio::test]
async fn with_bearer_tokens_the_dashboard_signs_in_with_a_token() {
    let issuer = environment("DEPMAN_TEST_OIDC_ISSUER");
    let mut settings = helpers::test_api_settings();
    settings.auth.auth = depman::settings::AuthMode::Jwt;
    settings.auth.jwt.jwt_issuer = issuer.clone();
    settings.auth.jwt.jwt_audience = DEX_CLIENT.0.to_owned();
    let app = TestApp::spawn_with_api(settings).await;
    // The test client sends alice's Dex token.
    let (status, _) =
        status_and_json(app.create("alice", &deployment("tokened", "default")).await).await;
    assert_eq!(status, 202);
    let [(_, alice, alices), (_, bob, bobs)] = DEX_USERS;

    let browser = Browser::open(app.addr, "token").await;
    browser.go("").await;
    let label = browser
        .wait_text("label[for=field-credential]", |_| true)
        .await;
    assert_eq!(label, "Bearer token");
    browser
        .sign_in(&dex_token(&issuer, alice, alices).await, "#/")
        .await;
    browser
        .wait_text(&row("tokened"), |t| t.contains("INITIATED"))
        .await;
    assert_eq!(
        browser.wait_text("#who span", |_| true).await,
        format!("Signed in as {alice}")
    );

    browser.click("#who button").await;
    browser
        .sign_in(&dex_token(&issuer, bob, bobs).await, "#/")
        .await;
    browser
        .wait_text(".summary", |text| text.contains("No deployments"))
        .await;
    // A token the api refuses sends the dashboard back to its sign-in.
    browser
        .script("sessionStorage.setItem('depman.token', 'not-a-token')")
        .await;
    browser.go("#/events").await;
    let refused = browser
        .wait_text("form [role=alert]", |t| !t.is_empty())
        .await;
    assert!(refused.contains("token"), "{refused}");
    assert_eq!(
        browser
            .script("return sessionStorage.getItem('depman.token')")
            .await,
        Value::Null
    );
    finish(browser, app, None).await;
}

#[tokio::test]
async fn the_list_pages_through_many_deployments_and_resumes_after_the_stream_drops() {
    // No worker: the deployments stay INITIATED, which is all a list needs.
    let mut app = TestApp::spawn().await;
    for index in 0..120 {
        let name = format!("svc-{index:03}");
        let (status, _) =
            status_and_json(app.create("alice", &deployment(&name, "default")).await).await;
        assert_eq!(status, 202);
    }
    let browser = Browser::open(app.addr, "paging").await;
    browser.sign_in("alice", "#/").await;
    browser
        .wait_text(".summary", |t| t == "Page 1: 50 deployments")
        .await;
    let first = listed(&browser).await;
    assert_eq!(first.first().map(String::as_str), Some("svc-119"));
    assert_eq!(first.last().map(String::as_str), Some("svc-070"));
    browser.click(".pager button:last-child").await;
    browser
        .wait_text(".summary", |t| t == "Page 2: 50 deployments")
        .await;
    browser.click(".pager button:last-child").await;
    browser
        .wait_text(".summary", |t| t == "Page 3: 20 deployments")
        .await;
    assert_eq!(
        listed(&browser).await.last().map(String::as_str),
        Some("svc-000")
    );
    let older = browser.find(".pager button:last-child").await;
    assert!(
        !older.is_enabled().await.expect("enabled?"),
        "no page after the last"
    );
    browser.click(".pager button:first-child").await;
    browser.click(".pager button:first-child").await;
    browser
        .wait_text(".summary", |t| t == "Page 1: 50 deployments")
        .await;
    assert_eq!(listed(&browser).await, first);

    // The api restarts: the page's stream ends, it reconnects after the last
    // event it saw, and what happened in between appears without a reload.
    browser.script("window.notReloaded = true").await;
    browser.wait_text("#live", |t| t == "Live").await;
    app.restart_api().await;
    let (status, _) = status_and_json(
        app.create("alice", &deployment("after-restart", "default"))
            .await,
    )
    .await;
    assert_eq!(status, 202);
    browser
        .wait_text("table.deployments tbody tr:first-child", |t| {
            t.contains("after-restart")
        })
        .await;
    assert_eq!(
        browser.script("return window.notReloaded").await,
        json!(true)
    );
    browser.wait_text("#live", |t| t == "Live").await;
    finish(browser, app, None).await;
}
