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
use support::{commands, environment, repo_path, settings_variables, variables};

const NAMESPACE: &str = "dep-manager";
const OVERLAYS: [&str; 2] = ["dev", "prod"];
const ROLES: [&str; 3] = ["api", "worker", "watcher"];

fn deploy_folder() -> PathBuf {
    repo_path("deploy")
        .canonicalize()
        .expect("the deploy folder")
}

/// Runs kubectl against the local cluster; its stdout and stderr, or a
/// panic with its stderr.
fn kubectl(args: &[&str]) -> (String, String) {
    environment("KUBECONFIG");
    let output = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs: run `make test`, or `make env && . .devenv/env.sh`");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "kubectl {} failed:\n{stderr}",
        args.join(" ")
    );
    (
        String::from_utf8(output.stdout).expect("utf-8 output"),
        stderr,
    )
}

/// Installs the namespace `dep-manager` and the RBAC objects for real, once
/// per test run: tests creating them at the same moment (or a dry run
/// reading one while it is created) would race and fail with AlreadyExists.
fn install_namespace_and_rbac() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let folder = deploy_folder();
        kubectl(&["apply", "-f", path(&folder.join("base/namespace.yaml"))]);
        kubectl(&["apply", "-k", path(&folder.join("base/rbac"))]);
    });
}

/// The objects of an overlay as the API server would store them, after its
/// validation and admission (nothing is stored: a server-side dry run).
/// Admission that only warns (Pod Security, for workloads) fails the test.
fn server_dry_run(overlay: &str) -> Vec<Value> {
    // Namespaced objects are validated only in a namespace that exists.
    install_namespace_and_rbac();
    let overlay = deploy_folder().join("overlays").join(overlay);
    let (out, warnings) = kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        path(&overlay),
        "-o",
        "json",
    ]);
    assert!(
        !warnings.contains("Warning"),
        "the API server warned:\n{warnings}"
    );
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

/// The ConfigMap kustomize generated from `name` (its name carries a hash).
fn generated<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|generated| generated.starts_with(name))
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

/// A value of the depman ConfigMap of `objects`.
fn config_value<'a>(objects: &'a [Value], key: &str) -> &'a str {
    generated(objects, "depman-config")["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in the depman ConfigMap"))
}

#[test]
fn dev_runs_one_of_each_and_prod_runs_three_servers_of_nats_and_postgresql() {
    let dev = server_dry_run("dev");
    named(&dev, "StatefulSet", "postgres");
    assert_eq!(named(&dev, "StatefulSet", "nats")["spec"]["replicas"], 1);
    assert_eq!(config_value(&dev, "DEPMAN_STREAM_REPLICAS"), "1");

    // The CloudNativePG CRD is in the local API server (make env), so the
    // Cluster passes the same validation as the rest.
    let prod = server_dry_run("prod");
    let postgres = named(&prod, "Cluster", "postgres");
    assert_eq!(postgres["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(postgres["spec"]["instances"], 3);
    assert_eq!(
        postgres["spec"]["affinity"]["podAntiAffinityType"],
        "required"
    );
    assert!(
        !prod
            .iter()
            .any(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "postgres"),
        "prod has no single PostgreSQL"
    );
    let nats = named(&prod, "StatefulSet", "nats");
    assert_eq!(nats["spec"]["replicas"], 3);
    let anti = &nats["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert_eq!(
        anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        named(&prod, "PodDisruptionBudget", "nats")["spec"]["maxUnavailable"],
        1
    );
    let service = named(&prod, "Service", "nats");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
    let conf = generated(&prod, "nats-config")["data"]["nats.conf"]
        .as_str()
        .expect("the NATS configuration");
    for pod in ["nats-0", "nats-1", "nats-2"] {
        assert!(conf.contains(&format!("nats://{pod}.nats:6222")), "{conf}");
    }
    assert_eq!(config_value(&prod, "DEPMAN_STREAM_REPLICAS"), "3");
    let urls = config_value(&prod, "NATS_URL");
    assert_eq!(urls.split(',').count(), 3, "{urls}");
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
    install_namespace_and_rbac();
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
        // The pods and ReplicaSets of a rollout: the watcher follows them,
        // the worker's sync lists them; neither changes them.
        for resource in ["pods", "replicasets.apps"] {
            for verb in ["list", "watch"] {
                assert!(
                    can("watcher", verb, resource, namespace),
                    "watcher {verb} {resource}"
                );
            }
            assert!(
                can("worker", "list", resource, namespace),
                "worker list {resource}"
            );
            for verb in ["get", "watch", "create", "patch", "delete"] {
                assert!(
                    !can("worker", verb, resource, namespace),
                    "worker {verb} {resource}"
                );
            }
            for verb in ["get", "create", "patch", "delete"] {
                assert!(
                    !can("watcher", verb, resource, namespace),
                    "watcher {verb} {resource}"
                );
            }
            assert!(
                !can("api", "list", resource, namespace),
                "api list {resource}"
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
    // The worker reads a Deployment one object at a time; it never lists them.
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

/// The keys of the depman ConfigMap.
fn config_keys(objects: &[Value]) -> BTreeSet<String> {
    generated(objects, "depman-config")["data"]
        .as_object()
        .expect("config data")
        .keys()
        .cloned()
        .collect()
}

/// The names a container's own `env` entries set.
fn env_names(container: &Value) -> BTreeSet<String> {
    let env = container["env"].as_array().into_iter().flatten();
    env.map(|var| var["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// Each role's container is given (through the ConfigMap or its own `env`)
/// every variable its subcommand reads; together the manifests set no name
/// the binary does not read. A setting renamed on one side only fails here.
#[test]
fn the_manifests_set_exactly_the_settings_the_binary_reads() {
    let commands = commands();
    for overlay in OVERLAYS {
        let objects = server_dry_run(overlay);
        let keys = config_keys(&objects);
        let mut given_anywhere = keys.clone();
        for role in ROLES {
            let deployment = named(&objects, "Deployment", &format!("depman-{role}"));
            let pod = &deployment["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            let config = container["envFrom"][0]["configMapRef"]["name"]
                .as_str()
                .unwrap_or_default();
            assert!(
                config.starts_with("depman-config"),
                "{overlay}/{role}: no ConfigMap"
            );
            let env = env_names(container);
            let given: BTreeSet<String> = keys.union(&env).cloned().collect();
            let (_, command) = commands
                .iter()
                .find(|(words, _)| words == &[role])
                .expect("a subcommand per role");
            let missing: Vec<_> = variables(command).difference(&given).cloned().collect();
            assert!(
                missing.is_empty(),
                "{overlay}/{role}: nothing sets {missing:?}"
            );
            for init in pod["initContainers"].as_array().into_iter().flatten() {
                assert!(
                    env_names(init).contains("DATABASE_URL"),
                    "{overlay}/{role}: init"
                );
            }
            given_anywhere.extend(env);
        }
        let read = settings_variables();
        let stray: Vec<_> = given_anywhere.difference(&read).collect();
        assert!(
            stray.is_empty(),
            "{overlay}: the binary reads none of {stray:?}"
        );
        let unset: Vec<_> = read.difference(&given_anywhere).collect();
        assert!(unset.is_empty(), "{overlay}: nothing sets {unset:?}");
    }
}
