//! A depman per test: its own database (freshly migrated) and JetStream
//! prefix, the API served on a random port with an HTTP client that speaks
//! as a given user, and as many workers as the test asks for.
#![allow(dead_code)] // each test binary uses its own part of these helpers

pub mod proxy;

use std::net::SocketAddr;

use depman::{
    api::Api,
    dependencies::Dependencies,
    queue::RequestMessage,
    settings::{
        ApiSettings, CommonSettings, DatabaseSettings, NatsSettings, Secret, WatcherSettings,
        WebhookSettings, WorkerSettings,
    },
};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// A role running in the test's process, and what stops it.
type Role = (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

pub struct TestApp {
    pub addr: SocketAddr,
    pub deps: Dependencies,
    workers: Vec<Role>,
    watchers: Vec<Option<Role>>,
    pub database: String,
    pub pool: PgPool,
    client: reqwest::Client,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// What the api was started with, for a restart.
    settings: ApiSettings,
    /// With `DEPMAN_AUTH=jwt`: each test user's token, sent instead of
    /// `X-User-ID`.
    tokens: std::collections::HashMap<String, String>,
}

/// The key test apps seal webhook secrets with.
pub const TEST_WEBHOOK_KEY: &str = "dGVzdC1rZXktb2YtMzItYnl0ZXMtZm9yLXRlc3RzISE=";

/// Webhooks on, and allowed to reach the tests' receivers on loopback.
pub fn test_webhooks() -> WebhookSettings {
    WebhookSettings {
        webhook_key: Some(TEST_WEBHOOK_KEY.parse().expect("a key")),
        webhook_allowed_hosts: vec!["127.0.0.1".into()],
    }
}

/// The api settings of a test: a short dry-run timeout, no policy.
pub fn test_api_settings() -> ApiSettings {
    ApiSettings {
        http_addr: "127.0.0.1:0".parse().expect("an address"),
        dry_run_timeout: DRY_RUN_TIMEOUT,
        namespace_policy: String::new(),
        own_namespace: String::new(),
        max_deployments_per_user: 0,
        auth: depman::settings::AuthSettings {
            auth: depman::settings::AuthMode::Header,
            jwt: depman::settings::JwtSettings {
                jwt_issuer: String::new(),
                jwt_jwks_url: String::new(),
                jwt_audience: String::new(),
                jwt_user_claim: "sub".into(),
                jwt_groups_claim: "groups".into(),
                jwt_leeway: std::time::Duration::from_secs(30),
            },
        },
        trusted_proxies: "any".parse().expect("a list"),
        rate_limit: "off".parse().expect("a rate"),
        rate_limit_burst: 1,
    }
}

/// The users of the environment's Dex (`make env`): name, email, password.
pub const DEX_USERS: [(&str, &str, &str); 2] = [
    ("alice", "alice@example.com", "password"),
    ("bob", "bob@example.com", "bob-secret"),
];

/// Dex's client for depman, and its secret.
pub const DEX_CLIENT: (&str, &str) = ("depman", "depman-dev-secret");

/// An ID token of `email` from the password grant of the Dex at `issuer`.
pub async fn dex_token(issuer: &str, email: &str, password: &str) -> String {
    depman::dependencies::install_crypto_provider();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "password")
        .append_pair("scope", "openid email profile groups")
        .append_pair("username", email)
        .append_pair("password", password)
        .finish();
    let answer: Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(DEX_CLIENT.0, Some(DEX_CLIENT.1))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("Dex answers")
        .json()
        .await
        .expect("a token response");
    answer["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {answer}"))
        .to_owned()
}

/// Alice's and Bob's tokens when the api takes the environment's Dex
/// tokens; none otherwise (a test of another issuer brings its own).
async fn test_tokens(settings: &ApiSettings) -> std::collections::HashMap<String, String> {
    let mut tokens = std::collections::HashMap::new();
    let dex = std::env::var("DEPMAN_TEST_OIDC_ISSUER").unwrap_or_default();
    if settings.auth.auth == depman::settings::AuthMode::Jwt && settings.auth.jwt.jwt_issuer == dex
    {
        for (name, email, password) in DEX_USERS {
            let token = dex_token(&settings.auth.jwt.jwt_issuer, email, password).await;
            tokens.insert(name.to_owned(), token);
        }
    }
    tokens
}

