//! Requests carried out in a real cluster: the API, the relay, JetStream and
//! workers against the control plane of `make env`. Each test has its own
//! database, stream prefix and namespace.

mod cancel;
mod cluster;
mod crash;
mod dry_run;
mod events;
mod failures;
#[path = "../support/mod.rs"]
mod helpers;
mod lifecycle;
mod limits;
mod lost;
mod nats;
mod nats_cluster;
mod ordering;
mod outage;
mod revisions;
mod rollout;
mod sync;
mod wait;
mod webhooks;
