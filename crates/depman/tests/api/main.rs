//! The HTTP API against a real PostgreSQL: one database per test.

mod auth;
mod bad_input;
mod changes;
mod create;
mod dry_run;
mod errors;
mod events;
#[path = "../support/mod.rs"]
mod helpers;
mod limits;
mod migrations;
mod openapi;
mod outage;
mod ownership;
mod pool;
mod reads;
mod schema;
mod webhooks;
