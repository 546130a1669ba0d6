//! `make bench-outcome`: how soon a request tells the truth about its
//! rollout, next to how soon Kubernetes showed it (the floor).
//!
//! A release `depman all` (default settings) on a fresh database, stream
//! prefix and namespace. For a good image and each chaos image of the
//! `make env` cluster, `BENCH_COUNT` CREATEs (1 replica) are posted at once;
//! each is read with `?wait=60s&until=rolled_out` (so the waiters are woken
//! by notifications), and a pod watch records when the pod first showed the
//! state depman acts on:
//! - `nginx:1.27`: Ready (COMPLETE);
//! - `chaos.invalid/image-pull-error`: first ErrImagePull (FAILED after
//!   `DEPMAN_IMAGE_PULL_GRACE` from scheduling, on purpose);
//! - `chaos.invalid/crash-loop`: restartCount reaching 2 in CrashLoopBackOff;
//! - `chaos.invalid/never-ready` (progress deadline 10 s): the Deployment's
//!   ProgressDeadlineExceeded condition.
//!
//! Prints, per image, p50/p99 of POST to terminal rollout, of POST to the
//! pod (or Deployment) showing it, and of the difference; and the wake-up
//! delay of the waiters: from the rollout's `finished_on` (written) to the
//! waiter's answer.

mod common;
use common::wait_for_ping;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

const IMAGES: [(&str, &str); 4] = [
    ("good", "nginx:1.27"),
    ("pull", "chaos.invalid/image-pull-error:1"),
    ("crash", "chaos.invalid/crash-loop"),
    ("never", "chaos.invalid/never-ready"),
];

/// When each deployment's pods (or the Deployment) first showed the state
/// that ends its rollout, by identifier.
type Shown = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    depman::dependencies::install_crypto_provider();
    let count = common::setting("BENCH_COUNT", 50);
    let admin_url = std::env::var("DATABASE_URL")?;
    let depman_bin = std::env::var("DEPMAN_BIN")?;
    let run = chrono::Utc::now().timestamp().to_string();
    let database = format!("bench_outcome_{run}");
    let namespace = format!("bench-outcome-{run}");
    let client = Client::try_default().await?;
    common::create_namespace(&client, &namespace).await?;
    let (mut admin, url) = common::create_database(&admin_url, &database).await?;
    let port = common::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("DEPMAN_HTTP_ADDR", addr.as_str()),
        ("DEPMAN_WATCH_NAMESPACES", namespace.as_str()),
    ];
    let mut depman = common::start(
        &depman_bin,
        "all",
        &url,
        &format!("benchoutcome{run}"),
        &env,
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for_ping(&http, &base).await?;

    let shown: Shown = Arc::default();
    let pods = tokio::spawn(watch_pods(client.clone(), namespace.clone(), shown.clone()));
    let deadlines = tokio::spawn(watch_deadlines(
        client.clone(),
        namespace.clone(),
        shown.clone(),
    ));

    let mut rows = Vec::new();
    for (label, image) in IMAGES {
        let posts = (0..count).map(|i| {
            let (http, base, namespace) = (http.clone(), base.clone(), namespace.clone());
            async move {
                let name = format!("{label}{i}");
                let mut body = json!({"name": name, "identifier": name, "namespace": namespace,
                                      "image": image, "replicas": 1});
                if label == "never" {
                    body["progress_deadline_seconds"] = json!(10);
                }
                let posted = Instant::now();
                let created: Value = http
                    .post(format!("{base}/api/v1/deployments/requests/create"))
                    .header("X-User-ID", "bench")
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = created["id"].as_str().unwrap_or_default().to_owned();
                let done = rolled_out(&http, &base, &id).await?;
                let answered = chrono::Utc::now();
                anyhow::Ok((name, posted, done, answered))
            }
        });
        let results: Vec<_> = futures::stream::iter(posts)
            .buffer_unordered(count)
            .try_collect()
            .await?;
        rows.push(summarize(label, image, &results, &shown));
    }
    println!("\n{count} CREATEs per image, 1 replica each, default thresholds");
    println!(
        "{:<44} {:>20} {:>20} {:>20} {:>16}",
        "image", "POST->terminal", "POST->k8s shows it", "terminal-shown", "waiter woken"
    );
    println!(
        "{:<44} {:>20} {:>20} {:>20} {:>16}",
        "", "p50/p99", "p50/p99", "p50/p99", "p50/p99"
    );
    for row in rows {
        println!("{row}");
    }

    pods.abort();
    deadlines.abort();
    depman.stop();
    common::delete_namespace(&client, &namespace).await?;
    common::drop_database(&mut admin, &database).await?;
    Ok(())
}

