//! The local environment (`make env`) is usable from Rust: PostgreSQL answers
//! sqlx, JetStream stores and delivers with async-nats, and the control plane
//! rolls a Deployment out onto the fake node with kube-rs.
//!
//! Each test works on fresh names (its own database, stream prefix and
//! namespace) and removes them when it passes, so the suite runs in parallel
//! and leaves the environment as it found it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
    runtime::wait::{Condition, await_condition},
};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A value `make env` exports through `.devenv/env.sh`.
fn environment(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `make test`, or `make env && . .devenv/env.sh`")
    })
}

/// A short unique suffix, valid in database, subject and Kubernetes names.
fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

#[tokio::test]
async fn postgres_runs_queries_in_a_database_of_its_own() -> anyhow::Result<()> {
    let admin_url = environment("DATABASE_URL");
    let database = format!("env_test_{}", unique_suffix());
    let mut admin = PgConnection::connect(&admin_url).await?;
    // The name is ours (a uuid suffix), so formatting it into SQL is safe.
    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
        .execute(&mut admin)
        .await?;

    let mut conn = PgConnection::connect(&url_with_database(&admin_url, &database)).await?;
    sqlx::query("CREATE TABLE greetings (id serial PRIMARY KEY, text text NOT NULL)")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO greetings (text) VALUES ($1), ($2)")
        .bind("hello")
        .bind("world")
        .execute(&mut conn)
        .await?;
    let joined: String =
        sqlx::query_scalar("SELECT string_agg(text, ' ' ORDER BY id) FROM greetings")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(joined, "hello world");
    conn.close().await?;

    sqlx::query(AssertSqlSafe(format!(r#"DROP DATABASE "{database}""#)))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// `admin_url` with its path (the database name) replaced by `database`.
fn url_with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    if query.is_empty() {
        format!("{base}/{database}")
    } else {
        format!("{base}/{database}?{query}")
    }
}

#[tokio::test]
async fn jetstream_stores_a_message_and_delivers_it_to_a_pull_consumer() -> anyhow::Result<()> {
    let client = async_nats::connect(environment("NATS_URL")).await?;
    let js = jetstream::new(client);
    let prefix = format!("envtest_{}", unique_suffix());
    let stream_name = format!("{prefix}_greetings");
    let subject = format!("{prefix}.greetings");

    let stream = js
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let ack = js.publish(subject, "hello".into()).await?.await?;
    assert_eq!(ack.stream, stream_name);
    assert_eq!(ack.sequence, 1);

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("{prefix}_reader")),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let message = batch
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no message delivered"))?
        .map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(&message.payload[..], b"hello");
    message.ack().await.map_err(|e| anyhow::anyhow!(e))?;

    js.delete_stream(&stream_name).await?;
    Ok(())
}

#[tokio::test]
async fn a_deployment_becomes_ready_on_the_fake_node() -> anyhow::Result<()> {
    // kube reads KUBECONFIG itself; checking it here gives the clear message.
    environment("KUBECONFIG");
    let client = Client::try_default().await?;
    let namespace = format!("env-test-{}", unique_suffix());
    let apply = PatchParams::apply("depman-env-test").force();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    namespaces
        .patch(&namespace, &apply, &Patch::Apply(ns))
        .await?;

    let deployments: Api<Deployment> = Api::namespaced(client, &namespace);
    let web = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    });
    deployments.patch("web", &apply, &Patch::Apply(web)).await?;

    let ready = await_condition(deployments.clone(), "web", has_ready_replicas(2));
    let web = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .map_err(|_| anyhow::anyhow!("deployment web not ready within 120 s"))??
        .ok_or_else(|| anyhow::anyhow!("deployment web disappeared"))?;
    let status = web.status.unwrap_or_default();
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(2));

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    Ok(())
}

fn has_ready_replicas(count: i32) -> impl Condition<Deployment> {
    move |deployment: Option<&Deployment>| {
        deployment
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            == Some(count)
    }
}
