//! The kinds of event the log records (docs/contract.md, "Events"); the
//! triggers of migration 0006 write them with these spellings.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Spelled out variant by variant (not by a macro): the OpenAPI derive
/// reads each `rename` only as a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "request.accepted")]
    RequestAccepted,
    #[serde(rename = "request.succeeded")]
    RequestSucceeded,
    #[serde(rename = "request.failed")]
    RequestFailed,
    #[serde(rename = "rollout.progressed")]
    RolloutProgressed,
    #[serde(rename = "rollout.completed")]
    RolloutCompleted,
    #[serde(rename = "rollout.failed")]
    RolloutFailed,
    #[serde(rename = "rollout.superseded")]
    RolloutSuperseded,
    #[serde(rename = "deployment.changed")]
    DeploymentChanged,
    #[serde(rename = "deployment.deleted")]
    DeploymentDeleted,
}

impl EventType {
    pub const ALL: &'static [Self] = &[
        Self::RequestAccepted,
        Self::RequestSucceeded,
        Self::RequestFailed,
        Self::RolloutProgressed,
        Self::RolloutCompleted,
        Self::RolloutFailed,
        Self::RolloutSuperseded,
        Self::DeploymentChanged,
        Self::DeploymentDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestAccepted => "request.accepted",
            Self::RequestSucceeded => "request.succeeded",
            Self::RequestFailed => "request.failed",
            Self::RolloutProgressed => "rollout.progressed",
            Self::RolloutCompleted => "rollout.completed",
            Self::RolloutFailed => "rollout.failed",
            Self::RolloutSuperseded => "rollout.superseded",
            Self::DeploymentChanged => "deployment.changed",
            Self::DeploymentDeleted => "deployment.deleted",
        }
    }
}

impl EventType {
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == text)
    }

    /// Whether the event carries a deployment (else a request).
    pub fn is_about_deployment(self) -> bool {
        matches!(self, Self::DeploymentChanged | Self::DeploymentDeleted)
    }

    pub fn listing() -> String {
        Self::ALL
            .iter()
            .map(|kind| kind.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_from_its_spelling_only() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_value(kind).expect("serializes");
            assert_eq!(json, kind.as_str());
        }
        assert_eq!(EventType::parse("request.*"), None);
        assert_eq!(EventType::parse("REQUEST.ACCEPTED"), None);
    }
}