/// The request once its rollout ended (waiting again if a minute was not
/// enough).
async fn rolled_out(http: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Value> {
    for _ in 0..5 {
        let request: Value = http
            .get(format!(
                "{base}/api/v1/deployments/requests/{id}?wait=60s&until=rolled_out"
            ))
            .header("X-User-ID", "bench")
            .send()
            .await?
            .json()
            .await?;
        let state = request["rollout"]["state"].as_str().unwrap_or("");
        if !matches!(state, "" | "PROGRESSING") {
            return Ok(request);
        }
    }
    anyhow::bail!("request {id} did not roll out within 5 minutes")
}

/// One line of the table: times are taken on one machine, so the server's
/// timestamps (`created_on`, `finished_on`) and the client's clock agree.
fn summarize(
    label: &str,
    image: &str,
    results: &[(String, Instant, Value, chrono::DateTime<chrono::Utc>)],
    shown: &Shown,
) -> String {
    let shown = shown.lock().expect("not poisoned");
    let (mut terminal, mut floor, mut after, mut wake) = (vec![], vec![], vec![], vec![]);
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for (name, posted, request, answered) in results {
        let rollout = &request["rollout"];
        let reason = rollout["reason"].as_str().map(|r| format!(" {r}"));
        let outcome = format!(
            "{}{}",
            rollout["state"].as_str().unwrap_or("?"),
            reason.unwrap_or_default()
        );
        *outcomes.entry(outcome).or_default() += 1;
        let time = |field: &Value| {
            field
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
        };
        let (Some(created), Some(finished)) =
            (time(&request["created_on"]), time(&rollout["finished_on"]))
        else {
            continue;
        };
        let took = (finished - created).to_std().unwrap_or_default();
        terminal.push(took);
        wake.push((*answered - finished).to_std().unwrap_or_default());
        if let Some(at) = shown.get(name) {
            let showed = at.saturating_duration_since(*posted);
            floor.push(showed);
            after.push(took.saturating_sub(showed));
        }
    }
    let mut outcomes: Vec<_> = outcomes.into_iter().collect();
    outcomes.sort();
    let outcome = outcomes
        .iter()
        .map(|(o, n)| format!("{n}x {o}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{:<44} {:>20} {:>20} {:>20} {:>16}   [{outcome}]",
        format!("{image} ({label})"),
        pair(&mut terminal),
        pair(&mut floor),
        pair(&mut after),
        pair(&mut wake),
    )
}

fn pair(values: &mut [Duration]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort();
    let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "{:.2}/{:.2} s",
        at(0.5).as_secs_f64(),
        at(0.99).as_secs_f64()
    )
}

/// Records when each deployment's pod first showed the state its rollout
/// ends on.
async fn watch_pods(client: Client, namespace: String, shown: Shown) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let mut events = watcher(api, watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(pod) = events.try_next().await? {
        let Some(name) = pod.labels().get("depman.io/identifier").cloned() else {
            continue;
        };
        let status = pod.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let failing = status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .any(|c| {
                let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
                let reason = waiting.and_then(|w| w.reason.as_deref());
                matches!(reason, Some("ErrImagePull" | "ImagePullBackOff"))
                    || (reason == Some("CrashLoopBackOff") && c.restart_count >= 2)
            });
        if ready || failing {
            shown
                .lock()
                .expect("not poisoned")
                .entry(name)
                .or_insert_with(Instant::now);
        }
    }
    Ok(())
}

/// Records when each Deployment first showed ProgressDeadlineExceeded.
async fn watch_deadlines(client: Client, namespace: String, shown: Shown) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client, &namespace);
    let mut events = watcher(api, watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(deployment) = events.try_next().await? {
        let exceeded = deployment
            .status
            .clone()
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
        if exceeded {
            shown
                .lock()
                .expect("not poisoned")
                .entry(deployment.name_any())
                .or_insert_with(Instant::now);
        }
    }
    Ok(())
}