/// How long the tests' apis wait for a worker's dry run.
pub const DRY_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Short graces, so that tests see a failing rollout fail within seconds;
/// the defaults are in the README.
pub const TEST_THRESHOLDS: depman::domain::diagnosis::Thresholds =
    depman::domain::diagnosis::Thresholds {
        image_pull: std::time::Duration::from_secs(3),
        crash_restarts: 2,
        unschedulable: std::time::Duration::from_secs(3),
    };

pub fn environment(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `make test`, or `make env && . .devenv/env.sh`")
    })
}

/// A file or folder of the repository. Found from the working directory,
/// which cargo sets to the package's folder: a path fixed at compile time
/// may name another checkout, since the target folder is shared.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new("../..").join(relative)
}

/// Every command of the binary, with the words that name it (`[]` for the
/// binary itself, `["dlq", "replay"]`).
pub fn commands() -> Vec<(Vec<String>, clap::Command)> {
    use clap::CommandFactory;
    let mut found = Vec::new();
    let mut pending = vec![(Vec::new(), depman::settings::Cli::command())];
    while let Some((words, command)) = pending.pop() {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut path = words.clone();
            path.push(sub.get_name().to_owned());
            pending.push((path, sub.clone()));
        }
        found.push((words, command));
    }
    found
}

/// The environment variables one command reads, the log filter included.
pub fn variables(command: &clap::Command) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::from(["RUST_LOG".to_owned()]);
    names.extend(
        command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned()),
    );
    names
}

/// Every environment variable the binary reads, in any command.
pub fn settings_variables() -> std::collections::BTreeSet<String> {
    commands()
        .iter()
        .flat_map(|(_, command)| variables(command))
        .collect()
}

/// `url` with its database name replaced.
pub fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    if query.is_empty() {
        format!("{server}/{database}")
    } else {
        format!("{server}/{database}?{query}")
    }
}

/// Creates a database named from `prefix`, and returns its name.
pub async fn create_database(prefix: &str) -> String {
    let database = unique(prefix);
    let mut admin = PgConnection::connect(&environment("DATABASE_URL"))
        .await
        .expect("connect as admin");
    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    database
}

