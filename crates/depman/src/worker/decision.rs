//! What becomes of a waiting request: a plain function of what is known
//! about it (and of what the API server answered), so that every branch of
//! the worker's policy is unit-tested here; `process` carries it out.

use crate::{
    domain::status::{RequestStatus, RequestType},
    kubernetes::ApplyError,
    store::deployments::Outcome,
};

/// Why a waiting request ends `FAILURE` without touching the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moot {
    /// A newer request of its deployment already took effect (only a
    /// replayed request can be older than that): applying it would undo a
    /// newer spec.
    Superseded,
    /// An UPDATE whose deployment's CREATE failed: applying it would create
    /// the object of a deployment recorded as never created (`FAILED`),
    /// which its owner could then neither see updated nor delete.
    CreateFailed,
}

impl Moot {
    /// The request's `failure_code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Superseded => "superseded",
            Self::CreateFailed => "create-failed",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Superseded => {
                "superseded: a newer request of this deployment already took effect"
            }
            Self::CreateFailed => "its deployment's CREATE failed: there is nothing to update",
        }
    }
}

/// What the worker does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Applied: `SUCCESS`.
    Succeeded,
    /// Ended unapplied: `FAILURE`.
    Moot(Moot),
    /// Failed transiently with attempts left: count the attempt, keep it
    /// waiting, and come back after the backoff of `attempts`.
    Retry { attempts: i32, reason: String },
    /// Failed for good: `FAILURE`; `dead_letter` when it gave up after its
    /// retries rather than being refused outright.
    Failed {
        code: &'static str,
        reason: String,
        dead_letter: bool,
    },
}

/// Whether a request may be applied at all. `newest_success` is the newest
/// sequence of its deployment that succeeded; `create_failed` whether the
/// CREATE it follows failed (asked only of UPDATEs).
pub fn moot(
    request_type: RequestType,
    sequence: i64,
    newest_success: Option<i64>,
    create_failed: bool,
) -> Option<Moot> {
    if newest_success.is_some_and(|newest| newest > sequence) {
        Some(Moot::Superseded)
    } else if request_type == RequestType::Update && create_failed {
        Some(Moot::CreateFailed)
    } else {
        None
    }
}

/// What the API server's answer makes of a request that had `attempts`
/// failed attempts before this one.
pub fn after_apply(result: Result<(), ApplyError>, attempts: i32, max_attempts: u32) -> Decision {
    match result {
        Ok(()) => Decision::Succeeded,
        Err(ApplyError::Permanent(code, reason)) => Decision::Failed {
            code,
            reason,
            dead_letter: false,
        },
        Err(ApplyError::Transient(reason)) => {
            let attempts = attempts + 1;
            if (attempts as u32) < max_attempts {
                Decision::Retry { attempts, reason }
            } else {
                Decision::Failed {
                    code: "gave-up",
                    reason: format!("gave up after {attempts} attempts: {reason}"),
                    dead_letter: true,
                }
            }
        }
    }
}

impl Decision {
    /// The request's end, with its failure reason and code; `None` while it
    /// waits.
    pub fn ending(&self) -> Option<(RequestStatus, Option<(&str, &'static str)>)> {
        match self {
            Self::Succeeded => Some((RequestStatus::Success, None)),
            Self::Moot(moot) => Some((RequestStatus::Failure, Some((moot.reason(), moot.code())))),
            Self::Failed { reason, code, .. } => {
                Some((RequestStatus::Failure, Some((reason, *code))))
            }
            Self::Retry { .. } => None,
        }
    }

    /// What it does to the deployment's status. An UPDATE leaves it to the
    /// sync; a moot request changes nothing.
    pub fn outcome(&self, request_type: RequestType) -> Option<Outcome> {
        match (self, request_type) {
            (Self::Succeeded, RequestType::Create) => Some(Outcome::Created),
            (Self::Succeeded, RequestType::Delete) => Some(Outcome::Deleted),
            (Self::Failed { .. }, RequestType::Create) => Some(Outcome::CreateFailed),
            _ => None,
        }
    }

    /// The `outcome` label of `depman_worker_requests_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Succeeded => "success",
            Self::Moot(Moot::Superseded) => "superseded",
            Self::Moot(Moot::CreateFailed) | Self::Failed { .. } => "failure",
            Self::Retry { .. } => "retry",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 3;

    #[test]
    fn a_request_older_than_a_success_is_superseded() {
        for kind in RequestType::ALL {
            assert_eq!(moot(*kind, 2, Some(3), false), Some(Moot::Superseded));
        }
        assert_eq!(moot(RequestType::Update, 3, Some(3), false), None);
        assert_eq!(moot(RequestType::Create, 1, None, false), None);
    }

    #[test]
    fn only_an_update_behind_a_failed_create_is_moot_for_it() {
        assert_eq!(
            moot(RequestType::Update, 2, None, true),
            Some(Moot::CreateFailed)
        );
        assert_eq!(moot(RequestType::Delete, 2, None, true), None);
        assert_eq!(moot(RequestType::Update, 2, None, false), None);
    }

    #[test]
    fn an_applied_request_succeeds() {
        let decision = after_apply(Ok(()), 0, MAX);
        assert_eq!(decision, Decision::Succeeded);
        assert_eq!(decision.ending(), Some((RequestStatus::Success, None)));
        assert_eq!(decision.label(), "success");
    }

    #[test]
    fn a_permanent_error_fails_at_once_without_a_dead_letter() {
        let decision = after_apply(
            Err(ApplyError::Permanent("invalid-object", "invalid".into())),
            0,
            MAX,
        );
        assert_eq!(
            decision,
            Decision::Failed {
                code: "invalid-object",
                reason: "invalid".into(),
                dead_letter: false
            }
        );
        assert_eq!(
            decision.ending(),
            Some((RequestStatus::Failure, Some(("invalid", "invalid-object"))))
        );
    }

    #[test]
    fn a_transient_error_retries_until_the_last_attempt() {
        let transient = || Err(ApplyError::Transient("503".into()));
        assert_eq!(
            after_apply(transient(), 0, MAX),
            Decision::Retry {
                attempts: 1,
                reason: "503".into()
            }
        );
        let retry = after_apply(transient(), 1, MAX);
        assert_eq!(retry.ending(), None);
        assert_eq!(retry.label(), "retry");
        assert_eq!(
            after_apply(transient(), 2, MAX),
            Decision::Failed {
                code: "gave-up",
                reason: "gave up after 3 attempts: 503".into(),
                dead_letter: true
            }
        );
    }

    #[test]
    fn outcomes_move_the_deployment_only_for_create_and_delete() {
        use RequestType::*;
        let failed = Decision::Failed {
            code: "invalid-object",
            reason: String::new(),
            dead_letter: false,
        };
        let cases = [
            (Decision::Succeeded, Create, Some(Outcome::Created)),
            (Decision::Succeeded, Update, None),
            (Decision::Succeeded, Delete, Some(Outcome::Deleted)),
            (failed.clone(), Create, Some(Outcome::CreateFailed)),
            (failed.clone(), Update, None),
            (failed, Delete, None),
            (Decision::Moot(Moot::Superseded), Create, None),
            (Decision::Moot(Moot::CreateFailed), Update, None),
        ];
        for (decision, kind, outcome) in cases {
            assert_eq!(decision.outcome(kind), outcome, "{decision:?} {kind}");
        }
    }

    #[test]
    fn moot_requests_are_labelled_by_why() {
        assert_eq!(Decision::Moot(Moot::Superseded).label(), "superseded");
        assert_eq!(Decision::Moot(Moot::CreateFailed).label(), "failure");
    }
}
