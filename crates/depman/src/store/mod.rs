//! PostgreSQL access, one module per table. Functions take a connection (a
//! transaction derefs to one) or the pool, and return sqlx errors: the HTTP
//! layer decides what they mean to a caller.

pub mod deployments;
pub mod events;
pub mod outbox;
pub mod paging;
pub mod requests;
pub mod users;
pub mod webhooks;
