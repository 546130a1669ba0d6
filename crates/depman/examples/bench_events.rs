//! `make bench-events`: how fast events reach Server-Sent Events subscribers
//! and a webhook under load, and what subscribers cost the api.
//!
//! A release `depman api` and `depman worker` on a fresh database and stream
//! prefix. The requests name a namespace that does not exist, so the worker
//! fails each at once (one more event) without touching the cluster.
//!
//! 1. `BENCH_SUBSCRIBERS` (100) users each follow their own stream, and the
//!    first `BENCH_WEBHOOKS` (10) of them have a webhook (request.accepted),
//!    while `BENCH_RATE` (200) CREATEs per second are posted for
//!    `BENCH_SECONDS` (20), round robin over the users: p50/p99 from an
//!    event's `occurred_on` (written, just before its commit) to its arrival
//!    at a subscriber, and at a webhook receiver on loopback. Every stream
//!    sees every event go by in the api (and drops the others' ones).
//!    Baseline, same run: PostgreSQL's own notification latency (a
//!    `pg_notify` carrying its send time, every 5 ms, to a listener), the
//!    floor any push from the database has.
//! 2. The api's CPU during the load, and its memory per subscriber.
//! 3. `BENCH_IDLE` (1000) idle streams (a user with no events): the api's
//!    extra memory.

mod common;
use common::{percentile, setting, start, wait_for_ping};

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, postgres::PgListener};

const KEY: &str = "YmVuY2gta2V5LW9mLTMyLWJ5dGVzLWZvci1iZW5jaCE=";

type Samples = Arc<Mutex<Vec<f64>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    depman::dependencies::install_crypto_provider();
    let subscribers = setting("BENCH_SUBSCRIBERS", 100).max(1);
    let webhooks = setting("BENCH_WEBHOOKS", 10).min(subscribers);
    let rate = setting("BENCH_RATE", 200);
    let seconds = setting("BENCH_SECONDS", 20);
    let idle = setting("BENCH_IDLE", 1000);
    let admin_url = std::env::var("DATABASE_URL")?;
    let bin = std::env::var("DEPMAN_BIN")?;
    let run = Utc::now().timestamp().to_string();
    let database = format!("bench_events_{run}");
    let (mut admin, url) = common::create_database(&admin_url, &database).await?;
    let port = common::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let prefix = format!("benchevents{run}");
    let listen = format!("127.0.0.1:{port}");
    let webhook_env = [
        ("DEPMAN_WEBHOOK_KEY", KEY),
        ("DEPMAN_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1"),
    ];
    let mut api_env = webhook_env.to_vec();
    api_env.push(("DEPMAN_HTTP_ADDR", &listen));
    let api = start(&bin, "api", &url, &prefix, &api_env)?;
    let http = reqwest::Client::new();
    wait_for_ping(&http, &base).await?;
    let worker = start(&bin, "worker", &url, &prefix, &webhook_env)?;

    let (receiver_url, hooked) = receiver().await?;
    for user in 0..webhooks {
        let created: Value = http
            .post(format!("{base}/api/v1/webhooks"))
            .header("X-User-ID", format!("bench{user}"))
            .json(&json!({"url": receiver_url, "types": ["request.accepted"]}))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(created["secret"].is_string(), "no webhook: {created}");
    }

    let api_pid = api.0.id();
    let before = Usage::of(api_pid)?;
    let streamed: Samples = Arc::default();
    let mut streams = Vec::new();
    for user in 0..subscribers {
        let user = format!("bench{user}");
        streams.push(subscribe(&http, &base, &user, Some(streamed.clone())).await?);
    }
    let with_subscribers = Usage::of(api_pid)?;
    let floor = notification_floor(&url, Duration::from_secs(seconds as u64 + 2));

    let started = Instant::now();
    let posted = post_at(
        &http,
        &base,
        rate,
        subscribers,
        Duration::from_secs(seconds as u64),
    )
    .await?;
    let elapsed = started.elapsed();
    let after_load = Usage::of(api_pid)?;
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let floor = floor.await??;

    // Where the time goes: the api's own histogram of written-to-sent.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let lag: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("depman_event_stream_lag_seconds_bucket"))
        .collect();
    let idle_before = Usage::of(api_pid)?;
    let mut idle_streams = Vec::new();
    for _ in 0..idle {
        idle_streams.push(subscribe(&http, &base, "idle", None).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_after = Usage::of(api_pid)?;

    let streamed = streamed.lock().expect("not poisoned").clone();
    let hooked = hooked.lock().expect("not poisoned").clone();
    println!(
        "bench-events: {posted} CREATEs at {rate}/s for {:.1} s, {subscribers} subscribers",
        elapsed.as_secs_f64()
    );
    println!(
        "  events at subscribers: {} of {} (accepted + failed per request); at webhooks: {}",
        streamed.len(),
        posted * 2,
        hooked.len()
    );
    report("commit to subscriber", &streamed);
    report("commit to webhook", &hooked);
    report("pg_notify floor", &floor);
    println!(
        "  ratio p99 subscriber / floor: {:.2}; webhook / floor: {:.2}",
        percentile(&streamed, 0.99) / percentile(&floor, 0.99),
        percentile(&hooked, 0.99) / percentile(&floor, 0.99)
    );
    let cpu = (after_load.cpu_seconds - with_subscribers.cpu_seconds) / elapsed.as_secs_f64();
    println!(
        "  in the api, written to sent (cumulative buckets): {}",
        lag.iter()
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let count = l.rsplit(' ').next()?;
                Some(format!("≤{le}s: {count}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  api CPU under load: {:.2} cores ({:.4} per subscriber)",
        cpu,
        cpu / subscribers as f64
    );
    println!(
        "  api memory: {:.1} MiB before, {:.1} MiB with {subscribers} subscribers ({:.1} KiB each), {:.1} MiB after the load",
        before.rss_mib(),
        with_subscribers.rss_mib(),
        (with_subscribers.rss_kib - before.rss_kib) as f64 / subscribers as f64,
        after_load.rss_mib()
    );
    println!(
        "  {idle} idle subscribers: +{:.1} MiB ({:.1} KiB each; goal: under 50 MB in all)",
        (idle_after.rss_kib - idle_before.rss_kib) as f64 / 1024.0,
        (idle_after.rss_kib - idle_before.rss_kib) as f64 / idle as f64
    );

    drop(streams);
    drop(idle_streams);
    drop((api, worker));
    common::drop_database(&mut admin, &database).await?;
    Ok(())
}

/// Posts CREATEs at `rate` per second for `duration`, round robin over
/// `users`; returns how many.
async fn post_at(
    http: &reqwest::Client,
    base: &str,
    rate: usize,
    users: usize,
    duration: Duration,
) -> anyhow::Result<usize> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    let deadline = Instant::now() + duration;
    let mut posts = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let (http, url) = (
            http.clone(),
            format!("{base}/api/v1/deployments/requests/create"),
        );
        let body = json!({"name": format!("e{n}"), "namespace": "bench-events-nowhere", "image": "nginx:1.27"});
        let user = format!("bench{}", n % users);
        posts.push(tokio::spawn(async move {
            http.post(url)
                .header("X-User-ID", user)
                .json(&body)
                .send()
                .await
        }));
        n += 1;
    }
    for post in posts {
        anyhow::ensure!(post.await??.status() == 202, "a CREATE was not accepted");
    }
    Ok(n)
}

/// Opens a stream as `user`; with `samples`, records each event's delay
/// from `occurred_on` to arrival.
async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    samples: Option<Samples>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut response = http
        .get(format!("{base}/api/v1/events"))
        .header("X-User-ID", user)
        .header("Accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "a stream was refused");
    Ok(tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let now = Utc::now();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(samples), Some(data)) = (&samples, data)
                    && let Some(delay) = delay_of(data, now)
                {
                    samples.lock().expect("not poisoned").push(delay);
                }
            }
        }
    }))
}

