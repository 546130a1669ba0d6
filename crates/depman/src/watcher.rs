//! The `watcher` role: watches the Deployments depman manages and publishes
//! a sync event for every change; at start (after each initial list) and
//! every `DEPMAN_RESYNC_INTERVAL` it publishes one for every managed
//! Deployment and for every row the database still expects, so that changes
//! made while no watcher ran (deletions included) are caught. Replicas elect
//! one leader with a Kubernetes Lease; only the leader publishes.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, context::PublishAckFuture};
use futures::{StreamExt, stream::select_all};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};
use kube_lease_manager::LeaseManagerBuilder;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    dependencies::Dependencies,
    kubernetes::MANAGED_BY,
    metrics::WatcherMetrics,
    queue::{self, Names, SyncEvent},
    settings::WatcherSettings,
    store::deployments,
};

pub struct Watcher {
    client: Client,
    js: jetstream::Context,
    names: Names,
    pool: PgPool,
    /// Empty: every namespace.
    namespaces: Vec<String>,
    resync_interval: Duration,
    lease_namespace: String,
    lease_duration: Duration,
    /// This replica's name in the Lease.
    identity: String,
    metrics: WatcherMetrics,
}

fn selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

impl Watcher {
    pub fn build(deps: &Dependencies, client: Client, settings: &WatcherSettings) -> Self {
        // The pod's name, and a random part so that two watchers of one
        // process (tests) or of a reused pod name never share an identity.
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "depman".into());
        let identity = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Self {
            client,
            js: deps.js.clone(),
            names: deps.names.clone(),
            pool: deps.pool.clone(),
            namespaces: settings.namespaces(),
            resync_interval: settings.resync_interval,
            lease_namespace: settings.lease_namespace(),
            lease_duration: settings.lease_duration,
            identity,
            metrics: deps.metrics.watcher.clone(),
        }
    }

    /// Campaigns for the lease and, while leader, publishes; until `stop`.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let seconds = self.lease_duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(self.client.clone(), self.names.watcher_lease())
            .with_namespace(&self.lease_namespace)
            .with_identity(&self.identity)
            .with_duration(seconds)
            .with_grace((seconds / 3).max(1))
            .build()
            .await?;
        let (mut leader, lease) = manager.watch().await;
        tracing::info!(identity = %self.identity, lease = %self.names.watcher_lease(), "watcher campaigning for the lease");
        'campaign: loop {
            while !*leader.borrow_and_update() {
                tokio::select! {
                    _ = stop.cancelled() => break 'campaign,
                    changed = leader.changed() => if changed.is_err() { break 'campaign },
                }
            }
            tracing::info!(identity = %self.identity, "leader: publishing sync events");
            self.metrics.leader.set(1);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = leader.wait_for(|leading| !leading) => tracing::warn!("lost the lease: stopped publishing"),
                _ = self.publish_changes() => {}
            }
            self.metrics.leader.set(0);
            if stop.is_cancelled() {
                break;
            }
        }
        // Dropping the channel makes the manager release the lease, so that
        // another replica takes over at once rather than after it expires.
        drop(leader);
        if let Ok(Ok(manager)) = lease.await {
            let _ = manager.release().await;
        }
        tracing::info!("watcher stopped");
        Ok(())
    }

    fn apis(&self) -> Vec<Api<Deployment>> {
        if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        }
    }

    /// Watches and publishes; the watch relists on its own after 410 Gone
    /// or a dropped connection, so this only ends when its caller stops it.
    async fn publish_changes(&self) {
        let config = watcher::Config::default().labels(&selector());
        let streams = self
            .apis()
            .into_iter()
            .map(|api| watcher(api, config.clone()).default_backoff().boxed());
        let mut events = select_all(streams);
        let mut ticker = tokio::time::interval(self.resync_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(d) | watcher::Event::Delete(d))) => {
                        if let Err(error) = self.publish_one(&d).await {
                            tracing::warn!(error = format!("{error:#}"), "publishing a sync event failed");
                        }
                    }
                    Some(Ok(watcher::Event::InitDone)) => self.resync().await,
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                    Some(Err(error)) => tracing::warn!(%error, "watch interrupted; relisting"),
                    None => return,
                },
                _ = ticker.tick() => self.resync().await,
            }
        }
    }

    async fn publish_one(&self, deployment: &Deployment) -> anyhow::Result<()> {
        self.publish_present(deployment).await?.await?;
        Ok(())
    }

    /// A sync event for a Deployment the watch or the list saw, once per
    /// change of it.
    async fn publish_present(&self, deployment: &Deployment) -> anyhow::Result<PublishAckFuture> {
        let id = SyncEvent::change_id(
            &deployment.uid().unwrap_or_default(),
            &deployment.resource_version().unwrap_or_default(),
        );
        let namespace = deployment.namespace().unwrap_or_default();
        self.publish(&namespace, &deployment.name_any(), id).await
    }

    async fn publish(
        &self,
        namespace: &str,
        name: &str,
        id: String,
    ) -> anyhow::Result<PublishAckFuture> {
        let ack = queue::publish_sync(&self.js, &self.names, namespace, name, Some(id)).await?;
        self.metrics.published.inc();
        Ok(ack)
    }

    /// A sync event for every managed Deployment, and for every row the
    /// database expects that Kubernetes no longer has.
    async fn resync(&self) {
        let started = Instant::now();
        match self.resync_all().await {
            Ok(count) => {
                self.metrics.resync.observe(started.elapsed().as_secs_f64());
                tracing::info!(
                    count,
                    seconds = started.elapsed().as_secs_f64(),
                    "resync published"
                );
            }
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "resync failed; the next one will retry"
            ),
        }
    }

    async fn resync_all(&self) -> anyhow::Result<usize> {
        queue::ensure_streams(&self.js, &self.names).await?;
        let round = chrono::Utc::now().timestamp_millis();
        let mut present = HashSet::new();
        let mut acks = Vec::new();
        for api in self.apis() {
            let mut params = ListParams::default().labels(&selector()).limit(500);
            loop {
                let page = api.list(&params).await?;
                for deployment in &page.items {
                    acks.push(self.publish_present(deployment).await?);
                    present.insert((
                        deployment.namespace().unwrap_or_default(),
                        deployment.name_any(),
                    ));
                }
                match page.metadata.continue_.filter(|token| !token.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        for (namespace, identifier) in
            deployments::expected_present(&self.pool, &self.namespaces).await?
        {
            if !present.contains(&(namespace.clone(), identifier.clone())) {
                let id = SyncEvent::missing_id(&namespace, &identifier, round);
                acks.push(self.publish(&namespace, &identifier, id).await?);
            }
        }
        let count = acks.len();
        for ack in acks {
            ack.await?;
        }
        Ok(count)
    }
}
