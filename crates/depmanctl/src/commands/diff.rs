//! `diff`: the dry run of a change, as a coloured unified diff of each
//! field it would change (`-o json` or `yaml`: the dry run's answer).

use reqwest::Method;
use serde_json::{Value, json};

use super::change::{request_path, rollback_path};
use crate::{
    cli::{DiffCommand, Format},
    client::Client,
    error::CtlError,
    output::{Output, pretty, yaml},
    spec,
};

pub fn command(client: &Client, out: Output, command: &DiffCommand) -> Result<(), CtlError> {
    let (method, path, body) = match command {
        DiffCommand::Create(flags) => (
            Method::POST,
            "/api/v1/deployments/requests/create".to_owned(),
            Some(spec::create_body(flags)?),
        ),
        DiffCommand::Update { identifier, spec } => (
            Method::PATCH,
            request_path(client, identifier)?,
            Some(spec::patch_body(spec)?),
        ),
        DiffCommand::Delete { identifier } => {
            (Method::DELETE, request_path(client, identifier)?, None)
        }
        DiffCommand::Rollback {
            identifier,
            to_revision,
        } => (
            Method::POST,
            rollback_path(identifier),
            Some(json!({"revision": to_revision})),
        ),
    };
    let result = client.send(method, &format!("{path}?dry_run=true"), body.as_ref())?;
    match out.format {
        Format::Json => println!("{}", pretty(&result)),
        Format::Yaml => print!("{}", yaml(&result)?),
        Format::Table | Format::Name => print!("{}", unified(out, &result)),
    }
    Ok(())
}

/// `--- live` / `+++ dry run`, then a hunk per changed field; the API
/// server's warnings after.
fn unified(out: Output, result: &Value) -> String {
    let changes = result["diff"].as_array().cloned().unwrap_or_default();
    let mut text = String::new();
    if changes.is_empty() {
        text.push_str("no changes\n");
    } else {
        text.push_str(&out.colour("1", "--- live\n+++ dry run\n"));
        for change in &changes {
            let path = change["path"].as_str().unwrap_or_default();
            text.push_str(&out.colour("36", &format!("@@ {path} @@")));
            text.push('\n');
            for (sign, side, colour) in [("-", "before", "31"), ("+", "after", "32")] {
                let value = &change[side];
                if !value.is_null() {
                    text.push_str(&out.colour(colour, &format!("{sign}{}", scalar(value))));
                    text.push('\n');
                }
            }
        }
    }
    for warning in result["warnings"].as_array().into_iter().flatten() {
        let warning = warning.as_str().unwrap_or_default();
        text.push_str(&out.colour("33", &format!("warning: {warning}")));
        text.push('\n');
    }
    text
}

/// A value on one line: a string as it is, anything else as JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
