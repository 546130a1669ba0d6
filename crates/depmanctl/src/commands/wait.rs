//! Waiting for a request's outcome, with progress on a terminal.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{encode, read::last_request};
use crate::{
    cli::{Until, WaitArgs},
    client::Client,
    error::CtlError,
    output::{Kind, Output, text},
};

pub fn command(client: &Client, out: Output, args: &WaitArgs) -> Result<(), CtlError> {
    let id = match uuid::Uuid::parse_str(&args.target) {
        Ok(id) => id.to_string(),
        Err(_) => text(&last_request(client, &args.target)?["id"]),
    };
    let (request, outcome) = until_done(client, &id, args.until, args.timeout)?;
    out.one(Kind::Request, &request)?;
    outcome
}

/// How long one poll waits on the server: short enough for the progress
/// line to move.
const POLL: Duration = Duration::from_secs(2);

/// Waits until request `id` is applied (or rolled out); returns it as it is
/// then, with its outcome: failed (its reason), or timed out.
pub fn until_done(
    client: &Client,
    id: &str,
    until: Until,
    timeout: Duration,
) -> Result<(Value, Result<(), CtlError>), CtlError> {
    let deadline = Instant::now()
        .checked_add(timeout)
        .ok_or_else(|| CtlError::Usage("--timeout is too long".into()))?;
    let mut progress = Progress::new();
    let until_param = match until {
        Until::Applied => "applied",
        Until::RolledOut => "rolled_out",
    };
    loop {
        let wait = deadline.saturating_duration_since(Instant::now()).min(POLL);
        let path = format!(
            "/api/v1/deployments/requests/{}?wait={}ms&until={until_param}",
            encode(id),
            wait.as_millis()
        );
        let request = client.get_within(&path, wait)?;
        if let Some(outcome) = outcome(&request, until) {
            progress.clear();
            return Ok((request, outcome));
        }
        if Instant::now() >= deadline {
            progress.clear();
            let state = match request["rollout"]["state"].as_str() {
                Some(state) => format!("rollout {state}"),
                None => text(&request["status"]),
            };
            let waited = humantime::format_duration(timeout);
            let message = format!("request {id} is still {state} after {waited}");
            return Ok((request, Err(CtlError::TimedOut(message))));
        }
        progress.show(&request);
    }
}

/// The request's outcome once there is one.
fn outcome(request: &Value, until: Until) -> Option<Result<(), CtlError>> {
    match request["status"].as_str() {
        Some("FAILURE") => {
            let reason = request["failure_reason"].as_str().unwrap_or("it failed");
            return Some(Err(CtlError::Failed(format!(
                "the request failed: {reason}"
            ))));
        }
        Some("SUCCESS") => {}
        _ => return None,
    }
    if until == Until::Applied || request["request_type"] == "DELETE" {
        return Some(Ok(()));
    }
    let rollout = &request["rollout"];
    match rollout["state"].as_str() {
        Some("COMPLETE") => Some(Ok(())),
        Some("FAILED") => Some(Err(CtlError::Failed(format!(
            "the rollout failed: {}: {}",
            text(&rollout["reason"]),
            text(&rollout["message"])
        )))),
        Some("SUPERSEDED") => Some(Err(CtlError::Failed(
            "the rollout was superseded: a newer request of the deployment took effect first"
                .into(),
        ))),
        _ => None,
    }
}

/// A spinner and the replicas so far, on a terminal's stderr only.
struct Progress {
    terminal: bool,
    frame: usize,
}

impl Progress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            frame: 0,
        }
    }

    fn show(&mut self, request: &Value) {
        if !self.terminal {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame = (self.frame + 1) % FRAMES.len();
        let rollout = &request["rollout"];
        let line = if rollout.is_null() {
            format!("{} waiting to be applied", text(&request["identifier"]))
        } else {
            let count = |field: &str| rollout[field].as_i64().unwrap_or(0);
            format!(
                "{} rolling out: {}/{} ready, {} updated",
                text(&request["identifier"]),
                count("ready_replicas"),
                count("desired_replicas"),
                count("updated_replicas")
            )
        };
        eprint!("\r\x1b[2K{} {line}", FRAMES[self.frame]);
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
    }
}
