//! The Deployments depman manages (contract section 5): how a desired spec
//! becomes an object, how it is applied and deleted, and what an error of
//! the API server means for a retry.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec as K8sDeploymentSpec},
        core::v1::{
            Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};
use kube::{
    Api, Client,
    api::{DeleteParams, GetParams, Patch, PatchParams},
    core::Status,
};
use uuid::Uuid;

use crate::domain::spec::{DeploymentSpec, ResourceList};

pub const FIELD_MANAGER: &str = "depman";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "depman");
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const IDENTIFIER_LABEL: &str = "depman.io/identifier";
pub const OWNER_ANNOTATION: &str = "depman.io/owner";
pub const REQUEST_ANNOTATION: &str = "depman.io/request-id";

/// How long one call of the worker's may take. The client's read timeout
/// does not bound a call on an HTTP/2 connection that other calls (a
/// watch) keep busy: a call the API server never answers would hold its
/// worker slot, and its deployment's lock, for good.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `call`, or a transient failure after `CALL_TIMEOUT`.
pub async fn bounded<T>(
    call: impl Future<Output = Result<T, ApplyError>>,
) -> Result<T, ApplyError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ApplyError::Transient(format!(
                "the Kubernetes API did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

/// A client with timeouts short enough that an unreachable API server is a
/// transient failure within seconds, not minutes.
pub async fn client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer().await?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(20));
    config.write_timeout = Some(Duration::from_secs(20));
    Ok(Client::try_from(config)?)
}

/// The Deployment for `spec`: named by its identifier, labelled as depman's,
/// annotated with its owner and the request that last applied it.
pub fn deployment(spec: &DeploymentSpec, owner: &str, request_id: Uuid) -> Deployment {
    let mut labels = spec.labels.clone();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert(NAME_LABEL.into(), spec.name.clone());
    labels.insert(IDENTIFIER_LABEL.into(), spec.identifier.clone());
    let mut annotations = spec.annotations.clone();
    annotations.insert(OWNER_ANNOTATION.into(), owner.into());
    annotations.insert(REQUEST_ANNOTATION.into(), request_id.to_string());
    let selector = BTreeMap::from([(IDENTIFIER_LABEL.to_owned(), spec.identifier.clone())]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(spec.identifier.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: K8sDeploymentSpec {
            replicas: Some(spec.replicas),
            progress_deadline_seconds: Some(spec.progress_deadline_seconds),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    // The user's annotations, not depman's: a new request id
                    // must not restart the pods.
                    annotations: Some(spec.annotations.clone()).filter(|a| !a.is_empty()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(spec)],
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}

fn container(spec: &DeploymentSpec) -> Container {
    let env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    let ports: Vec<ContainerPort> = spec
        .ports
        .iter()
        .map(|port| ContainerPort {
            container_port: port.container_port as i32,
            name: port.name.clone(),
            protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
            ..Default::default()
        })
        .collect();
    let quantities = |list: &ResourceList| {
        let pairs = [("cpu", &list.cpu), ("memory", &list.memory)];
        let map: BTreeMap<String, Quantity> = pairs
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), Quantity(value.clone()?))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let requests = quantities(&spec.resources.requests);
    let limits = quantities(&spec.resources.limits);
    Container {
        name: spec.name.clone(),
        image: Some(spec.image.clone()),
        env: (!env.is_empty()).then_some(env),
        ports: (!ports.is_empty()).then_some(ports),
        resources: (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
            requests,
            limits,
            ..Default::default()
        }),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        ..Default::default()
    }
}

/// Why a call to the API server failed, as far as retrying goes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Retrying cannot help: the object is invalid, forbidden, or its
    /// namespace is missing; with the request's `failure_code`.
    #[error("{1}")]
    Permanent(&'static str, String),
    /// The API server is unreachable, overloaded or busy: try again later.
    #[error("{0}")]
    Transient(String),
}

/// The Deployment as an apply body: with its `apiVersion` and `kind`.
pub fn manifest(deployment: &Deployment) -> Result<serde_json::Value, serde_json::Error> {
    let mut object = serde_json::to_value(deployment)?;
    object["apiVersion"] = "apps/v1".into();
    object["kind"] = "Deployment".into();
    Ok(object)
}

/// Server-side apply of the whole object, taking ownership of every field
/// depman sets (`force`); returns the Deployment as the API server left it.
pub async fn apply(client: &Client, deployment: &Deployment) -> Result<Deployment, ApplyError> {
    let metadata = &deployment.metadata;
    let namespace = metadata.namespace.as_deref().unwrap_or("default");
    let name = metadata.name.as_deref().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let object =
        manifest(deployment).map_err(|e| ApplyError::Permanent(INVALID_OBJECT, e.to_string()))?;
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(classify)
}

/// Deletes the Deployment; one that is already gone counts as deleted.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), ApplyError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(classify(error)),
    }
}

