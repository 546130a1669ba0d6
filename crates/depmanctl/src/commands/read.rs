//! What exists: deployments, requests and revisions.

use serde_json::Value;

use super::encode;
use crate::{
    cli::{ListArgs, RequestsArgs},
    client::Client,
    error::CtlError,
    output::{Kind, Output, text},
};

pub fn get(client: &Client, out: Output, identifier: &str) -> Result<(), CtlError> {
    let mut deployment = client.get(&format!("/api/v1/deployments/{}", encode(identifier)))?;
    let last = last_request(client, identifier)?;
    if out.format == crate::cli::Format::Table {
        out.one(Kind::Deployment, &deployment)?;
        let rollout = &last["rollout"];
        if !rollout.is_null() {
            println!(
                "\nlast request {} ({}): rollout {}, {}/{} updated, {}/{} ready{}",
                text(&last["id"]),
                text(&last["request_type"]),
                out.paint(&text(&rollout["state"])),
                rollout["updated_replicas"].as_i64().unwrap_or(0),
                rollout["desired_replicas"].as_i64().unwrap_or(0),
                rollout["ready_replicas"].as_i64().unwrap_or(0),
                rollout["desired_replicas"].as_i64().unwrap_or(0),
                match rollout["reason"].as_str() {
                    Some(reason) => format!(": {reason}: {}", text(&rollout["message"])),
                    None => String::new(),
                }
            );
        }
        return Ok(());
    }
    deployment["last_request"] = last;
    out.one(Kind::Deployment, &deployment)
}

pub fn list(client: &Client, out: Output, args: &ListArgs) -> Result<(), CtlError> {
    let query = filters(&[
        ("namespace", args.namespace.as_deref()),
        ("status", args.status.as_deref()),
    ]);
    let items = pages(client, "/api/v1/deployments", &query)?;
    out.list(Kind::Deployment, &items)
}

pub fn requests(client: &Client, out: Output, args: &RequestsArgs) -> Result<(), CtlError> {
    let query = filters(&[
        ("identifier", args.identifier.as_deref()),
        ("status", args.status.as_deref()),
        ("request_type", args.request_type.as_deref()),
    ]);
    let items = pages(client, "/api/v1/deployments/requests", &query)?;
    out.list(Kind::Request, &items)
}

pub fn request(client: &Client, out: Output, id: &str) -> Result<(), CtlError> {
    let request = client.get(&format!("/api/v1/deployments/requests/{}", encode(id)))?;
    out.one(Kind::Request, &request)
}

pub fn history(client: &Client, out: Output, identifier: &str) -> Result<(), CtlError> {
    let path = format!("/api/v1/deployments/{}/revisions", encode(identifier));
    let items = pages(client, &path, "")?;
    out.list(Kind::Revision, &items)
}

/// The deployment's newest request: what `update`, `delete` and `wait`
/// act on when given an identifier.
pub fn last_request(client: &Client, identifier: &str) -> Result<Value, CtlError> {
    let path = format!(
        "/api/v1/deployments/requests?identifier={}&limit=1",
        encode(identifier)
    );
    let page = client.get(&path)?;
    page["items"]
        .get(0)
        .cloned()
        .ok_or_else(|| CtlError::NotFound(format!("deployment `{identifier}` not found")))
}

/// `name=value&...` of the filters given.
fn filters(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", encode((*value)?))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every item of every page.
fn pages(client: &Client, path: &str, query: &str) -> Result<Vec<Value>, CtlError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}?limit=500");
        if !query.is_empty() {
            url.push('&');
            url.push_str(query);
        }
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let page = client.get(&url)?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
}
