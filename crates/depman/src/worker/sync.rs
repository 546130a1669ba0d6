//! The sync path of the worker: for each sync event, take the Deployment
//! the watcher saw (or read it from the API server) and write its state
//! into the `deployments` row (the request path records the object an
//! apply answered with the same way). Events that arrive late or twice do
//! no harm: a row never takes an older resource version than it holds, a
//! newer change has an event of its own, and a change a settled row
//! already holds costs nothing.

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{Api, api::ListParams};
use sqlx::types::Json;

use super::process::Context;
use crate::{
    domain::{
        diagnosis::{self, Diagnosis, Failure},
        rollout,
        status::{DeploymentStatus, Health},
    },
    kubernetes::{self, IDENTIFIER_LABEL, MANAGED_BY, REQUEST_ANNOTATION},
    queue::SyncEvent,
    store::{
        deployments::{self, Condition, Live},
        requests,
    },
};

/// The longest a sync event is held back to be looked at again.
const RECHECK_AT_MOST: Duration = Duration::from_secs(60);

/// How soon a rollout whose pods could not be read is looked at again.
const DIAGNOSIS_RETRY: Duration = Duration::from_secs(5);

/// What the sync made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    Updated,
    Deleted,
    /// Nothing to write: not depman's, unknown to the database (never
    /// adopted), or the row already holds this state or a newer one.
    Unchanged,
    /// Written; a pod's failure signal counts once it lasted this long,
    /// and nothing else may change by then: the event comes back.
    LookAgainIn(Duration),
}

impl Synced {
    /// The `outcome` label of `depman_sync_events_applied_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Updated | Self::LookAgainIn(_) => "updated",
            Self::Deleted => "deleted",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Records what the Deployment of `event` is now. A first delivery of a
/// change whose version a settled (`CREATED`) row already holds needs
/// nothing: nothing of the object, nor of its requests, can have changed
/// since. Another first delivery that carries the object records it as the
/// watch saw it: a newer change has an event of its own. The rest read the
/// live object (a redelivery is a look again, asked for by a rollout's
/// timer: what it carries is old), and so does an event whose object is
/// older than the row, which the row does not take.
pub async fn sync(ctx: &Context, event: &SyncEvent, first: bool) -> anyhow::Result<Synced> {
    if first
        && let Some(version) = &event.resource_version
        && deployments::settled_at(&ctx.pool, &event.namespace, &event.name, version).await?
    {
        return Ok(Synced::Unchanged);
    }
    if first && let Some(seen) = &event.object {
        let synced = record(ctx, &event.namespace, &event.name, seen).await?;
        // Refused as older than the row: only the newest event of a
        // Deployment waits in the stream, so this one may have replaced a
        // look-again whose timer must go on. What is live says.
        if synced != Synced::Unchanged {
            return Ok(synced);
        }
    }
    let api: Api<Deployment> = Api::namespaced(ctx.kube.clone(), &event.namespace);
    let live =
        kubernetes::bounded(async { api.get_opt(&event.name).await.map_err(kubernetes::classify) })
            .await?;
    let Some(live) = live else {
        // A rollout cannot go on without its Deployment (deleted by hand, or
        // with its namespace).
        requests::end_rollouts(
            &ctx.pool,
            &event.name,
            "DeploymentDeleted",
            "the Deployment was deleted before its rollout ended",
        )
        .await?;
        let deleted = deployments::record_missing(&ctx.pool, &event.namespace, &event.name).await?;
        return Ok(if deleted {
            Synced::Deleted
        } else {
            Synced::Unchanged
        });
    };
    record(ctx, &event.namespace, &event.name, &live).await
}

/// Records `live`, the Deployment `name` as the API server last showed it
/// (read, or answered to an apply), with what its pods say of a rollout
/// that is not complete.
pub async fn record(
    ctx: &Context,
    namespace: &str,
    name: &str,
    live: &Deployment,
) -> anyhow::Result<Synced> {
    let labels = live.metadata.labels.clone().unwrap_or_default();
    if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1) {
        return Ok(Synced::Unchanged);
    }
    let assessed = rollout::assess(live);
    // A rollout that is not complete: do its pods say why?
    let diagnosis = match assessed.0 {
        DeploymentStatus::Created => Diagnosis::default(),
        // A new Deployment its controller has not synced yet (the answer
        // to a CREATE's apply, the watch event of its creation): it has
        // no ReplicaSet nor pod to look at. Two lists spared per CREATE.
        _ if !rollout::ever_observed(live) => Diagnosis::default(),
        // What the pods say is a bonus: without it (an API server that
        // throttles, RBAC without pods), the Deployment's state is still
        // recorded.
        _ => diagnose(ctx, namespace, name, live)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = format!("{error:#}"), name = %name, "reading a rollout's pods failed");
                // Soon again: this event may hold the rollout's only timer.
                Diagnosis {
                    failure: None,
                    recheck: Some(DIAGNOSIS_RETRY),
                }
            }),
    };
    let failure = diagnosis.failure.as_ref();
    let state = live_state(live, assessed, failure);
    let updated = deployments::record_live(&ctx.pool, namespace, name, &state).await?;
    let mut recheck = diagnosis.recheck;
    if updated {
        // The event comes back for a timeout only when it is near: a
        // message NAKed with a delay stays pending in JetStream until then.
        // A rollout further from its timeout is timed out by a later event,
        // at the latest by the watcher's resync.
        let timeout = follow_rollouts(ctx, name, live, failure).await?;
        let near = timeout.filter(|left| *left <= RECHECK_AT_MOST);
        recheck = [recheck, near].into_iter().flatten().min();
    }
    if !updated {
        tracing::debug!(namespace = %namespace, name = %name, "labelled Deployment not taken: unknown to depman or older than the row");
    }
    Ok(match (updated, recheck) {
        (true, Some(wait)) => Synced::LookAgainIn(wait),
        (true, None) => Synced::Updated,
        (false, _) => Synced::Unchanged,
    })
}

