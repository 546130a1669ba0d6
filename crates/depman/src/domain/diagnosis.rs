//! Why a rollout will not complete, read from the ReplicaSet of the
//! Deployment's current template and that ReplicaSet's pods only (pods of
//! an older ReplicaSet still terminating say nothing of it). A signal that
//! may pass (an image that could not be pulled once, a first crash) counts
//! only once it lasted past its threshold (`Thresholds`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::{
    api::{apps::v1::Deployment, apps::v1::ReplicaSet, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::Time,
};

const REVISION: &str = "deployment.kubernetes.io/revision";
const TEMPLATE_HASH: &str = "pod-template-hash";

/// When a failure signal counts (settings of the worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// How long a scheduled pod may fail to pull its image.
    pub image_pull: Duration,
    /// Restarts after which a crash loop counts.
    pub crash_restarts: i32,
    /// How long a pod may stay unschedulable.
    pub unschedulable: Duration,
}

/// A failure of the rollout: a machine-readable reason, and Kubernetes'
/// own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

impl Failure {
    fn new(reason: &str, message: Option<&str>) -> Self {
        Self {
            reason: reason.to_owned(),
            message: message.unwrap_or(reason).to_owned(),
        }
    }
}

/// The ReplicaSet of the Deployment's current template: the one of its
/// revision.
pub fn current_replica_set<'a>(
    deployment: &Deployment,
    sets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let revision = deployment.metadata.annotations.as_ref()?.get(REVISION)?;
    sets.iter().find(|set| {
        set.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            == Some(revision)
    })
}

/// What the current ReplicaSet and its pods say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// The first failure, if any.
    pub failure: Option<Failure>,
    /// When no failure counts yet but a signal would once it lasts: how
    /// long until then, so that the sync looks again (nothing else may
    /// change by then to make it).
    pub recheck: Option<Duration>,
}

/// The first failure among the current ReplicaSet and its pods, if any.
pub fn diagnose(
    deployment: &Deployment,
    sets: &[ReplicaSet],
    pods: &[Pod],
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Diagnosis {
    let Some(set) = current_replica_set(deployment, sets) else {
        return Diagnosis::default();
    };
    if let Some(failure) = replica_failure(set) {
        return Diagnosis {
            failure: Some(failure),
            recheck: None,
        };
    }
    let Some(hash) = set
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(TEMPLATE_HASH))
    else {
        return Diagnosis::default();
    };
    let mut own: Vec<&Pod> = pods
        .iter()
        .filter(|pod| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(TEMPLATE_HASH))
                == Some(hash)
        })
        .collect();
    own.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut diagnosis = Diagnosis::default();
    for pod in own {
        match pod_failure(pod, thresholds, now) {
            Signal::Fails(failure) => {
                return Diagnosis {
                    failure: Some(failure),
                    recheck: None,
                };
            }
            Signal::CountsIn(wait) => {
                diagnosis.recheck = Some(diagnosis.recheck.map_or(wait, |other| other.min(wait)));
            }
            Signal::None => {}
        }
    }
    diagnosis
}

/// What one pod says.
enum Signal {
    Fails(Failure),
    /// A failure signal that counts once it lasted this much longer.
    CountsIn(Duration),
    None,
}

/// A ReplicaSet that cannot create its pods (`FailedCreate`): a quota, or
/// an admission rule.
fn replica_failure(set: &ReplicaSet) -> Option<Failure> {
    let conditions = set.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions.iter().find(|c| {
        c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
    })?;
    let message = failed.message.as_deref();
    let reason = if message.is_some_and(|m| m.contains("exceeded quota")) {
        "QuotaExceeded"
    } else {
        failed.reason.as_deref().unwrap_or("FailedCreate")
    };
    Some(Failure::new(reason, message))
}

fn pod_failure(pod: &Pod, thresholds: &Thresholds, now: DateTime<Utc>) -> Signal {
    let Some(status) = pod.status.as_ref() else {
        return Signal::None;
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled");
    if let Some(unscheduled) = scheduled.filter(|c| c.status == "False")
        && unscheduled.reason.as_deref() == Some("Unschedulable")
    {
        let since = unscheduled.last_transition_time.as_ref();
        return match remaining(since, thresholds.unschedulable, now) {
            Some(wait) => Signal::CountsIn(wait),
            None => Signal::Fails(Failure::new(
                "Unschedulable",
                unscheduled.message.as_deref(),
            )),
        };
    }
    // How long the pod has been on its node: image pulls start there.
    let on_node = scheduled
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref());
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let mut signal = Signal::None;
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let Some(reason) = waiting.reason.as_deref() else {
            continue;
        };
        let message = waiting.message.as_deref();
        match reason {
            "InvalidImageName" => return Signal::Fails(Failure::new(reason, message)),
            "ErrImagePull" | "ImagePullBackOff" | "CreateContainerConfigError" => {
                match remaining(on_node, thresholds.image_pull, now) {
                    None => return Signal::Fails(Failure::new(reason, message)),
                    Some(wait) => signal = Signal::CountsIn(wait),
                }
            }
            "CrashLoopBackOff" if container.restart_count >= thresholds.crash_restarts => {
                let exit = container
                    .last_state
                    .as_ref()
                    .and_then(|last| last.terminated.as_ref())
                    .map(|t| format!("; last exit code {}", t.exit_code))
                    .unwrap_or_default();
                let text = format!(
                    "{}: restarted {} times{exit}",
                    message.unwrap_or("back-off restarting the failed container"),
                    container.restart_count
                );
                return Signal::Fails(Failure::new(reason, Some(&text)));
            }
            _ => {}
        }
    }
    signal
}

