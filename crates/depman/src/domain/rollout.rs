//! What a live Deployment says about its rollout: the `status` and `health`
//! of the contract (section 2), and the rollout of the request that produced
//! its generation, computed from the object alone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    diagnosis::Failure,
    status::{DeploymentStatus, Health},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    /// Applied; not all desired replicas of its generation are updated and
    /// available yet.
    Progressing,
    /// The Deployment observed its generation, and every desired replica is
    /// updated and available (the rule of `kubectl rollout status`).
    Complete,
    /// It will not complete; `reason` says why.
    Failed,
    /// A newer request of the deployment was applied before it ended.
    Superseded,
}

/// The rollout an applied CREATE or UPDATE started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub state: RolloutState,
    /// A machine-readable code, such as `ProgressDeadlineExceeded`.
    pub reason: Option<String>,
    /// Kubernetes' own words.
    pub message: Option<String>,
    /// The Deployment generation this request produced.
    pub generation: i64,
    pub desired_replicas: i32,
    pub updated_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub started_on: DateTime<Utc>,
    pub finished_on: Option<DateTime<Utc>>,
}

impl Rollout {
    /// The rollout of an apply that left the Deployment at `generation`.
    pub fn started(generation: i64, desired_replicas: i32, now: DateTime<Utc>) -> Self {
        Self {
            state: RolloutState::Progressing,
            reason: None,
            message: None,
            generation,
            desired_replicas,
            updated_replicas: 0,
            ready_replicas: 0,
            available_replicas: 0,
            started_on: now,
            finished_on: None,
        }
    }

    /// Where this rollout stands, seen from the live Deployment. Counts and
    /// conditions speak for it only once the Deployment observed its
    /// generation (or a later one: then a newer apply supersedes it anyway).
    ///
    /// `failure` is what the pods of the Deployment's current ReplicaSet
    /// say (`diagnosis`): it fails the rollout at once.
    pub fn follow(
        &self,
        deployment: &Deployment,
        failure: Option<&Failure>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut next = self.clone();
        if self.state != RolloutState::Progressing {
            return next;
        }
        let status = deployment.status.clone().unwrap_or_default();
        if status.observed_generation.unwrap_or(0) < self.generation {
            return next;
        }
        next.desired_replicas = deployment.spec.replicas.unwrap_or(1);
        next.updated_replicas = status.updated_replicas.unwrap_or(0);
        next.ready_replicas = status.ready_replicas.unwrap_or(0);
        next.available_replicas = status.available_replicas.unwrap_or(0);
        if every_replica_updated_and_available(deployment) {
            next.state = RolloutState::Complete;
            next.finished_on = Some(now);
        } else if let Some(failure) = failure {
            next.state = RolloutState::Failed;
            next.reason = Some(failure.reason.clone());
            next.message = Some(failure.message.clone());
            next.finished_on = Some(now);
        } else if let Some(condition) = deadline_exceeded(deployment) {
            next.state = RolloutState::Failed;
            next.reason = condition.reason.clone();
            next.message = condition.message.clone();
            next.finished_on = Some(now);
        }
        next
    }

    /// A rollout still on after `timeout` (depman's own limit,
    /// `DEPMAN_ROLLOUT_TIMEOUT`) fails as `RolloutTimeout`; otherwise, how
    /// long it has left.
    pub fn time_out(self, timeout: Duration, now: DateTime<Utc>) -> (Self, Option<Duration>) {
        if self.state != RolloutState::Progressing {
            return (self, None);
        }
        let elapsed = (now - self.started_on).to_std().unwrap_or_default();
        match timeout.checked_sub(elapsed).filter(|left| !left.is_zero()) {
            Some(left) => (self, Some(left)),
            None => {
                let message = format!(
                    "not rolled out within {} (DEPMAN_ROLLOUT_TIMEOUT): {} of {} replicas updated and available",
                    humantime::format_duration(timeout),
                    self.available_replicas.min(self.updated_replicas),
                    self.desired_replicas
                );
                let timed_out = Self {
                    state: RolloutState::Failed,
                    reason: Some("RolloutTimeout".into()),
                    message: Some(message),
                    finished_on: Some(now),
                    ..self
                };
                (timed_out, None)
            }
        }
    }
}

/// Every desired replica is of the current template and available, and
/// none of an older one is left: the rule of `kubectl rollout status`, once
/// the generation is observed.
fn every_replica_updated_and_available(deployment: &Deployment) -> bool {
    let desired = deployment.spec.replicas.unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    status.updated_replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
}

/// The Deployment's `Progressing=False` condition of reason
/// `ProgressDeadlineExceeded`, if it reports one.
pub fn deadline_exceeded(deployment: &Deployment) -> Option<&DeploymentCondition> {
    deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.status.as_deref() == Some("False")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
}

/// Whether the deployment controller has ever synced the Deployment:
/// until it has, no ReplicaSet or pod of it exists.
pub fn ever_observed(deployment: &Deployment) -> bool {
    let status = deployment.status.as_ref();
    status.and_then(|s| s.observed_generation).is_some()
}

