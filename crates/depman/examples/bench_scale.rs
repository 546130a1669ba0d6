//! `make bench-scale`: how the worker scales out.
//!
//! For each setup (worker processes × `DEPMAN_WORKER_CONCURRENCY`; by
//! default 1×1, 2×1, 4×1, then 1×16 and 4×16; `BENCH_SETUPS=1x1,2x1`
//! chooses), a fresh database, stream prefix and
//! namespace, and the same requests: `BENCH_DEPLOYMENTS` (100) CREATEs and
//! `BENCH_UPDATES` (9) UPDATEs of each, recorded through a release `depman
//! api` before any worker runs. Then the workers start, and the run lasts
//! from the first request carried out to the last (their `updated_on`).
//! The Deployments have no replicas, so the cluster's work is the applies
//! themselves.
//!
//! Checks that every request succeeded, in the order of its deployment
//! (each deployment's requests finished in sequence order), and that each
//! Deployment in the cluster has its last UPDATE's spec. Prints throughput
//! per setup and its ratio to one worker of the same concurrency (goal at
//! concurrency 1: 2 workers ≥ 1.7×, 4 workers ≥ 3×).

mod common;
use common::{setting, start, wait_for_ping};

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use sqlx::PgPool;

/// `BENCH_SETUPS`: workers x concurrency, comma-separated.
const SETUPS: &str = "1x1,2x1,4x1,1x16,4x16";

fn setups() -> anyhow::Result<Vec<(usize, usize)>> {
    let text = std::env::var("BENCH_SETUPS").unwrap_or_else(|_| SETUPS.to_owned());
    text.split(',')
        .map(|setup| {
            let (workers, concurrency) = setup.trim().split_once('x').ok_or_else(|| {
                anyhow::anyhow!("BENCH_SETUPS: `{setup}` is not WORKERSxCONCURRENCY")
            })?;
            Ok((workers.parse()?, concurrency.parse()?))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    depman::dependencies::install_crypto_provider();
    let deployments = setting("BENCH_DEPLOYMENTS", 100);
    let updates = setting("BENCH_UPDATES", 9);
    let bin = std::env::var("DEPMAN_BIN")?;
    let kube = depman::kubernetes::client().await?;
    let total = deployments * (updates + 1);
    println!(
        "bench-scale: {total} requests ({deployments} CREATEs, {updates} UPDATEs each) per setup"
    );
    let mut rates = Vec::new();
    for (workers, concurrency) in setups()? {
        let rate = run(&bin, &kube, workers, concurrency, deployments, updates).await?;
        let single = rates
            .iter()
            .find(|&&(w, c, _)| w == 1 && c == concurrency)
            .map_or(rate, |&(_, _, r)| r);
        println!(
            "  {workers} worker(s) × concurrency {concurrency:>2}: {rate:7.1} requests/s, {:.2}× one worker",
            rate / single
        );
        rates.push((workers, concurrency, rate));
    }
    Ok(())
}

/// One setup; returns its throughput in requests per second.
async fn run(
    bin: &str,
    kube: &kube::Client,
    workers: usize,
    concurrency: usize,
    deployments: usize,
    updates: usize,
) -> anyhow::Result<f64> {
    let admin_url = std::env::var("DATABASE_URL")?;
    let run = format!(
        "{}{workers}x{concurrency}",
        chrono::Utc::now().timestamp_millis()
    );
    let database = format!("bench_scale_{run}");
    let namespace = format!("bench-scale-{run}");
    let prefix = format!("benchscale{run}");
    common::create_namespace(kube, &namespace).await?;
    let (mut admin, url) = common::create_database(&admin_url, &database).await?;
    let port = common::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let api = start(bin, "api", &url, &prefix, &[("DEPMAN_HTTP_ADDR", &listen)])?;
    let http = reqwest::Client::new();
    wait_for_ping(&http, &base).await?;
    let pool = PgPool::connect(&url).await?;
    record(&http, &base, &namespace, deployments, updates).await?;
    let total = (deployments * (updates + 1)) as i64;
    wait_until(&pool, "SELECT count(*) FROM outbox", 0).await?;

    let concurrency_setting = concurrency.to_string();
    let running: Vec<_> = (0..workers)
        .map(|_| {
            start(
                bin,
                "worker",
                &url,
                &prefix,
                &[("DEPMAN_WORKER_CONCURRENCY", &concurrency_setting)],
            )
        })
        .collect::<Result<_, _>>()?;
    wait_until(
        &pool,
        "SELECT count(*) FROM deployment_requests WHERE status = 'CREATED'",
        0,
    )
    .await?;
    let (succeeded, seconds): (i64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'SUCCESS'),
                extract(epoch FROM max(updated_on) - min(updated_on))::float8
         FROM deployment_requests",
    )
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(succeeded == total, "{succeeded} of {total} succeeded");
    check_order(&pool).await?;
    check_cluster(kube, &namespace, deployments, updates).await?;

    drop(running);
    drop(api);
    pool.close().await;
    common::drop_database(&mut admin, &database).await?;
    common::delete_namespace(kube, &namespace).await?;
    Ok(total as f64 / seconds)
}

/// Records the CREATEs, then each deployment's UPDATEs one after another
/// (deployments side by side), so that each deployment has an order.
async fn record(
    http: &reqwest::Client,
    base: &str,
    namespace: &str,
    deployments: usize,
    updates: usize,
) -> anyhow::Result<()> {
    let post = |method: reqwest::Method, path: String, body: Value| {
        let request = http
            .request(method, format!("{base}{path}"))
            .header("X-User-ID", "bench")
            .json(&body);
        async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status() == 202, "answered {}", response.status());
            Ok::<Value, anyhow::Error>(response.json().await?)
        }
    };
    let deployments = (0..deployments).map(|i| {
        let name = format!("web{i}");
        let create = json!({"name": name, "identifier": name, "namespace": namespace,
                            "image": "nginx:1.27", "replicas": 0, "env": {"STEP": "0"}});
        async move {
            let created = post(
                reqwest::Method::POST,
                "/api/v1/deployments/requests/create".into(),
                create,
            )
            .await?;
            let path = format!(
                "/api/v1/deployments/requests/{}",
                created["id"].as_str().unwrap_or_default()
            );
            for step in 1..=updates {
                let patch = json!({"env": {"STEP": step.to_string()}});
                post(reqwest::Method::PATCH, path.clone(), patch).await?;
            }
            anyhow::Ok(())
        }
    });
    let mut recorded = stream::iter(deployments).buffer_unordered(16);
    while let Some(result) = recorded.next().await {
        result?;
    }
    Ok(())
}

