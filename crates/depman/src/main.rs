//! `depman <role>`: parses the command line and runs the role.

use std::process::ExitCode;

use clap::Parser;
use depman::{
    api::Api,
    db,
    settings::{Cli, Command},
    shutdown, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = ?error, "depman stopped on an error");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        // The worker and the watcher join `all` in their issues.
        Command::Api(settings) | Command::All(settings) => {
            Api::build(&settings)
                .await?
                .run_until_stopped(shutdown::signal_received())
                .await
        }
        Command::Migrate(settings) => {
            let pool = db::pool(&settings)?;
            db::migrate(&pool, std::time::Duration::from_secs(60)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}
