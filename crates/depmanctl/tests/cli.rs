//! depmanctl as a user runs it: a process, its stdout, stderr and exit
//! code, against a real depman (api, worker and watcher in the test's
//! process) on the local environment, each test on its own database,
//! stream prefix and namespace.

#[allow(dead_code)] // depman's worker tests use the rest
#[path = "../../depman/tests/worker/cluster.rs"]
mod cluster;
#[path = "../../depman/tests/support/mod.rs"]
mod helpers;

use std::{process::Stdio, time::Duration};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use cluster::{Cluster, stack};
use helpers::{TestApp, status_and_json};

/// What a run of depmanctl left.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A depmanctl command as Alice, against `app`, reading no config file.
fn command(app: &TestApp, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_depmanctl"));
    command
        .args(args)
        .env("DEPMAN_URL", format!("http://{}", app.addr))
        .env("DEPMAN_USER", "alice")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .env_remove("DEPMAN_TOKEN")
        .env_remove("DEPMAN_CONTEXT")
        .env_remove("DEPMAN_CONFIG")
        .kill_on_drop(true);
    command
}

async fn ctl(app: &TestApp, args: &[&str]) -> Run {
    let output = command(app, args).output().await.expect("depmanctl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `create` of deployment `name` (its identifier too) with `image`.
fn create<'a>(name: &'a str, namespace: &'a str, image: &'a str) -> Vec<&'a str> {
    vec![
        "create",
        "--name",
        name,
        "--identifier",
        name,
        "--namespace",
        namespace,
        "--image",
        image,
    ]
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

#[tokio::test]
async fn create_waits_for_the_rollout_and_fails_with_its_reason() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let ns = cluster.namespace.as_str();

    let mut args = create("web", ns, "nginx:1.27");
    args.extend(["--wait", "--timeout", "60s", "-o", "json"]);
    let done = ctl(&app, &args).await;
    assert_eq!(done.code, 0, "{done:?}");
    let request = json(&done);
    assert_eq!(request["status"], "SUCCESS");
    assert_eq!(request["rollout"]["state"], "COMPLETE");
    // The JSON is the API's.
    let id = request["id"].as_str().expect("an id");
    let (_, api) = status_and_json(
        app.get("alice", &format!("/api/v1/deployments/requests/{id}"))
            .await,
    )
    .await;
    assert_eq!(json(&ctl(&app, &["request", id, "-o", "json"]).await), api);

    let mut args = create("bad", ns, "chaos.invalid/image-pull-error");
    args.extend(["--wait", "--timeout", "60s"]);
    let failed = ctl(&app, &args).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("rollout failed"), "{failed:?}");
    assert!(
        failed.stderr.contains("ErrImagePull") || failed.stderr.contains("ImagePullBackOff"),
        "{failed:?}"
    );

    let slow = ctl(&app, &create("slow", ns, "chaos.invalid/never-ready")).await;
    assert_eq!(slow.code, 0, "{slow:?}");
    let waited = ctl(&app, &["wait", "slow", "--timeout", "1s"]).await;
    assert_eq!(waited.code, 3, "{waited:?}");
    assert!(waited.stderr.contains("still"), "{waited:?}");

    let listed = ctl(&app, &["list", "-o", "name"]).await;
    let mut names: Vec<&str> = listed.stdout.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["deployment/bad", "deployment/slow", "deployment/web"]
    );
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn diff_previews_update_changes_and_rollback_restores() {
    let cluster = Cluster::with_namespace().await;
    let app = stack(&cluster).await;
    let ns = cluster.namespace.as_str();
    let mut args = create("web", ns, "nginx:1.27");
    args.extend(["--env", "MODE=one", "--wait", "--timeout", "60s"]);
    let created = ctl(&app, &args).await;
    assert_eq!(created.code, 0, "{created:?}");

    let change = ["--image", "nginx:1.28", "--replicas", "2"];
    let mut diff = vec!["diff", "update", "web"];
    diff.extend(change);
    let shown = ctl(&app, &diff).await;
    assert_eq!(shown.code, 0, "{shown:?}");
    for line in [
        "@@ /spec/replicas @@",
        "-1",
        "+2",
        "@@ /spec/template/spec/containers/0/image @@",
        "-nginx:1.27",
        "+nginx:1.28",
    ] {
        assert!(shown.stdout.lines().any(|l| l == line), "{line}: {shown:?}");
    }
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.27"));

    let mut update = vec!["update", "web", "--wait", "--timeout", "60s"];
    update.extend(change);
    let updated = ctl(&app, &update).await;
    assert_eq!(updated.code, 0, "{updated:?}");
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.28"));

    let history = json(&ctl(&app, &["history", "web", "-o", "json"]).await);
    let revisions: Vec<i64> = history
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    assert_eq!(revisions, [2, 1]);
    let back = ctl(
        &app,
        &[
            "rollback",
            "web",
            "--to-revision",
            "1",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(cluster.image("web").await.as_deref(), Some("nginx:1.27"));
    let none = ctl(&app, &["diff", "rollback", "web", "--to-revision", "1"]).await;
    assert_eq!(none.stdout.trim(), "no changes", "{none:?}");
    app.finish().await;
    cluster.finish().await;
}

#[tokio::test]
async fn watch_prints_every_event_once_in_order_across_an_api_restart() {
    let cluster = Cluster::with_namespace().await;
    let mut app = stack(&cluster).await;
    let ns = cluster.namespace.clone();
    let mut watch = command(&app, &["watch", "--identifier", "web", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // The stream is open once the api counts a subscriber.
    let subscribed = async {
        loop {
            let metrics = reqwest::get(app.url("/metrics")).await.expect("metrics");
            let text = metrics.text().await.expect("metrics text");
            if text.lines().any(|l| l == "depman_event_subscribers 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("the watch subscribes");
    let mut seen: Vec<Value> = Vec::new();

    let mut args = create("web", &ns, "nginx:1.27");
    args.extend(["--wait", "--timeout", "60s"]);
    let created = ctl(&app, &args).await;
    assert_eq!(created.code, 0, "{created:?}");
    read_until(&mut lines, &mut seen, |e| e["type"] == "rollout.completed").await;

    app.restart_api().await;
    let updated = ctl(
        &app,
        &[
            "update",
            "web",
            "--replicas",
            "2",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(updated.code, 0, "{updated:?}");
    let deleted = ctl(&app, &["delete", "web", "--wait", "--timeout", "60s"]).await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    read_until(&mut lines, &mut seen, |e| e["type"] == "deployment.deleted").await;

    // Exactly the log, from the first event on.
    let (_, page) = status_and_json(
        app.get("alice", "/api/v1/events?identifier=web&limit=500")
            .await,
    )
    .await;
    let logged: Vec<&Value> = page["items"].as_array().expect("items").iter().collect();
    let position = logged
        .iter()
        .position(|e| e["type"] == "deployment.deleted")
        .expect("the deletion is logged");
    let ids =
        |events: &[&Value]| -> Vec<String> { events.iter().map(|e| e["id"].to_string()).collect() };
    let seen: Vec<&Value> = seen.iter().collect();
    assert_eq!(ids(&seen), ids(&logged[..=position]));
    let accepted: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "request.accepted")
        .map(|e| &e["data"]["request_type"])
        .collect();
    assert_eq!(accepted, ["CREATE", "UPDATE", "DELETE"]);
    watch.kill().await.expect("stop the watch");
    let mut stderr = String::new();
    let mut pipe = watch.stderr.take().expect("stderr");
    tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr)
        .await
        .expect("read stderr");
    assert!(
        stderr.contains("resuming"),
        "the restart cut the stream: {stderr}"
    );
    app.finish().await;
    cluster.finish().await;
}

/// Reads watch lines into `seen` until one satisfies `last`.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<Value>,
    last: impl Fn(&Value) -> bool,
) {
    let read = async {
        while let Some(line) = lines.next_line().await.expect("a line") {
            let event: Value = serde_json::from_str(&line).expect("an event as JSON");
            let done = last(&event);
            seen.push(event);
            if done {
                return;
            }
        }
        panic!("the watch ended");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("not seen in time; so far: {seen:?}"));
}

#[tokio::test]
async fn errors_say_what_is_wrong_with_an_exit_code_to_act_on() {
    let app = TestApp::spawn().await;
    let invalid = ctl(
        &app,
        &[
            "create",
            "--name",
            "web",
            "--namespace",
            "team-a",
            "--image",
            "nginx",
            "--replicas",
            "5000",
        ],
    )
    .await;
    assert_eq!(invalid.code, 1, "{invalid:?}");
    assert!(invalid.stderr.contains("replicas:"), "{invalid:?}");
    assert!(!invalid.stderr.contains('{'), "no JSON: {invalid:?}");

    let missing = ctl(&app, &["get", "nothing-here"]).await;
    assert_eq!(missing.code, 4, "{missing:?}");
    let usage = ctl(&app, &["create"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    let unknown = ctl(&app, &["frobnicate"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");

    let unreachable = command(&app, &["list"])
        .env(
            "DEPMAN_URL",
            format!("http://127.0.0.1:{}", helpers::free_port()),
        )
        .output()
        .await
        .expect("depmanctl runs");
    assert_eq!(unreachable.status.code(), Some(5), "{unreachable:?}");

    let help = ctl(&app, &["--help"]).await;
    assert!(help.stdout.contains("Exit codes:"), "{help:?}");
    let completion = ctl(&app, &["completion", "bash"]).await;
    assert_eq!(completion.code, 0);
    let script = std::env::temp_dir().join(format!("{}.bash", helpers::unique("completion")));
    std::fs::write(&script, &completion.stdout).expect("write the script");
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash runs");
    assert!(checked.success(), "bash -n refused the completion script");
    std::fs::remove_file(script).ok();
    app.finish().await;
}
