//! Carrying out one request message: `handle` is a plain function of the
//! message and the worker's context, which the tests call directly.
//!
//! Order per deployment: requests of one identifier take effect in their
//! sequence order whatever order their messages arrive in. Under a
//! PostgreSQL advisory lock on the identifier, the worker carries out every
//! waiting request of that identifier up to the one it was handed, oldest
//! first; the later messages of those requests then find them finished. A
//! request that must be retried stops the line: nothing after it runs first.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use sqlx::{PgConnection, PgPool};

use super::{
    decision::{self, Decision},
    sync::{self, Synced},
};
use crate::{
    domain::{diagnosis::Thresholds, rollout::Rollout, status::RequestType},
    kubernetes,
    metrics::WorkerMetrics,
    queue::{self, DeadLetter, Names, RequestMessage},
    store::{
        deployments,
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
    /// When a failing pod fails its rollout.
    pub thresholds: Thresholds,
    /// How long a rollout is followed before it fails as `RolloutTimeout`.
    pub rollout_timeout: Duration,
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
    if !deployments::try_lock_for_work(&mut lock, &message.identifier).await? {
        // Another worker is carrying out this deployment's requests, maybe
        // this one among them: look again shortly, holding nothing meanwhile.
        return Ok(Next::RetryAfter(backoff(LOCK_WAIT, 1)));
    }
    let mut applied = Vec::new();
    let outcome = carry_out_waiting(ctx, &mut conn, message, &mut applied).await;
    // The lock goes with its transaction either way; the rows are written.
    drop(lock);
    drop(conn);
    // Outside the lock and holding no connection: a third one per worker
    // slot could starve the pool.
    for (request, object) in &applied {
        settle_applied(ctx, request, object).await;
    }
    outcome
}

/// Carries out the requests waiting up to the message's, in order, until
/// one is to be retried; `applied` gets each CREATE and UPDATE applied, with
/// the object the API server answered.
async fn carry_out_waiting(
    ctx: &Context,
    conn: &mut PgConnection,
    message: &RequestMessage,
    applied: &mut Vec<(Waiting, Deployment)>,
) -> anyhow::Result<Next> {
    let waiting =
        requests::waiting_up_to(&mut *conn, &message.identifier, message.sequence).await?;
    for request in waiting {
        let (retry, object) = carry_out(ctx, &mut *conn, &request).await?;
        if let Some(object) = object {
            applied.push((request, object));
        }
        if let Some(delay) = retry {
            return Ok(Next::RetryAfter(delay));
        }
    }
    Ok(Next::Done)
}

/// How long a message waits when its deployment is locked by another worker.
const LOCK_WAIT: Duration = Duration::from_millis(100);

/// Decides what becomes of one request, applying it if it may be, and
/// records that; returns the retry delay if it is to be tried again, and
/// the Deployment a successful CREATE or UPDATE left.
async fn carry_out(
    ctx: &Context,
    conn: &mut PgConnection,
    request: &Waiting,
) -> anyhow::Result<(Option<Duration>, Option<Deployment>)> {
    let create_failed = request.request_type == RequestType::Update
        && requests::create_failed_before(&mut *conn, &request.identifier, request.sequence)
            .await?;
    let moot = decision::moot(
        request.request_type,
        request.sequence,
        request.newest_success,
        create_failed,
    );
    let (decision, applied) = match moot {
        Some(moot) => (Decision::Moot(moot), None),
        None => {
            if !requests::start_applying(&mut *conn, request.id).await? {
                // Cancelled while it waited: nothing to do.
                return Ok((None, None));
            }
            let (result, applied) = match apply(ctx, request).await {
                Ok(applied) => (Ok(()), applied),
                Err(error) => (Err(error), None),
            };
            let decision = decision::after_apply(result, request.attempts, ctx.max_attempts);
            (decision, applied)
        }
    };
    record(ctx, conn, request, &decision, applied.as_ref()).await?;
    Ok(match decision {
        Decision::Retry { attempts, .. } => (Some(backoff(ctx.retry_backoff, attempts)), None),
        Decision::Succeeded => (None, applied),
        _ => (None, None),
    })
}

/// The request's change, made in the cluster; the Deployment as an apply
/// left it.
async fn apply(
    ctx: &Context,
    request: &Waiting,
) -> Result<Option<Deployment>, kubernetes::ApplyError> {
    let started = Instant::now();
    let result = match request.request_type {
        RequestType::Create | RequestType::Update => {
            let object = kubernetes::deployment(&request.spec, &request.owner, request.id);
            kubernetes::bounded(kubernetes::apply(&ctx.kube, &object))
                .await
                .map(Some)
        }
        RequestType::Delete => kubernetes::bounded(kubernetes::delete(
            &ctx.kube,
            &request.namespace,
            &request.identifier,
        ))
        .await
        .map(|()| None),
    };
    ctx.metrics.applied_in(started.elapsed());
    result
}

/// Writes what was decided: the request's end, its deployment's status and,
/// once applied, the rollout it starts (superseding older ones) in one
/// transaction, or the attempt to be retried; a dead letter first for a
/// request that gave up.
async fn record(
    ctx: &Context,
    conn: &mut PgConnection,
    request: &Waiting,
    decision: &Decision,
    applied: Option<&Deployment>,
) -> anyhow::Result<()> {
    let (id, identifier, kind) = (request.id, &request.identifier, request.request_type);
    if let Decision::Retry { attempts, reason } = decision {
        requests::count_attempt(&mut *conn, id, reason).await?;
        tracing::warn!(request = %id, %identifier, attempts, %reason, "transient failure; will retry");
    }
    if let Decision::Failed {
        reason,
        dead_letter: true,
        ..
    } = decision
    {
        send_dead_letter(ctx, request, reason).await?;
    }
    if let Some((status, failure)) = decision.ending() {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let finished = requests::finish(&mut *tx, id, status, failure).await?;
        if let Some(outcome) = decision.outcome(kind).filter(|_| finished) {
            deployments::record_outcome(&mut *tx, identifier, outcome).await?;
        }
        if finished && *decision == Decision::Succeeded {
            let generation = applied.map(|object| object.metadata.generation.unwrap_or(0));
            let rollout = generation
                .map(|generation| Rollout::started(generation, request.spec.replicas, Utc::now()));
            requests::start_rollout(&mut tx, id, identifier, request.sequence, rollout.as_ref())
                .await?;
        }
        tx.commit().await?;
        match failure {
            Some((reason, code)) => {
                tracing::warn!(request = %id, %identifier, %reason, code, "request failed")
            }
            None => {
                tracing::info!(request = %id, %identifier, kind = kind.as_str(), "request carried out")
            }
        }
    }
    ctx.metrics.processed(kind.as_str(), decision.label());
    Ok(())
}

/// The deployment's row brought up to date once its request is recorded:
/// the watcher's event for the change may have been handled while the
/// request was still waiting (which keeps the row `UPDATING`), and nothing
/// else would look at it again until the rollout moves. From the object the
/// apply answered with, which costs the API server nothing; through a sync
/// event (a fresh read) when the row holds a newer version already, the
/// write fails, or the rollout is to be looked at again later.
async fn settle_applied(ctx: &Context, request: &Waiting, applied: &Deployment) {
    let recorded = sync::record(ctx, &request.namespace, &request.identifier, applied).await;
    if !matches!(recorded, Ok(Synced::Updated)) {
        ask_for_sync(ctx, request).await;
    }
}

/// A sync event for the deployment of `request`: a worker reads it afresh.
async fn ask_for_sync(ctx: &Context, request: &Waiting) {
    let published = async {
        queue::publish_sync(
            &ctx.js,
            &ctx.names,
            &request.namespace,
            &request.identifier,
            None,
            None,
        )
        .await?
        .await?;
        anyhow::Ok(())
    };
    if let Err(error) = published.await {
        // The next change or resync catches up.
        tracing::warn!(error = format!("{error:#}"), "asking for a sync failed");
    }
}

async fn send_dead_letter(ctx: &Context, request: &Waiting, reason: &str) -> anyhow::Result<()> {
    let letter = DeadLetter {
        request_id: request.id,
        identifier: request.identifier.clone(),
        request_type: request.request_type,
        attempts: request.attempts + 1,
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
    ctx.metrics.dead_lettered();
    Ok(())
}

/// `base` doubled for each attempt so far, up to a minute, with jitter so
/// that requests failing together do not retry together.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    crate::backoff::jittered(base, attempts, Duration::from_secs(60))
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
