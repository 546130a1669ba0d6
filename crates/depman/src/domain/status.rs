//! The lifecycle words of the contract: request types and statuses,
//! deployment statuses and health. Stored as text, spelled as in the API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    /// Accepted, not carried out yet.
    Created,
    Success,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// A CREATE was accepted and has not been applied yet.
    Initiated,
    /// Applied, rollout not complete, or an accepted UPDATE not observed yet.
    Updating,
    /// The object exists and its rollout is complete.
    Created,
    /// Kubernetes no longer has the object.
    Deleted,
    /// Its CREATE failed for good; the object never existed.
    Failed,
}

impl DeploymentStatus {
    /// Deleted or never created: nothing left to update or delete, and the
    /// identifier may be created again by its owner.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::Deleted | Self::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
    Missing,
}
