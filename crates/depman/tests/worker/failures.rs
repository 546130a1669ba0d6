use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, status_and_json, unique},
};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_create_into_a_missing_namespace_fails_naming_it() {
    let cluster = Cluster::with_namespace().await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));

    let missing = unique("missing").replace('_', "-");
    let (_, created) =
        status_and_json(app.create("alice", &deployment("web", &missing)).await).await;
    let done = app
        .terminal("alice", created["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(done["status"], "FAILURE");
    assert_eq!(done["attempts"], 1, "a permanent error is not retried");
    assert_eq!(done["failure_code"], "namespace-missing");
    let reason = done["failure_reason"].as_str().unwrap();
    assert!(reason.contains(&missing), "{reason}");
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/web").await).await;
    assert_eq!(row["status"], "FAILED");

    app.finish().await;
    cluster.finish().await;
}

/// An admission policy that makes the API server refuse Deployments
/// labelled `forbidden` in the cluster's namespace, as a cluster's own rules
/// would.
struct ForbiddenLabel {
    name: String,
    client: kube::Client,
}

impl ForbiddenLabel {
    /// Installs the policy and waits until the API server enforces it.
    async fn install(cluster: &Cluster) -> Self {
        let name = unique("no-forbidden-label").replace('_', "-");
        let apply = PatchParams::apply("depman-tests").force();
        let policy = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]
                }]},
                "validations": [{
                    "expression": "!has(object.metadata.labels) || !('forbidden' in object.metadata.labels)",
                    "message": "deployments labelled forbidden are not allowed here"
                }]
            }
        });
        let binding = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cluster.namespace}}}
            }
        });
        Api::<ValidatingAdmissionPolicy>::all(cluster.client.clone())
            .patch(&name, &apply, &Patch::Apply(policy))
            .await
            .expect("create the policy");
        Api::<ValidatingAdmissionPolicyBinding>::all(cluster.client.clone())
            .patch(&name, &apply, &Patch::Apply(binding))
            .await
            .expect("bind the policy");

        // The API server loads a policy a moment after it is stored: probe
        // with a dry run until a labelled Deployment is refused.
        let probe = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "probe", "labels": {"forbidden": "yes"}},
            "spec": {
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {"containers": [{"name": "probe", "image": "nginx:1.27"}]}
                }
            }
        });
        let dry_run = PatchParams {
            dry_run: true,
            ..PatchParams::apply("depman-tests").force()
        };
        let deadline = tokio::time::Instant::now() + WITHIN;
        let refused = |result: Result<_, kube::Error>| {
            matches!(result, Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains("labelled forbidden"))
        };
        while !refused(
            cluster
                .deployments()
                .patch("probe", &dry_run, &Patch::Apply(&probe))
                .await,
        ) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "policy not enforced"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            name,
            client: cluster.client.clone(),
        }
    }

    async fn remove(self) {
        Api::<ValidatingAdmissionPolicyBinding>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete the binding");
        Api::<ValidatingAdmissionPolicy>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete the policy");
    }
}

fn forbidden(namespace: &str) -> serde_json::Value {
    let mut body = deployment("web", namespace);
    body["labels"] = json!({"forbidden": "yes"});
    body
}

/// The API server refuses the object: the request ends FAILURE with its
/// message, at the first attempt.
#[tokio::test]
async fn an_object_the_api_server_rejects_fails_with_its_message() {
    let cluster = Cluster::with_namespace().await;
    let policy = ForbiddenLabel::install(&cluster).await;
    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));

    let (_, created) =
        status_and_json(app.create("alice", &forbidden(&cluster.namespace)).await).await;
    let done = app
        .terminal("alice", created["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(done["status"], "FAILURE", "{done}");
    assert_eq!(
        done["failure_code"], "invalid-object",
        "an admission policy's refusal"
    );
    let reason = done["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("deployments labelled forbidden are not allowed here"),
        "{reason}"
    );
    assert_eq!(done["attempts"], 1);

    policy.remove().await;
    app.finish().await;
    cluster.finish().await;
}

/// An UPDATE accepted while its CREATE waited ends FAILURE when the CREATE
/// fails, without creating the object: the deployment stays FAILED, as
/// never created.
#[tokio::test]
async fn an_update_behind_a_failed_create_creates_nothing() {
    let cluster = Cluster::with_namespace().await;
    let policy = ForbiddenLabel::install(&cluster).await;
    let mut app = TestApp::spawn().await;

    // Both accepted before any worker runs; the update alone would pass.
    let (_, created) =
        status_and_json(app.create("alice", &forbidden(&cluster.namespace)).await).await;
    let create_id = created["id"].as_str().unwrap();
    let (status, updated) = status_and_json(
        app.patch("alice", create_id, &json!({"labels": {"forbidden": null}}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{updated}");
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));

    let create = app.terminal("alice", create_id, WITHIN).await;
    assert_eq!(create["status"], "FAILURE", "{create}");
    let update = app
        .terminal("alice", updated["id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(update["status"], "FAILURE", "{update}");
    let reason = update["failure_reason"].as_str().unwrap();
    assert!(reason.contains("CREATE failed"), "{reason}");
    assert_eq!(update["failure_code"], "create-failed");
    assert!(cluster.deployment("web").await.is_none());
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/web").await).await;
    assert_eq!(row["status"], "FAILED");

    policy.remove().await;
    app.finish().await;
    cluster.finish().await;
}
