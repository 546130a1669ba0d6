//! What a user may ask for, parsed and checked where it enters depman:
//! everything past the HTTP edge takes these types.

pub mod diagnosis;
pub mod diff;
pub mod event;
pub mod image;
pub mod json;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod rollout;
pub mod schema;
pub mod spec;
pub mod status;
pub mod workload;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field, as a path into the body (`ports[0].container_port`), or the
    /// header (`X-User-ID`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
