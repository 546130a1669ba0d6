//! NATS stopped: the API keeps accepting, and what it accepted is carried
//! out once NATS is back. The test runs a NATS server of its own (the
//! binary `make env` built), so that stopping it touches no other test.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    cluster::{Cluster, deployment},
    helpers::{TestApp, free_port, status_and_json},
};

struct NatsServer {
    port: u16,
    store: std::path::PathBuf,
    process: Child,
}

impl NatsServer {
    fn start(port: u16, store: &std::path::Path) -> Self {
        let process = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH: run `make test`, or load .devenv/env.sh");
        std::thread::sleep(Duration::from_millis(500));
        Self {
            port,
            store: store.to_owned(),
            process,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> (u16, std::path::PathBuf) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        (self.port, self.store)
    }
}

#[tokio::test]
async fn requests_accepted_while_nats_is_down_are_carried_out_when_it_is_back() {
    let cluster = Cluster::with_namespace().await;
    let store = std::env::temp_dir().join(format!("depman-nats-{}", uuid::Uuid::new_v4()));
    let nats = NatsServer::start(free_port(), &store);
    let mut app = TestApp::spawn_with_nats(&nats.url()).await;
    app.start_worker(cluster.client.clone(), 8, Duration::from_millis(200));
    let (_, before) = status_and_json(
        app.create("alice", &deployment("before", &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(
        app.terminal(
            "alice",
            before["id"].as_str().unwrap(),
            Duration::from_secs(60)
        )
        .await["status"],
        "SUCCESS"
    );

    let (port, store) = nats.stop();
    let (status, during) = status_and_json(
        app.create("alice", &deployment("during", &cluster.namespace))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{during}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, waiting) = status_and_json(
        app.get(
            "alice",
            &format!(
                "/api/v1/deployments/requests/{}",
                during["id"].as_str().unwrap()
            ),
        )
        .await,
    )
    .await;
    assert_eq!(waiting["status"], "CREATED");

    let nats = NatsServer::start(port, &store);
    let done = app
        .terminal(
            "alice",
            during["id"].as_str().unwrap(),
            Duration::from_secs(90),
        )
        .await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(cluster.deployment("during").await.is_some());

    app.finish().await;
    nats.stop();
    let _ = std::fs::remove_dir_all(&store);
    cluster.finish().await;
}

/// The client lends each publish a permit until its acknowledgement is
/// awaited (`max_ack_inflight`, 5,000 by default and shared by the roles of
/// a process). The watcher's resync of more Deployments than that held
/// every acknowledgement to the end and waited forever for a permit; in a
/// window it publishes any number with a client of far fewer permits.
#[tokio::test]
async fn publishing_many_more_than_the_clients_ack_permits_finishes_in_a_window() {
    use async_nats::jetstream::{self, message::PublishMessage, stream};
    use depman::queue::AckWindow;

    let client = async_nats::connect(crate::helpers::environment("NATS_URL"))
        .await
        .expect("NATS");
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(AckWindow::SIZE + 1)
        .build(client);
    let name = crate::helpers::unique("acks");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .expect("a stream");
    let count = 4 * AckWindow::SIZE;
    let published = tokio::time::timeout(Duration::from_secs(60), async {
        let mut acks = AckWindow::new();
        for i in 0..count {
            let message = PublishMessage::build().payload("x".into());
            let ack = js
                .send_publish(format!("{name}.{i}"), message)
                .await
                .expect("publish");
            acks.push(ack).await.expect("acknowledged");
        }
        acks.finish().await.expect("acknowledged")
    })
    .await
    .expect("publishing never waits for a permit that nothing frees");
    assert_eq!(published, count);
    let mut stream = js.get_stream(&name).await.expect("the stream");
    assert_eq!(
        stream.info().await.expect("info").state.messages,
        count as u64
    );
    js.delete_stream(&name).await.expect("deleted");
}
