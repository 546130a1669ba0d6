//! Carrying out one request: a plain function of the request id and the
//! worker's context, which the tests call directly.
//!
//! Order per deployment: requests of one identifier take effect in their
//! sequence order whatever order their messages arrive in. Under a
//! PostgreSQL advisory lock on the identifier, the worker carries out every
//! waiting request of that identifier up to the one it was handed, oldest
//! first; the later messages of those requests then find them finished. A
//! request that must be retried stops the line: nothing after it runs first.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use kube::Client;
use rand::Rng;
use sqlx::{PgConnection, PgPool};

use crate::{
    domain::status::{RequestStatus, RequestType},
    kubernetes::{self, ApplyError},
    metrics::{OutcomeLabels, WorkerMetrics},
    queue::{DeadLetter, Names, RequestMessage, SyncEvent},
    store::{
        deployments::Outcome,
        requests::{self, Waiting},
    },
};

/// What a worker needs to carry out requests.
#[derive(Clone)]
pub struct Context {
    pub pool: PgPool,
    pub kube: Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub metrics: WorkerMetrics,
}

/// What to do with the message once its request was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The request is finished (now, or before): acknowledge the message.
    Done,
    /// It (or an earlier request it waits for) failed transiently: deliver
    /// the message again after this delay.
    RetryAfter(Duration),
}

/// Carries out the request of `message`, and every earlier waiting request
/// of its deployment first. A request already finished (a redelivered
/// message) finds nothing waiting.
pub async fn handle(ctx: &Context, message: &RequestMessage) -> anyhow::Result<Next> {
    // Both connections are taken before the lock, so that its holder never
    // waits for the pool. The lock lives as long as the `lock` transaction,
    // which holds no row locks (the API is never kept waiting by a slow API
    // server) and releases it however this function ends; the work itself
    // is written on `conn`, each outcome committed as it happens.
    let mut conn = ctx.pool.acquire().await?;
    let mut lock = ctx.pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&message.identifier)
            .fetch_one(&mut *lock)
            .await?;
    if !locked {
        // Another worker is carrying out this deployment's requests, maybe
        // this one among them: look again shortly, holding nothing meanwhile.
        return Ok(Next::RetryAfter(backoff(LOCK_WAIT, 1)));
    }
    let waiting =
        requests::waiting_up_to(&mut *conn, &message.identifier, message.sequence).await?;
    for request in waiting {
        if let Some(delay) = carry_out(ctx, &mut conn, &request).await? {
            return Ok(Next::RetryAfter(delay));
        }
    }
    lock.commit().await?;
    Ok(Next::Done)
}

/// How long a message waits when its deployment is locked by another worker.
const LOCK_WAIT: Duration = Duration::from_millis(100);

/// Applies one request and records its outcome; returns the retry delay if
/// it failed transiently and has attempts left.
async fn carry_out(
    ctx: &Context,
    conn: &mut PgConnection,
    request: &Waiting,
) -> anyhow::Result<Option<Duration>> {
    let kind = type_label(request.request_type);
    if let Some((reason, outcome)) = moot(conn, request).await? {
        requests::finish(
            &mut *conn,
            request.id,
            RequestStatus::Failure,
            Some(reason),
            None,
        )
        .await?;
        tracing::warn!(request = %request.id, identifier = %request.identifier, %reason, "request ended unapplied");
        count(ctx, kind, outcome);
        return Ok(None);
    }
    let started = Instant::now();
    let result = match request.request_type {
        RequestType::Create | RequestType::Update => {
            let object = kubernetes::deployment(&request.spec, &request.owner, request.id);
            kubernetes::apply(&ctx.kube, &object).await
        }
        RequestType::Delete => {
            kubernetes::delete(&ctx.kube, &request.namespace, &request.identifier).await
        }
    };
    ctx.metrics
        .apply_latency
        .observe(started.elapsed().as_secs_f64());
    let reason = match result {
        Ok(()) => {
            let outcome = match request.request_type {
                RequestType::Create => Some(Outcome::Created),
                RequestType::Delete => Some(Outcome::Deleted),
                RequestType::Update => None,
            };
            requests::finish(
                &mut *conn,
                request.id,
                RequestStatus::Success,
                None,
                outcome,
            )
            .await?;
            if request.request_type != RequestType::Delete {
                ask_for_sync(ctx, request).await;
            }
            tracing::info!(request = %request.id, identifier = %request.identifier, kind, "request carried out");
            count(ctx, kind, "success");
            return Ok(None);
        }
        Err(ApplyError::Permanent(reason)) => reason,
        Err(ApplyError::Transient(reason)) => {
            let attempts = request.attempts + 1;
            if (attempts as u32) < ctx.max_attempts {
                requests::count_attempt(&mut *conn, request.id, &reason).await?;
                tracing::warn!(request = %request.id, identifier = %request.identifier, attempts, %reason, "transient failure; will retry");
                ctx.metrics.retries.inc();
                count(ctx, kind, "retry");
                return Ok(Some(backoff(ctx.retry_backoff, attempts)));
            }
            let reason = format!("gave up after {attempts} attempts: {reason}");
            dead_letter(ctx, request, attempts, &reason).await?;
            reason
        }
    };
    let outcome = (request.request_type == RequestType::Create).then_some(Outcome::CreateFailed);
    requests::finish(
        &mut *conn,
        request.id,
        RequestStatus::Failure,
        Some(&reason),
        outcome,
    )
    .await?;
    tracing::warn!(request = %request.id, identifier = %request.identifier, %reason, "request failed");
    count(ctx, kind, "failure");
    Ok(None)
}

