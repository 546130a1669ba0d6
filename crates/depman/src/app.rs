//! The application assembled in one place: what each subcommand connects to
//! and which roles it runs.

use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    api::Api,
    db, dlq,
    metrics::Metrics,
    queue::Names,
    settings::{
        ApiSettings, Command, CommonSettings, OperationsSettings, WatcherSettings, WorkerSettings,
    },
    shutdown,
    watcher::Watcher,
    worker,
};

/// Connections every role shares within one process.
#[derive(Clone)]
pub struct Dependencies {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub metrics: Metrics,
}

impl Dependencies {
    /// Connects lazily where it can: the process starts while PostgreSQL or
    /// NATS is down, and catches up when they are back. Applies pending
    /// migrations first.
    pub async fn connect(settings: &CommonSettings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        db::migrate(&pool, Duration::from_secs(60)).await?;
        let nats = async_nats::ConnectOptions::new()
            .name("depman")
            .retry_on_initial_connect()
            .connect(&settings.nats.nats_url)
            .await?;
        let js = jetstream::new(nats.clone());
        Ok(Self {
            pool,
            nats,
            js,
            names: Names::new(&settings.nats.prefix),
            metrics: Metrics::default(),
        })
    }
}

/// Runs the subcommand until it ends or SIGTERM/SIGINT stops it.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown::signal_received().await;
        on_signal.cancel();
    });
    match command {
        Command::Api { common, api } => {
            let deps = Dependencies::connect(&common).await?;
            Api::build(&deps, &api).await?.run_until_stopped(stop).await
        }
        Command::Worker {
            common,
            worker,
            operations,
        } => {
            let deps = Dependencies::connect(&common).await?;
            let role = build_worker(&deps, &worker).await?;
            with_operations(&deps, &operations, stop, |stop| role.run(stop)).await
        }
        Command::Watcher {
            common,
            watcher,
            operations,
        } => {
            let deps = Dependencies::connect(&common).await?;
            let role = build_watcher(&deps, &watcher).await?;
            with_operations(&deps, &operations, stop, |stop| role.run(stop)).await
        }
        Command::All {
            common,
            api,
            worker,
            watcher,
        } => run_all(&common, &api, &worker, &watcher, stop).await,
        Command::Migrate { database } => {
            db::migrate(&db::pool(&database)?, Duration::from_secs(60)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Dlq { common, command } => {
            let deps = Dependencies::connect(&common).await?;
            dlq::run(&deps, command).await
        }
    }
}

/// Runs a role without the API beside a small server of its `/metrics` and
/// `/healthz`.
async fn with_operations<R>(
    deps: &Dependencies,
    settings: &OperationsSettings,
    stop: CancellationToken,
    role: impl FnOnce(CancellationToken) -> R,
) -> anyhow::Result<()>
where
    R: Future<Output = anyhow::Result<()>>,
{
    let listener = tokio::net::TcpListener::bind(settings.metrics_addr).await?;
    tracing::info!(addr = %settings.metrics_addr, "serving /metrics and /healthz");
    let router = crate::http::operations_router(deps.metrics.clone());
    let stopped = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
    });
    let result = role(stop.clone()).await;
    stop.cancel();
    server.await??;
    result
}

async fn run_all(
    common: &CommonSettings,
    api: &ApiSettings,
    worker: &WorkerSettings,
    watcher: &WatcherSettings,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let deps = Dependencies::connect(common).await?;
    let api = Api::build(&deps, api).await?;
    let worker = build_worker(&deps, worker).await?;
    let watcher = build_watcher(&deps, watcher).await?;
    // One role stopping on an error stops the others.
    let (api, worker, watcher) = tokio::join!(
        stop_all_on_exit(api.run_until_stopped(stop.clone()), stop.clone(), "api"),
        stop_all_on_exit(worker.run(stop.clone()), stop.clone(), "worker"),
        stop_all_on_exit(watcher.run(stop.clone()), stop.clone(), "watcher"),
    );
    api.and(worker).and(watcher)
}

pub async fn build_watcher(
    deps: &Dependencies,
    settings: &WatcherSettings,
) -> anyhow::Result<Watcher> {
    let identity = std::env::var("HOSTNAME")
        .map(|host| format!("{host}-{}", std::process::id()))
        .unwrap_or_else(|_| format!("depman-{}", uuid::Uuid::new_v4().simple()));
    Ok(Watcher {
        client: crate::kubernetes::client().await?,
        js: deps.js.clone(),
        names: deps.names.clone(),
        pool: deps.pool.clone(),
        namespaces: settings.namespaces(),
        resync_interval: settings.resync_interval,
        lease_namespace: settings.lease_namespace(),
        lease_duration: settings.lease_duration,
        identity,
        metrics: deps.metrics.watcher.clone(),
    })
}

async fn stop_all_on_exit(
    role: impl Future<Output = anyhow::Result<()>>,
    stop: CancellationToken,
    name: &'static str,
) -> anyhow::Result<()> {
    let result = role.await;
    if let Err(error) = &result {
        tracing::error!(
            role = name,
            error = format!("{error:#}"),
            "role stopped on an error"
        );
    }
    stop.cancel();
    result
}

pub async fn build_worker(
    deps: &Dependencies,
    settings: &WorkerSettings,
) -> anyhow::Result<worker::Worker> {
    let ctx = worker::Context {
        pool: deps.pool.clone(),
        kube: crate::kubernetes::client().await?,
        js: deps.js.clone(),
        names: deps.names.clone(),
        max_attempts: settings.max_attempts,
        retry_backoff: settings.retry_backoff,
        metrics: deps.metrics.worker.clone(),
    };
    Ok(worker::Worker::new(
        ctx,
        settings.concurrency,
        settings.shutdown_timeout,
    ))
}
