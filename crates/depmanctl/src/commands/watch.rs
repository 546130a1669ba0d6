//! `watch`: the live event stream. After a dropped connection it resumes
//! from the last event it printed (`Last-Event-ID`), so no event is lost
//! or printed twice.

use std::{
    io::{BufRead, BufReader},
    time::Duration,
};

use serde_json::Value;

use super::encode;
use crate::{
    cli::{Format, WatchArgs},
    client::Client,
    error::CtlError,
    output::{Output, text, yaml},
};

/// The longest pause between reconnection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub fn command(client: &Client, out: Output, args: &WatchArgs) -> Result<(), CtlError> {
    let mut query: Vec<String> = args
        .types
        .iter()
        .map(|kind| format!("type={}", encode(kind)))
        .collect();
    if let Some(identifier) = &args.identifier {
        query.push(format!("identifier={}", encode(identifier)));
    }
    let path = format!("/api/v1/events?{}", query.join("&"));
    let mut last: Option<String> = None;
    let mut connected = false;
    let mut pause = Duration::from_millis(250);
    loop {
        match client.stream(&path, last.as_deref()) {
            Ok(response) => {
                connected = true;
                pause = Duration::from_millis(250);
                follow(response, out, &mut last)?;
                eprintln!("depmanctl: the event stream ended; resuming");
            }
            // Reconnect only to a server that was there: one that never
            // answered is an error to report.
            Err(CtlError::Unreachable(message)) if connected => {
                eprintln!(
                    "depmanctl: {message}; retrying in {}",
                    humantime::format_duration(pause)
                );
            }
            Err(error) => return Err(error),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Prints each event of the stream until it ends or breaks, keeping the
/// id of the last frame read.
fn follow(
    response: reqwest::blocking::Response,
    out: Output,
    last: &mut Option<String>,
) -> Result<(), CtlError> {
    let mut id = None;
    let mut data = String::new();
    for line in BufReader::new(response).lines() {
        let Ok(line) = line else { return Ok(()) };
        if line.is_empty() {
            if !data.is_empty() {
                print_event(out, &data)?;
                data.clear();
            }
            // A frame with an id and no data (the stream's start) moves
            // the position as an event does.
            if id.is_some() {
                *last = id.take();
            }
            continue;
        }
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    Ok(())
}

fn print_event(out: Output, data: &str) -> Result<(), CtlError> {
    let event: Value = serde_json::from_str(data)
        .map_err(|e| CtlError::Unreachable(format!("an event that is not JSON: {e}")))?;
    match out.format {
        Format::Json => println!("{event}"),
        Format::Yaml => print!("---\n{}", yaml(&event)?),
        Format::Name => println!("event/{}", text(&event["id"])),
        Format::Table => println!(
            "{}  {:<20}  {:<24}  {:<12}  {}",
            text(&event["occurred_on"]),
            text(&event["type"]),
            text(&event["identifier"]),
            text(&event["actor"]),
            out.paint(&summary(&event))
        ),
    }
    Ok(())
}

/// The few words that say what happened.
fn summary(event: &Value) -> String {
    let data = &event["data"];
    match text(&event["type"]).as_str() {
        "rollout.failed" => format!(
            "{}: {}",
            text(&data["rollout"]["reason"]),
            text(&data["rollout"]["message"])
        ),
        "request.failed" => text(&data["failure_reason"]),
        "deployment.changed" => event["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {}→{}",
                    text(&c["field"]),
                    text(&c["before"]),
                    text(&c["after"])
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        kind if kind.starts_with("rollout.") => text(&data["rollout"]["state"]),
        kind if kind.starts_with("request.") => text(&data["status"]),
        _ => text(&data["status"]),
    }
}
