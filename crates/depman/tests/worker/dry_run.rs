//! Dry runs (contract: "Dry run"): `?dry_run=true` records nothing and
//! changes nothing; the API server itself checks the object, through a
//! worker, and the answer shows what would change.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    cluster::{Cluster, deployment, stack},
    helpers::{TestApp, assert_problem, status_and_json},
};

async fn dry_run(
    app: &TestApp,
    user: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let request = app.request(method, &format!("{path}?dry_run=true"), user);
    let request = match body {
        Some(body) => request.json(body),
        None => request,
    };
    request.send().await.expect("a dry run")
}

async fn ok(response: reqwest::Response) -> Value {
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The difference at `path`, as `(before, after)`.
fn change<'a>(result: &'a Value, path: &str) -> Option<(&'a Value, &'a Value)> {
    result["diff"]
        .as_array()
        .expect("a diff")
        .iter()
        .find(|d| d["path"] == path)
        .map(|d| (&d["before"], &d["after"]))
}

async fn request_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(&app.pool)
        .await
        .expect("count requests")
}

#[tokio::test]
async fn a_dry_run_shows_what_would_change_and_changes_nothing() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let created = ok_created(&app, &cluster).await;
    let id = created["id"].as_str().expect("an id");
    app.request_until("alice", id, Duration::from_secs(60), |r| {
        r["rollout"]["state"] == "COMPLETE"
    })
    .await;
    let live = cluster.deployment("web").await.expect("the Deployment");
    let version = live.metadata.resource_version.clone();
    let requests = request_count(&app).await;
    let path = format!("/api/v1/deployments/requests/{id}");

    let patch = json!({"image": "nginx:1.28", "replicas": 3});
    let result = ok(dry_run(&app, "alice", Method::PATCH, &path, Some(&patch)).await).await;
    assert_eq!(result["spec"]["image"], "nginx:1.28");
    assert_eq!(result["spec"]["replicas"], 3);
    assert_eq!(result["spec"]["name"], "web", "the merged spec");
    let container = &result["object"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.28");
    assert_eq!(
        change(&result, "/spec/replicas"),
        Some((&json!(1), &json!(3)))
    );
    assert_eq!(
        change(&result, "/spec/template/spec/containers/0/image"),
        Some((&json!("nginx:1.27"), &json!("nginx:1.28")))
    );
    assert_eq!(result["diff"].as_array().map(Vec::len), Some(2), "{result}");

    // A no-op, a rollback to the only revision, and a delete.
    let same = json!({"replicas": 1});
    let noop = ok(dry_run(&app, "alice", Method::PATCH, &path, Some(&same)).await).await;
    assert_eq!(noop["diff"], json!([]));
    let back = json!({"revision": 1});
    let rollback_path = "/api/v1/deployments/web/rollback";
    let rollback = ok(dry_run(&app, "alice", Method::POST, rollback_path, Some(&back)).await).await;
    assert_eq!(rollback["diff"], json!([]));
    let deletion = ok(dry_run(&app, "alice", Method::DELETE, &path, None).await).await;
    assert!(deletion["object"].is_null());
    assert_eq!(
        change(&deletion, "/spec/replicas"),
        Some((&json!(1), &Value::Null))
    );

    // Nothing happened: in the cluster, in the database.
    let after = cluster.deployment("web").await.expect("still there");
    assert_eq!(after.metadata.resource_version, version);
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.27"));
    assert_eq!(request_count(&app).await, requests);

    // Another user's dry runs find nothing.
    for (method, path, body) in [
        (Method::PATCH, path.as_str(), Some(&patch)),
        (Method::DELETE, path.as_str(), None),
        (Method::POST, rollback_path, Some(&back)),
    ] {
        assert_problem(dry_run(&app, "bob", method, path, body).await, 404, None).await;
    }
    app.finish().await;
    cluster.finish().await;
}

