//! `make bench-dry-run`: what a dry run through depman costs next to a
//! dry-run apply sent straight to Kubernetes.
//!
//! A release `depman api` and `depman worker` on a fresh database, stream
//! prefix and namespace, with one deployment in it. Then, in rounds
//! (`BENCH_ROUNDS`, 2), `BENCH_CLIENTS` (16) clients for `BENCH_SECONDS`
//! (10) each:
//! - baseline: kube-rs server-side apply with `dryRun=All` of the object the
//!   dry run would apply (image and replicas changed), straight to the API
//!   server;
//! - depman: `PATCH /api/v1/deployments/requests/{id}?dry_run=true` with the
//!   same change (the api checks it, asks a worker over NATS, the worker
//!   reads the live object, dry-runs the apply and diffs).
//!
//! Prints throughput and p50/p99 of each, and depman's throughput as a ratio
//! of the baseline's (goal: 0.8 or more).

mod common;
use common::{percentile, setting, start, wait_for_ping};

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    depman::dependencies::install_crypto_provider();
    let clients = setting("BENCH_CLIENTS", 16).max(1);
    let seconds = setting("BENCH_SECONDS", 10) as u64;
    let rounds = setting("BENCH_ROUNDS", 2).max(1);
    let admin_url = std::env::var("DATABASE_URL")?;
    let bin = std::env::var("DEPMAN_BIN")?;
    let run = chrono::Utc::now().timestamp().to_string();
    let database = format!("bench_dry_run_{run}");
    let namespace = format!("bench-dry-run-{run}");
    let kube = depman::kubernetes::client().await?;
    common::create_namespace(&kube, &namespace).await?;
    let (mut admin, url) = common::create_database(&admin_url, &database).await?;
    let port = common::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let prefix = format!("benchdryrun{run}");
    let listen = format!("127.0.0.1:{port}");
    let api = start(&bin, "api", &url, &prefix, &[("DEPMAN_HTTP_ADDR", &listen)])?;
    let http = reqwest::Client::new();
    wait_for_ping(&http, &base).await?;
    let worker = start(&bin, "worker", &url, &prefix, &[])?;

    let request = create(&http, &base, &namespace).await?;
    let id = request["id"].as_str().unwrap_or_default().to_owned();
    let mut spec: depman::domain::spec::DeploymentSpec =
        serde_json::from_value(request["spec"].clone())?;
    spec.image = "nginx:1.28".into();
    spec.replicas = 2;
    let object = depman::kubernetes::deployment(&spec, "bench", uuid::Uuid::nil());
    let patch = json!({"image": "nginx:1.28", "replicas": 2});

    let (mut direct, mut through) = (Vec::new(), Vec::new());
    let mut direct_seconds = 0.0;
    let mut through_seconds = 0.0;
    for _ in 0..rounds {
        let api: Api<Deployment> = Api::namespaced(kube.clone(), &namespace);
        let object = object.clone();
        let (samples, elapsed) = load(clients, seconds, move || {
            let (api, object) = (api.clone(), object.clone());
            async move { direct_dry_run(&api, &object).await }
        })
        .await?;
        direct.extend(samples);
        direct_seconds += elapsed;
        let (http, path) = (
            http.clone(),
            format!("{base}/api/v1/deployments/requests/{id}?dry_run=true"),
        );
        let patch = patch.clone();
        let (samples, elapsed) = load(clients, seconds, move || {
            let (http, path, patch) = (http.clone(), path.clone(), patch.clone());
            async move { depman_dry_run(&http, &path, &patch).await }
        })
        .await?;
        through.extend(samples);
        through_seconds += elapsed;
    }

    println!("bench-dry-run: {clients} clients, {rounds} rounds of {seconds} s each");
    let direct_rate = direct.len() as f64 / direct_seconds;
    let through_rate = through.len() as f64 / through_seconds;
    report("direct kube-rs dry-run apply", &direct, direct_rate);
    report("depman PATCH ?dry_run=true", &through, through_rate);
    println!(
        "  depman / direct: throughput {:.2} (goal ≥ 0.8), p50 {:.2}×, p99 {:.2}×",
        through_rate / direct_rate,
        percentile(&through, 0.5) / percentile(&direct, 0.5),
        percentile(&through, 0.99) / percentile(&direct, 0.99),
    );

    drop((api, worker));
    common::drop_database(&mut admin, &database).await?;
    common::delete_namespace(&kube, &namespace).await?;
    Ok(())
}

/// Records a CREATE and waits until it is applied; returns the request.
async fn create(http: &reqwest::Client, base: &str, namespace: &str) -> anyhow::Result<Value> {
    let body = json!({"name": "web", "identifier": "web", "namespace": namespace,
                      "image": "nginx:1.27", "replicas": 1});
    let created: Value = http
        .post(format!("{base}/api/v1/deployments/requests/create"))
        .header("X-User-ID", "bench")
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap_or_default();
    let applied: Value = http
        .get(format!(
            "{base}/api/v1/deployments/requests/{id}?wait=30s&until=applied"
        ))
        .header("X-User-ID", "bench")
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(applied["status"] == "SUCCESS", "not applied: {applied}");
    Ok(applied)
}

async fn direct_dry_run(api: &Api<Deployment>, object: &Deployment) -> anyhow::Result<()> {
    let value = depman::kubernetes::manifest(object)?;
    let params = PatchParams::apply("depman").force().dry_run();
    api.patch("web", &params, &Patch::Apply(value)).await?;
    Ok(())
}

async fn depman_dry_run(http: &reqwest::Client, path: &str, patch: &Value) -> anyhow::Result<()> {
    let response = http
        .patch(path)
        .header("X-User-ID", "bench")
        .json(patch)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "{}", response.text().await?);
    let result: Value = response.json().await?;
    anyhow::ensure!(
        result["diff"].as_array().is_some_and(|d| d.len() == 2),
        "{result}"
    );
    Ok(())
}

/// Runs `call` from `clients` loops for `seconds`; returns the latencies
/// and the time taken. Any failed call ends the benchmark.
async fn load<F, Fut>(clients: usize, seconds: u64, call: F) -> anyhow::Result<(Vec<f64>, f64)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (call, samples) = (call.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let sent = Instant::now();
                call().await?;
                let latency = sent.elapsed().as_secs_f64();
                samples.lock().expect("not poisoned").push(latency);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let samples = samples.lock().expect("not poisoned").clone();
    Ok((samples, elapsed))
}

fn report(what: &str, samples: &[f64], rate: f64) {
    println!(
        "  {what}: {} calls, {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        samples.len(),
        percentile(samples, 0.5) * 1000.0,
        percentile(samples, 0.99) * 1000.0
    );
}
