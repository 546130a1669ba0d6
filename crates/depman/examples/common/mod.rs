//! What the benchmarks share: settings from the environment, a database and
//! a namespace of their own, a free port, and waiting for depman.
#![allow(dead_code)] // each benchmark uses its own part

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A count from the environment, or `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Creates database `name` on the server of `admin_url`; returns the admin
/// connection (to drop it at the end) and the new database's URL.
pub async fn create_database(
    admin_url: &str,
    name: &str,
) -> anyhow::Result<(PgConnection, String)> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let server = admin_url.rsplit_once('/').map_or(admin_url, |(s, _)| s);
    Ok((admin, format!("{server}/{name}")))
}

pub async fn drop_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(admin)
        .await?;
    Ok(())
}

/// Waits until the api at `base` answers its ping, for up to 30 s.
pub async fn wait_for_ping(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if http
            .get(format!("{base}/api/v1/ping"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("depman did not answer within 30 s")
}

/// Creates (or keeps) namespace `name`.
pub async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let object =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("depman-bench"),
            &Patch::Apply(object),
        )
        .await?;
    Ok(())
}

/// Deletes namespace `name` and, in the background, all it holds.
pub async fn delete_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await?;
    Ok(())
}

/// A port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `quantile` (0 to 1) of `samples`, in their unit; NaN for none.
pub fn percentile(samples: &[f64], quantile: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(((sorted.len() as f64 * quantile) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// A process the benchmark started, killed when dropped: a benchmark that
/// fails half-way leaves nothing running (and no pipe held open).
pub struct Process(pub Child);

impl Process {
    /// Stops it as an orchestrator would (SIGTERM), and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `depman <role>` from `bin` on the database at `url` and JetStream names
/// under `prefix`, logging errors only, with `env` besides.
pub fn start(
    bin: &str,
    role: &str,
    url: &str,
    prefix: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Process> {
    Ok(Process(
        Command::new(bin)
            .arg(role)
            .env("DATABASE_URL", url)
            .env("DEPMAN_PREFIX", prefix)
            // Benchmarks measure depman, not the per-user limit.
            .env("DEPMAN_RATE_LIMIT", "off")
            .env("DEPMAN_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "error")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()?,
    ))
}

/// The parts of the stack whose CPU a benchmark accounts for, each by a
/// piece of its processes' command line (depman's by its program's name,
/// which may be a copy such as `depman-old`).
const PARTS: [(&str, &str); 8] = [
    ("depman", "depman"),
    ("postgres", "postgres"),
    ("nats-server", "nats-server"),
    ("kube-apiserver", "kube-apiserver"),
    ("etcd", "/etcd "),
    ("controller-manager", "kube-controller-manager"),
    ("scheduler", "kube-scheduler"),
    ("kwok", "kwok"),
];

/// CPU seconds the running processes of each part have used so far, from
/// `/proc` (a process that exited takes its share with it: PostgreSQL's
/// pooled backends and the roles live through a benchmark's phases).
#[derive(Clone)]
pub struct Cpu(Vec<f64>);

impl Cpu {
    pub fn now() -> Self {
        let mut used = vec![0.0; PARTS.len()];
        let ticks = 100.0; // USER_HZ, 100 on Linux
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = entry.path();
            let (Ok(cmdline), Ok(stat)) = (
                std::fs::read(path.join("cmdline")),
                std::fs::read_to_string(path.join("stat")),
            ) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let program = cmdline.split(' ').next().unwrap_or_default();
            let program = program.rsplit('/').next().unwrap_or_default();
            let Some(part) = PARTS.iter().position(|(name, key)| match *name {
                "depman" => program.starts_with(key),
                _ => cmdline.contains(key),
            }) else {
                continue;
            };
            // Fields after the command name: utime and stime are 12th and 13th.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let ticks_used: f64 = [11, 12]
                .iter()
                .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
                .sum();
            used[part] += ticks_used / ticks;
        }
        Self(used)
    }

    /// Milliseconds of CPU per item of each part between `self` and
    /// `later`, and in all.
    pub fn per_item(&self, later: &Cpu, items: usize) -> Vec<(&'static str, f64)> {
        let mut shares: Vec<(&str, f64)> = PARTS
            .iter()
            .zip(self.0.iter().zip(&later.0))
            .map(|((name, _), (before, after))| (*name, (after - before) * 1000.0 / items as f64))
            .collect();
        let total = shares.iter().map(|(_, ms)| ms).sum();
        shares.push(("all", total));
        shares
    }
}

/// Waits until no namespace is being deleted: a previous run's cleanup
/// (its Deployments, ReplicaSets and pods collected by the controllers)
/// would otherwise be charged to this one.
pub async fn wait_for_quiet_cluster(client: &Client) -> anyhow::Result<()> {
    let namespaces = Api::<Namespace>::all(client.clone());
    for _ in 0..600 {
        let terminating = namespaces
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|ns| ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating"))
            .count();
        if terminating == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("namespaces still terminating after 10 minutes")
}
