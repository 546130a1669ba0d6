//! The command line: every command, flag and environment variable.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::error::EXIT_CODES;

#[derive(Debug, Parser)]
#[command(
    name = "depmanctl",
    version,
    about = "Create, follow, undo and preview Kubernetes Deployments through depman",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where to talk to and how to show it; flags win over the environment,
/// which wins over the config file's context.
#[derive(Debug, Args)]
pub struct Global {
    /// depman's URL [default: the context's, or http://127.0.0.1:8080]
    #[arg(long, env = "DEPMAN_URL", global = true)]
    pub server: Option<String>,
    /// Who you are (sent as X-User-ID)
    #[arg(long, env = "DEPMAN_USER", global = true)]
    pub user: Option<String>,
    /// A bearer token, sent when given
    #[arg(long, env = "DEPMAN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The config file's context to use [default: its current-context]
    #[arg(long, env = "DEPMAN_CONTEXT", global = true)]
    pub context: Option<String>,
    /// The config file [default: ~/.config/depman/config.yaml]
    #[arg(long, env = "DEPMAN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Name,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a deployment (flags, or -f FILE with a YAML or JSON spec)
    Create(CreateArgs),
    /// Change a deployment: the flags or the file are a merge patch
    Update(UpdateArgs),
    /// Delete a deployment
    Delete(DeleteArgs),
    /// A deployment with its live state and its last request's rollout
    Get { identifier: String },
    /// Your deployments
    List(ListArgs),
    /// Your requests, newest first
    Requests(RequestsArgs),
    /// One request
    Request { id: String },
    /// Wait for a request (or a deployment's last request) to be applied or rolled out
    Wait(WaitArgs),
    /// Follow your events live; resumes by itself after a dropped connection
    Watch(WatchArgs),
    /// A deployment's revisions, newest first
    History { identifier: String },
    /// Go back to a revision
    Rollback(RollbackArgs),
    /// What a create, update, delete or rollback would change (a dry run)
    #[command(subcommand)]
    Diff(DiffCommand),
    /// Cancel a request that has not been carried out yet
    Cancel { id: String },
    /// Print a completion script
    Completion { shell: Shell },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: SpecFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[arg(id = "deployment", value_name = "IDENTIFIER")]
    pub identifier: String,
    #[command(flatten)]
    pub spec: SpecFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub identifier: String,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub identifier: String,
    /// The revision to go back to (see `history`)
    #[arg(long)]
    pub to_revision: i64,
    #[command(flatten)]
    pub wait: WaitFlags,
}

/// A spec from a file, flags, or both (flags win).
#[derive(Debug, Args)]
pub struct SpecFlags {
    /// A YAML or JSON spec; `-` reads stdin
    #[arg(short = 'f', long = "filename")]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub identifier: Option<String>,
    #[arg(long)]
    pub replicas: Option<u32>,
    /// KEY=VALUE; on update, KEY- removes it (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// KEY=VALUE; on update, KEY- removes it (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// KEY=VALUE; on update, KEY- removes it (repeatable)
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// A container port (repeatable; replaces the list)
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
}

#[derive(Debug, Args)]
pub struct WaitFlags {
    /// Wait for the rollout (or the delete), showing progress on a terminal
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub namespace: Option<String>,
    /// INITIATED, CREATED, UPDATING, DELETED or FAILED
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct RequestsArgs {
    #[arg(long)]
    pub identifier: Option<String>,
    /// CREATED, SUCCESS or FAILURE
    #[arg(long)]
    pub status: Option<String>,
    /// CREATE, UPDATE or DELETE
    #[arg(long = "type")]
    pub request_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// A request id, or a deployment's identifier (its last request)
    pub target: String,
    #[arg(long, value_enum, default_value_t = Until::RolledOut)]
    pub until: Until,
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Until {
    /// The request ended (SUCCESS or FAILURE)
    Applied,
    /// Its rollout ended too
    RolledOut,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this deployment's events
    #[arg(long)]
    pub identifier: Option<String>,
    /// Only events of this type (repeatable), e.g. rollout.failed
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum DiffCommand {
    /// What creating would do
    Create(SpecFlags),
    /// What updating would change
    Update {
        #[arg(id = "deployment", value_name = "IDENTIFIER")]
        identifier: String,
        #[command(flatten)]
        spec: SpecFlags,
    },
    /// What deleting would remove
    Delete { identifier: String },
    /// What rolling back would change
    Rollback {
        identifier: String,
        #[arg(long)]
        to_revision: i64,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
