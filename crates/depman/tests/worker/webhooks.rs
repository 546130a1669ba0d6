//! Webhooks (contract: "Webhooks"): a receiver on loopback gets every event
//! of its owner, signed as Standard Webhooks says, in order, at least once:
//! through failures it answers, across a worker killed outright, and never
//! at an address the worker refuses.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use depman::webhooks::signature::sign;
use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, event_pages, status_and_json},
};

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
    answered: u16,
}

/// An HTTP server on loopback that records every delivery and answers as
/// `answer` says for the n-th (from 0).
#[derive(Clone)]
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(answer: impl Fn(usize) -> (u16, Duration) + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync> = Arc::new(answer);
        let state: ReceiverState = (received.clone(), answer);
        let router = Router::new().route("/hook", post(record)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("a bound address")
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .expect("the lock is not poisoned")
            .clone()
    }

    /// The ids of the deliveries it accepted, first acceptance only.
    fn accepted_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for delivery in self.received() {
            if delivery.answered < 300 && !ids.contains(&delivery.id) {
                ids.push(delivery.id);
            }
        }
        ids
    }
}

type ReceiverState = (
    Arc<Mutex<Vec<Received>>>,
    Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>,
);

async fn record(
    State((received, answer)): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header").to_owned())
            .unwrap_or_default()
    };
    let n = received.lock().expect("the lock is not poisoned").len();
    let (status, delay) = answer(n);
    received
        .lock()
        .expect("the lock is not poisoned")
        .push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
            answered: status,
        });
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).expect("a status code")
}

