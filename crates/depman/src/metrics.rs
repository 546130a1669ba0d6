//! Prometheus metrics of every role, in one registry per process (and per
//! test app): no global recorder. `/metrics` serves them.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        MetricType,
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
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
    pub events: EventMetrics,
    pub webhooks: WebhookMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::build(Registry::with_prefix("depman"))
    }
}

impl Metrics {
    /// Every metric, and the connections of `pool` read at each scrape.
    pub fn with_pool(pool: &PgPool) -> Self {
        let mut registry = Registry::with_prefix("depman");
        registry.register_collector(Box::new(PoolConnections(pool.clone())));
        Self::build(registry)
    }

    fn build(mut registry: Registry) -> Self {
        let http = HttpMetrics::register(&mut registry);
        let relay = RelayMetrics::register(&mut registry);
        let worker = WorkerMetrics::register(&mut registry);
        let watcher = WatcherMetrics::register(&mut registry);
        let events = EventMetrics::register(&mut registry);
        let webhooks = WebhookMetrics::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            http,
            relay,
            worker,
            watcher,
            events,
            webhooks,
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

/// The PostgreSQL pool's connections by state, as a scrape finds them: a
/// pool whose `idle` stays at 0 makes requests wait for a connection.
#[derive(Debug)]
struct PoolConnections(PgPool);

impl Collector for PoolConnections {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (size, idle) = (self.0.size(), self.0.num_idle() as u32);
        let mut family = encoder.encode_descriptor(
            "db_connections",
            "Open PostgreSQL connections of the pool, by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in [("idle", idle), ("in_use", size.saturating_sub(idle))] {
            let labels = [("state", state)];
            ConstGauge::new(i64::from(count)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
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

    /// Lost requests the sweep queued again.
    pub fn swept(&self, count: usize) {
        self.requeued.inc_by(count as u64);
    }

    pub fn set_depth(&self, depth: i64) {
        self.depth.set(depth);
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    request_type: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByOutcome {
    outcome: &'static str,
}

#[derive(Clone)]
pub struct WorkerMetrics {
    processed: Family<OutcomeLabels, Counter>,
    apply_latency: Histogram,
    retries: Counter,
    dead_letters: Counter,
    synced: Family<ByOutcome, Counter>,
    sync_lag: Histogram,
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

    /// One request carried out (or given up, or to be retried).
    pub fn processed(&self, request_type: &'static str, outcome: &'static str) {
        self.processed
            .get_or_create(&OutcomeLabels {
                request_type,
                outcome,
            })
            .inc();
        if outcome == "retry" {
            self.retries.inc();
        }
    }

    pub fn applied_in(&self, elapsed: std::time::Duration) {
        self.apply_latency.observe(elapsed.as_secs_f64());
    }

    pub fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    /// One sync event handled; `lag` is how long ago the watcher saw the
    /// change it wrote, `None` when it wrote nothing.
    pub fn synced(&self, outcome: &'static str, lag: Option<chrono::TimeDelta>) {
        self.synced.get_or_create(&ByOutcome { outcome }).inc();
        if let Some(lag) = lag {
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

#[derive(Clone)]
pub struct EventMetrics {
    logged: Counter,
    subscribers: Gauge,
    streamed: Counter,
    stream_lag: Histogram,
}

/// Counts a subscriber for as long as it is kept.
pub struct Subscribed(Gauge);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl EventMetrics {
    fn register(registry: &mut Registry) -> Self {
        let logged = Counter::default();
        registry.register(
            "events_logged",
            "Events written to the log, as this api process's feed read them",
            logged.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "event_subscribers",
            "Event streams open on this api process",
            subscribers.clone(),
        );
        let streamed = Counter::default();
        registry.register(
            "events_streamed",
            "Events sent to subscribers, all subscribers together",
            streamed.clone(),
        );
        let stream_lag = seconds_histogram();
        registry.register(
            "event_stream_lag_seconds",
            "Time from an event being written to its being sent to a subscriber",
            stream_lag.clone(),
        );
        Self {
            logged,
            subscribers,
            streamed,
            stream_lag,
        }
    }

    pub fn logged(&self, count: usize) {
        self.logged.inc_by(count as u64);
    }

    pub fn subscribed(&self) -> Subscribed {
        self.subscribers.inc();
        Subscribed(self.subscribers.clone())
    }

    pub fn streamed(&self, occurred_on: chrono::DateTime<chrono::Utc>) {
        self.streamed.inc();
        let lag = chrono::Utc::now() - occurred_on;
        self.stream_lag.observe(lag.as_seconds_f64().max(0.0));
    }
}

#[derive(Clone)]
pub struct WebhookMetrics {
    deliveries: Family<ByOutcome, Counter>,
    lag: Histogram,
}

impl WebhookMetrics {
    fn register(registry: &mut Registry) -> Self {
        let deliveries = Family::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed, refused, abandoned)",
            deliveries.clone(),
        );
        let lag = seconds_histogram();
        registry.register(
            "webhook_delivery_lag_seconds",
            "Time from an event being written to its delivery being acknowledged",
            lag.clone(),
        );
        Self { deliveries, lag }
    }

    pub fn attempted(&self, outcome: &'static str) {
        self.deliveries.get_or_create(&ByOutcome { outcome }).inc();
    }

    pub fn delivered(&self, occurred_on: chrono::DateTime<chrono::Utc>) {
        self.attempted("delivered");
        let lag = chrono::Utc::now() - occurred_on;
        self.lag.observe(lag.as_seconds_f64().max(0.0));
    }
}
