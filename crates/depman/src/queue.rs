//! JetStream: the streams and the consumer depman uses, every name derived
//! from `DEPMAN_PREFIX`, created or updated at start so that a changed
//! setting takes effect on the next deploy.

use std::{collections::VecDeque, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    context::{PublishAckFuture, PublishError},
    message::PublishMessage,
    stream::{self, RetentionPolicy, StorageType},
};
use k8s_openapi::api::apps::v1::Deployment;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::status::RequestType;

/// How long JetStream waits for a worker's acknowledgement before it
/// delivers the message again (to a worker that died, say). Retries of
/// transient failures do not wait on this: the worker asks for them with
/// NAK delays (its own jittered exponential backoff). The consumer has no
/// `backoff` list on purpose: with one, this server redelivers NAKed
/// messages on the list's schedule and ignores the NAK delay (seen in
/// tests/worker/outage.rs: a 600 ms retry came 30 s late).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Deliveries JetStream makes of one message before it gives up. The worker
/// ends a request after `DEPMAN_MAX_ATTEMPTS` failed attempts long before
/// this; it is only a bound on a message that keeps crashing workers.
const MAX_DELIVER: i64 = 1000;

/// Window in which JetStream drops a message whose `Nats-Msg-Id` it has
/// seen: covers a relay that dies between publishing and deleting its rows.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// One installation's JetStream layout: the names of its streams, subjects
/// and consumers, all from the prefix, and how many servers keep a copy of
/// each stream.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    replicas: usize,
}

impl Names {
    /// The layout of `prefix`, its streams on one server.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            replicas: 1,
        }
    }

    /// The same, each stream kept by `replicas` servers of a cluster.
    pub fn with_replicas(self, replicas: usize) -> Self {
        Self { replicas, ..self }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn requests_stream(&self) -> String {
        format!("{}_requests", self.prefix)
    }

    /// One subject per deployment, so that a stream viewer shows its history.
    pub fn request_subject(&self, identifier: &str) -> String {
        format!("{}.requests.{identifier}", self.prefix)
    }

    pub fn dead_letter_stream(&self) -> String {
        format!("{}_dead_letters", self.prefix)
    }

    pub fn dead_letter_subject(&self, identifier: &str) -> String {
        format!("{}.dead.{identifier}", self.prefix)
    }

    /// Where the api asks workers for dry runs (core NATS request/reply).
    pub fn dry_run_subject(&self) -> String {
        format!("{}.dry-run", self.prefix)
    }

    /// The queue group that makes one worker answer each dry run.
    pub fn dry_run_group(&self) -> String {
        format!("{}_dry_run", self.prefix)
    }

    pub fn worker_consumer(&self) -> String {
        format!("{}_worker", self.prefix)
    }

    pub fn sync_stream(&self) -> String {
        format!("{}_sync", self.prefix)
    }

    /// One subject per Deployment (`*` for every namespace or name).
    pub fn sync_subject(&self, namespace: &str, name: &str) -> String {
        format!("{}.sync.{namespace}.{name}", self.prefix)
    }

    pub fn sync_consumer(&self) -> String {
        format!("{}_sync", self.prefix)
    }

    /// The Lease the watchers elect their leader with.
    pub fn watcher_lease(&self) -> String {
        format!("{}-watcher", self.prefix.replace('_', "-").to_lowercase())
    }
}

/// "Look at this Deployment again". An event of the watch or a resync
/// carries the Deployment as it saw it, which a first delivery records
/// without reading it again; the others (a deletion, a change of its pods
/// or ReplicaSets, a look again) make the sync read the live object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncEvent {
    pub namespace: String,
    pub name: String,
    /// When the change was seen (for the sync-lag metric).
    pub observed_on: chrono::DateTime<chrono::Utc>,
    /// The resource version seen, when the event is about the Deployment
    /// itself as it is (not its deletion, its pods or its ReplicaSets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The Deployment at that version, without its `managedFields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Box<Deployment>>,
}

impl SyncEvent {
    /// The message id of one change of one object: its uid and resource
    /// version, so that a change seen by the watch and again by a resync is
    /// published once.
    pub fn change_id(uid: &str, resource_version: &str) -> String {
        format!("{uid}:{resource_version}")
    }

    /// The message id of "its pods or ReplicaSets changed" in flush `round`.
    pub fn parts_id(namespace: &str, name: &str, round: i64) -> String {
        format!("parts:{namespace}/{name}:{round}")
    }

