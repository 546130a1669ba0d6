//! Settings, parsed once at start from the command line and the environment
//! (the variable names are part of the contract: docs/contract.md).

use std::{fmt, net::SocketAddr};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "depman", version, about = "Kubernetes deployment manager")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (applies pending migrations first).
    Api(ApiSettings),
    /// Run every role in one process, for local use.
    All(ApiSettings),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseSettings),
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

    /// Most connections the pool opens.
    #[arg(long, env = "DEPMAN_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct NatsSettings {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Prefix of every JetStream stream, consumer and subject name.
    #[arg(long, env = "DEPMAN_PREFIX", default_value = "depman")]
    pub prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct ApiSettings {
    /// Address the HTTP API listens on.
    #[arg(long, env = "DEPMAN_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub nats: NatsSettings,
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
}
