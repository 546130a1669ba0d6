//! The `api` role: serves the HTTP API, relays the outbox to JetStream,
//! wakes the requests that wait for a change and streams events, until
//! asked to stop.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    dependencies::Dependencies,
    feed::EventFeed,
    http::{self, AppState, limit::RateLimiter},
    identity::TokenVerifier,
    policy::{NamespacePolicy, Policy},
    relay::Relay,
    settings::{ApiSettings, AuthMode, WebhookSettings},
    webhooks::destination::Allowed,
};

/// The API, bound and ready to serve. Binding happens in `build`, so that a
/// caller (a test) may ask for port 0 and read the real address.
pub struct Api {
    listener: TcpListener,
    state: AppState,
    relay: Relay,
}

impl Api {
    pub async fn build(
        deps: &Dependencies,
        settings: &ApiSettings,
        webhooks: &WebhookSettings,
    ) -> anyhow::Result<Self> {
        // A dry run answers within every request's 30 s time limit.
        anyhow::ensure!(
            settings.dry_run_timeout <= std::time::Duration::from_secs(25),
            "DEPMAN_DRY_RUN_TIMEOUT must be 25s or less (requests are cut off at 30 s)"
        );
        let namespaces = match settings.namespace_policy.as_str() {
            "" => None,
            path => Some(NamespacePolicy::load(path.as_ref())?),
        };
        let policy = Policy::new(
            namespaces,
            Some(settings.own_namespace.clone()),
            Some(settings.max_deployments_per_user).filter(|&max| max > 0),
        );
        let listener = TcpListener::bind(settings.http_addr).await?;
        let state = AppState {
            pool: deps.pool.clone(),
            nats: deps.nats.clone(),
            users: Default::default(),
            metrics: deps.metrics.clone(),
            waiters: Default::default(),
            feed: EventFeed::new(deps.metrics.events.clone()),
            webhook_key: webhooks.webhook_key.clone(),
            webhook_hosts: Allowed::new(&webhooks.webhook_allowed_hosts),
            names: deps.names.clone(),
            dry_run_timeout: settings.dry_run_timeout,
            policy: Arc::new(policy),
            limiter: RateLimiter::new(settings.rate_limit, settings.rate_limit_burst),
            verifier: match settings.auth.auth {
                AuthMode::Header => None,
                AuthMode::Jwt => Some(TokenVerifier::new(settings.auth.jwt.clone())?),
            },
            trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
        };
        let relay = Relay::new(
            deps.pool.clone(),
            deps.js.clone(),
            deps.names.clone(),
            deps.metrics.relay.clone(),
        );
        Ok(Self {
            listener,
            state,
            relay,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled, then finishes the requests in flight.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "api listening");
        let relay = tokio::spawn(self.relay.run(stop.clone()));
        let waiters = tokio::spawn(
            self.state
                .waiters
                .clone()
                .run(self.state.pool.clone(), stop.clone()),
        );
        let feed = tokio::spawn(
            self.state
                .feed
                .clone()
                .run(self.state.pool.clone(), stop.clone()),
        );
        let app = http::router(self.state);
        let stopped = stop.clone();
        // The peer's address, for `DEPMAN_TRUSTED_PROXIES`.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await?;
        stop.cancel();
        relay.await?;
        waiters.await?;
        feed.await?;
        tracing::info!("api stopped");
        Ok(())
    }
}