/// What the ReplicaSets and pods of a Deployment say of its rollout.
async fn diagnose(
    ctx: &Context,
    namespace: &str,
    identifier: &str,
    live: &Deployment,
) -> anyhow::Result<Diagnosis> {
    // From the API server's watch cache as it is (`resourceVersion=0`): a
    // consistent list waits for the cache to catch up with etcd, which for
    // pods that nothing changes took 74 to 80 ms per call (make
    // bench-scale). A pod change the cache has not shown yet comes back as
    // an event of its own.
    let params = ListParams::default()
        .labels(&format!("{IDENTIFIER_LABEL}={identifier}"))
        .match_any();
    let sets = Api::<ReplicaSet>::namespaced(ctx.kube.clone(), namespace)
        .list(&params)
        .await
        .map_err(kubernetes::classify)?;
    let pods = Api::<Pod>::namespaced(ctx.kube.clone(), namespace)
        .list(&params)
        .await
        .map_err(kubernetes::classify)?;
    Ok(diagnosis::diagnose(
        live,
        &sets.items,
        &pods.items,
        &ctx.thresholds,
        chrono::Utc::now(),
    ))
}

/// Moves on the rollouts of the deployment still followed, from what the
/// live object (and its pods' `failure`) says of them, and ends those past
/// `DEPMAN_ROLLOUT_TIMEOUT`; returns how long until the next would be.
async fn follow_rollouts(
    ctx: &Context,
    identifier: &str,
    live: &Deployment,
    failure: Option<&Failure>,
) -> anyhow::Result<Option<Duration>> {
    let now = chrono::Utc::now();
    let mut next_timeout: Option<Duration> = None;
    let applied_by = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUEST_ANNOTATION));
    for (id, Json(rollout)) in requests::progressing_rollouts(&ctx.pool, identifier).await? {
        // The live spec is another request's (applied, not yet recorded):
        // its state says nothing of this rollout, which that request's
        // record will supersede.
        let ours = applied_by.is_none_or(|applied| *applied == id.to_string());
        let followed = if ours {
            rollout.follow(live, failure, now)
        } else {
            rollout.clone()
        };
        let (next, left) = followed.time_out(ctx.rollout_timeout, now);
        if next != rollout {
            requests::record_rollout(&ctx.pool, id, &next).await?;
        }
        next_timeout = [next_timeout, left].into_iter().flatten().min();
    }
    Ok(next_timeout)
}

/// The live state of a Deployment, `assessed` by `rollout::assess`;
/// `failure`, when its pods give one, makes it `DEGRADED` with that reason.
fn live_state(
    deployment: &Deployment,
    (status, health): (DeploymentStatus, Health),
    failure: Option<&Failure>,
) -> Live {
    let deadline = rollout::deadline_exceeded(deployment);
    let (health, health_reason, health_message) = match (failure, deadline) {
        (Some(failure), _) => (
            Health::Degraded,
            Some(failure.reason.clone()),
            Some(failure.message.clone()),
        ),
        (None, Some(condition)) if health == Health::Degraded => {
            (health, condition.reason.clone(), condition.message.clone())
        }
        _ => (health, None, None),
    };
    let observed = deployment.status.clone().unwrap_or_default();
    let image = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|pod| pod.containers.first())
        .and_then(|container| container.image.clone());
    let conditions = observed
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| Condition {
            kind: c.type_.unwrap_or_default(),
            status: c.status.unwrap_or_default(),
            reason: c.reason,
            message: c.message,
        })
        .collect();
    Live {
        image,
        status,
        health,
        health_reason,
        health_message,
        replicas: deployment.spec.replicas.unwrap_or(1),
        ready_replicas: observed.ready_replicas.unwrap_or(0),
        available_replicas: observed.available_replicas.unwrap_or(0),
        updated_replicas: observed.updated_replicas.unwrap_or(0),
        generation: deployment.metadata.generation.unwrap_or(0),
        observed_generation: observed.observed_generation.unwrap_or(0),
        conditions,
        resource_version: deployment
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default(),
        metadata: serde_json::json!({
            "labels": deployment.metadata.labels,
            "annotations": deployment.metadata.annotations,
            "uid": deployment.metadata.uid,
        }),
    }
}

/// Handles one sync event and acknowledges it, or asks for it again soon.
pub async fn settle(ctx: Context, message: Message) {
    let event: SyncEvent = match serde_json::from_slice(&message.payload) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(%error, "unreadable sync event; terminated");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let first = message.info().is_ok_and(|info| info.delivered == 1);
    let acked = match sync(&ctx, &event, first).await {
        Ok(synced) => {
            let lag = (synced != Synced::Unchanged).then(|| chrono::Utc::now() - event.observed_on);
            ctx.metrics.synced(synced.label(), lag);
            match synced {
                // A little after the threshold, so that the signal counts.
                Synced::LookAgainIn(wait) => {
                    message
                        .ack_with(AckKind::Nak(Some(wait + Duration::from_millis(200))))
                        .await
                }
                _ => message.ack().await,
            }
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), namespace = %event.namespace, name = %event.name, "sync failed; will retry");
            message
                .ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
                .await
        }
    };
    if let Err(error) = acked {
        tracing::warn!(%error, "acknowledging a sync event failed");
    }
}
