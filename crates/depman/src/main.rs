//! `depman`: one binary, one subcommand per role.
//!
//! The roles (`api`, `worker`, `watcher`, `all`, `migrate`) arrive with their
//! issues; until then the binary only says so, so that `make dev` has a
//! target to run and a newcomer learns where the project stands.

use std::process::ExitCode;

fn main() -> ExitCode {
    let version = env!("CARGO_PKG_VERSION");
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("depman {version}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "depman {version}: the api, worker and watcher roles are not built yet; \
                 `make env` runs the local environment they will use"
            );
            ExitCode::from(2)
        }
    }
}
