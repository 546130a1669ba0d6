//! The test's view of the cluster: a namespace of its own, and what is in it.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;

use crate::helpers::unique;

pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Cluster {
    /// A client from `KUBECONFIG` and a new namespace.
    pub async fn with_namespace() -> Self {
        let client = Client::try_default()
            .await
            .expect("a kube client from KUBECONFIG");
        let namespace = unique("t").replace('_', "-");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        namespaces
            .patch(
                &namespace,
                &PatchParams::apply("depman-tests"),
                &Patch::Apply(object),
            )
            .await
            .expect("create the test namespace");
        Self { client, namespace }
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn deployment(&self, name: &str) -> Option<Deployment> {
        self.deployments()
            .get_opt(name)
            .await
            .expect("read a deployment")
    }

    /// The field managers of a Deployment.
    pub async fn managers(&self, name: &str) -> Vec<String> {
        let deployment = self.deployment(name).await.expect("the Deployment exists");
        let fields = deployment.metadata.managed_fields.unwrap_or_default();
        fields.into_iter().filter_map(|m| m.manager).collect()
    }

    /// Names of the Deployments depman manages in the namespace.
    pub async fn managed(&self) -> Vec<String> {
        let params = ListParams::default().labels("app.kubernetes.io/managed-by=depman");
        let list = self
            .deployments()
            .list(&params)
            .await
            .expect("list deployments");
        list.items
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect()
    }

    /// The image of a Deployment's first container.
    pub async fn image(&self, name: &str) -> Option<String> {
        let deployment = self.deployment(name).await?;
        deployment
            .spec
            .template
            .spec?
            .containers
            .first()?
            .image
            .clone()
    }

    /// Waits until the Deployment is gone (deletion goes through the
    /// garbage collector's finalizers for a moment).
    pub async fn wait_absent(&self, name: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.deployment(name).await.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} still present after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn finish(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .delete(&self.namespace, &DeleteParams::background())
            .await
            .expect("delete the test namespace");
    }
}

/// A CREATE body in `namespace`.
pub fn deployment(name: &str, namespace: &str) -> serde_json::Value {
    json!({"name": name, "identifier": name, "namespace": namespace, "image": "nginx:1.27", "replicas": 1})
}

/// A depman with a worker and a watcher of the cluster's namespace.
pub async fn stack(cluster: &Cluster) -> crate::helpers::TestApp {
    let mut app = crate::helpers::TestApp::spawn().await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    app.start_watcher(
        cluster.client.clone(),
        vec![cluster.namespace.clone()],
        Duration::from_secs(3),
    );
    app
}
