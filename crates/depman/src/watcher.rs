//! The `watcher` role: watches the Deployments depman manages and publishes
//! a sync event for every change; at start (after each initial list) and
//! every `DEPMAN_RESYNC_INTERVAL` it publishes one for every managed
//! Deployment and for every row the database still expects, so that changes
//! made while no watcher ran (deletions included) are caught. Replicas elect
//! one leader with a Kubernetes Lease; only the leader publishes.

use std::{
    collections::HashSet,
    fmt::Debug,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, context::PublishAckFuture};
use futures::{
    StreamExt, TryStreamExt,
    stream::{BoxStream, select_all},
};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::Pod,
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PartialObjectMeta},
    runtime::{WatchStreamExt, watcher},
};
use kube_lease_manager::LeaseManagerBuilder;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    dependencies::Dependencies,
    kubernetes::{IDENTIFIER_LABEL, MANAGED_BY},
    metrics::WatcherMetrics,
    queue::{self, AckWindow, Names, SyncEvent},
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

/// How often the Deployments whose pods or ReplicaSets changed are synced:
/// a thousand pods restarting at once make one event per Deployment.
const COALESCE: Duration = Duration::from_millis(250);

/// How long the API server keeps one watch call open before ending it (the
/// watch then goes on from where it was). Below the client's 20 s read
/// timeout: with the default 290 s, a watch that saw nothing for 20 s
/// failed on that timeout and backed off for up to 30 s, during which
/// changes waited (10 failures in five minutes of make bench-sync).
const WATCH_SECONDS: u32 = 15;

/// What a watch saw.
enum Seen {
    Deployment(Box<watcher::Event<Deployment>>),
    /// A pod or ReplicaSet of this Deployment (namespace, identifier)
    /// changed; `None` for what says nothing (initial lists).
    Part(Option<(String, String)>),
}

impl Seen {
    fn part<K: ResourceExt>(event: watcher::Event<K>) -> Self {
        match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => Self::Part(
                object
                    .namespace()
                    .zip(object.labels().get(IDENTIFIER_LABEL).cloned()),
            ),
            _ => Self::Part(None),
        }
    }
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

    fn apis<K>(&self) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        }
    }

    /// Watches of the managed Deployments' pods or ReplicaSets (`K`), by
    /// their metadata.
    fn part_watches<K>(
        &self,
        config: &watcher::Config,
    ) -> Vec<BoxStream<'static, watcher::Result<Seen>>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        self.apis::<PartialObjectMeta<K>>()
            .into_iter()
            .map(|api| {
                watcher(api, config.clone())
                    .default_backoff()
                    .map_ok(Seen::part)
                    .boxed()
            })
            .collect()
    }

    /// Watches and publishes; the watches relist on their own after 410 Gone
    /// or a dropped connection, so this only ends when its caller stops it.
    /// The pods and ReplicaSets of managed Deployments are watched too,
    /// their metadata only (all the watcher reads of them is a label, and
    /// the API server then sends no spec nor status): a change of theirs
    /// makes one sync event for their Deployment, at most every
    /// [`COALESCE`], however many pods changed.
    async fn publish_changes(&self) {
        let config = watcher::Config::default()
            .labels(&selector())
            .timeout(WATCH_SECONDS);
        let deployments = self.apis::<Deployment>().into_iter().map(|api| {
            watcher(api, config.clone())
                .default_backoff()
                .map_ok(|event| Seen::Deployment(Box::new(event)))
                .boxed()
        });
        let pods = self.part_watches::<Pod>(&config);
        let sets = self.part_watches::<ReplicaSet>(&config);
        let mut events = select_all(deployments.chain(pods).chain(sets));
        let mut ticker = tokio::time::interval(self.resync_interval);
        ticker.tick().await;
        let mut flush = tokio::time::interval(COALESCE);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut touched = HashSet::new();
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Seen::Deployment(event))) => match *event {
                        watcher::Event::Apply(d) => self.publish_one(&d, true).await,
                        watcher::Event::Delete(d) => self.publish_one(&d, false).await,
                        watcher::Event::InitDone => self.resync().await,
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
                    },
                    Some(Ok(Seen::Part(None))) => {}
                    Some(Ok(Seen::Part(Some(deployment)))) => {
                        touched.insert(deployment);
                    }
                    Some(Err(error)) => tracing::warn!(%error, "watch interrupted; relisting"),
                    None => return,
                },
                _ = flush.tick(), if !touched.is_empty() => self.publish_touched(&mut touched).await,
                _ = ticker.tick() => self.resync().await,
            }
        }
    }

    /// One sync event for each Deployment whose pods or ReplicaSets changed
    /// since the last flush.
    async fn publish_touched(&self, touched: &mut HashSet<(String, String)>) {
        let round = chrono::Utc::now().timestamp_millis();
        let mut acks = AckWindow::new();
        for (namespace, identifier) in touched.drain() {
            let id = SyncEvent::parts_id(&namespace, &identifier, round);
            let published = async {
                let ack = self.publish(&namespace, &identifier, id, None).await?;
                acks.push(ack).await?;
                anyhow::Ok(())
            };
            if let Err(error) = published.await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "publishing a sync event failed"
                );
            }
        }
        if let Err(error) = acks.finish().await {
            tracing::warn!(%error, "a sync event was not acknowledged");
        }
    }

    /// A sync event for a change the watch saw; `present` unless it was
    /// the deletion.
    async fn publish_one(&self, deployment: &Deployment, present: bool) {
        let published = async {
            self.publish_seen(deployment, present).await?.await?;
            anyhow::Ok(())
        };
        if let Err(error) = published.await {
            tracing::warn!(
                error = format!("{error:#}"),
                "publishing a sync event failed"
            );
        }
    }

    /// A sync event for a Deployment the watch or the list saw, once per
    /// change of it; with the object while it is `present`, so that a
    /// worker records it without reading it again.
    async fn publish_seen(
        &self,
        deployment: &Deployment,
        present: bool,
    ) -> anyhow::Result<PublishAckFuture> {
        let version = deployment.resource_version().unwrap_or_default();
        let id = SyncEvent::change_id(&deployment.uid().unwrap_or_default(), &version);
        let namespace = deployment.namespace().unwrap_or_default();
        let seen = present.then_some(deployment);
        self.publish(&namespace, &deployment.name_any(), id, seen)
            .await
    }

    async fn publish(
        &self,
        namespace: &str,
        name: &str,
        id: String,
        seen: Option<&Deployment>,
    ) -> anyhow::Result<PublishAckFuture> {
        let ack =
            queue::publish_sync(&self.js, &self.names, namespace, name, Some(id), seen).await?;
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
        let mut acks = AckWindow::new();
        for api in self.apis::<Deployment>() {
            let mut params = ListParams::default().labels(&selector()).limit(500);
            loop {
                let page = api.list(&params).await?;
                for deployment in &page.items {
                    acks.push(self.publish_seen(deployment, true).await?)
                        .await?;
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
                acks.push(self.publish(&namespace, &identifier, id, None).await?)
                    .await?;
            }
        }
        Ok(acks.finish().await?)
    }
}