    /// The message id of "Kubernetes has no such object" in resync `round`.
    pub fn missing_id(namespace: &str, name: &str, round: i64) -> String {
        format!("missing:{namespace}/{name}:{round}")
    }
}

/// What the relay publishes for an accepted request: the worker reads the
/// request itself from the database, which stays the source of truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMessage {
    pub request_id: Uuid,
    pub identifier: String,
    pub sequence: i64,
    pub request_type: RequestType,
}

/// A request that failed for good after its retries, kept for `depman dlq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub request_id: Uuid,
    pub identifier: String,
    pub request_type: RequestType,
    pub attempts: i32,
    pub failure_reason: String,
    pub failed_on: chrono::DateTime<chrono::Utc>,
}

/// Creates the streams, or brings their settings up to date.
pub async fn ensure_streams(js: &jetstream::Context, names: &Names) -> anyhow::Result<()> {
    let work_queue = |name: String, subject: String, duplicate_window: Duration| stream::Config {
        name,
        subjects: vec![subject],
        // A message is gone once a worker acknowledged it.
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window,
        num_replicas: names.replicas(),
        ..Default::default()
    };
    ensure_stream(
        js,
        work_queue(
            names.requests_stream(),
            names.request_subject("*"),
            DUPLICATE_WINDOW,
        ),
    )
    .await?;
    // The sync stream's window collapses the same change seen twice (uid
    // and resource version). It keeps one event per Deployment, the newest
    // (it carries the newest object, or makes the sync read it): under
    // churn a backlog of superseded events made the lag grow without
    // bound (22,074 waiting in make bench-sync at 10,000).
    ensure_stream(
        js,
        stream::Config {
            max_messages_per_subject: 1,
            ..work_queue(
                names.sync_stream(),
                names.sync_subject("*", "*"),
                Duration::from_secs(120),
            )
        },
    )
    .await?;
    ensure_stream(
        js,
        stream::Config {
            name: names.dead_letter_stream(),
            subjects: vec![names.dead_letter_subject("*")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: names.replicas(),
            ..Default::default()
        },
    )
    .await
}

/// Creates the stream, or updates it to `config`. A stream that exists
/// with another replica count, which the server will not change (more
/// replicas than it has servers, say), keeps its count and takes the rest
/// of `config`, with an error in the log each time: it still works, with
/// the copies it has. Any other refusal is an error.
async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> anyhow::Result<()> {
    let (name, wanted) = (config.name.clone(), config.num_replicas);
    let existing = match js.get_stream(&name).await {
        // get_stream already read the stream's info: no second request.
        Ok(stream) => Some(stream.cached_info().config.num_replicas),
        Err(_) => None,
    };
    if let Some(replicas) = existing.filter(|replicas| *replicas > wanted) {
        // Fewer copies than before is a choice someone should see made.
        tracing::warn!(stream = %name, replicas, wanted, "lowering the stream's replica count to DEPMAN_STREAM_REPLICAS");
    }
    let refused = match js.create_or_update_stream(config.clone()).await {
        Ok(_) => return Ok(()),
        Err(refused) => refused,
    };
    let Some(replicas) = existing.filter(|replicas| *replicas != wanted) else {
        return Err(refused.into());
    };
    // The same update with the count the stream has: if that goes through,
    // the count was what the server refused.
    js.create_or_update_stream(stream::Config {
        num_replicas: replicas,
        ..config
    })
    .await?;
    tracing::error!(
        stream = %name,
        replicas,
        wanted,
        error = %refused,
        "the stream keeps its replica count: the NATS server refused DEPMAN_STREAM_REPLICAS"
    );
    Ok(())
}

/// What a durable consumer reads: all workers share one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Requests,
    Sync,
}

impl Feed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Sync => "sync",
        }
    }
}

/// The durable pull consumer of `feed` that all workers share.
pub async fn consumer(
    js: &jetstream::Context,
    names: &Names,
    feed: Feed,
) -> anyhow::Result<PullConsumer> {
    let (stream, consumer) = match feed {
        Feed::Requests => (names.requests_stream(), names.worker_consumer()),
        Feed::Sync => (names.sync_stream(), names.sync_consumer()),
    };
    durable_consumer(js, names, stream, consumer).await
}

/// The largest sync event sent with its object, far below NATS's 1 MiB
/// payload limit (a Deployment may reach 1.5 MiB in etcd).
const MAX_SYNC_EVENT: usize = 256 * 1024;

