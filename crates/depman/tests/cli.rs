//! The `depman` binary itself: its help, and a clean stop on SIGTERM with
//! structured logs that carry the request id.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[path = "support/mod.rs"]
mod support;
use support::{create_database, drop_database, environment, free_port, url_with_database};

const DEPMAN: &str = env!("CARGO_BIN_EXE_depman");

fn help(args: &[&str]) -> String {
    let output = Command::new(DEPMAN)
        .args(args)
        .arg("--help")
        .output()
        .expect("depman runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("utf-8 help")
}

#[test]
fn every_help_describes_each_flag_and_its_environment_variable() {
    for (words, command) in support::commands() {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let text = help(&args);
        assert!(
            command.get_about().is_some() || words.is_empty(),
            "depman {args:?} has no description"
        );
        for arg in command.get_arguments().filter(|a| a.get_id() != "help") {
            let shown = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().as_str().to_uppercase(),
            };
            assert!(
                text.contains(&shown),
                "{shown} missing from {args:?}:\n{text}"
            );
            assert!(
                arg.get_help().is_some(),
                "{shown} of {args:?} is not described"
            );
            if let Some(name) = arg.get_env() {
                let name = format!("[env: {}", name.to_string_lossy());
                assert!(
                    text.contains(&name),
                    "{name} missing from {args:?}:\n{text}"
                );
            }
        }
    }
}

/// The README's configuration table names every variable the binary reads,
/// and KUBECONFIG (read by the Kubernetes client), and nothing else.
#[test]
fn the_readme_documents_every_setting() {
    let readme = std::fs::read_to_string(support::repo_path("README.md")).expect("README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Configuration section");
    let documented: std::collections::BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| row.split('`').next())
        .map(str::to_owned)
        .collect();
    let mut read = support::settings_variables();
    read.insert("KUBECONFIG".to_owned());
    assert_eq!(documented, read);
}

#[test]
fn help_lists_the_roles_and_their_environment() {
    let top = help(&[]);
    for variable in ["RUST_LOG", "KUBECONFIG"] {
        assert!(top.contains(variable), "{variable} missing from:\n{top}");
    }
    for role in ["api", "worker", "watcher", "all", "migrate", "dlq"] {
        assert!(top.contains(role), "{role} missing from:\n{top}");
    }
    let api = help(&["api"]);
    for variable in [
        "DATABASE_URL",
        "NATS_URL",
        "DEPMAN_HTTP_ADDR",
        "DEPMAN_PREFIX",
    ] {
        assert!(api.contains(variable), "{variable} missing from:\n{api}");
    }
    assert!(
        !api.contains("depman:depman@"),
        "the database password shows in:\n{api}"
    );
    let roles = [
        (
            "worker",
            &[
                "DEPMAN_MAX_ATTEMPTS",
                "DEPMAN_WORKER_CONCURRENCY",
                "DEPMAN_RETRY_BACKOFF",
                "DEPMAN_METRICS_ADDR",
                "KUBECONFIG",
            ][..],
        ),
        (
            "watcher",
            &[
                "DEPMAN_WATCH_NAMESPACES",
                "DEPMAN_RESYNC_INTERVAL",
                "DEPMAN_LEASE_DURATION",
                "DEPMAN_METRICS_ADDR",
            ][..],
        ),
    ];
    for (role, variables) in roles {
        let text = help(&[role]);
        for variable in variables {
            assert!(
                text.contains(variable),
                "{variable} missing from {role}:\n{text}"
            );
        }
    }
    assert!(help(&["dlq", "replay"]).contains("--all"));
}

#[tokio::test]
async fn the_api_logs_request_ids_and_stops_cleanly_on_sigterm() {
    let database = create_database("cli_test").await;
    let url = url_with_database(&environment("DATABASE_URL"), &database);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(DEPMAN)
        .arg("api")
        .env("DATABASE_URL", &url)
        .env("DEPMAN_HTTP_ADDR", &addr)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("depman api starts");

    depman::dependencies::install_crypto_provider();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ping = client
            .get(format!("http://{addr}/api/v1/ping"))
            .send()
            .await;
        if ping.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the api did not answer within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = client
        .get(format!("http://{addr}/api/v1/deployments"))
        .header("X-User-ID", "alice")
        .header("X-Request-ID", "find-me-in-the-logs")
        .send()
        .await
        .expect("GET deployments");
    assert_eq!(listed.status(), 200);

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "depman did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "depman exited with {status}");

    let output = child.wait_with_output().expect("logs");
    let logs = String::from_utf8_lossy(&output.stdout);
    let answered = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["span"]["request_id"] == "find-me-in-the-logs")
        .unwrap_or_else(|| panic!("no log line carries the request id:\n{logs}"));
    assert_eq!(answered["span"]["user"], "alice");
    assert!(logs.contains("SIGTERM received"), "{logs}");

    drop_database(&database).await;
}

#[tokio::test]
async fn dlq_list_reads_the_dead_letters_of_its_prefix() {
    let admin_url = environment("DATABASE_URL");
    let prefix = format!("cli{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let output = Command::new(DEPMAN)
        .args(["dlq", "list"])
        .env("DATABASE_URL", &admin_url)
        .env("DEPMAN_PREFIX", &prefix)
        .env("RUST_LOG", "warn")
        .output()
        .expect("depman dlq list runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(listed.contains("0 dead-lettered request(s)"), "{listed}");
    let js = async_nats::jetstream::new(
        async_nats::connect(environment("NATS_URL"))
            .await
            .expect("NATS"),
    );
    for stream in ["requests", "dead_letters", "sync"] {
        js.delete_stream(format!("{prefix}_{stream}"))
            .await
            .expect("remove the stream");
    }
}
