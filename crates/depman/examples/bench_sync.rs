//! `make bench-sync`: how fast the database follows Kubernetes.
//!
//! Starts `depman api`, `depman worker` and `depman watcher` (release
//! builds, separate processes) on a fresh database, stream prefix and
//! namespace, creates `BENCH_SYNC_COUNT` (10,000) managed Deployments through
//! the API (replicas 0), then measures:
//! - sync lag: from a direct change in Kubernetes (a scale, with kube-rs) to
//!   the row showing it, at idle and while 1,000 other managed Deployments
//!   are being scaled;
//! - a full resync of all of them: the watcher restarted, timed until every
//!   row shows a change made while it was down;
//! - the resident memory of the watcher and the worker holding them.

mod common;
use common::setting;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use sqlx::PgPool;

struct Roles {
    bin: String,
    url: String,
    prefix: String,
    namespace: String,
    api_port: u16,
}

impl Roles {
    /// The role as a process that is killed if the benchmark fails
    /// half-way.
    fn start(&self, role: &str) -> anyhow::Result<common::Process> {
        let metrics_port = common::free_port()?;
        Ok(common::Process(
            Command::new(&self.bin)
                .arg(role)
                .env("DATABASE_URL", &self.url)
                .env("DEPMAN_PREFIX", &self.prefix)
                .env("DEPMAN_RATE_LIMIT", "off")
                .env("DEPMAN_HTTP_ADDR", format!("127.0.0.1:{}", self.api_port))
                .env("DEPMAN_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
                .env("DEPMAN_WATCH_NAMESPACES", &self.namespace)
                .env("DEPMAN_LEASE_DURATION", "3s")
                .env("RUST_LOG", "info")
                // Each role's log, to read when a step fails.
                .stdout(std::fs::File::create(
                    std::env::temp_dir().join(format!("bench-sync-{role}.log")),
                )?)
                .spawn()?,
        ))
    }
}

fn rss_mib(process: &common::Process) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", process.0.id())).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    depman::dependencies::install_crypto_provider();
    let count = setting("BENCH_SYNC_COUNT", 10000);
    let churn = setting("BENCH_SYNC_CHURN", 1000).min(count / 2);
    let samples = setting("BENCH_SYNC_SAMPLES", 40);
    let admin_url = std::env::var("DATABASE_URL")?;
    let run = chrono::Utc::now().timestamp().to_string();
    let client = Client::try_default().await?;
    common::wait_for_quiet_cluster(&client).await?;
    let namespace = format!("bench-sync-{run}");
    common::create_namespace(&client, &namespace).await?;
    let database = format!("bench_sync_{run}");
    let (mut admin, url) = common::create_database(&admin_url, &database).await?;
    let measured = measure(&client, &namespace, url, &run, count, churn, samples).await;
    // Also when a step failed: a failed run left its 10,000 Deployments
    // behind, and every later run's watcher and controllers carried them.
    common::delete_namespace(&client, &namespace).await?;
    common::drop_database(&mut admin, &database).await?;
    measured
}

