//! depman: a Kubernetes deployment manager. `main.rs` only parses the command
//! line; each role is assembled here, in its own module.

pub mod accept;
pub mod api;
pub mod db;
pub mod domain;
pub mod http;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod telemetry;