async fn register(app: &TestApp, user: &str, body: Value) -> (String, String) {
    let (status, created) = status_and_json(
        app.request(reqwest::Method::POST, "/api/v1/webhooks", user)
            .json(&body)
            .send()
            .await
            .expect("the request is sent"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().expect("a string").to_owned(),
        created["secret"].as_str().expect("a string").to_owned(),
    )
}

async fn deliveries(app: &TestApp, user: &str, webhook: &str) -> Vec<Value> {
    let (status, page) = status_and_json(
        app.get(
            user,
            &format!("/api/v1/webhooks/{webhook}/deliveries?limit=500"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().expect("an array").clone()
}

/// Waits until the receiver accepted every event of `user`'s log, and
/// returns the log's ids.
async fn all_delivered(
    app: &TestApp,
    user: &str,
    query: &str,
    receiver: &Receiver,
    within: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (events, _) = event_pages(app, user, query, None).await;
        let log: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().expect("a string").to_owned())
            .collect();
        let accepted = receiver.accepted_ids();
        if !log.is_empty() && accepted.len() >= log.len() {
            assert_eq!(accepted, log, "every event once accepted, in log order");
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered {} of {} events",
            accepted.len(),
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rolled_out(app: &TestApp, user: &str, ids: &[String]) {
    for id in ids {
        app.request_until(user, id, Duration::from_secs(60), |r| {
            r["rollout"]["state"] == "COMPLETE"
        })
        .await;
    }
}

async fn create(app: &TestApp, user: &str, name: &str, namespace: &str) -> String {
    let (status, request) =
        status_and_json(app.create(user, &deployment(name, namespace)).await).await;
    assert_eq!(status, 202, "{request}");
    request["id"].as_str().expect("a string").to_owned()
}

#[tokio::test]
async fn deliveries_are_signed_in_order_and_retried_through_failures() {
    let cluster = Cluster::with_namespace().await;
    let app = crate::cluster::stack(&cluster).await;
    // The first three attempts fail.
    let receiver = Receiver::start(|n| (if n < 3 { 500 } else { 204 }, Duration::ZERO)).await;
    let (webhook, secret) = register(&app, "alice", json!({"url": receiver.url})).await;
    // Bob's events are not Alice's webhook's business.
    create(&app, "bob", "bobs", &cluster.namespace).await;
    let ids = vec![
        create(&app, "alice", "one", &cluster.namespace).await,
        create(&app, "alice", "two", &cluster.namespace).await,
    ];
    rolled_out(&app, "alice", &ids).await;
    // Both rollouts' ends are in the log before it is compared.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while event_pages(&app, "alice", "type=rollout.completed", None)
        .await
        .0
        .len()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rollout.completed events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = all_delivered(&app, "alice", "", &receiver, Duration::from_secs(60)).await;

    let received = receiver.received();
    assert_eq!(
        received[..4].iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 500, 204]
    );
    assert!(
        received[..4].iter().all(|r| r.id == log[0]),
        "the failing event is retried before any other"
    );
    for delivery in &received {
        let timestamp: i64 = delivery.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 120);
        assert_eq!(
            delivery.signature,
            sign(&secret, &delivery.id, timestamp, &delivery.body)
        );
        let event: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(event["id"], delivery.id.as_str());
        assert_eq!(event["actor"], "alice", "{event:#}");
    }
    let types: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"].clone())
        .collect();
    assert!(types.contains(&json!("request.succeeded")));
    assert!(types.contains(&json!("rollout.completed")));

    let listed = deliveries(&app, "alice", &webhook).await;
    assert_eq!(listed.len(), log.len());
    let first = listed.last().unwrap();
    assert_eq!(first["event_id"], log[0].as_str());
    assert_eq!(first["attempts"], 4);
    assert_eq!(first["state"], "DELIVERED");
    assert_eq!(first["last_status_code"], 204);
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_loses_no_event() {
    let cluster = Cluster::with_namespace().await;
    let app = TestApp::spawn().await;
    // Slow answers: the worker is killed while one is in flight.
    let receiver = Receiver::start(|_| (200, Duration::from_millis(300))).await;
    register(
        &app,
        "alice",
        json!({"url": receiver.url, "types": ["request.accepted"]}),
    )
    .await;
    let mut deliverer = app.worker_process(&[]);
    for n in 0..10 {
        create(&app, "alice", &format!("d{n}"), &cluster.namespace).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receiver.received().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no delivery began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deliverer.kill().expect("SIGKILL the worker");
    deliverer.wait().expect("reap it");
    let delivered_at_kill = receiver.accepted_ids().len();
    assert!(
        delivered_at_kill < 10,
        "all delivered before the kill: nothing was tested"
    );
    // Its successor takes the webhook over once the lease lapses.
    let mut successor = app.worker_process(&[]);
    let log = all_delivered(
        &app,
        "alice",
        "type=request.accepted",
        &receiver,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(log.len(), 10);
    successor.kill().unwrap();
    successor.wait().unwrap();
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_disabled_and_an_inside_address_is_refused() {
    let cluster = Cluster::with_namespace().await;
    let app = TestApp::spawn().await;
    // Registering: a name that resolves to loopback is refused.
    let response = app
        .request(reqwest::Method::POST, "/api/v1/webhooks", "alice")
        .json(&json!({"url": "http://localhost:9/hook"}))
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::assert_problem(response, 422, Some("url")).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("resolves to"),
        "{problem}"
    );

    let failing = Receiver::start(|_| (503, Duration::ZERO)).await;
    let (disabled, _) = register(
        &app,
        "alice",
        json!({"url": failing.url, "types": ["request.accepted"]}),
    )
    .await;
    // This api allows 127.0.0.1; the worker below does not, and checks
    // again at delivery.
    let refused = Receiver::start(|_| (200, Duration::ZERO)).await;
    let (inside, _) = register(&app, "bob", json!({"url": refused.url})).await;
    // A worker that gives up after 2 s; then one that refuses loopback.
    let mut giving_up = app.worker_process(&[("DEPMAN_WEBHOOK_RETRY_FOR", "2s")]);
    create(&app, "alice", "a", &cluster.namespace).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let webhook = loop {
        let (_, webhook) = status_and_json(
            app.get("alice", &format!("/api/v1/webhooks/{disabled}"))
                .await,
        )
        .await;
        if !webhook["disabled_on"].is_null() {
            break webhook;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never disabled: {webhook}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        webhook["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("DEPMAN_WEBHOOK_RETRY_FOR")
    );
    let attempts = failing.received().len();
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    let listed = deliveries(&app, "alice", &disabled).await;
    assert_eq!(listed[0]["state"], "ABANDONED");
    assert_eq!(listed[0]["last_status_code"], 503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        failing.received().len(),
        attempts,
        "nothing after it was disabled"
    );
    giving_up.kill().unwrap();
    giving_up.wait().unwrap();

    let mut refusing = app.worker_process(&[("DEPMAN_WEBHOOK_ALLOWED_HOSTS", "")]);
    create(&app, "bob", "b", &cluster.namespace).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = deliveries(&app, "bob", &inside).await;
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery attempted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed[0]["state"], "PENDING");
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{}",
        listed[0]
    );
    assert!(
        refused.received().is_empty(),
        "nothing reached the refused address"
    );
    refusing.kill().unwrap();
    refusing.wait().unwrap();
    app.finish().await;
    cluster.finish().await;
}