/// Everything between making the namespace and database and removing them.
async fn measure(
    client: &Client,
    namespace: &str,
    url: String,
    run: &str,
    count: usize,
    churn: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let roles = Roles {
        bin: std::env::var("DEPMAN_BIN")?,
        url: url.clone(),
        prefix: format!("bsync{run}"),
        namespace: namespace.to_owned(),
        api_port: common::free_port()?,
    };
    let mut api = roles.start("api")?;
    let base = format!("http://127.0.0.1:{}", roles.api_port);
    let http = reqwest::Client::new();
    while http
        .get(format!("{base}/api/v1/ping"))
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut worker = roles.start("worker")?;
    let mut watcher = roles.start("watcher")?;
    let pool = PgPool::connect(&url).await?;

    println!("creating {count} managed Deployments through the API...");
    let started = Instant::now();
    let posts = (0..count).map(|i| {
        let request = http
            .post(format!("{base}/api/v1/deployments/requests/create"))
            .header("X-User-ID", "bench")
            .json(&json!({"name": "s", "identifier": format!("s{i}"), "namespace": namespace, "image": "nginx:1.27", "replicas": 0}));
        async move { anyhow::ensure!(request.send().await?.status() == 202, "POST refused"); anyhow::Ok(()) }
    });
    let mut results = stream::iter(posts).buffer_unordered(32);
    while let Some(result) = results.next().await {
        result?;
    }
    // Synced once: the row holds a resource version. (Not CREATED: a
    // Deployment of 0 replicas may not report an observed generation for a
    // long time on this cluster, so its rollout never looks complete.)
    wait_for(
        &pool,
        "SELECT count(*) FROM deployments WHERE resource_version IS NOT NULL",
        count as i64,
        Duration::from_secs(900),
    )
    .await?;
    println!(
        "  {count} created and synced in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Idle means no sync event left: the controllers' status updates of a
    // burst of creates come after the rows first hold a version.
    let drained = Instant::now();
    wait_drained(&roles.prefix, Duration::from_secs(900)).await?;
    println!(
        "  sync events of the burst drained {:.1} s later",
        drained.elapsed().as_secs_f64()
    );

    let api_k8s: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let idle = lag_samples(&api_k8s, &pool, (count - samples)..count, samples, 1).await?;

    // Churn: 1,000 other Deployments scaled between 0 and 1, over and over.
    let churning = tokio::spawn({
        let api_k8s = api_k8s.clone();
        async move {
            let mut round = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                round += 1;
                let patches = (0..churn).map(|i| {
                    let api_k8s = api_k8s.clone();
                    async move {
                        let scale = json!({"spec": {"replicas": round % 2}});
                        let _ = api_k8s
                            .patch(
                                &format!("s{i}"),
                                &PatchParams::default(),
                                &Patch::Merge(scale),
                            )
                            .await;
                    }
                });
                stream::iter(patches)
                    .buffer_unordered(16)
                    .collect::<Vec<_>>()
                    .await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = lag_samples(&api_k8s, &pool, (count - samples)..count, samples, 2).await?;
    churning.abort();

    // Resync: changes made while no watcher runs, then a watcher started.
    watcher.stop();
    let changed = (churn..count - samples).collect::<Vec<_>>();
    let patches = changed.iter().map(|i| {
        let api_k8s = api_k8s.clone();
        async move {
            api_k8s
                .patch(
                    &format!("s{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 3}})),
                )
                .await
        }
    });
    let mut results = stream::iter(patches).buffer_unordered(16);
    while let Some(result) = results.next().await {
        result?;
    }
    let resync_started = Instant::now();
    let mut watcher = roles.start("watcher")?;
    wait_for(
        &pool,
        "SELECT count(*) FROM deployments WHERE replicas = 3",
        changed.len() as i64,
        Duration::from_secs(600),
    )
    .await?;
    let resync = resync_started.elapsed();
    let (watcher_rss, worker_rss) = (rss_mib(&watcher), rss_mib(&worker));

    println!("\nsync lag, direct scale to row updated ({samples} samples each)");
    println!(
        "  idle                        p50 {:>7.1} ms  p99 {:>7.1} ms",
        idle.0, idle.1
    );
    println!(
        "  while {churn} are scaled    p50 {:>7.1} ms  p99 {:>7.1} ms",
        busy.0, busy.1
    );
    println!(
        "full resync: watcher restarted, {} changed-while-down rows of {count} caught up in {:.1} s",
        changed.len(),
        resync.as_secs_f64()
    );
    println!(
        "resident memory holding {count}: watcher {watcher_rss:.1} MiB, worker {worker_rss:.1} MiB"
    );

    for child in [&mut watcher, &mut worker, &mut api] {
        child.stop();
    }
    pool.close().await;
    Ok(())
}

/// Waits until the sync consumer of `prefix` has nothing pending or
/// unacknowledged, two seconds in a row.
async fn wait_drained(prefix: &str, within: Duration) -> anyhow::Result<()> {
    let names = depman::queue::Names::new(prefix);
    let nats = async_nats::connect(std::env::var("NATS_URL")?).await?;
    let js = async_nats::jetstream::new(nats);
    let stream = js.get_stream(names.sync_stream()).await?;
    let deadline = Instant::now() + within;
    let mut quiet = 0;
    while quiet < 2 {
        let info = stream.consumer_info(names.sync_consumer()).await?;
        let backlog = info.num_pending + info.num_ack_pending as u64;
        quiet = if backlog == 0 { quiet + 1 } else { 0 };
        anyhow::ensure!(
            Instant::now() < deadline,
            "{backlog} sync events still pending after {within:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

async fn wait_for(
    pool: &PgPool,
    query: &'static str,
    expected: i64,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let count: i64 = sqlx::query_scalar(query).fetch_one(pool).await?;
        if count >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{count} of {expected} after {within:?}: {query}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scales Deployments one at a time to `replicas` and times how long until
/// the row shows it; p50 and p99 in ms.
async fn lag_samples(
    api: &Api<Deployment>,
    pool: &PgPool,
    range: std::ops::Range<usize>,
    samples: usize,
    replicas: i32,
) -> anyhow::Result<(f64, f64)> {
    let mut lags = Vec::with_capacity(samples);
    for i in range.take(samples) {
        let name = format!("s{i}");
        let scale = json!({"spec": {"replicas": replicas}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(scale))
            .await?;
        let changed = Instant::now();
        loop {
            let seen: Option<i32> =
                sqlx::query_scalar("SELECT replicas FROM deployments WHERE identifier = $1")
                    .bind(&name)
                    .fetch_one(pool)
                    .await?;
            if seen == Some(replicas) {
                break;
            }
            anyhow::ensure!(
                changed.elapsed() < Duration::from_secs(60),
                "{name} not synced within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lags.push(changed.elapsed().as_secs_f64() * 1000.0);
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    Ok((at(0.5), at(0.99)))
}
