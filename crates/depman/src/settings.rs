//! Settings, parsed once at start from the command line and the environment
//! (the variable names are part of the contract: docs/contract.md).

use std::{fmt, net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "depman",
    version,
    about = "Kubernetes deployment manager",
    after_help = "Every setting is also read from the environment variable shown beside it. \
                  RUST_LOG filters the logs (default: info); KUBECONFIG locates the cluster \
                  outside a pod."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve the HTTP API and relay accepted requests to NATS (applies
    /// pending migrations first).
    Api {
        #[command(flatten)]
        common: CommonSettings,
        #[command(flatten)]
        api: ApiSettings,
        #[command(flatten)]
        webhooks: WebhookSettings,
    },
    /// Carry out accepted requests in Kubernetes (cluster access from
    /// KUBECONFIG, or the pod's service account in a cluster).
    Worker {
        #[command(flatten)]
        common: CommonSettings,
        #[command(flatten)]
        worker: WorkerSettings,
        #[command(flatten)]
        operations: OperationsSettings,
        #[command(flatten)]
        webhooks: WebhookSettings,
    },
    /// Watch the Deployments depman manages and publish a sync event per
    /// change (cluster access as for the worker).
    Watcher {
        #[command(flatten)]
        common: CommonSettings,
        #[command(flatten)]
        watcher: WatcherSettings,
        #[command(flatten)]
        operations: OperationsSettings,
    },
    /// Run every role in one process, for local use.
    All {
        #[command(flatten)]
        common: CommonSettings,
        #[command(flatten)]
        api: ApiSettings,
        #[command(flatten)]
        worker: WorkerSettings,
        #[command(flatten)]
        watcher: WatcherSettings,
        #[command(flatten)]
        webhooks: WebhookSettings,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseSettings,
    },
    /// Inspect and replay dead-lettered requests.
    Dlq {
        #[command(flatten)]
        common: CommonSettings,
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead-lettered requests.
    List,
    /// Put dead-lettered requests back in the queue.
    Replay {
        /// Request ids to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<uuid::Uuid>,
        /// Replay every dead-lettered request.
        #[arg(long)]
        all: bool,
    },
}

/// What every role that touches the database and NATS needs.
#[derive(Debug, Clone, Args)]
pub struct CommonSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
}

/// What the api (registering webhooks) and the worker (delivering them)
/// share.
#[derive(Debug, Clone, Default, Args)]
pub struct WebhookSettings {
    /// Key that encrypts webhook signing secrets in the database: 32 bytes
    /// in base64 (`openssl rand -base64 32`). Without it, webhooks cannot be
    /// created, and none are delivered.
    #[arg(long, env = "DEPMAN_WEBHOOK_KEY", hide_env_values = true)]
    pub webhook_key: Option<crate::webhooks::secret::SecretKey>,

    /// Comma-separated hosts (names or addresses, as written in the URL) a
    /// webhook may reach although they resolve to a loopback, private or
    /// link-local address.
    #[arg(
        long,
        env = "DEPMAN_WEBHOOK_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub webhook_allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://depman:depman@127.0.0.1:55432/depman",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: Secret,

    /// Most connections the pool opens; default: sized for the role (see
    /// `db::pool_size`). A worker needs two per request in flight.
    #[arg(long, env = "DEPMAN_DB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(2..))]
    pub db_max_connections: Option<u32>,

    /// Connections opened at start and kept open; default: the pool's size
    /// (a pool of fixed size). Fewer leaves a request that finds none idle
    /// to wait while one is opened.
    #[arg(long, env = "DEPMAN_DB_MIN_CONNECTIONS")]
    pub db_min_connections: Option<u32>,
}

impl DatabaseSettings {
    /// The pool's size, `role_size` unless set, and how many of its
    /// connections to keep open.
    pub fn pool_size(&self, role_size: u32) -> anyhow::Result<(u32, u32)> {
        let max = self.db_max_connections.unwrap_or(role_size);
        let min = self.db_min_connections.unwrap_or(max);
        anyhow::ensure!(
            min <= max,
            "DEPMAN_DB_MIN_CONNECTIONS ({min}) is more than the pool's size ({max})"
        );
        Ok((max, min))
    }
}

#[derive(Debug, Clone, Args)]
pub struct NatsSettings {
    /// NATS server URL, or the URLs of a cluster's servers separated by
    /// commas.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// How many servers of the NATS cluster keep each stream depman creates
    /// (1 to 5; 3 survives the loss of one server). An existing stream is
    /// updated to it.
    #[arg(long, env = "DEPMAN_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// Prefix of every JetStream stream, consumer and subject name (letters,
    /// digits, '-' and '_').
    #[arg(long, env = "DEPMAN_PREFIX", default_value = "depman", value_parser = parse_prefix)]
    pub prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct ApiSettings {
    /// Address the HTTP API listens on.
    #[arg(long, env = "DEPMAN_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// How long a dry run waits for a worker's answer before it is a 503.
    #[arg(long, env = "DEPMAN_DRY_RUN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub dry_run_timeout: Duration,
    /// A YAML file naming, for each user and group, the namespace patterns
    /// it may create in; empty: every namespace but the reserved ones.
    #[arg(long, env = "DEPMAN_NAMESPACE_POLICY", default_value = "")]
    pub namespace_policy: String,
    /// The namespace depman runs in, refused to users like kube-system.
    #[arg(long, env = "DEPMAN_OWN_NAMESPACE", default_value = "")]
    pub own_namespace: String,
    #[command(flatten)]
    pub auth: AuthSettings,
    /// Peers X-User-ID is believed from: `any`, or addresses and CIDR
    /// blocks (the authenticating proxy in front of depman).
    #[arg(long, env = "DEPMAN_TRUSTED_PROXIES", default_value = "any")]
    pub trusted_proxies: crate::http::trusted::TrustedProxies,
    /// Changes (POST, PATCH, DELETE) one user may make per second, minute
    /// or hour, per api process (`N/s`, `N/m`, `N/h`), or `off`.
    #[arg(long, env = "DEPMAN_RATE_LIMIT", default_value = "100/s")]
    pub rate_limit: crate::http::limit::Rate,
    /// How many changes a user may make at once before the rate applies.
    #[arg(long, env = "DEPMAN_RATE_LIMIT_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,
    /// Live deployments one user may have at once; 0: no limit.
    #[arg(long, env = "DEPMAN_MAX_DEPLOYMENTS_PER_USER", default_value_t = 0)]
    pub max_deployments_per_user: u32,
}

/// How the api knows who calls.
#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// `header`: X-User-ID names the caller (behind an authenticating
    /// proxy); `jwt`: an OpenID Connect bearer token does.
    #[arg(long, env = "DEPMAN_AUTH", value_enum, default_value_t = AuthMode::Header)]
    pub auth: AuthMode,
    #[command(flatten)]
    pub jwt: JwtSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    Header,
    Jwt,
}

/// The token issuer and what to read from its tokens (`DEPMAN_AUTH=jwt`).
#[derive(Debug, Clone, Args)]
pub struct JwtSettings {
    /// The issuer (`iss`); its keys are found through its discovery document.
    #[arg(long, env = "DEPMAN_JWT_ISSUER", default_value = "")]
    pub jwt_issuer: String,
    /// The issuer's key set, when not the one its discovery document names.
    #[arg(long, env = "DEPMAN_JWT_JWKS_URL", default_value = "")]
    pub jwt_jwks_url: String,
    /// The audience (`aud`) tokens must be meant for: depman's client id.
    #[arg(long, env = "DEPMAN_JWT_AUDIENCE", default_value = "")]
    pub jwt_audience: String,
    /// The claim naming the user.
    #[arg(long, env = "DEPMAN_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
    /// The claim listing the user's groups (for the namespace policy).
    #[arg(long, env = "DEPMAN_JWT_GROUPS_CLAIM", default_value = "groups")]
    pub jwt_groups_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, at most 30 s.
    #[arg(long, env = "DEPMAN_JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,
}

/// Where a role without the API serves `/metrics` and `/healthz`; `depman
/// all` serves them with the API.
#[derive(Debug, Clone, Args)]
pub struct OperationsSettings {
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, env = "DEPMAN_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    /// Attempts for a transiently failing request before it ends FAILURE.
    #[arg(long, env = "DEPMAN_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// Requests one worker carries out at once (at most half the database
    /// pool).
    #[arg(long, env = "DEPMAN_WORKER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Delay before the first retry of a transient failure; each next retry
    /// waits twice as long (with jitter), up to a minute.
    #[arg(long, env = "DEPMAN_RETRY_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_backoff: Duration,

    /// How long a stopping worker waits for the requests in flight.
    #[arg(long, env = "DEPMAN_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// How long a scheduled pod of a rollout may fail to pull its image
    /// (ErrImagePull, ImagePullBackOff) before the rollout is FAILED.
    #[arg(long, env = "DEPMAN_IMAGE_PULL_GRACE", default_value = "12s", value_parser = humantime::parse_duration)]
    pub image_pull_grace: Duration,

    /// Restarts of a crash-looping pod after which its rollout is FAILED.
    #[arg(long, env = "DEPMAN_CRASH_LOOP_RESTARTS", default_value_t = 2)]
    pub crash_loop_restarts: i32,

    /// How long a pod of a rollout may stay unschedulable before the rollout
    /// is FAILED.
    #[arg(long, env = "DEPMAN_UNSCHEDULABLE_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub unschedulable_grace: Duration,

    /// How long depman follows a rollout before it fails as RolloutTimeout
    /// (beyond the Deployment's own progress deadline).
    #[arg(long, env = "DEPMAN_ROLLOUT_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub rollout_timeout: Duration,

    /// How long a webhook's deliveries are retried without a success before
    /// it is disabled.
    #[arg(long, env = "DEPMAN_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = humantime::parse_duration)]
    pub webhook_retry_for: Duration,

    /// How long events are kept; older ones are pruned.
    #[arg(long, env = "DEPMAN_EVENT_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub event_retention: Duration,
}

impl WorkerSettings {
    pub fn thresholds(&self) -> crate::domain::diagnosis::Thresholds {
        crate::domain::diagnosis::Thresholds {
            image_pull: self.image_pull_grace,
            crash_restarts: self.crash_loop_restarts,
            unschedulable: self.unschedulable_grace,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct WatcherSettings {
    /// Comma-separated namespaces to watch; empty: all.
    #[arg(
        long,
        env = "DEPMAN_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,

    /// Period of the full resync.
    #[arg(long, env = "DEPMAN_RESYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,

    /// Namespace of the watchers' Lease (default: the pod's own, or
    /// `default` outside a cluster).
    #[arg(long, env = "DEPMAN_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a leader holds the Lease without renewing it; another
    /// replica takes over within two of these after the leader dies.
    #[arg(long, env = "DEPMAN_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
}

impl WatcherSettings {
    pub fn namespaces(&self) -> Vec<String> {
        self.watch_namespaces
            .iter()
            .map(|ns| ns.trim().to_owned())
            .filter(|ns| !ns.is_empty())
            .collect()
    }

    pub fn lease_namespace(&self) -> String {
        self.lease_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|ns| ns.trim().to_owned())
                .unwrap_or_else(|_| "default".to_owned())
        })
    }
}

/// Stream and subject names are built from the prefix, so it may hold only
/// characters valid in both.
fn parse_prefix(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 32
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("1 to 32 letters, digits, '-' and '_'".into())
    }
}

/// A value that never shows in logs or `Debug` output, such as a URL with a
/// password in it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::from("postgres://u:hunter2@db/x".to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "postgres://u:hunter2@db/x");
    }

    #[test]
    fn prefixes_fit_stream_and_subject_names() {
        assert!(parse_prefix("depman").is_ok());
        assert!(parse_prefix("test_1-a").is_ok());
        for bad in ["", "a.b", "a b", "a>", "a*", &"x".repeat(33)] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pool_is_sized_for_the_role_unless_set_and_keeps_all_unless_told_fewer() {
        let database = |max, min| DatabaseSettings {
            database_url: Secret::from(String::new()),
            db_max_connections: max,
            db_min_connections: min,
        };
        assert_eq!(database(None, None).pool_size(16).unwrap(), (16, 16));
        assert_eq!(database(Some(40), None).pool_size(16).unwrap(), (40, 40));
        assert_eq!(database(Some(40), Some(4)).pool_size(16).unwrap(), (40, 4));
        let error = database(None, Some(17)).pool_size(16).unwrap_err();
        assert!(
            error.to_string().contains("DEPMAN_DB_MIN_CONNECTIONS (17)"),
            "{error}"
        );
    }
}