/// Status and health of a Deployment that exists.
pub fn assess(deployment: &Deployment) -> (DeploymentStatus, Health) {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let complete = observed && every_replica_updated_and_available(deployment);
    let replica_failure = status.conditions.unwrap_or_default().iter().any(|c| {
        c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
    });
    let degraded = deadline_exceeded(deployment).is_some() || replica_failure;
    let health = if degraded {
        Health::Degraded
    } else if complete {
        Health::Healthy
    } else {
        Health::Progressing
    };
    let status = if complete {
        DeploymentStatus::Created
    } else {
        DeploymentStatus::Updating
    };
    (status, health)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(replicas: i32, generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_complete_rollout_is_created_and_healthy() {
        let d = deployment(
            2,
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}),
        );
        assert_eq!(assess(&d), (DeploymentStatus::Created, Health::Healthy));
    }

    #[test]
    fn an_unobserved_generation_or_missing_replicas_is_updating() {
        let behind = deployment(
            2,
            4,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            assess(&behind),
            (DeploymentStatus::Updating, Health::Progressing)
        );
        let short = deployment(
            3,
            1,
            json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
        );
        assert_eq!(
            assess(&short),
            (DeploymentStatus::Updating, Health::Progressing)
        );
        let old_pods_left = deployment(
            2,
            1,
            json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(assess(&old_pods_left).0, DeploymentStatus::Updating);
    }

    #[test]
    fn a_deadline_exceeded_or_replica_failure_is_degraded() {
        let stuck = deployment(
            1,
            1,
            json!({"observedGeneration": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        assert_eq!(
            assess(&stuck),
            (DeploymentStatus::Updating, Health::Degraded)
        );
        let quota = deployment(
            1,
            1,
            json!({"observedGeneration": 1, "conditions": [
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}]}),
        );
        assert_eq!(assess(&quota).1, Health::Degraded);
    }

    fn started() -> Rollout {
        Rollout::started(3, 2, Utc::now())
    }

    #[test]
    fn a_rollout_completes_once_its_generation_is_observed_and_every_replica_is_updated_and_available()
     {
        let behind = deployment(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        let rollout = started().follow(&behind, None, Utc::now());
        assert_eq!(
            rollout,
            started_at(&rollout),
            "an older generation says nothing"
        );
        let halfway = deployment(
            2,
            3,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 1, "readyReplicas": 1}),
        );
        let rollout = started().follow(&halfway, None, Utc::now());
        assert_eq!(rollout.state, RolloutState::Progressing);
        assert_eq!(
            (rollout.updated_replicas, rollout.available_replicas),
            (2, 1)
        );
        let done = deployment(
            2,
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}),
        );
        let rollout = started().follow(&done, None, Utc::now());
        assert_eq!(rollout.state, RolloutState::Complete);
        assert!(rollout.finished_on.is_some());
        // An ended rollout stays as it ended.
        assert_eq!(rollout.follow(&halfway, None, Utc::now()), rollout);
    }

    /// `started()`, with the start time of `rollout`.
    fn started_at(rollout: &Rollout) -> Rollout {
        Rollout {
            started_on: rollout.started_on,
            ..started()
        }
    }

    #[test]
    fn a_failing_pod_of_its_replica_set_fails_the_rollout_at_once() {
        let halfway = deployment(
            2,
            3,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}),
        );
        let failure = Failure {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting failed container".into(),
        };
        let rollout = started().follow(&halfway, Some(&failure), Utc::now());
        assert_eq!(rollout.state, RolloutState::Failed);
        assert_eq!(rollout.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(rollout.message.as_deref(), Some(failure.message.as_str()));
    }

    #[test]
    fn a_rollout_on_past_depmans_own_limit_times_out() {
        let timeout = Duration::from_secs(600);
        let rollout = started();
        let start = rollout.started_on;
        let (on, left) = rollout
            .clone()
            .time_out(timeout, start + chrono::TimeDelta::seconds(100));
        assert_eq!(
            (on.state, left),
            (RolloutState::Progressing, Some(Duration::from_secs(500)))
        );
        let (over, left) = rollout.time_out(timeout, start + chrono::TimeDelta::seconds(600));
        assert_eq!(over.state, RolloutState::Failed);
        assert_eq!(over.reason.as_deref(), Some("RolloutTimeout"));
        assert!(over.message.unwrap().contains("10m"));
        assert_eq!(left, None);
        let (done, left) = Rollout {
            state: RolloutState::Complete,
            ..started()
        }
        .time_out(timeout, start + chrono::TimeDelta::seconds(6000));
        assert_eq!((done.state, left), (RolloutState::Complete, None));
    }

    #[test]
    fn a_rollout_past_its_progress_deadline_fails_with_kubernetes_words() {
        let stuck = deployment(
            2,
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"web-5d\" has timed out progressing."}]}),
        );
        let rollout = started().follow(&stuck, None, Utc::now());
        assert_eq!(rollout.state, RolloutState::Failed);
        assert_eq!(rollout.reason.as_deref(), Some("ProgressDeadlineExceeded"));
        assert_eq!(
            rollout.message.as_deref(),
            Some("ReplicaSet \"web-5d\" has timed out progressing.")
        );
    }

    #[test]
    fn zero_replicas_scaled_down_is_complete() {
        let d = deployment(0, 2, json!({"observedGeneration": 2}));
        assert_eq!(assess(&d), (DeploymentStatus::Created, Health::Healthy));
    }
}
