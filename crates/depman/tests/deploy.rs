//! The manifests under `deploy/`, checked against the control plane of
//! `make env`: every overlay passes the API server's validation, each role's
//! ServiceAccount may do what its code calls and nothing more, and the
//! settings the manifests give are exactly those the binary reads.
//!
//! The RBAC objects are installed for real in the namespace `dep-manager`
//! (the one the manifests name); applying them again is a no-op, so the
//! tests share them.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

#[path = "support/mod.rs"]
mod support;
use support::{environment, settings_variables};

const NAMESPACE: &str = "dep-manager";
const OVERLAYS: [&str; 2] = ["dev", "prod"];
const ROLES: [&str; 3] = ["api", "worker", "watcher"];

/// Found from the working directory, which cargo sets to the package's
/// folder: a path fixed at compile time may name another checkout, since the
/// target folder is shared.
fn deploy_folder() -> PathBuf {
    let folder = Path::new("../../deploy");
    folder.canonicalize().expect("deploy folder, two levels up")
}

/// Runs kubectl against the local cluster; its stdout, or a panic with its
/// stderr.
fn kubectl(args: &[&str]) -> String {
    environment("KUBECONFIG");
    let output = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs: run `make test`, or `make env && . .devenv/env.sh`");
    assert!(
        output.status.success(),
        "kubectl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Creates the namespace `dep-manager` once per test run: tests creating it
/// at the same moment would race, and one would fail with AlreadyExists.
fn ensure_namespace() {
    static CREATED: std::sync::Once = std::sync::Once::new();
    CREATED.call_once(|| {
        kubectl(&[
            "apply",
            "-f",
            path(&deploy_folder().join("base/namespace.yaml")),
        ]);
    });
}

/// The objects of an overlay as the API server would store them, after its
/// validation and admission (nothing is stored: a server-side dry run).
fn server_dry_run(overlay: &str) -> Vec<Value> {
    // Namespaced objects are validated only in a namespace that exists.
    ensure_namespace();
    let overlay = deploy_folder().join("overlays").join(overlay);
    let out = kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        path(&overlay),
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).expect("a JSON list");
    list["items"].as_array().expect("items").clone()
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn depman_deployments(objects: &[Value]) -> Vec<&Value> {
    ROLES
        .iter()
        .map(|role| named(objects, "Deployment", &format!("depman-{role}")))
        .collect()
}

/// Every container of a pod template, init containers included.
fn containers(workload: &Value) -> Vec<&Value> {
    let pod = &workload["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|field| pod[field].as_array())
        .flatten()
        .collect()
}

#[test]
fn every_overlay_is_accepted_by_the_api_server() {
    for overlay in OVERLAYS {
        let objects = server_dry_run(overlay);
        for role in ROLES {
            named(&objects, "ServiceAccount", &format!("depman-{role}"));
            named(&objects, "PodDisruptionBudget", &format!("depman-{role}"));
        }
        named(&objects, "Service", "depman-api");
        named(&objects, "StatefulSet", "postgres");
        named(&objects, "StatefulSet", "nats");
        for object in &objects {
            let namespaced = object["metadata"]["namespace"].as_str();
            assert!(
                namespaced.is_none_or(|ns| ns == NAMESPACE),
                "{overlay}: {} outside {NAMESPACE}",
                object["metadata"]["name"]
            );
        }
    }
}

#[test]
fn every_pod_runs_locked_down_with_bounded_resources() {
    for overlay in OVERLAYS {
        let objects = server_dry_run(overlay);
        let workloads = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet");
        for workload in workloads {
            let name = &workload["metadata"]["name"];
            let pod = &workload["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"], true,
                "{overlay}/{name}"
            );
            for container in containers(workload) {
                let context = &container["securityContext"];
                let what = format!("{overlay}/{name}/{}", container["name"]);
                assert_eq!(context["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(context["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(context["capabilities"]["drop"][0], "ALL", "{what}");
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][bound][resource].is_string(),
                            "{what}: no {bound}.{resource}"
                        );
                    }
                }
            }
        }
    }
}

