//! Changes: create, update, delete, rollback and cancel. Each sends one
//! idempotency key however often it has to retry, and with `--wait` waits
//! for the outcome before it shows the request.

use reqwest::Method;
use serde_json::{Value, json};

use super::{encode, read::last_request, wait::until_done};
use crate::{
    cli::{CreateArgs, DeleteArgs, RollbackArgs, Until, UpdateArgs, WaitFlags},
    client::Client,
    error::CtlError,
    output::{Kind, Output, text},
    spec,
};

const CREATE: &str = "/api/v1/deployments/requests/create";

pub fn create(client: &Client, out: Output, args: &CreateArgs) -> Result<(), CtlError> {
    let body = spec::create_body(&args.spec)?;
    let request = client.send(Method::POST, CREATE, Some(&body))?;
    finish(client, out, request, &args.wait)
}

pub fn update(client: &Client, out: Output, args: &UpdateArgs) -> Result<(), CtlError> {
    let body = spec::patch_body(&args.spec)?;
    let path = request_path(client, &args.identifier)?;
    let request = client.send(Method::PATCH, &path, Some(&body))?;
    finish(client, out, request, &args.wait)
}

pub fn delete(client: &Client, out: Output, args: &DeleteArgs) -> Result<(), CtlError> {
    let path = request_path(client, &args.identifier)?;
    let request = client.send(Method::DELETE, &path, None)?;
    finish(client, out, request, &args.wait)
}

pub fn rollback(client: &Client, out: Output, args: &RollbackArgs) -> Result<(), CtlError> {
    let path = rollback_path(&args.identifier);
    let body = json!({"revision": args.to_revision});
    let request = client.send(Method::POST, &path, Some(&body))?;
    finish(client, out, request, &args.wait)
}

pub fn cancel(client: &Client, out: Output, id: &str) -> Result<(), CtlError> {
    let path = format!("/api/v1/deployments/requests/{}/cancel", encode(id));
    let request = client.send(Method::POST, &path, None)?;
    out.one(Kind::Request, &request)
}

/// Where a change of deployment `identifier` is sent: its newest request.
pub fn request_path(client: &Client, identifier: &str) -> Result<String, CtlError> {
    let id = text(&last_request(client, identifier)?["id"]);
    Ok(format!("/api/v1/deployments/requests/{id}"))
}

pub fn rollback_path(identifier: &str) -> String {
    format!("/api/v1/deployments/{}/rollback", encode(identifier))
}

/// Shows the request, after its outcome with `--wait`.
fn finish(client: &Client, out: Output, request: Value, wait: &WaitFlags) -> Result<(), CtlError> {
    if !wait.wait {
        return out.one(Kind::Request, &request);
    }
    let id = text(&request["id"]);
    let (request, outcome) = until_done(client, &id, Until::RolledOut, wait.timeout)?;
    out.one(Kind::Request, &request)?;
    outcome
}
