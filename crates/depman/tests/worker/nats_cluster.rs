//! A JetStream cluster of three servers (the binary `make env` built, on
//! loopback ports of the test's own, routes between them, a store folder
//! each), with `DEPMAN_STREAM_REPLICAS=3` and depman given all three URLs:
//! losing one server, even the leader of the requests stream, loses
//! nothing; losing two stops publishing, not accepting.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use depman::queue::{Names, ensure_streams};

use crate::{
    cluster::Cluster,
    helpers::{TestApp, environment, free_port, status_and_json, unique},
};

const WITHIN: Duration = Duration::from_secs(120);

/// One server of the cluster: its ports and store outlive its process, so
/// that a restart is the same server coming back.
struct Server {
    name: String,
    port: u16,
    route_port: u16,
    store: PathBuf,
    process: Option<Child>,
}

struct NatsCluster {
    servers: Vec<Server>,
}

impl NatsCluster {
    fn start() -> Self {
        let base = std::env::temp_dir().join(unique("depman-nats-cluster"));
        let servers = (1..=3)
            .map(|index| Server {
                name: format!("n{index}"),
                port: free_port(),
                route_port: free_port(),
                store: base.join(format!("n{index}")),
                process: None,
            })
            .collect();
        let mut cluster = Self { servers };
        for index in 0..3 {
            cluster.start_server(index);
        }
        cluster
    }