/// A CREATE of `web` in the cluster's namespace, dry-run first.
async fn ok_created(app: &TestApp, cluster: &Cluster) -> Value {
    let body = deployment("web", &cluster.namespace);
    let create = "/api/v1/deployments/requests/create";
    let preview = ok(dry_run(app, "alice", Method::POST, create, Some(&body)).await).await;
    assert_eq!(
        change(&preview, "/spec/replicas"),
        Some((&Value::Null, &json!(1)))
    );
    assert_eq!(
        change(&preview, "/metadata/labels/app.kubernetes.io~1managed-by"),
        Some((&Value::Null, &json!("depman")))
    );
    assert_eq!(
        preview["object"]["metadata"]["annotations"]["depman.io/request-id"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert!(cluster.deployment("web").await.is_none(), "nothing created");
    let (status, created) = status_and_json(app.create("alice", &body).await).await;
    assert_eq!(status, 202, "{created}");
    created
}

#[tokio::test]
async fn a_dry_run_answers_with_the_admission_policys_refusal_and_warnings() {
    let cluster = Cluster::with_namespace().await;
    let policies = Policies::install(&cluster).await;
    let app = stack(&cluster).await;
    let create = "/api/v1/deployments/requests/create";
    let mut body = deployment("web", &cluster.namespace);

    // The policy takes effect once the API server has loaded it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        let response = dry_run(&app, "alice", Method::POST, create, Some(&body)).await;
        if response.status() == 422 {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the policy never applied"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let problem = assert_problem(refusal, 422, None).await;
    assert_eq!(problem["code"], "refused-by-kubernetes");
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(detail.contains(DENIAL), "{detail}");

    body["image"] = json!("registry.example.com/web:1");
    body["replicas"] = json!(4);
    let warned = ok(dry_run(&app, "alice", Method::POST, create, Some(&body)).await).await;
    let warnings = warned["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains(WARNING))),
        "{warned}"
    );
    assert_eq!(request_count(&app).await, 0);
    app.finish().await;
    policies.remove().await;
    cluster.finish().await;
}

const DENIAL: &str = "images must come from registry.example.com";
const WARNING: &str = "more than 3 replicas need a capacity review";

/// Two admission policies bound to the test's namespace: one denies images
/// from elsewhere than one registry, one warns about many replicas.
struct Policies {
    client: kube::Client,
    names: [String; 2],
}

impl Policies {
    async fn install(cluster: &Cluster) -> Self {
        let names = [
            format!("{}-registry", cluster.namespace),
            format!("{}-replicas", cluster.namespace),
        ];
        let rules = [
            (
                &names[0],
                "object.spec.template.spec.containers.all(c, c.image.startsWith('registry.example.com/'))",
                DENIAL,
                "Deny",
            ),
            (&names[1], "object.spec.replicas <= 3", WARNING, "Warn"),
        ];
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(cluster.client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(cluster.client.clone());
        let apply = PatchParams::apply("depman-tests");
        for (name, expression, message, action) in rules {
            let policy = json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {"resourceRules": [{
                        "apiGroups": ["apps"], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
                    }]},
                    "validations": [{"expression": expression, "message": message}],
                },
            });
            policies
                .patch(name, &apply, &Patch::Apply(policy))
                .await
                .expect("install the policy");
            let binding = json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {
                    "policyName": name,
                    "validationActions": [action],
                    "matchResources": {"namespaceSelector": {"matchLabels": {
                        "kubernetes.io/metadata.name": cluster.namespace,
                    }}},
                },
            });
            bindings
                .patch(name, &apply, &Patch::Apply(binding))
                .await
                .expect("bind the policy");
        }
        Self {
            client: cluster.client.clone(),
            names,
        }
    }

    async fn remove(self) {
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(self.client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(self.client);
        for name in &self.names {
            bindings
                .delete(name, &DeleteParams::default())
                .await
                .expect("unbind the policy");
            policies
                .delete(name, &DeleteParams::default())
                .await
                .expect("remove the policy");
        }
    }
}
