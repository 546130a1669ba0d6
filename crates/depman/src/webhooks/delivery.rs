//! Delivering webhooks, in the worker role. Each round leases the webhooks
//! that have an event waiting and are due, and delivers each one's events
//! in order until one fails (then it waits out a backoff) or none is left.
//! A worker that dies holding a lease delays its webhooks by the lease at
//! most; the event it was sending is sent again (at least once).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use reqwest::{Client, Url, redirect::Policy};
use sqlx::{PgPool, postgres::PgListener};

use tokio_util::sync::CancellationToken;

use super::{
    destination::{Allowed, Refused},
    secret::SecretKey,
    signature::sign,
};
use crate::{
    backoff, feed,
    http::events::Event,
    metrics::WebhookMetrics,
    settings::WebhookSettings,
    store::{
        events::{self, EventRow, Filter},
        webhooks::{self, Attempt, WebhookRow},
    },
};

/// How long a worker holds a webhook without renewing its lease (each
/// delivery renews it).
const LEASE: Duration = Duration::from_secs(15);
/// A receiver that has not answered by then failed.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Webhooks one worker delivers to at once.
const CONCURRENT: usize = 32;
/// How long one webhook is delivered to before its lease is given back,
/// so that one busy webhook does not keep a worker forever.
const TURN: Duration = Duration::from_secs(5);
/// How often due webhooks are looked for without a notification (retries
/// come due without one).
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Deliveries {
    pool: PgPool,
    key: Option<SecretKey>,
    allowed: Allowed,
    client: Client,
    retry_backoff: Duration,
    retry_for: Duration,
    metrics: WebhookMetrics,
}

#[derive(Debug)]
enum Failure {
    Status(u16),
    Error(String),
    Refused(String),
}

impl Deliveries {
    pub fn new(
        pool: PgPool,
        settings: &WebhookSettings,
        retry_backoff: Duration,
        retry_for: Duration,
        metrics: WebhookMetrics,
    ) -> anyhow::Result<Self> {
        let allowed = Allowed::new(&settings.webhook_allowed_hosts);
        Ok(Self {
            pool,
            key: settings.webhook_key.clone(),
            client: client(&allowed)?,
            allowed,
            retry_backoff,
            retry_for,
            metrics,
        })
    }