/// Waits until `query` (a count) reaches `target`, for up to 10 minutes.
async fn wait_until(pool: &PgPool, query: &'static str, target: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let count: i64 = sqlx::query_scalar(query).fetch_one(pool).await?;
        if count == target {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{query}: still {count}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each deployment's requests finished in the order of their sequence.
async fn check_order(pool: &PgPool) -> anyhow::Result<()> {
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT updated_on < lag(updated_on) OVER (PARTITION BY identifier ORDER BY sequence) AS early
             FROM deployment_requests) steps
         WHERE early",
    )
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        out_of_order == 0,
        "{out_of_order} requests finished before an earlier one"
    );
    Ok(())
}

/// Every Deployment carries its last UPDATE's `STEP`.
async fn check_cluster(
    kube: &kube::Client,
    namespace: &str,
    deployments: usize,
    updates: usize,
) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
    let list = api.list(&ListParams::default()).await?;
    anyhow::ensure!(
        list.items.len() == deployments,
        "{} Deployments",
        list.items.len()
    );
    let last = updates.to_string();
    for deployment in list.items {
        let step = deployment
            .spec
            .template
            .spec
            .and_then(|pod| pod.containers.into_iter().next())
            .and_then(|container| container.env)
            .and_then(|env| env.into_iter().find(|e| e.name == "STEP"))
            .and_then(|e| e.value);
        anyhow::ensure!(
            step.as_deref() == Some(last.as_str()),
            "{:?} is at step {step:?}",
            deployment.metadata.name
        );
    }
    Ok(())
}
