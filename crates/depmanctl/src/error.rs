//! What can go wrong, as the exit code a pipeline can act on.

use std::fmt;

#[derive(Debug)]
pub enum CtlError {
    /// The request or its rollout failed, or the server refused it: 1.
    Failed(String),
    /// The command line cannot be carried out as given: 2.
    Usage(String),
    /// Waiting ended before the outcome: 3.
    TimedOut(String),
    /// No such request, deployment or revision for this user: 4.
    NotFound(String),
    /// The server could not be reached, or answered 5xx: 5.
    Unreachable(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(_) => 1,
            Self::Usage(_) => 2,
            Self::TimedOut(_) => 3,
            Self::NotFound(_) => 4,
            Self::Unreachable(_) => 5,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(message) => write!(f, "error: {message}"),
            Self::Usage(message) => write!(f, "error: {message}"),
            Self::TimedOut(message) => write!(f, "timed out: {message}"),
            Self::NotFound(message) => write!(f, "not found: {message}"),
            Self::Unreachable(message) => write!(f, "server unavailable: {message}"),
        }
    }
}

/// The exit codes, for `--help` (and `docs/cli.md`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the request or its rollout failed, or the server refused it (the reason is printed)
  2  usage error
  3  timed out waiting
  4  not found
  5  the server could not be reached, or answered 5xx";
