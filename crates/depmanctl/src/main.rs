//! `depmanctl`: depman's command line client. It speaks only depman's
//! public HTTP API, so it works against any installation; `docs/cli.md`
//! describes every command.

mod cli;
mod client;
mod commands;
mod config;
mod error;
mod output;
mod spec;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}
