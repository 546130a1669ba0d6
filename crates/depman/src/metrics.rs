//! Prometheus metrics of every role, in one registry per process (and per
//! test app): no global recorder. `/metrics` serves them.

use std::sync::Arc;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use sqlx::PgPool;

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http: HttpMetrics,
    pub relay: RelayMetrics,
    pub worker: WorkerMetrics,
    pub watcher: WatcherMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("depman");
        let http = HttpMetrics::register(&mut registry);
        let relay = RelayMetrics::register(&mut registry);
        let worker = WorkerMetrics::register(&mut registry);
        let watcher = WatcherMetrics::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            http,
            relay,
            worker,
            watcher,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// 1 ms to about 16 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub latency: HistogramFamily<HttpLabels>,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency: HistogramFamily<HttpLabels> = Family::new_with_constructor(seconds_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        Self { requests, latency }
    }
}

#[derive(Clone)]
pub struct RelayMetrics {
    depth: Gauge,
    published: Counter,
    lag: Histogram,
    requeued: Counter,
}

impl RelayMetrics {
    fn register(registry: &mut Registry) -> Self {
        let depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Accepted requests not yet published",
            depth.clone(),
        );
        let published = Counter::default();
        registry.register(
            "outbox_published",
            "Requests published to JetStream",
            published.clone(),
        );
        let lag = seconds_histogram();
        registry.register(
            "outbox_publish_lag_seconds",
            "Time from acceptance to JetStream's acknowledgement",
            lag.clone(),
        );
        let requeued = Counter::default();
        registry.register(
            "requests_requeued",
            "Accepted requests queued again because JetStream had lost their message",
            requeued.clone(),
        );
        Self {
            depth,
            published,
            lag,
            requeued,
        }
    }

    pub fn published(&self, lag: chrono::TimeDelta) {
        self.published.inc();
        self.lag.observe(lag.as_seconds_f64().max(0.0));
    }

    pub fn requeued(&self, count: usize) {
        self.requeued.inc_by(count as u64);
    }

    pub async fn observe_depth(&self, pool: &PgPool) {
        if let Ok(depth) = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(pool)
            .await
        {
            self.depth.set(depth);
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub request_type: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub outcome: &'static str,
}

#[derive(Clone)]
pub struct WorkerMetrics {
    pub processed: Family<OutcomeLabels, Counter>,
    pub apply_latency: Histogram,
    pub retries: Counter,
    pub dead_letters: Counter,
    pub synced: Family<SyncLabels, Counter>,
    pub sync_lag: Histogram,
}

impl WorkerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let processed = Family::default();
        registry.register(
            "worker_requests",
            "Requests carried out, by type and outcome (success, failure, retry, skipped)",
            processed.clone(),
        );
        let apply_latency = seconds_histogram();
        registry.register(
            "worker_apply_duration_seconds",
            "Time of one apply or delete against the API server",
            apply_latency.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "worker_retries",
            "Transient failures to be retried",
            retries.clone(),
        );
        let dead_letters = Counter::default();
        registry.register(
            "worker_dead_letters",
            "Requests dead-lettered after their retries",
            dead_letters.clone(),
        );
        let synced = Family::default();
        registry.register(
            "sync_events_applied",
            "Sync events handled, by outcome (updated, deleted, unchanged)",
            synced.clone(),
        );
        let sync_lag = seconds_histogram();
        registry.register(
            "sync_lag_seconds",
            "Time from the watcher seeing a change to the row being written",
            sync_lag.clone(),
        );
        Self {
            processed,
            apply_latency,
            retries,
            dead_letters,
            synced,
            sync_lag,
        }
    }

    pub fn observe_sync(
        &self,
        synced: crate::worker::sync::Synced,
        observed_on: chrono::DateTime<chrono::Utc>,
    ) {
        use crate::worker::sync::Synced;
        let outcome = match synced {
            Synced::Updated => "updated",
            Synced::Deleted => "deleted",
            Synced::Unchanged => "unchanged",
        };
        self.synced.get_or_create(&SyncLabels { outcome }).inc();
        if synced != Synced::Unchanged {
            let lag = chrono::Utc::now() - observed_on;
            self.sync_lag.observe(lag.as_seconds_f64().max(0.0));
        }
    }
}

#[derive(Clone)]
pub struct WatcherMetrics {
    pub published: Counter,
    pub resync: Histogram,
    pub leader: Gauge,
}

impl WatcherMetrics {
    fn register(registry: &mut Registry) -> Self {
        let published = Counter::default();
        registry.register(
            "sync_events_published",
            "Sync events the watcher published",
            published.clone(),
        );
        let resync = seconds_histogram();
        registry.register(
            "resync_duration_seconds",
            "Time of one full resync",
            resync.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "watcher_leader",
            "1 while this watcher holds the lease",
            leader.clone(),
        );
        Self {
            published,
            resync,
            leader,
        }
    }
}
