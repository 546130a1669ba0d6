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
    let reason = done["failure_reason"].as_str().unwrap();
    assert!(reason.contains(&missing), "{reason}");
    let (_, row) = status_and_json(app.get("alice", "/api/v1/deployments/web").await).await;
    assert_eq!(row["status"], "FAILED");

    app.finish().await;
    cluster.finish().await;
}

/// The API server refuses the object (here through an admission policy, as a
/// cluster's own rules would): the request ends FAILURE with its message.
#[tokio::test]
async fn an_object_the_api_server_rejects_fails_with_its_message() {
    let cluster = Cluster::with_namespace().await;
    let policy_name = unique("no-forbidden-label").replace('_', "-");
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(cluster.client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(cluster.client.clone());
    let apply = PatchParams::apply("depman-tests").force();
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy_name},
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
    policies
        .patch(&policy_name, &apply, &Patch::Apply(policy))
        .await
        .expect("create the policy");
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name},
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cluster.namespace}}}
        }
    });
    bindings
        .patch(&policy_name, &apply, &Patch::Apply(binding))
        .await
        .expect("bind the policy");

    let mut app = TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let mut body = deployment("web", &cluster.namespace);
    body["labels"] = json!({"forbidden": "yes"});
    // The policy takes a moment to be loaded by the API server.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let done = loop {
        let (_, created) = status_and_json(
            app.create("alice", &{
                let mut b = body.clone();
                b["identifier"] = json!(unique("web").replace('_', "-"));
                b
            })
            .await,
        )
        .await;
        let done = app
            .terminal("alice", created["id"].as_str().unwrap(), WITHIN)
            .await;
        if done["status"] == "FAILURE" || tokio::time::Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(done["status"], "FAILURE", "{done}");
    let reason = done["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("deployments labelled forbidden are not allowed here"),
        "{reason}"
    );
    assert_eq!(done["attempts"], 1);

    bindings
        .delete(&policy_name, &DeleteParams::default())
        .await
        .expect("delete the binding");
    policies
        .delete(&policy_name, &DeleteParams::default())
        .await
        .expect("delete the policy");
    app.finish().await;
    cluster.finish().await;
}
