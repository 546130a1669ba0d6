//! The kinds of event the log records (docs/contract.md, "Events"); the
//! triggers of migration 0006 write them with these spellings.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! event_types {
    ($($variant:ident => $text:literal),+ $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum EventType {
            $(#[serde(rename = $text)] $variant),+
        }

        impl EventType {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}

event_types! {
    RequestAccepted => "request.accepted",
    RequestSucceeded => "request.succeeded",
    RequestFailed => "request.failed",
    RolloutProgressed => "rollout.progressed",
    RolloutCompleted => "rollout.completed",
    RolloutFailed => "rollout.failed",
    RolloutSuperseded => "rollout.superseded",
    DeploymentChanged => "deployment.changed",
    DeploymentDeleted => "deployment.deleted",
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