/// Publishes "look at this Deployment again", with the Deployment as it
/// was `seen` when the event is about it as it is. `message_id`, when
/// given, lets JetStream drop the same change published twice (see
/// [`SyncEvent::change_id`]); the returned future resolves on JetStream's
/// acknowledgement.
pub async fn publish_sync(
    js: &jetstream::Context,
    names: &Names,
    namespace: &str,
    name: &str,
    message_id: Option<String>,
    seen: Option<&Deployment>,
) -> anyhow::Result<PublishAckFuture> {
    let object = seen.map(|deployment| {
        let mut object = deployment.clone();
        // A third of the object's size, and nothing the sync reads.
        object.metadata.managed_fields = None;
        Box::new(object)
    });
    let mut event = SyncEvent {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        observed_on: chrono::Utc::now(),
        resource_version: seen.and_then(|d| d.metadata.resource_version.clone()),
        object,
    };
    let mut payload = serde_json::to_vec(&event)?;
    if payload.len() > MAX_SYNC_EVENT {
        // Big annotations, say: the worker reads the object instead.
        event.object = None;
        payload = serde_json::to_vec(&event)?;
    }
    let mut message = PublishMessage::build().payload(payload.into());
    if let Some(id) = message_id {
        message = message.message_id(id);
    }
    Ok(js
        .send_publish(names.sync_subject(namespace, name), message)
        .await?)
}

/// Publishes whose acknowledgements are awaited in a window of at most
/// [`AckWindow::SIZE`]. The client lends every publish one of 5,000 permits
/// (async-nats's `max_ack_inflight`), shared by every role of the process,
/// until its acknowledgement is awaited, and waits for a free one before it
/// publishes. A publisher that held all its acknowledgements until the end
/// (the watcher's resync of more than 5,000 Deployments) waited forever,
/// and with it the relay and the worker of the process.
pub struct AckWindow {
    pending: VecDeque<PublishAckFuture>,
    published: usize,
}

impl AckWindow {
    pub const SIZE: usize = 256;

    pub fn new() -> Self {
        Self {
            pending: VecDeque::with_capacity(Self::SIZE),
            published: 0,
        }
    }

    /// Adds `ack`; when the window is full, awaits the oldest first and
    /// returns its outcome.
    pub async fn push(&mut self, ack: PublishAckFuture) -> Result<(), PublishError> {
        let oldest = if self.pending.len() >= Self::SIZE {
            self.pending.pop_front()
        } else {
            None
        };
        self.pending.push_back(ack);
        self.published += 1;
        match oldest {
            Some(oldest) => oldest.await.map(drop),
            None => Ok(()),
        }
    }

    /// Awaits the rest; returns how many were published, or the first
    /// failure.
    pub async fn finish(self) -> Result<usize, PublishError> {
        for ack in self.pending {
            ack.await?;
        }
        Ok(self.published)
    }
}

impl Default for AckWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates the consumer `name` on `stream`, or brings its settings up to
/// date: explicit acks, redelivery after `ACK_WAIT`.
async fn durable_consumer(
    js: &jetstream::Context,
    names: &Names,
    stream: String,
    name: String,
) -> anyhow::Result<PullConsumer> {
    ensure_streams(js, names).await?;
    let stream = js.get_stream(stream).await?;
    let exists = stream.get_consumer::<pull::Config>(&name).await.is_ok();
    let config = pull::Config {
        durable_name: Some(name),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: ACK_WAIT,
        max_deliver: MAX_DELIVER,
        max_ack_pending: 10_000,
        ..Default::default()
    };
    let consumer = if exists {
        stream.update_consumer(config).await?
    } else {
        stream.create_consumer(config).await?
    };
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_prefix() {
        let names = Names::new("t1");
        assert_eq!(names.requests_stream(), "t1_requests");
        assert_eq!(names.request_subject("web"), "t1.requests.web");
        assert_eq!(names.dead_letter_stream(), "t1_dead_letters");
        assert_eq!(names.dead_letter_subject("web"), "t1.dead.web");
        assert_eq!(names.worker_consumer(), "t1_worker");
        assert_eq!(names.sync_stream(), "t1_sync");
        assert_eq!(names.sync_subject("ns", "web"), "t1.sync.ns.web");
        assert_eq!(names.watcher_lease(), "t1-watcher");
    }
}
