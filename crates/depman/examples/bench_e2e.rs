//! `make bench-e2e`: end-to-end throughput and latency of depman against a
//! baseline measured in the same run.
//!
//! - depman: a release `depman all` on a fresh database, stream prefix and
//!   namespace; N CREATE requests posted as fast as the API takes them
//!   (`BENCH_CONCURRENCY` clients), timed until every one is SUCCESS; then
//!   requests paced at `BENCH_RATE` per second for 10 s. POST-to-SUCCESS
//!   latency is each request's `updated_on - created_on` (accepted to
//!   recorded SUCCESS).
//! - baseline: the same N Deployments (the same objects depman builds)
//!   applied straight to the API server with kube-rs server-side apply at the
//!   same concurrency, in a namespace of their own.
//!
//! Each run starts on a quiet cluster: no namespace being deleted, and
//! the baseline only once depman's Deployments are all available. Prints
//! depman/baseline throughput as a ratio, and the CPU each part of the
//! stack spent per CREATE within the timed window and until its Deployment
//! was available: on one machine the parts share the cores, so what
//! depman, PostgreSQL and NATS spend is taken from the API server's share.

mod common;
use common::{Cpu, setting, wait_for_ping};

use std::time::{Duration, Instant};

use depman::{domain::spec::DeploymentInput, kubernetes};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client, api::ListParams};
use serde_json::{Value, json};
use sqlx::PgPool;

fn body(name: &str, namespace: &str) -> Value {
    json!({"name": name, "identifier": name, "namespace": namespace, "image": "nginx:1.27", "replicas": 1,
           "ports": [{"container_port": 8080, "name": "http"}]})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    depman::dependencies::install_crypto_provider();
    let admin_url = std::env::var("DATABASE_URL")?;
    let run = format!("{}", chrono::Utc::now().timestamp());
    let database = format!("bench_e2e_{run}");
    let client = Client::try_default().await?;
    common::wait_for_quiet_cluster(&client).await?;
    let (ns_depman, ns_baseline) = (
        format!("bench-depman-{run}"),
        format!("bench-baseline-{run}"),
    );
    for ns in [&ns_depman, &ns_baseline] {
        common::create_namespace(&client, ns).await?;
    }
    let (mut admin, url) = common::create_database(&admin_url, &database).await?;
    let measured = measure(&client, &url, &run, [&ns_depman, &ns_baseline]).await;
    // Also when a step failed, so that nothing is left to load later runs.
    for ns in [&ns_depman, &ns_baseline] {
        common::delete_namespace(&client, ns).await?;
    }
    common::drop_database(&mut admin, &database).await?;
    measured
}