/// Why a waiting request must end `FAILURE` without touching the cluster,
/// with its outcome label, if it must.
async fn moot(
    conn: &mut PgConnection,
    request: &Waiting,
) -> Result<Option<(&'static str, &'static str)>, sqlx::Error> {
    if request
        .newest_success
        .is_some_and(|newest| newest > request.sequence)
    {
        // Only a replayed request can be older than one that already took
        // effect: applying it would undo a newer spec.
        return Ok(Some((
            "superseded: a newer request of this deployment already took effect",
            "superseded",
        )));
    }
    // An UPDATE accepted while its CREATE waited would otherwise create the
    // object of a deployment recorded as never created (FAILED), which its
    // owner could then neither see updated nor delete.
    if request.request_type == RequestType::Update
        && requests::create_failed_before(&mut *conn, &request.identifier, request.sequence).await?
    {
        return Ok(Some((
            "its deployment's CREATE failed: there is nothing to update",
            "failure",
        )));
    }
    Ok(None)
}

/// A sync of the deployment once its request is recorded: the watcher's
/// event for the change may have been handled while the request was still
/// waiting (which keeps the row `UPDATING`), and nothing else would look at
/// it again until the rollout moves.
async fn ask_for_sync(ctx: &Context, request: &Waiting) {
    let event = SyncEvent {
        namespace: request.namespace.clone(),
        name: request.identifier.clone(),
        observed_on: chrono::Utc::now(),
    };
    let subject = ctx
        .names
        .sync_subject(&request.namespace, &request.identifier);
    let published = match serde_json::to_vec(&event) {
        Ok(payload) => ctx
            .js
            .publish(subject, payload.into())
            .await
            .map(drop)
            .map_err(anyhow::Error::from),
        Err(error) => Err(error.into()),
    };
    if let Err(error) = published {
        // The next change or resync catches up.
        tracing::warn!(error = format!("{error:#}"), "asking for a sync failed");
    }
}

async fn dead_letter(
    ctx: &Context,
    request: &Waiting,
    attempts: i32,
    reason: &str,
) -> anyhow::Result<()> {
    let letter = DeadLetter {
        request_id: request.id,
        identifier: request.identifier.clone(),
        request_type: request.request_type,
        attempts,
        failure_reason: reason.to_owned(),
        failed_on: chrono::Utc::now(),
    };
    ctx.js
        .publish(
            ctx.names.dead_letter_subject(&request.identifier),
            serde_json::to_vec(&letter)?.into(),
        )
        .await?
        .await?;
    ctx.metrics.dead_letters.inc();
    Ok(())
}

/// `base` doubled for each attempt so far, up to a minute, with ±25% jitter
/// so that requests failing together do not retry together.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 16) as u32;
    let delay = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(Duration::from_secs(60));
    delay.mul_f64(rand::rng().random_range(0.75..1.25))
}

fn count(ctx: &Context, request_type: &'static str, outcome: &'static str) {
    ctx.metrics
        .processed
        .get_or_create(&OutcomeLabels {
            request_type,
            outcome,
        })
        .inc();
}

fn type_label(request_type: RequestType) -> &'static str {
    match request_type {
        RequestType::Create => "CREATE",
        RequestType::Update => "UPDATE",
        RequestType::Delete => "DELETE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_minute() {
        let base = Duration::from_secs(1);
        for (attempts, nominal) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (10, 60.0),
            (40, 60.0),
        ] {
            let delay = backoff(base, attempts).as_secs_f64();
            assert!(
                delay >= nominal * 0.75 && delay <= nominal * 1.25,
                "{attempts}: {delay}"
            );
        }
    }
}
