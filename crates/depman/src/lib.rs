//! depman: a Kubernetes deployment manager. `main.rs` only parses the command
//! line; `app` assembles the roles.

pub mod accept;
pub mod api;
pub mod app;
pub mod backoff;
pub mod cancel;
pub mod db;
pub mod dependencies;
pub mod dlq;
pub mod domain;
pub mod dry_run;
pub mod feed;
pub mod http;
pub mod identity;
pub mod kubernetes;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod relay;
pub mod retention;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod waiters;
pub mod watcher;
pub mod webhooks;
pub mod worker;