/// Everything between making the namespaces and database and removing them.
async fn measure(
    client: &Client,
    url: &str,
    run: &str,
    [ns_depman, ns_baseline]: [&String; 2],
) -> anyhow::Result<()> {
    let count = setting("BENCH_COUNT", 500);
    let concurrency = setting("BENCH_CONCURRENCY", 16);
    let rate = setting("BENCH_RATE", 20);
    let depman_bin = std::env::var("DEPMAN_BIN")?;
    let port = common::free_port()?;
    // Watching only its own namespace: the baseline's objects carry depman's
    // label but are not its.
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("DEPMAN_HTTP_ADDR", addr.as_str()),
        ("DEPMAN_WATCH_NAMESPACES", ns_depman),
    ];
    let mut depman = common::start(&depman_bin, "all", url, &format!("bench{run}"), &env)?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for_ping(&http, &base).await?;
    let pool = PgPool::connect(url).await?;

    // depman, as fast as the API takes them.
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let names: Vec<String> = (0..count).map(|i| format!("d{i}")).collect();
    post_all(&http, &base, &names, ns_depman, concurrency).await?;
    let posted = started.elapsed();
    wait_for_success(&pool, count as i64).await?;
    let depman_time = started.elapsed();
    let depman_window = cpu_before.per_item(&Cpu::now(), count);
    let (d50, d99) = latency(&pool, "").await?;
    let (waited, applied) = stages(&pool).await?;
    // Both runs start on a quiet cluster and are charged the controllers'
    // work for their Deployments, which goes on after the last apply.
    wait_until_available(client, ns_depman, count).await?;
    let depman_cpu = cpu_before.per_item(&Cpu::now(), count);

    // The baseline: the same objects, applied straight with kube-rs.
    let mut apply_latencies = Vec::with_capacity(count);
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let applies = (0..count).map(|i| {
        let client = client.clone();
        let ns = ns_baseline.clone();
        async move {
            let input: DeploymentInput = serde_json::from_value(body(&format!("d{i}"), &ns))?;
            let spec = input
                .validate(|_| unreachable!())
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let object = kubernetes::deployment(&spec, "bench", uuid::Uuid::new_v4());
            let begun = Instant::now();
            kubernetes::apply(&client, &object).await?;
            anyhow::Ok(begun.elapsed())
        }
    });
    let mut results = stream::iter(applies).buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        apply_latencies.push(result?);
    }
    let baseline_time = started.elapsed();
    let baseline_window = cpu_before.per_item(&Cpu::now(), count);
    wait_until_available(client, ns_baseline, count).await?;
    let baseline_cpu = cpu_before.per_item(&Cpu::now(), count);
    apply_latencies.sort();
    let (b50, b99) = (
        percentile(&apply_latencies, 0.50),
        percentile(&apply_latencies, 0.99),
    );

    // depman paced: POST-to-SUCCESS latency at a steady rate.
    let paced = rate * 10;
    let marker = "p";
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut posts = Vec::new();
    for i in 0..paced {
        ticker.tick().await;
        let request = http
            .post(format!("{base}/api/v1/deployments/requests/create"))
            .header("X-User-ID", "bench")
            .json(&body(&format!("{marker}{i}"), ns_depman));
        posts.push(tokio::spawn(request.send()));
    }
    for post in posts {
        anyhow::ensure!(post.await??.status() == 202, "a paced POST was refused");
    }
    wait_for_success(&pool, (count + paced) as i64).await?;
    let paced_time = started.elapsed();
    let (p50, p99) = latency(&pool, marker).await?;

    let per_second = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("\n{count} CREATEs, {concurrency} concurrent clients");
    println!(
        "  depman    {:>7.1} s  {:>7.1} /s  POST-to-SUCCESS p50 {:>7.1} ms  p99 {:>7.1} ms  (all posted in {:.1} s)",
        depman_time.as_secs_f64(),
        per_second(count, depman_time),
        d50,
        d99,
        posted.as_secs_f64()
    );
    println!(
        "            p50 waiting for a worker {waited:.1} ms, applying and recording {applied:.1} ms"
    );
    println!(
        "  baseline  {:>7.1} s  {:>7.1} /s  apply                p50 {:>7.1} ms  p99 {:>7.1} ms",
        baseline_time.as_secs_f64(),
        per_second(count, baseline_time),
        ms(b50),
        ms(b99)
    );
    println!(
        "  depman/baseline throughput: {:.2}",
        baseline_time.as_secs_f64() / depman_time.as_secs_f64()
    );
    // Within its timed window a run is charged only part of the cluster's
    // work for it (the controllers' follows): a shorter window leaves more
    // of it outside.
    println!("CPU per CREATE in ms (depman | baseline): in the timed window; until available");
    let rows = depman_window.iter().zip(&baseline_window);
    for (((part, dw), (_, bw)), ((_, da), (_, ba))) in
        rows.zip(depman_cpu.iter().zip(&baseline_cpu))
    {
        println!("  {part:<20} {dw:>6.2} | {bw:>6.2};  {da:>6.2} | {ba:>6.2}");
    }
    println!(
        "{paced} CREATEs paced at {rate}/s ({:.1} s)",
        paced_time.as_secs_f64()
    );
    println!("  depman    POST-to-SUCCESS p50 {p50:.1} ms  p99 {p99:.1} ms");

    depman.stop();
    pool.close().await;
    Ok(())
}

async fn post_all(
    http: &reqwest::Client,
    base: &str,
    names: &[String],
    ns: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    let posts = names.iter().map(|name| {
        let request = http
            .post(format!("{base}/api/v1/deployments/requests/create"))
            .header("X-User-ID", "bench")
            .json(&body(name, ns));
        async move {
            let response = request.send().await?;
            anyhow::ensure!(
                response.status() == 202,
                "POST answered {}",
                response.status()
            );
            anyhow::Ok(())
        }
    });
    let mut results = stream::iter(posts).buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// Waits until `count` Deployments of `namespace` have a replica available.
async fn wait_until_available(
    client: &Client,
    namespace: &str,
    count: usize,
) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let available = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1))
            .count();
        if available >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {available} of {count} available in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_for_success(pool: &PgPool, expected: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (done, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), count(*) FILTER (WHERE status = 'FAILURE') FROM deployment_requests",
        )
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(failed == 0, "{failed} requests failed");
        if done >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {expected} succeeded in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// p50 and p99 in ms of accepted-to-SUCCESS, for the requests whose name
/// starts with `prefix` (all for "").
async fn latency(pool: &PgPool, prefix: &str) -> anyhow::Result<(f64, f64)> {
    let row: (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
         FROM (SELECT extract(epoch FROM updated_on - created_on) * 1000 AS ms
               FROM deployment_requests WHERE name LIKE $1 || '%') latencies",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await?;
    Ok((row.0.unwrap_or_default(), row.1.unwrap_or_default()))
}

/// p50 in ms of a request's two stages: accepted until a worker began
/// applying it, and from then until its SUCCESS was recorded.
async fn stages(pool: &PgPool) -> anyhow::Result<(f64, f64)> {
    let row: (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applying_since - created_on) * 1000),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_on - applying_since) * 1000)
         FROM deployment_requests",
    )
    .fetch_one(pool)
    .await?;
    Ok((row.0.unwrap_or_default(), row.1.unwrap_or_default()))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
