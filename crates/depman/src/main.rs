//! `depman <role>`: parses the command line and runs the role.

use std::process::ExitCode;

use clap::Parser;
use depman::{app, settings::Cli, telemetry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    match app::run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "depman stopped on an error");
            ExitCode::FAILURE
        }
    }
}
