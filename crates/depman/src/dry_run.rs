//! Dry runs (contract: "Dry run"). The api holds no Kubernetes credentials,
//! so it asks a worker over NATS request/reply; the worker asks the API
//! server itself (`dryRun=All` under depman's field manager, so admission,
//! quotas and validation run exactly as for the real apply) and answers with
//! the object depman would apply and what that would change in the live one.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    domain::{
        FieldError,
        diff::{Difference, diff},
        spec::DeploymentSpec,
    },
    kubernetes::{self, ApplyError, REQUEST_ANNOTATION},
    queue::Names,
};

/// What the api asks a worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ask {
    pub operation: Operation,
    /// The user the object would be annotated with.
    pub owner: String,
    pub spec: DeploymentSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Apply,
    Delete,
}

/// What a dry run shows, besides the spec the api merged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// The Deployment depman would apply; `null` for a DELETE. No request is
    /// recorded, so its `depman.io/request-id` annotation is the nil UUID.
    #[schema(value_type = Option<Object>)]
    pub object: Option<Value>,
    /// What would change in the live Deployment, leaf by leaf, as the API
    /// server would leave it: empty for a no-op. Bookkeeping that changes on
    /// every write (`resourceVersion`, `generation`, `managedFields`,
    /// `status`, depman's request annotation) is left out.
    pub diff: Vec<Difference>,
    /// The API server's warnings (`Warning` headers), as `kubectl` prints
    /// them.
    pub warnings: Vec<String>,
}

/// Why a dry run has no preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum DryRunError {
    /// The API server refused the object, as it would refuse the apply:
    /// with the request's would-be `failure_code`, its message and the
    /// fields it named.
    #[error("{message}")]
    Refused {
        code: String,
        message: String,
        causes: Vec<FieldError>,
    },
    /// No worker answered, or Kubernetes could not.
    #[error("{0}")]
    Unavailable(String),
}

type Answer = Result<Preview, DryRunError>;

/// The api's side: asks one worker, and gives up after `timeout`.
pub async fn ask(
    nats: &Client,
    names: &Names,
    question: &Ask,
    timeout: Duration,
) -> Result<Preview, DryRunError> {
    let payload =
        serde_json::to_vec(question).map_err(|e| DryRunError::Unavailable(e.to_string()))?;
    let request = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(timeout));
    let reply = nats
        .send_request(names.dry_run_subject(), request)
        .await
        .map_err(|error| {
            DryRunError::Unavailable(match error.kind() {
                RequestErrorKind::NoResponders => {
                    "no worker is running to carry out the dry run".into()
                }
                RequestErrorKind::TimedOut => {
                    format!(
                        "no worker answered the dry run within {}",
                        humantime::format_duration(timeout)
                    )
                }
                RequestErrorKind::InvalidSubject
                | RequestErrorKind::MaxPayloadExceeded
                | RequestErrorKind::Other => {
                    format!("NATS could not carry the dry run: {error}")
                }
            })
        })?;
    serde_json::from_slice::<Answer>(&reply.payload).map_err(|e| {
        DryRunError::Unavailable(format!("a worker answered what this api cannot read: {e}"))
    })?
}

/// How many dry runs one worker carries out at once.
const CONCURRENCY: usize = 32;

/// The worker's side: answers dry runs, one of the workers of the queue
/// group each, until `stop`.
pub async fn serve(
    nats: Client,
    names: Names,
    kube: kube::Client,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let questions = nats
        .queue_subscribe(names.dry_run_subject(), names.dry_run_group())
        .await?;
    questions
        .take_until(stop.cancelled_owned())
        .for_each_concurrent(CONCURRENCY, |message| {
            let (nats, kube) = (nats.clone(), kube.clone());
            async move {
                let Some(reply) = message.reply else { return };
                let answer = match serde_json::from_slice::<Ask>(&message.payload) {
                    Ok(question) => preview(&kube, &question).await,
                    Err(e) => Err(DryRunError::Unavailable(format!("unreadable dry run: {e}"))),
                };
                let payload = serde_json::to_vec(&answer).unwrap_or_default();
                if let Err(error) = nats.publish(reply, payload.into()).await {
                    tracing::warn!(%error, "answering a dry run failed");
                }
            }
        })
        .await;
    Ok(())
}

async fn preview(kube: &kube::Client, question: &Ask) -> Answer {
    let spec = &question.spec;
    // The manifest is made once: sent to the API server, and shown.
    let object = match question.operation {
        Operation::Apply => {
            let deployment = kubernetes::deployment(spec, &question.owner, Uuid::nil());
            let manifest = kubernetes::manifest(&deployment)
                .map_err(|e| DryRunError::Unavailable(e.to_string()))?;
            Some(manifest)
        }
        Operation::Delete => None,
    };
    let (namespace, name) = (&spec.namespace, &spec.identifier);
    // Both ask the API server about now; neither waits for the other.
    let (live, result) = tokio::join!(kubernetes::live(kube, namespace, name), async {
        match &object {
            Some(manifest) => kubernetes::dry_run_apply(kube, namespace, name, manifest).await,
            None => kubernetes::dry_run_delete(kube, namespace, name).await,
        }
    });
    let (live, result) = (live.map_err(refused)?, result.map_err(refused)?);
    let before = live.map(comparable);
    let after = result.object.map(comparable);
    Ok(Preview {
        object,
        diff: diff(before.as_ref(), after.as_ref()),
        warnings: result.warnings,
    })
}

fn refused(refusal: kubernetes::Refusal) -> DryRunError {
    match refusal.error {
        ApplyError::Permanent(code, message) => DryRunError::Refused {
            code: code.to_owned(),
            message,
            causes: refusal
                .causes
                .into_iter()
                .map(|(field, message)| FieldError::new(field, message))
                .collect(),
        },
        ApplyError::Transient(message) => DryRunError::Unavailable(message),
    }
}

/// The object without what every write changes (and so would be in every
/// diff): bookkeeping metadata, the status, and depman's request annotation.
fn comparable(mut object: Value) -> Value {
    if let Some(object) = object.as_object_mut() {
        object.remove("status");
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            metadata.remove(field);
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(REQUEST_ANNOTATION);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bookkeeping_is_not_a_difference() {
        let live = json!({
            "metadata": {"name": "web", "resourceVersion": "1", "generation": 1, "uid": "a",
                         "annotations": {"depman.io/request-id": "one", "note": "x"}},
            "spec": {"replicas": 1}, "status": {"readyReplicas": 1},
        });
        let next = json!({
            "metadata": {"name": "web", "resourceVersion": "2", "generation": 2, "uid": "a",
                         "annotations": {"depman.io/request-id": "two", "note": "x"}},
            "spec": {"replicas": 1}, "status": {},
        });
        assert!(diff(Some(&comparable(live)), Some(&comparable(next))).is_empty());
    }
}