    /// Delivers until `stop` is cancelled: up to [`CONCURRENT`] webhooks at
    /// once, each on its own, so that a slow receiver holds up only its own
    /// webhook.
    pub async fn run(self, stop: CancellationToken) {
        let Some(key) = self.key.clone() else {
            tracing::info!("DEPMAN_WEBHOOK_KEY is not set: this worker delivers no webhooks");
            return;
        };
        let mut listener: Option<PgListener> = None;
        let mut turns = tokio::task::JoinSet::new();
        while !stop.is_cancelled() {
            if listener.is_none() {
                listener = feed::listen(&self.pool).await.ok();
            }
            let room = CONCURRENT - turns.len();
            if room > 0 {
                match webhooks::lease_due(&self.pool, LEASE, room as i64).await {
                    Ok(leased) => {
                        for hook in leased {
                            turns.spawn(self.clone().turn(key.clone(), hook));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "looking for webhooks to deliver failed"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                Some(_) = turns.join_next() => {}
                woken = feed::notified(listener.as_mut(), POLL) => {
                    if woken.is_err() {
                        listener = None;
                    }
                }
            }
        }
        // A delivery cut off here is sent again by whoever takes the
        // webhook next: at least once.
        turns.shutdown().await;
    }

    /// Delivers the leased webhook's waiting events, in order, until one
    /// fails, none is left or its turn is over.
    async fn turn(self, key: SecretKey, hook: WebhookRow) {
        let secret = match key.open(hook.id, &hook.secret) {
            Ok(secret) => secret,
            Err(error) => {
                tracing::error!(webhook = %hook.id, %error, "cannot sign deliveries");
                return;
            }
        };
        let filter = Filter {
            user_id: Some(hook.user_id),
            identifier: hook.identifier.clone(),
            types: hook.types.clone().unwrap_or_default(),
        };
        let started = Instant::now();
        let mut lease = hook.leased_until;
        let mut cursor = hook.cursor();
        while started.elapsed() < TURN {
            let rows = match events::read(&self.pool, &filter, cursor, 20).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "reading events to deliver failed");
                    return;
                }
            };
            if rows.is_empty() {
                break;
            }
            for row in rows {
                match self.deliver_one(&hook, &secret, &row, lease).await {
                    Ok(Some(renewed)) => {
                        lease = renewed;
                        cursor = row.position();
                    }
                    // Failed and recorded, or the lease is lost.
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(%error, webhook = %hook.id, "recording a delivery failed");
                        return;
                    }
                }
            }
        }
        if let Err(error) = webhooks::release(&self.pool, hook.id, lease).await {
            tracing::warn!(%error, "releasing a webhook failed; its lease runs out");
        }
    }

    /// Sends one event and records the outcome; the renewed lease if it was
    /// delivered.
    async fn deliver_one(
        &self,
        hook: &WebhookRow,
        secret: &str,
        row: &EventRow,
        lease: chrono::DateTime<Utc>,
    ) -> Result<Option<chrono::DateTime<Utc>>, sqlx::Error> {
        let outcome = self.send(hook, secret, row).await;
        let (status_code, error) = match &outcome {
            Ok(status) => (Some(*status), None),
            Err(Failure::Status(status)) => (Some(*status), None),
            Err(Failure::Error(error) | Failure::Refused(error)) => (None, Some(error.as_str())),
        };
        let attempt = Attempt {
            webhook_id: hook.id,
            event: row.position(),
            event_type: &row.kind,
            status_code,
            error,
        };
        if outcome.is_ok() {
            self.metrics.delivered(row.occurred_on);
            return webhooks::delivered(&self.pool, &attempt, lease, LEASE).await;
        }
        let attempts = webhooks::attempts(&self.pool, hook.id, row.position()).await? + 1;
        let retry_in = backoff::jittered(self.retry_backoff, attempts, MAX_BACKOFF);
        let disabled =
            webhooks::failed(&self.pool, &attempt, lease, retry_in, self.retry_for).await?;
        let label = match (&outcome, disabled) {
            (_, true) => "abandoned",
            (Err(Failure::Refused(_)), _) => "refused",
            _ => "failed",
        };
        self.metrics.attempted(label);
        tracing::warn!(webhook = %hook.id, status = ?status_code, error, attempts, disabled, "webhook delivery failed");
        Ok(None)
    }

    async fn send(&self, hook: &WebhookRow, secret: &str, row: &EventRow) -> Result<u16, Failure> {
        // A name is checked by the resolver the client connects through,
        // once per delivery; an address in the URL itself is checked here.
        let url = Url::parse(&hook.url).map_err(|e| Failure::Error(e.to_string()))?;
        self.allowed.check_address(&url).map_err(refused)?;
        let event = Event::from_row(row).map_err(|e| Failure::Error(format!("{e:#}")))?;
        let body = serde_json::to_vec(&event).map_err(|e| Failure::Error(e.to_string()))?;
        let timestamp = Utc::now().timestamp();
        let signature = sign(secret, &event.id, timestamp, &body);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| match refusal(&error) {
                Some(refusal) => refused(refusal.clone()),
                None => Failure::Error(describe(&error)),
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(Failure::Status(status.as_u16()))
        }
    }
}

fn refused(refusal: Refused) -> Failure {
    Failure::Refused(format!("refused: {refusal}"))
}

/// The resolver's refusal, when that is why the request failed.
fn refusal(error: &reqwest::Error) -> Option<&Refused> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<Refused>() {
            return Some(refusal);
        }
        source = cause.source();
    }
    None
}

/// The error and its causes, without the URL (reqwest puts it first; the
/// delivery list names the webhook already).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An HTTP client that connects only where [`Allowed`] lets it, follows no
/// redirect and trusts the system's certificate authorities.
fn client(allowed: &Allowed) -> anyhow::Result<Client> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(certificate);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(allowed.clone())
        .redirect(Policy::none())
        .timeout(TIMEOUT)
        .no_proxy()
        .user_agent(concat!("depman-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that resolves inside is refused by the resolver the client
    /// connects through, and told apart from any other failure.
    #[tokio::test]
    async fn a_name_resolving_inside_is_refused_at_connection() {
        crate::dependencies::install_crypto_provider();
        let allowed = Allowed::default();
        let error = client(&allowed)
            .expect("a client")
            .get("http://localhost:9/hook")
            .send()
            .await
            .expect_err("refused");
        assert!(
            matches!(refusal(&error), Some(Refused::Inside { .. })),
            "{error:?}"
        );
        let loopback = Allowed::new(&["localhost".into()]);
        let error = client(&loopback)
            .expect("a client")
            .get("http://localhost:9/hook")
            .send()
            .await
            .expect_err("nothing listens on port 9");
        assert!(
            refusal(&error).is_none(),
            "allowed, merely closed: {error:?}"
        );
    }
}
