//! Each command: what it asks the API, and what it shows.

mod change;
mod diff;
mod read;
mod wait;
mod watch;

use clap::CommandFactory;

use crate::{
    cli::{Cli, Command},
    client::Client,
    config,
    error::CtlError,
    output::Output,
};

pub fn run(cli: Cli) -> Result<(), CtlError> {
    if let Command::Completion { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "depmanctl", &mut std::io::stdout());
        return Ok(());
    }
    let client = Client::new(config::resolve(&cli.global)?)?;
    let out = Output::new(cli.global.output);
    match cli.command {
        Command::Create(args) => change::create(&client, out, &args),
        Command::Update(args) => change::update(&client, out, &args),
        Command::Delete(args) => change::delete(&client, out, &args),
        Command::Rollback(args) => change::rollback(&client, out, &args),
        Command::Cancel { id } => change::cancel(&client, out, &id),
        Command::Get { identifier } => read::get(&client, out, &identifier),
        Command::List(args) => read::list(&client, out, &args),
        Command::Requests(args) => read::requests(&client, out, &args),
        Command::Request { id } => read::request(&client, out, &id),
        Command::History { identifier } => read::history(&client, out, &identifier),
        Command::Wait(args) => wait::command(&client, out, &args),
        Command::Watch(args) => watch::command(&client, out, &args),
        Command::Diff(command) => diff::command(&client, out, &command),
        Command::Completion { .. } => Ok(()),
    }
}

/// `value` as a query parameter.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