fn delay_of(event: &str, now: DateTime<Utc>) -> Option<f64> {
    let event: Value = serde_json::from_str(event).ok()?;
    let occurred: DateTime<Utc> = event["occurred_on"].as_str()?.parse().ok()?;
    Some((now - occurred).as_seconds_f64())
}

/// A webhook receiver on loopback recording each delivery's delay.
async fn receiver() -> anyhow::Result<(String, Samples)> {
    let samples: Samples = Arc::default();
    async fn record(State(samples): State<Samples>, body: Bytes) -> StatusCode {
        if let Some(delay) = delay_of(&String::from_utf8_lossy(&body), Utc::now()) {
            samples.lock().expect("not poisoned").push(delay);
        }
        StatusCode::NO_CONTENT
    }
    let router = Router::new()
        .route("/hook", post(record))
        .with_state(samples.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((url, samples))
}

/// PostgreSQL's notification latency under the same load: a notification
/// carrying its send time every 5 ms, for `duration`.
fn notification_floor(
    url: &str,
    duration: Duration,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<f64>>> {
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut listener = PgListener::connect(&url).await?;
        listener.listen("bench_floor").await?;
        let mut sender = PgConnection::connect(&url).await?;
        let deadline = Instant::now() + duration;
        let sending = tokio::spawn(async move {
            while Instant::now() < deadline {
                let _ = sqlx::query("SELECT pg_notify('bench_floor', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text)")
                    .execute(&mut sender)
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut samples = Vec::new();
        while let Ok(Ok(notification)) =
            tokio::time::timeout(Duration::from_secs(1), listener.recv()).await
        {
            let sent: i64 = notification.payload().parse()?;
            samples.push((Utc::now().timestamp_micros() - sent) as f64 / 1e6);
        }
        sending.await?;
        Ok(samples)
    })
}

struct Usage {
    cpu_seconds: f64,
    rss_kib: i64,
}

impl Usage {
    /// From /proc: user+system CPU time and resident memory.
    fn of(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split(' ')
            .collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            cpu_seconds: ticks / 100.0,
            rss_kib,
        })
    }

    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

fn report(label: &str, samples: &[f64]) {
    println!(
        "  {label:<22} n={:<7} p50 {:>7.1} ms  p99 {:>7.1} ms",
        samples.len(),
        percentile(samples, 0.5) * 1000.0,
        percentile(samples, 0.99) * 1000.0
    );
}
