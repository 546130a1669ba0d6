//! The `api` role: serves the HTTP API until asked to stop.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;

use crate::{
    db,
    http::{self, AppState},
    settings::ApiSettings,
};

/// The API, bound and ready to serve. Binding happens in `build`, so that a
/// caller (a test) may ask for port 0 and read the real address.
pub struct Api {
    listener: TcpListener,
    state: AppState,
}

impl Api {
    /// Connects to its dependencies (NATS in the background: the API starts
    /// and accepts requests while NATS is down), applies pending migrations
    /// and binds the listener.
    pub async fn build(settings: &ApiSettings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        db::migrate(&pool, Duration::from_secs(60)).await?;
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&settings.nats.nats_url)
            .await?;
        let listener = TcpListener::bind(settings.http_addr).await?;
        let state = AppState {
            pool,
            nats,
            users: Default::default(),
            metrics: Default::default(),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` resolves, then finishes the requests in flight.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "api listening");
        let app = http::router(self.state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop)
            .await?;
        tracing::info!("api stopped");
        Ok(())
    }
}