/// How much longer than `now` a signal seen `since` must last to reach
/// `threshold`; `None` once it has (or when Kubernetes gave no time).
fn remaining(since: Option<&Time>, threshold: Duration, now: DateTime<Utc>) -> Option<Duration> {
    let since = since.and_then(|t| DateTime::from_timestamp_millis(t.0.as_millisecond()))?;
    let lasted = (now - since).to_std().unwrap_or_default();
    threshold.checked_sub(lasted).filter(|wait| !wait.is_zero())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const THRESHOLDS: Thresholds = Thresholds {
        image_pull: Duration::from_secs(30),
        crash_restarts: 2,
        unschedulable: Duration::from_secs(60),
    };

    fn now() -> DateTime<Utc> {
        "2026-12-04T12:00:00Z".parse().unwrap()
    }

    /// `seconds` before `now()`.
    fn ago(seconds: i64) -> String {
        (now() - chrono::TimeDelta::seconds(seconds)).to_rfc3339()
    }

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": {REVISION: "2"}},
            "spec": {"selector": {}, "template": {}},
        }))
        .unwrap()
    }

    fn set(revision: &str, hash: &str, conditions: Value) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "annotations": {REVISION: revision},
                         "labels": {TEMPLATE_HASH: hash}},
            "spec": {"selector": {}},
            "status": {"replicas": 0, "conditions": conditions},
        }))
        .unwrap()
    }

    fn sets() -> Vec<ReplicaSet> {
        vec![set("1", "old", json!([])), set("2", "new", json!([]))]
    }

    fn pod(hash: &str, scheduled_ago: i64, container: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}-x"), "labels": {TEMPLATE_HASH: hash}},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(scheduled_ago)}],
                "containerStatuses": [container],
            },
        }))
        .unwrap()
    }

    fn waiting(reason: &str, restarts: i32) -> Value {
        json!({"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": restarts,
               "state": {"waiting": {"reason": reason, "message": format!("{reason} message")}},
               "lastState": {"terminated": {"exitCode": 1}}})
    }

    fn diagnosed(pods: &[Pod]) -> Option<String> {
        diagnose(&deployment(), &sets(), pods, &THRESHOLDS, now())
            .failure
            .map(|f| f.reason)
    }

    #[test]
    fn an_image_pull_failure_counts_once_it_outlasts_its_grace() {
        for reason in ["ErrImagePull", "ImagePullBackOff"] {
            let early = diagnose(
                &deployment(),
                &sets(),
                &[pod("new", 10, waiting(reason, 0))],
                &THRESHOLDS,
                now(),
            );
            assert_eq!(early.failure, None);
            assert_eq!(
                early.recheck,
                Some(Duration::from_secs(20)),
                "looks again when it would count"
            );
            assert_eq!(
                diagnosed(&[pod("new", 31, waiting(reason, 0))]).as_deref(),
                Some(reason)
            );
        }
        assert_eq!(
            diagnosed(&[pod("new", 0, waiting("InvalidImageName", 0))]).as_deref(),
            Some("InvalidImageName"),
            "a name that cannot be pulled ever fails at once"
        );
    }

    #[test]
    fn a_crash_loop_counts_from_its_second_restart() {
        assert_eq!(
            diagnosed(&[pod("new", 5, waiting("CrashLoopBackOff", 1))]),
            None
        );
        let failure = diagnose(
            &deployment(),
            &sets(),
            &[pod("new", 5, waiting("CrashLoopBackOff", 2))],
            &THRESHOLDS,
            now(),
        )
        .failure
        .expect("a crash loop");
        assert_eq!(failure.reason, "CrashLoopBackOff");
        assert!(
            failure.message.contains("last exit code 1"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn only_the_pods_of_the_current_replica_set_count() {
        let old_failing = pod("old", 300, waiting("CrashLoopBackOff", 9));
        assert_eq!(diagnosed(&[old_failing]), None);
    }

    #[test]
    fn a_pod_unschedulable_past_its_grace_fails() {
        let unscheduled = |seconds| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "web-new-x", "labels": {TEMPLATE_HASH: "new"}},
                "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 Insufficient cpu.", "lastTransitionTime": ago(seconds)}]},
            }))
            .unwrap()
        };
        assert_eq!(diagnosed(&[unscheduled(30)]), None);
        assert_eq!(
            diagnosed(&[unscheduled(61)]).as_deref(),
            Some("Unschedulable")
        );
    }

    #[test]
    fn a_replica_set_that_cannot_create_pods_names_the_quota() {
        let quota = json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"web-new-x\" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0"}]);
        let sets = vec![set("1", "old", json!([])), set("2", "new", quota)];
        let failure = diagnose(&deployment(), &sets, &[], &THRESHOLDS, now())
            .failure
            .expect("a failure");
        assert_eq!(failure.reason, "QuotaExceeded");
        assert!(failure.message.contains("exceeded quota"));
    }

    #[test]
    fn healthy_pods_say_nothing() {
        let running = json!({"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                             "state": {"running": {}}});
        assert_eq!(diagnosed(&[pod("new", 100, running)]), None);
    }
}
