//! The application assembled in one place: what each subcommand connects to
//! and which roles it runs.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{
    api::Api,
    db::{self, pool_size},
    dependencies::Dependencies,
    dlq, kubernetes,
    settings::{
        ApiSettings, Command, CommonSettings, OperationsSettings, WatcherSettings, WebhookSettings,
        WorkerSettings,
    },
    shutdown,
    watcher::Watcher,
    worker::Worker,
};

/// Runs the subcommand until it ends or SIGTERM/SIGINT stops it.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown::signal_received().await;
        on_signal.cancel();
    });
    match command {
        Command::Api {
            common,
            api,
            webhooks,
        } => {
            let deps = Dependencies::connect(&common, pool_size::API).await?;
            Api::build(&deps, &api, &webhooks)
                .await?
                .run_until_stopped(stop)
                .await
        }
        Command::Worker {
            common,
            worker,
            operations,
            webhooks,
        } => {
            let deps = Dependencies::connect(&common, pool_size::WORKER).await?;
            let role = Worker::build(&deps, kubernetes::client().await?, &worker, &webhooks)?;
            with_operations(&deps, &operations, stop, |stop| role.run(stop)).await
        }
        Command::Watcher {
            common,
            watcher,
            operations,
        } => {
            let deps = Dependencies::connect(&common, pool_size::WATCHER).await?;
            let role = Watcher::build(&deps, kubernetes::client().await?, &watcher);
            with_operations(&deps, &operations, stop, |stop| role.run(stop)).await
        }
        Command::All {
            common,
            api,
            worker,
            watcher,
            webhooks,
        } => run_all(&common, &api, &worker, &watcher, &webhooks, stop).await,
        Command::Migrate { database } => {
            let pool = db::pool(&database, pool_size::TOOL)?;
            db::migrate(&pool, Duration::from_secs(60)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Dlq { common, command } => {
            let deps = Dependencies::connect(&common, pool_size::TOOL).await?;
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
    webhooks: &WebhookSettings,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let deps = Dependencies::connect(common, pool_size::ALL).await?;
    let kube = kubernetes::client().await?;
    let api = Api::build(&deps, api, webhooks).await?;
    let worker = Worker::build(&deps, kube.clone(), worker, webhooks)?;
    let watcher = Watcher::build(&deps, kube, watcher);
    // One role stopping on an error stops the others.
    let (api, worker, watcher) = tokio::join!(
        stop_all_on_exit(api.run_until_stopped(stop.clone()), stop.clone(), "api"),
        stop_all_on_exit(worker.run(stop.clone()), stop.clone(), "worker"),
        stop_all_on_exit(watcher.run(stop.clone()), stop.clone(), "watcher"),
    );
    api.and(worker).and(watcher)
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