pub async fn drop_database(database: &str) {
    let mut admin = PgConnection::connect(&environment("DATABASE_URL"))
        .await
        .expect("connect as admin");
    // `WITH (FORCE)` may not end a backend of another role, such as an
    // autovacuum worker that just started on the database (42501): it is
    // gone a moment later.
    for attempt in 1.. {
        let dropped = sqlx::query(AssertSqlSafe(format!(
            r#"DROP DATABASE "{database}" WITH (FORCE)"#
        )))
        .execute(&mut admin)
        .await;
        match dropped {
            Ok(_) => return,
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some("42501") && attempt < 50 =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(error) => panic!("drop the test database: {error}"),
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl TestApp {
    /// Starts an API on a new database.
    pub async fn spawn() -> Self {
        Self::spawn_with_nats(&environment("NATS_URL")).await
    }

    /// Starts an API on a new database, publishing to the NATS at `nats_url`.
    pub async fn spawn_with_nats(nats_url: &str) -> Self {
        let database = create_database("api_test").await;
        let url = url_with_database(&environment("DATABASE_URL"), &database);
        Self::start(&url, &database, (nats_url, 1), test_api_settings()).await
    }

    /// Starts an API on a new database, on the NATS cluster whose servers
    /// are `nats_urls` (comma-separated), its streams kept by `replicas`.
    pub async fn spawn_on_nats_cluster(nats_urls: &str, replicas: u8) -> Self {
        let database = create_database("api_test").await;
        let url = url_with_database(&environment("DATABASE_URL"), &database);
        Self::start(&url, &database, (nats_urls, replicas), test_api_settings()).await
    }

    /// Starts an API on the database at `url` (which may lead through a proxy).
    pub async fn spawn_on(url: &str, database: &str) -> Self {
        Self::start(
            url,
            database,
            (&environment("NATS_URL"), 1),
            test_api_settings(),
        )
        .await
    }

    /// Starts an API on a new database with `settings` (its address aside).
    pub async fn spawn_with_api(settings: ApiSettings) -> Self {
        let database = create_database("api_test").await;
        let url = url_with_database(&environment("DATABASE_URL"), &database);
        Self::start(&url, &database, (&environment("NATS_URL"), 1), settings).await
    }

    async fn start(
        url: &str,
        database: &str,
        (nats_url, replicas): (&str, u8),
        mut settings: ApiSettings,
    ) -> Self {
        let common = CommonSettings {
            database: DatabaseSettings {
                database_url: Secret::from(url.to_owned()),
                db_max_connections: Some(20),
                // Enough for the pool test to tell kept connections from
                // those the api's own tasks open; fewer than twenty for each
                // of the many test starts.
                db_min_connections: Some(8),
            },
            nats: NatsSettings {
                nats_url: nats_url.to_owned(),
                prefix: unique("test"),
                stream_replicas: replicas,
            },
        };
        settings.http_addr = "127.0.0.1:0".parse().expect("an address");
        let deps = Dependencies::connect(&common, depman::db::pool_size::API)
            .await
            .expect("dependencies");
        let api = Api::build(&deps, &settings, &test_webhooks())
            .await
            .expect("the api starts");
        let addr = api.local_addr().expect("a bound address");
        settings.http_addr = addr;
        let stop = CancellationToken::new();
        let served = tokio::spawn(api.run_until_stopped(stop.clone()));
        let direct_url = url_with_database(&environment("DATABASE_URL"), database);
        Self {
            addr,
            deps,
            workers: Vec::new(),
            watchers: Vec::new(),
            database: database.to_owned(),
            pool: PgPool::connect(&direct_url)
                .await
                .expect("connect to the test database"),
            client: reqwest::Client::new(),
            stop,
            served,
            tokens: test_tokens(&settings).await,
            settings,
        }
    }

    /// Stops the API and starts a new one on the same address, database and
    /// prefix, as a restarted api process would be.
    pub async fn restart_api(&mut self) {
        self.stop.cancel();
        (&mut self.served)
            .await
            .expect("the server task ends")
            .expect("the server stops cleanly");
        let api = Api::build(&self.deps, &self.settings, &test_webhooks())
            .await
            .expect("the api starts again");
        self.stop = CancellationToken::new();
        self.served = tokio::spawn(api.run_until_stopped(self.stop.clone()));
    }

    /// Starts a worker in this process, talking to Kubernetes through `kube`;
    /// returns its index for [`TestApp::stop_worker`].
    pub fn start_worker(
        &mut self,
        kube: kube::Client,
        max_attempts: u32,
        retry_backoff: std::time::Duration,
    ) -> usize {
        self.start_worker_with_timeout(
            kube,
            max_attempts,
            retry_backoff,
            std::time::Duration::from_secs(600),
        )
    }

    /// As `start_worker`, with `DEPMAN_ROLLOUT_TIMEOUT` at `rollout_timeout`.
    pub fn start_worker_with_timeout(
        &mut self,
        kube: kube::Client,
        max_attempts: u32,
        retry_backoff: std::time::Duration,
        rollout_timeout: std::time::Duration,
    ) -> usize {
        // Three requests at once: a test may run three workers on its pool
        // of 20.
        let settings = WorkerSettings {
            max_attempts,
            concurrency: 3,
            retry_backoff,
            shutdown_timeout: std::time::Duration::from_secs(10),
            image_pull_grace: TEST_THRESHOLDS.image_pull,
            crash_loop_restarts: TEST_THRESHOLDS.crash_restarts,
            unschedulable_grace: TEST_THRESHOLDS.unschedulable,
            rollout_timeout,
            webhook_retry_for: std::time::Duration::from_secs(24 * 3600),
            event_retention: std::time::Duration::from_secs(7 * 24 * 3600),
        };
        let worker = depman::worker::Worker::build(&self.deps, kube, &settings, &test_webhooks())
            .expect("a worker builds");
        let stop = CancellationToken::new();
        self.workers
            .push((stop.clone(), tokio::spawn(worker.run(stop))));
        self.workers.len() - 1
    }

    /// A `depman worker` process on this app's database and prefix, with
    /// `env` besides; the test kills it (SIGKILL) or stops it.
    pub fn worker_process(&self, env: &[(&str, &str)]) -> std::process::Child {
        // Only depman's own tests have the binary (depmanctl's share this
        // module).
        let Some(binary) = option_env!("CARGO_BIN_EXE_depman") else {
            panic!("only depman's own tests have the depman binary");
        };
        std::process::Command::new(binary)
            .arg("worker")
            .env(
                "DATABASE_URL",
                url_with_database(&environment("DATABASE_URL"), &self.database),
            )
            .env("DEPMAN_PREFIX", self.deps.names.prefix())
            .env("DEPMAN_RETRY_BACKOFF", "200ms")
            .env("DEPMAN_METRICS_ADDR", "127.0.0.1:0")
            .env("DEPMAN_WEBHOOK_KEY", TEST_WEBHOOK_KEY)
            .env("DEPMAN_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("depman worker starts")
    }

    /// What a worker of this app carries out requests with, for tests that
    /// call `depman::worker::process::handle` themselves.
    pub fn worker_context(&self, kube: kube::Client) -> depman::worker::Context {
        depman::worker::Context {
            pool: self.deps.pool.clone(),
            kube,
            js: self.deps.js.clone(),
            names: self.deps.names.clone(),
            max_attempts: 3,
            retry_backoff: std::time::Duration::from_millis(100),
            thresholds: TEST_THRESHOLDS,
            rollout_timeout: std::time::Duration::from_secs(600),
            metrics: self.deps.metrics.worker.clone(),
        }
    }

    /// Starts a watcher in this process on `namespaces`, with metrics of its
    /// own; returns its index for [`TestApp::watcher`].
    pub fn start_watcher(
        &mut self,
        kube: kube::Client,
        namespaces: Vec<String>,
        lease_duration: std::time::Duration,
    ) -> (usize, depman::metrics::WatcherMetrics) {
        // Metrics of its own, to tell this watcher's work from another's.
        let deps = Dependencies {
            metrics: depman::metrics::Metrics::default(),
            ..self.deps.clone()
        };
        let settings = WatcherSettings {
            watch_namespaces: namespaces,
            resync_interval: std::time::Duration::from_secs(300),
            lease_namespace: Some("default".into()),
            lease_duration,
        };
        let watcher = depman::watcher::Watcher::build(&deps, kube, &settings);
        let metrics = deps.metrics.watcher;
        let stop = CancellationToken::new();
        self.watchers
            .push(Some((stop.clone(), tokio::spawn(watcher.run(stop)))));
        (self.watchers.len() - 1, metrics)
    }

    /// Stops watcher `index` cleanly (it releases the lease).
    pub async fn stop_watcher(&mut self, index: usize) {
        let (stop, task) = self.watchers[index].take().expect("a running watcher");
        stop.cancel();
        task.await
            .expect("the watcher task ends")
            .expect("the watcher stops cleanly");
    }

    /// Kills watcher `index` outright: it keeps the lease until it expires.
    pub fn kill_watcher(&mut self, index: usize) {
        if let Some((_, task)) = &self.watchers[index] {
            task.abort();
        }
    }

    /// Waits until deployment `identifier` of `user` satisfies `check`.
    pub async fn deployment_until(
        &self,
        user: &str,
        identifier: &str,
        within: std::time::Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (_, deployment) = status_and_json(
                self.get(user, &format!("/api/v1/deployments/{identifier}"))
                    .await,
            )
            .await;
            if check(&deployment) {
                return deployment;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment {identifier} not as expected after {within:?}: {deployment}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Publishes the sync event a watcher would for `seen`, carrying it,
    /// once JetStream has it.
    pub async fn publish_seen(&self, seen: &k8s_openapi::api::apps::v1::Deployment) {
        let namespace = seen.metadata.namespace.as_deref().expect("a namespace");
        let name = seen.metadata.name.as_deref().expect("a name");
        let (js, names) = (&self.deps.js, &self.deps.names);
        depman::queue::publish_sync(js, names, namespace, name, None, Some(seen))
            .await
            .expect("published")
            .await
            .expect("acknowledged");
    }

    /// Waits until request `id` of `user` satisfies `check`, and returns it.
    pub async fn request_until(
        &self,
        user: &str,
        id: &str,
        within: std::time::Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (_, request) = status_and_json(
                self.get(user, &format!("/api/v1/deployments/requests/{id}"))
                    .await,
            )
            .await;
            if check(&request) {
                return request;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} not as expected after {within:?}: {request}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits until request `id` of `user` is SUCCESS or FAILURE, and returns it.
    pub async fn terminal(&self, user: &str, id: &str, within: std::time::Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, request) = status_and_json(
                self.get(user, &format!("/api/v1/deployments/requests/{id}"))
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{request}");
            if request["status"] != "CREATED" {
                return request;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} still CREATED after {within:?}: {request}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The request messages the relay published, once there are `count` of
    /// them (or after 10 s, whatever there is).
    pub async fn published(&self, count: usize) -> Vec<RequestMessage> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let messages = self.read_published().await;
            if messages.len() >= count || tokio::time::Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn read_published(&self) -> Vec<RequestMessage> {
        let Ok(mut stream) = self
            .deps
            .js
            .get_stream(self.deps.names.requests_stream())
            .await
        else {
            return Vec::new();
        };
        let state = stream.info().await.expect("stream info").state.clone();
        let mut messages = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                messages.push(serde_json::from_slice(&message.payload).expect("a request message"));
            }
        }
        messages
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The text of `path`, fetched without a user.
    pub async fn text(&self, path: &str) -> String {
        reqwest::get(self.url(path))
            .await
            .expect("the api answers")
            .text()
            .await
            .expect("a body")
    }

    /// A request as `user`, without a body: with their token when the api
    /// takes tokens, else `X-User-ID`.
    pub fn request(&self, method: Method, path: &str, user: &str) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match self.tokens.get(user) {
            Some(token) => request.bearer_auth(token),
            None => request.header("X-User-ID", user),
        }
    }

    pub async fn create(&self, user: &str, body: &Value) -> Response {
        self.request(Method::POST, "/api/v1/deployments/requests/create", user)
            .json(body)
            .send()
            .await
            .expect("POST create")
    }

    pub async fn create_with_key(&self, user: &str, key: &str, body: &Value) -> Response {
        self.request(Method::POST, "/api/v1/deployments/requests/create", user)
            .header("X-Request-ID", key)
            .json(body)
            .send()
            .await
            .expect("POST create")
    }

    pub async fn patch(&self, user: &str, id: &str, body: &Value) -> Response {
        self.request(
            Method::PATCH,
            &format!("/api/v1/deployments/requests/{id}"),
            user,
        )
        .json(body)
        .send()
        .await
        .expect("PATCH")
    }

    pub async fn delete(&self, user: &str, id: &str) -> Response {
        self.request(
            Method::DELETE,
            &format!("/api/v1/deployments/requests/{id}"),
            user,
        )
        .send()
        .await
        .expect("DELETE")
    }

    pub async fn get(&self, user: &str, path: &str) -> Response {
        self.request(Method::GET, path, user)
            .send()
            .await
            .expect("GET")
    }

    /// Stops the API, closes its connections and removes its streams;
    /// returns its database.
    pub async fn stop(mut self) -> String {
        for (stop, watcher) in self.watchers.drain(..).flatten() {
            stop.cancel();
            let _ = watcher.await;
        }
        for (stop, worker) in self.workers.drain(..) {
            stop.cancel();
            worker
                .await
                .expect("the worker task ends")
                .expect("the worker stops cleanly");
        }
        self.stop.cancel();
        (&mut self.served)
            .await
            .expect("the server task ends")
            .expect("the server stops cleanly");
        self.pool.close().await;
        let names = &self.deps.names;
        for stream in [
            names.requests_stream(),
            names.dead_letter_stream(),
            names.sync_stream(),
        ] {
            let _ = self.deps.js.delete_stream(stream).await;
        }
        self.database.clone()
    }

    /// Stops the API and drops its database: call it last in a passing test
    /// (a failing one leaves the database to look at).
    pub async fn finish(self) {
        let database = self.stop().await;
        drop_database(&database).await;
    }
}

/// A valid CREATE body.
pub fn deployment(name: &str) -> Value {
    serde_json::json!({"name": name, "namespace": "team-a", "image": "nginx:1.27", "replicas": 2})
}

/// The status and JSON body of a response.
pub async fn status_and_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Asserts a problem details response: its status, content type, and the
/// field its first error names (if any).
pub async fn assert_problem(response: Response, status: u16, field: Option<&str>) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:depman:problem:"))
    );
    if let Some(field) = field {
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    body
}

/// One Server-Sent Events frame.
#[derive(Debug, Clone)]
pub struct SseFrame {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A client of `GET /api/v1/events` as a stream, reading frame by frame.
pub struct EventStream {
    response: Response,
    buffer: String,
}

impl EventStream {
    /// Opens the stream as `user`, with `query`, resuming after
    /// `last_event_id` if given.
    pub async fn open(app: &TestApp, user: &str, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .request(Method::GET, &format!("/api/v1/events?{query}"), user)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("GET /api/v1/events");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` if none comes `within`.
    pub async fn next(&mut self, within: std::time::Duration) -> Option<SseFrame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(frame) = parse_frame(&block) {
                    return Some(frame);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("the stream reads")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `count` events, each within `within`.
    pub async fn take(&mut self, count: usize, within: std::time::Duration) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        for _ in 0..count {
            let frame = self.next(within).await;
            frames.push(
                frame.unwrap_or_else(|| panic!("event {} of {count} came", frames.len() + 1)),
            );
        }
        frames
    }
}

fn parse_frame(block: &str) -> Option<SseFrame> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("data is JSON"));
        }
    }
    Some(SseFrame {
        id: id?,
        event: event?,
        data: data?,
    })
}

/// Every event of `user` after `after` (matching `query`), read page by page
/// from the JSON route; returns them and the cursor to go on from.
pub async fn event_pages(
    app: &TestApp,
    user: &str,
    query: &str,
    mut after: Option<String>,
) -> (Vec<Value>, Option<String>) {
    let mut events = Vec::new();
    loop {
        let cursor = after
            .as_deref()
            .map(|c| format!("&after={c}"))
            .unwrap_or_default();
        let (status, page) = status_and_json(
            app.get(user, &format!("/api/v1/events?limit=100&{query}{cursor}"))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        after = page["next_cursor"].as_str().map(str::to_owned);
        let done = items.len() < 100;
        events.extend(items);
        if done {
            return (events, after);
        }
    }
}

/// The events of `user` (matching `query`) once there are at least
/// `count`: an event is readable once every transaction older than its own
/// has ended, a few milliseconds after its commit.
pub async fn events_eventually(app: &TestApp, user: &str, query: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (events, _) = event_pages(app, user, query, None).await;
        if events.len() >= count {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} events: {events:?}",
            events.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