/// What `kubectl auth can-i` answers for a role's ServiceAccount.
fn can(role: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let user = format!("system:serviceaccount:{NAMESPACE}:depman-{role}");
    let output = Command::new("kubectl")
        .args(["auth", "can-i", verb, resource, "--as", &user])
        .args(["--namespace", namespace])
        .output()
        .expect("kubectl runs");
    let answer = String::from_utf8_lossy(&output.stdout);
    match answer.trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "can-i {verb} {resource} answered {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[test]
fn each_role_may_do_what_it_needs_and_nothing_more() {
    ensure_namespace();
    kubectl(&["apply", "-k", path(&deploy_folder().join("base/rbac"))]);
    // The authorizer learns of new bindings a moment after they are stored:
    // wait for one verb of each binding before judging.
    let bound = || {
        can("worker", "get", "deployments.apps", "team-a")
            && can("watcher", "list", "deployments.apps", "team-a")
            && can("watcher", "get", "leases.coordination.k8s.io", NAMESPACE)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !bound() {
        assert!(
            std::time::Instant::now() < deadline,
            "bindings never took effect"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Users' Deployments live in any namespace, not only depman's own.
    for namespace in ["team-a", NAMESPACE] {
        for verb in ["get", "create", "patch", "delete"] {
            assert!(
                can("worker", verb, "deployments.apps", namespace),
                "worker {verb}"
            );
        }
        for verb in ["list", "watch"] {
            assert!(
                can("watcher", verb, "deployments.apps", namespace),
                "watcher {verb}"
            );
        }
        for verb in ["get", "list", "create", "patch", "delete"] {
            assert!(
                !can("api", verb, "deployments.apps", namespace),
                "api {verb}"
            );
        }
        for verb in ["patch", "create", "update", "delete"] {
            assert!(
                !can("watcher", verb, "deployments.apps", namespace),
                "watcher {verb}"
            );
        }
    }
    for role in ROLES {
        for verb in ["get", "list"] {
            assert!(
                !can(role, verb, "secrets", NAMESPACE),
                "{role} {verb} secrets"
            );
        }
        assert!(
            !can(role, "delete", "namespaces", "team-a"),
            "{role} deletes namespaces"
        );
        assert!(
            !can(role, "create", "pods", "team-a"),
            "{role} creates pods"
        );
    }
    // The worker reads live state one object at a time; it never lists.
    assert!(!can("worker", "list", "deployments.apps", "team-a"));

    for verb in ["get", "create", "patch"] {
        assert!(
            can("watcher", verb, "leases.coordination.k8s.io", NAMESPACE),
            "lease {verb}"
        );
        assert!(
            !can("watcher", verb, "leases.coordination.k8s.io", "kube-system"),
            "lease {verb} elsewhere"
        );
    }
    for role in ["api", "worker"] {
        assert!(
            !can(role, "create", "leases.coordination.k8s.io", NAMESPACE),
            "{role} leases"
        );
    }
}

/// The names a depman container is given: the ConfigMap's keys (through
/// `envFrom`) and its own `env` entries.
fn variables_given(objects: &[Value], config: &Value) -> BTreeSet<String> {
    let mut given: BTreeSet<String> = config["data"]
        .as_object()
        .expect("config data")
        .keys()
        .cloned()
        .collect();
    for deployment in depman_deployments(objects) {
        for container in containers(deployment) {
            let env = container["env"].as_array().into_iter().flatten();
            given.extend(env.map(|var| var["name"].as_str().expect("a name").to_owned()));
        }
    }
    given
}

#[test]
fn the_manifests_set_exactly_the_settings_the_binary_reads() {
    let read = settings_variables();
    for overlay in OVERLAYS {
        let objects = server_dry_run(overlay);
        let config = objects
            .iter()
            .find(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|name| name.starts_with("depman-config"))
            })
            .expect("the depman ConfigMap");
        let keys: BTreeSet<String> = config["data"]
            .as_object()
            .expect("data")
            .keys()
            .cloned()
            .collect();
        let unknown: Vec<_> = keys.difference(&read).collect();
        assert!(
            unknown.is_empty(),
            "{overlay}: the binary reads none of {unknown:?}"
        );
        let given = variables_given(&objects, config);
        let missing: Vec<_> = read.difference(&given).collect();
        assert!(missing.is_empty(), "{overlay}: nothing sets {missing:?}");
        let stray: Vec<_> = given.difference(&read).collect();
        assert!(
            stray.is_empty(),
            "{overlay}: the binary reads none of {stray:?}"
        );
    }
}
