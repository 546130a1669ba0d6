//! The connections every role of one process shares: PostgreSQL, NATS and
//! its JetStream names, and the metrics registry.

use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;

use crate::{db, metrics::Metrics, queue::Names, settings::CommonSettings};

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
    /// migrations first. `pool_size` is the role's (`db::pool_size`).
    pub async fn connect(settings: &CommonSettings, pool_size: u32) -> anyhow::Result<Self> {
        install_crypto_provider();
        let pool = db::pool(&settings.database, pool_size)?;
        db::migrate(&pool, Duration::from_secs(60)).await?;
        db::warm(&pool).await;
        let servers: Vec<&str> = (settings.nats.nats_url.split(','))
            .map(str::trim)
            .filter(|server| !server.is_empty())
            .collect();
        let nats = async_nats::ConnectOptions::new()
            .name("depman")
            .retry_on_initial_connect()
            .connect(servers.as_slice())
            .await?;
        let js = jetstream::new(nats.clone());
        Ok(Self {
            metrics: Metrics::with_pool(&pool),
            pool,
            nats,
            js,
            names: Names::new(&settings.nats.prefix)
                .with_replicas(settings.nats.stream_replicas.into()),
        })
    }
}

/// Makes ring rustls's provider for the whole process. The webhook client
/// chooses its own, but any other HTTPS client (reqwest built without a
/// provider of its own, as depman builds it) needs a default. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