    fn start_server(&mut self, index: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.route_port))
            .collect();
        let server = &mut self.servers[index];
        let process = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &server.port.to_string()])
            .args(["-n", &server.name, "--cluster_name", "depman-test"])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", server.route_port))
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(&server.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH: run `make test`, or load .devenv/env.sh");
        server.process = Some(process);
    }

    /// SIGKILL: the server has no chance to hand anything over.
    fn kill(&mut self, name: &str) {
        let server = self.server(name);
        let mut process = server.process.take().expect("a running server");
        process.kill().expect("kill");
        process.wait().expect("reaped");
    }

    fn restart(&mut self, name: &str) {
        let index = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .expect("a server of the cluster");
        self.start_server(index);
    }

    fn server(&mut self, name: &str) -> &mut Server {
        self.servers
            .iter_mut()
            .find(|s| s.name == name)
            .expect("a server of the cluster")
    }

    /// Every server's URL, as depman takes them: comma-separated.
    fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn client(&self) -> async_nats::jetstream::Context {
        let urls: Vec<String> = self.urls().split(',').map(str::to_owned).collect();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(urls.as_slice())
            .await
            .expect("connect to the cluster");
        async_nats::jetstream::new(client)
    }

    /// The stream's leader, once it has one and `followers` other replicas
    /// are current (caught up with it).
    async fn leader_with(&self, stream: &str, followers: usize) -> String {
        let js = self.client().await;
        let started = Instant::now();
        loop {
            if let Ok(mut handle) = js.get_stream(stream).await
                && let Ok(info) = handle.info().await
                && let Some(cluster) = &info.cluster
                && let Some(leader) = &cluster.leader
                && cluster
                    .replicas
                    .iter()
                    .filter(|r| r.current && !r.offline)
                    .count()
                    >= followers
            {
                return leader.clone();
            }
            assert!(
                started.elapsed() < WITHIN,
                "{stream}: no leader with current replicas"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The sequence of the last message the stream stored.
    async fn last_sequence(&self, stream: &str) -> u64 {
        let js = self.client().await;
        let mut handle = js.get_stream(stream).await.expect("the stream");
        handle.info().await.expect("its state").state.last_sequence
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut process) = server.process.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
        if let Some(base) = self.servers.first().and_then(|s| s.store.parent()) {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// A CREATE of a deployment without pods: the cluster's work is the apply.
fn small(name: &str, namespace: &str) -> Value {
    json!({"name": name, "identifier": name, "namespace": namespace, "image": "nginx:1.27", "replicas": 0})
}

/// Posts `count` CREATEs named `prefix-N`; every answer must be 202.
/// Returns the request ids and the slowest answer.
async fn post(
    app: &TestApp,
    namespace: &str,
    prefix: &str,
    count: usize,
) -> (Vec<String>, Duration) {
    let mut ids = Vec::new();
    let mut slowest = Duration::ZERO;
    for index in 0..count {
        let started = Instant::now();
        let (status, request) = status_and_json(
            app.create("alice", &small(&format!("{prefix}-{index}"), namespace))
                .await,
        )
        .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 202, "{request}");
        ids.push(request["id"].as_str().expect("an id").to_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ids, slowest)
}

/// Waits until every request of `ids` is SUCCESS, and checks that each
/// ended exactly once: one `request.succeeded` event each, no other end.
async fn all_succeed_once(app: &TestApp, ids: &[String]) {
    let started = Instant::now();
    loop {
        let (done,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM deployment_requests WHERE id::text = ANY($1) AND status = 'SUCCESS'",
        )
        .bind(ids)
        .fetch_one(&app.pool)
        .await
        .expect("count");
        if done as usize == ids.len() {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "{done} of {} succeeded after {WITHIN:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ends: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT request_id::text, type, count(*) FROM events
         WHERE request_id::text = ANY($1) AND type IN ('request.succeeded', 'request.failed')
         GROUP BY 1, 2",
    )
    .bind(ids)
    .fetch_all(&app.pool)
    .await
    .expect("the ends");
    let once: HashMap<String, i64> = ends
        .into_iter()
        .map(|(id, kind, count)| {
            assert_eq!(kind, "request.succeeded");
            (id, count)
        })
        .collect();
    assert_eq!(once.len(), ids.len());
    assert!(once.values().all(|count| *count == 1), "{once:?}");
}

/// The longest time between two consecutive ends of `ids`.
async fn longest_pause(app: &TestApp, ids: &[String]) -> Duration {
    let (pause,): (f64,) = sqlx::query_as(
        "SELECT coalesce(max(gap), 0)::float8 FROM (
             SELECT extract(epoch FROM occurred_on - lag(occurred_on) OVER (ORDER BY occurred_on)) AS gap
             FROM events WHERE request_id::text = ANY($1) AND type = 'request.succeeded') gaps",
    )
    .bind(ids)
    .fetch_one(&app.pool)
    .await
    .expect("the pauses");
    Duration::from_secs_f64(pause)
}

#[tokio::test]
async fn losing_the_leader_of_the_requests_stream_loses_nothing_and_a_restarted_server_catches_up()
{
    let cluster = Cluster::with_namespace().await;
    let mut nats = NatsCluster::start();
    let mut app = TestApp::spawn_on_nats_cluster(&nats.urls(), 3).await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let stream = app.deps.names.requests_stream();
    let (warm, _) = post(&app, &cluster.namespace, "warm", 5).await;
    all_succeed_once(&app, &warm).await;
    let leader = nats.leader_with(&stream, 2).await;

    // 200 requests; the leader of their stream is SIGKILLed a quarter in.
    let load = {
        let (app, namespace) = (&app, cluster.namespace.clone());
        async move { post(app, &namespace, "load", 200).await }
    };
    let kill = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        nats.kill(&leader);
        Instant::now()
    };
    let ((ids, slowest), killed_at) = tokio::join!(load, kill);
    // Accepting never waits on NATS: the outbox takes every request.
    assert!(slowest < Duration::from_secs(5), "a POST took {slowest:?}");
    all_succeed_once(&app, &ids).await;
    // JetStream stored each request once, relay retries notwithstanding.
    assert_eq!(nats.last_sequence(&stream).await, 205);
    // One server is gone: a leader and one follower remain.
    let new_leader = nats.leader_with(&stream, 1).await;
    assert_ne!(new_leader, leader);
    // The pipeline stalls only while the cluster elects a new leader (5 to
    // 7 s here); a stall of 30 s or more would mean a message waited for
    // redelivery (the ack wait), or the worker for a lost pull request to
    // expire (35 s before the worker watched its heartbeats).
    let stall = longest_pause(&app, &ids).await;
    println!(
        "killed leader {leader}: {new_leader} took over; slowest POST {slowest:?}; \
         longest pause between two successes {stall:?}; all 200 ended {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(stall < Duration::from_secs(20), "stalled {stall:?}");

    // It comes back and catches up; then another server goes.
    nats.restart(&leader);
    nats.leader_with(&stream, 2).await;
    let other = ["n1", "n2", "n3"]
        .into_iter()
        .find(|name| *name != leader)
        .expect("another server");
    nats.kill(other);
    let (after, _) = post(&app, &cluster.namespace, "after", 50).await;
    all_succeed_once(&app, &after).await;
    app.finish().await;
    drop(nats);
    cluster.finish().await;
}

#[tokio::test]
async fn without_a_quorum_posts_are_still_accepted_and_they_drain_when_a_server_returns() {
    let cluster = Cluster::with_namespace().await;
    let mut nats = NatsCluster::start();
    let mut app = TestApp::spawn_on_nats_cluster(&nats.urls(), 3).await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let stream = app.deps.names.requests_stream();
    let (warm, _) = post(&app, &cluster.namespace, "warm", 3).await;
    all_succeed_once(&app, &warm).await;
    nats.leader_with(&stream, 2).await;

    nats.kill("n1");
    nats.kill("n2");
    let (ids, slowest) = post(&app, &cluster.namespace, "held", 20).await;
    assert!(slowest < Duration::from_secs(5), "a POST took {slowest:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (held,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&app.pool)
        .await
        .expect("the outbox");
    let (ended,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM deployment_requests WHERE id::text = ANY($1) AND status <> 'CREATED'",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(ended, 0, "nothing can be published without a quorum");
    assert!(held > 0, "the outbox holds what was accepted");
    println!("two of three down: 20 POSTs answered 202, the slowest in {slowest:?}; {held} held");

    let returned = Instant::now();
    nats.restart("n1");
    all_succeed_once(&app, &ids).await;
    println!(
        "one server back: all 20 ended {:?} later",
        returned.elapsed()
    );
    app.finish().await;
    drop(nats);
    cluster.finish().await;
}

/// Tries `ensure_streams` until the cluster has elected its JetStream meta
/// leader (a few seconds after its servers start).
async fn ensured(js: &async_nats::jetstream::Context, names: &Names) {
    let started = Instant::now();
    while let Err(error) = ensure_streams(js, names).await {
        assert!(started.elapsed() < WITHIN, "no streams: {error:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The stream's replica count. A fresh cluster may answer 503 (JetStream
/// unavailable) for a moment even after it made the stream, while its meta
/// leader settles (seen once in CI): asked again until it answers.
async fn replicas(js: &async_nats::jetstream::Context, stream: &str) -> usize {
    let started = Instant::now();
    loop {
        let replicas = async {
            let mut handle = js.get_stream(stream).await?;
            let info = handle.info().await?;
            anyhow::Ok(info.config.num_replicas)
        };
        match replicas.await {
            Ok(replicas) => return replicas,
            Err(error) => assert!(started.elapsed() < WITHIN, "no info of {stream}: {error:#}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn existing_streams_take_the_replica_count_a_cluster_can_keep_and_keep_theirs_otherwise() {
    // A cluster raises streams of one replica to three.
    let nats = NatsCluster::start();
    let js = nats.client().await;
    let names = Names::new(&unique("r"));
    ensured(&js, &names).await;
    assert_eq!(replicas(&js, &names.requests_stream()).await, 1);
    let three = names.clone().with_replicas(3);
    ensured(&js, &three).await;
    for stream in [
        three.requests_stream(),
        three.sync_stream(),
        three.dead_letter_stream(),
    ] {
        assert_eq!(replicas(&js, &stream).await, 3, "{stream}");
    }

    // One server cannot keep three: a new stream is refused, an existing
    // one keeps its one replica (and the error is in the log).
    let single = async_nats::connect(environment("NATS_URL"))
        .await
        .expect("make env's NATS");
    let js = async_nats::jetstream::new(single);
    let names = Names::new(&unique("s"));
    assert!(
        ensure_streams(&js, &names.clone().with_replicas(3))
            .await
            .is_err()
    );
    ensure_streams(&js, &names)
        .await
        .expect("streams of one replica");
    ensure_streams(&js, &names.clone().with_replicas(3))
        .await
        .expect("kept as they are");
    assert_eq!(replicas(&js, &names.requests_stream()).await, 1);
    for stream in [
        names.requests_stream(),
        names.sync_stream(),
        names.dead_letter_stream(),
    ] {
        js.delete_stream(&stream).await.expect("clean up");
    }
}