/// Permanent: the API server refused the request itself (invalid, forbidden,
/// missing namespace). Transient: it could not answer, or asked to come back
/// (conflict, throttling, server errors), or nobody answered at all.
/// The `failure_code` of an object the API server found invalid.
const INVALID_OBJECT: &str = "invalid-object";

pub fn classify(error: kube::Error) -> ApplyError {
    match error {
        kube::Error::Api(status) => classify_status(&status),
        kube::Error::SerdeError(error) => ApplyError::Permanent(INVALID_OBJECT, error.to_string()),
        other => ApplyError::Transient(format!("Kubernetes API unreachable: {other}")),
    }
}

fn classify_status(status: &Status) -> ApplyError {
    let reason = format!("{} ({}): {}", status.reason, status.code, status.message);
    match status.code {
        400 | 422 => ApplyError::Permanent(INVALID_OBJECT, reason),
        403 => ApplyError::Permanent("forbidden", reason),
        // The Deployment is applied, not read: what is missing is its
        // namespace.
        404 => ApplyError::Permanent("namespace-missing", reason),
        405 | 406 | 413 | 415 => ApplyError::Permanent("rejected", reason),
        _ => ApplyError::Transient(reason),
    }
}

/// What the API server answered a dry run: the object as it would be (none
/// for a delete), the warnings it gave, or its refusal with the fields it
/// named.
#[derive(Debug)]
pub struct DryRun {
    pub object: Option<serde_json::Value>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct Refusal {
    pub error: ApplyError,
    /// `(field, message)` for each cause the API server gave.
    pub causes: Vec<(String, String)>,
}

/// The live Deployment, or `None` when there is none. Read from the API
/// server's watch cache (`resourceVersion=0`), which spares etcd a quorum
/// read and may lag it by milliseconds.
pub async fn live(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<serde_json::Value>, Refusal> {
    let request = deployments_path(namespace)
        .get(name, &GetParams::any())
        .map_err(unbuildable)?;
    match send(client, request).await {
        Ok(answer) => Ok(answer.object),
        Err(Refusal {
            error: ApplyError::Permanent("namespace-missing", _),
            ..
        }) => Ok(None),
        Err(refusal) => Err(refusal),
    }
}

/// [`apply`] with `dryRun=All`: admission, quotas and validation run, and
/// nothing is stored.
pub async fn dry_run_apply(
    client: &Client,
    namespace: &str,
    name: &str,
    manifest: &serde_json::Value,
) -> Result<DryRun, Refusal> {
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let request = deployments_path(namespace)
        .patch(name, &params, &Patch::Apply(manifest))
        .map_err(unbuildable)?;
    send(client, request).await
}

/// [`delete`] with `dryRun=All`; one that is already gone would be deleted.
pub async fn dry_run_delete(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<DryRun, Refusal> {
    let params = DeleteParams {
        dry_run: true,
        ..DeleteParams::background()
    };
    let request = deployments_path(namespace)
        .delete(name, &params)
        .map_err(unbuildable)?;
    match send(client, request).await {
        Ok(answer) => Ok(DryRun {
            object: None,
            warnings: answer.warnings,
        }),
        Err(Refusal {
            error: ApplyError::Permanent("namespace-missing", _),
            ..
        }) => Ok(DryRun {
            object: None,
            warnings: Vec::new(),
        }),
        Err(refusal) => Err(refusal),
    }
}

fn deployments_path(namespace: &str) -> kube::core::Request {
    kube::core::Request::new(format!("/apis/apps/v1/namespaces/{namespace}/deployments"))
}

fn unbuildable(error: kube::core::request::Error) -> Refusal {
    Refusal {
        error: ApplyError::Permanent(INVALID_OBJECT, error.to_string()),
        causes: Vec::new(),
    }
}

/// Sends a request the typed API cannot: its `Warning` headers are read, as
/// `kubectl` prints them.
async fn send(client: &Client, request: http::Request<Vec<u8>>) -> Result<DryRun, Refusal> {
    use http_body_util::BodyExt;
    let unreachable = |error: &dyn std::fmt::Display| Refusal {
        error: ApplyError::Transient(format!("Kubernetes API unreachable: {error}")),
        causes: Vec::new(),
    };
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .map_err(|e| unreachable(&e))?;
    let status = response.status();
    let warnings = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(warning_text)
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    if status.is_success() {
        let object = serde_json::from_slice(&body).map_err(|e| unreachable(&e))?;
        return Ok(DryRun {
            object: Some(object),
            warnings,
        });
    }
    let status: Status = serde_json::from_slice(&body).unwrap_or_else(|_| Status {
        code: status.as_u16(),
        reason: status.canonical_reason().unwrap_or_default().to_owned(),
        message: String::from_utf8_lossy(&body).into_owned(),
        ..Default::default()
    });
    let causes = status
        .details
        .iter()
        .flat_map(|details| &details.causes)
        .filter(|cause| !cause.field.is_empty())
        .map(|cause| (cause.field.clone(), cause.message.clone()))
        .collect();
    Err(Refusal {
        error: classify_status(&status),
        causes,
    })
}

/// The text of a `Warning` header (RFC 7234: `299 - "text"`).
fn warning_text(header: &str) -> Option<String> {
    let quoted = header.splitn(3, ' ').nth(2)?.trim();
    let text = quoted.strip_prefix('"')?.strip_suffix('"')?;
    Some(text.replace("\\\"", "\"").replace("\\\\", "\\"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::spec::DeploymentInput;

    fn spec() -> DeploymentSpec {
        let input: DeploymentInput = serde_json::from_value(json!({
            "name": "web", "namespace": "team-a", "image": "nginx:1.27", "identifier": "web-1",
            "replicas": 3, "env": {"A": "1"}, "ports": [{"container_port": 80, "name": "http"}],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}},
            "labels": {"tier": "web"}, "annotations": {"example.com/note": "hi"},
            "command": ["nginx"], "args": ["-g", "daemon off;"], "progress_deadline_seconds": 90,
        }))
        .unwrap();
        input.validate(|_| unreachable!()).unwrap()
    }

    #[test]
    fn the_deployment_follows_the_contract() {
        let request = Uuid::new_v4();
        let object = serde_json::to_value(deployment(&spec(), "alice", request)).unwrap();
        let meta = &object["metadata"];
        assert_eq!(meta["name"], "web-1");
        assert_eq!(meta["namespace"], "team-a");
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "depman");
        assert_eq!(meta["labels"]["app.kubernetes.io/name"], "web");
        assert_eq!(meta["labels"]["depman.io/identifier"], "web-1");
        assert_eq!(meta["labels"]["tier"], "web");
        assert_eq!(meta["annotations"]["depman.io/owner"], "alice");
        assert_eq!(
            meta["annotations"]["depman.io/request-id"],
            request.to_string()
        );
        let spec = &object["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["progressDeadlineSeconds"], 90);
        assert_eq!(
            spec["selector"]["matchLabels"],
            json!({"depman.io/identifier": "web-1"})
        );
        let template = &spec["template"];
        assert_eq!(
            template["metadata"]["labels"]["depman.io/identifier"],
            "web-1"
        );
        assert!(
            template["metadata"]["annotations"]
                .get("depman.io/request-id")
                .is_none()
        );
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["image"], "nginx:1.27");
        assert_eq!(container["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(
            container["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}])
        );
        assert_eq!(
            container["resources"],
            json!({"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}})
        );
        assert_eq!(container["command"], json!(["nginx"]));
        assert_eq!(container["args"], json!(["-g", "daemon off;"]));
    }

    #[test]
    fn warnings_are_read_as_kubectl_prints_them() {
        assert_eq!(
            warning_text(r#"299 - "spec.replicas: more than 3 need a \"review\"""#).as_deref(),
            Some(r#"spec.replicas: more than 3 need a "review""#)
        );
        assert_eq!(warning_text("299 -"), None);
        assert_eq!(warning_text("not a warning"), None);
    }

    #[test]
    fn refusals_are_permanent_and_unavailability_transient() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: "Reason".into(),
                message: "message".into(),
                ..Default::default()
            }))
        };
        for code in [400, 403, 404, 422] {
            assert!(
                matches!(classify(api(code)), ApplyError::Permanent(..)),
                "{code}"
            );
        }
        for code in [409, 429, 500, 503, 504] {
            assert!(
                matches!(classify(api(code)), ApplyError::Transient(_)),
                "{code}"
            );
        }
    }
}
