//! What a live Deployment says about its rollout: the `status` and `health`
//! of the contract (section 2), computed from the object alone.

use k8s_openapi::api::apps::v1::Deployment;

use super::status::{DeploymentStatus, Health};

/// Status and health of a Deployment that exists.
pub fn assess(deployment: &Deployment) -> (DeploymentStatus, Health) {
    let desired = deployment.spec.replicas.unwrap_or(1);
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let complete = observed
        && status.updated_replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired;
    let conditions = status.conditions.unwrap_or_default();
    let degraded = conditions.iter().any(|c| {
        let is = |kind: &str, status: &str| {
            c.type_.as_deref() == Some(kind) && c.status.as_deref() == Some(status)
        };
        (is("Progressing", "False") && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            || is("ReplicaFailure", "True")
    });
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

    #[test]
    fn zero_replicas_scaled_down_is_complete() {
        let d = deployment(0, 2, json!({"observedGeneration": 2}));
        assert_eq!(assess(&d), (DeploymentStatus::Created, Health::Healthy));
    }
}
