//! What every handler may use.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;

use super::{limit::RateLimiter, trusted::TrustedProxies};

use crate::{
    feed::EventFeed,
    identity::TokenVerifier,
    metrics::Metrics,
    policy::Policy,
    queue::Names,
    store::users::Users,
    waiters::Waiters,
    webhooks::{destination::Allowed, secret::SecretKey},
};

/// Cheap to clone: handles to shared pools and registries.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub users: Users,
    pub metrics: Metrics,
    pub waiters: Waiters,
    pub feed: EventFeed,
    /// Seals webhook secrets; without it webhooks are off.
    pub webhook_key: Option<SecretKey>,
    pub webhook_hosts: Allowed,
    /// Where dry runs are asked, and how long an answer may take.
    pub names: Names,
    pub dry_run_timeout: Duration,
    /// Where users may create, and how many.
    pub policy: Arc<Policy>,
    /// How fast each user may change things.
    pub limiter: RateLimiter,
    /// Verifies bearer tokens (`DEPMAN_AUTH=jwt`); `None`: `X-User-ID`.
    pub verifier: Option<TokenVerifier>,
    /// Who may name the caller with `X-User-ID`.
    pub trusted_proxies: Arc<TrustedProxies>,
}
