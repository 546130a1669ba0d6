//! `depman dlq`: the requests that failed for good after their retries, and
//! putting them back in the queue.

use std::io::Write;

use uuid::Uuid;

use crate::{
    dependencies::Dependencies,
    domain::status::RequestType,
    queue::{self, DeadLetter},
    settings::DlqCommand,
    store::{deployments, requests},
};

pub async fn run(deps: &Dependencies, command: DlqCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List => {
            let letters = list(deps).await?;
            writeln!(
                out,
                "{:<36}  {:<6}  {:<30}  {:>8}  {:<20}  REASON",
                "REQUEST", "TYPE", "IDENTIFIER", "ATTEMPTS", "FAILED"
            )?;
            for (_, letter) in &letters {
                writeln!(
                    out,
                    "{:<36}  {:<6}  {:<30}  {:>8}  {:<20}  {}",
                    letter.request_id,
                    letter.request_type.as_str(),
                    letter.identifier,
                    letter.attempts,
                    letter.failed_on.format("%Y-%m-%dT%H:%M:%SZ"),
                    letter.failure_reason
                )?;
            }
            writeln!(out, "{} dead-lettered request(s)", letters.len())?;
        }
        DlqCommand::Replay { ids, all } => {
            let selected = if all { None } else { Some(ids.as_slice()) };
            let replayed = replay(deps, selected).await?;
            for id in &replayed {
                writeln!(out, "replayed {id}")?;
            }
            writeln!(out, "{} request(s) put back in the queue", replayed.len())?;
        }
    }
    Ok(())
}

/// Every dead letter, with its stream sequence, oldest first.
pub async fn list(deps: &Dependencies) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
    queue::ensure_streams(&deps.js, &deps.names).await?;
    let mut stream = deps.js.get_stream(deps.names.dead_letter_stream()).await?;
    let state = stream.info().await?.state.clone();
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // Replayed letters are deleted, leaving gaps.
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        match serde_json::from_slice::<DeadLetter>(&message.payload) {
            Ok(letter) => letters.push((sequence, letter)),
            Err(error) => tracing::warn!(sequence, %error, "unreadable dead letter skipped"),
        }
    }
    Ok(letters)
}

/// Puts the selected dead-lettered requests (all of them for `None`) back to
/// `CREATED` with a new outbox row, and removes their dead letters. Returns
/// the ids put back.
pub async fn replay(deps: &Dependencies, selected: Option<&[Uuid]>) -> anyhow::Result<Vec<Uuid>> {
    let stream = deps.js.get_stream(deps.names.dead_letter_stream()).await?;
    let mut replayed = Vec::new();
    for (sequence, letter) in list(deps).await? {
        if selected.is_some_and(|ids| !ids.contains(&letter.request_id)) {
            continue;
        }
        let mut tx = deps.pool.begin().await?;
        if requests::requeue(&mut tx, letter.request_id).await? {
            if letter.request_type == RequestType::Create {
                deployments::record_outcome(
                    &mut *tx,
                    &letter.identifier,
                    deployments::Outcome::Requeued,
                )
                .await?;
            }
            replayed.push(letter.request_id);
        }
        tx.commit().await?;
        stream.delete_message(sequence).await?;
    }
    Ok(replayed)
}
