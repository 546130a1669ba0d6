//! The lifecycle words of the contract: request types and statuses,
//! deployment statuses and health. Stored as text, spelled as in the API;
//! `as_str` is the one spelling everything else (logs, metric labels, the
//! dlq listing) uses. sqlx's derive also binds arrays of them (`text[]`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Declares a text-backed enum of the contract with its one spelling: serde,
/// sqlx and `as_str` all take it from the variant list.
macro_rules! lifecycle_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

lifecycle_enum! {
    RequestType {
        Create => "CREATE",
        Update => "UPDATE",
        Delete => "DELETE",
    }
}

lifecycle_enum! {
    RequestStatus {
        /// Accepted, not carried out yet.
        Created => "CREATED",
        Success => "SUCCESS",
        Failure => "FAILURE",
    }
}

lifecycle_enum! {
    DeploymentStatus {
        /// A CREATE was accepted and has not been applied yet.
        Initiated => "INITIATED",
        /// Applied, rollout not complete, or an accepted UPDATE not observed yet.
        Updating => "UPDATING",
        /// The object exists and its rollout is complete.
        Created => "CREATED",
        /// Kubernetes no longer has the object.
        Deleted => "DELETED",
        /// Its CREATE failed for good; the object never existed.
        Failed => "FAILED",
    }
}

impl DeploymentStatus {
    /// Deleted or never created: nothing left to update or delete, and the
    /// identifier may be created again by its owner.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::Deleted | Self::Failed)
    }
}

lifecycle_enum! {
    Health {
        Healthy => "HEALTHY",
        Progressing => "PROGRESSING",
        Degraded => "DEGRADED",
        Missing => "MISSING",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` and serde say the same, for every variant.
    fn spelled_alike<T: Serialize + Copy + std::fmt::Display>(all: &[T]) {
        for value in all {
            assert_eq!(
                serde_json::to_value(value).expect("serializes"),
                serde_json::Value::String(value.to_string())
            );
        }
    }

    #[test]
    fn one_spelling_everywhere() {
        spelled_alike(RequestType::ALL);
        spelled_alike(RequestStatus::ALL);
        spelled_alike(DeploymentStatus::ALL);
        spelled_alike(Health::ALL);
    }
}
