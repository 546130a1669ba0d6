//! The one error type of the HTTP API, and its mapping to status codes and
//! RFC 9457 problem details: every error a handler returns goes through here.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{accept::AcceptError, domain::FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    /// A bearer token missing or not taken (`DEPMAN_AUTH=jwt`).
    #[error("{0}")]
    InvalidToken(crate::identity::TokenError),
    #[error("{0}")]
    MalformedBody(String),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("the input is not valid")]
    Invalid(Vec<FieldError>),
    #[error("X-Request-ID `{0}` was already used for a different request")]
    KeyReused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// Not allowed to this caller, with the problem's code.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// Past the caller's rate limit: try again after this long.
    #[error("too many changes: try again in {} s", .0.as_secs())]
    RateLimited(std::time::Duration),
    /// A cursor into what was pruned.
    #[error("{0}")]
    Gone(String),
    /// A feature the server was not configured for.
    #[error("{0}")]
    NotConfigured(String),
    /// The API server refused a dry run's object: the apply would fail so.
    #[error("Kubernetes refused the object: {message}")]
    Refused {
        message: String,
        causes: Vec<FieldError>,
    },
    /// No worker answered a dry run, or Kubernetes could not.
    #[error("{0}")]
    DryRunUnavailable(String),
    #[error("{dependency} is unavailable")]
    Unavailable {
        dependency: &'static str,
        #[source]
        source: anyhow::Error,
    },
    #[error("not ready: {} unavailable", .0.join(", "))]
    NotReady(Vec<&'static str>),
    #[error("the request took too long and was cut off")]
    TimedOut,
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    /// The status and the stable, machine-readable code of each error.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid-token"),
            Self::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed-body"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed"),
            Self::Refused { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "refused-by-kubernetes"),
            Self::DryRunUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "dry-run-unavailable"),
            Self::KeyReused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Forbidden(code, _) => (StatusCode::FORBIDDEN, code),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            Self::Gone(_) => (StatusCode::GONE, "cursor-expired"),
            Self::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-configured"),
            Self::Unavailable { .. } | Self::NotReady(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "dependency-unavailable")
            }
            Self::TimedOut => (StatusCode::SERVICE_UNAVAILABLE, "timed-out"),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:depman:problem:<code>`; the codes are listed in docs/api.md.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable code of this kind of problem.
    pub code: &'static str,
    /// For validation problems: each offending field and what is wrong with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            // The cause chain goes to the log, never into the body.
            Self::Unexpected(cause) => tracing::error!(error = ?cause, "request failed"),
            Self::Unavailable { dependency, source } => {
                tracing::warn!(dependency, error = ?source, "dependency unavailable")
            }
            _ => {}
        }
        let detail = match &self {
            Self::Invalid(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        let challenge = match &self {
            // RFC 6750: no error code when no token was given.
            Self::InvalidToken(crate::identity::TokenError::Missing) => Some("Bearer".to_owned()),
            Self::InvalidToken(reason) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{reason}\""
            )),
            _ => None,
        };
        let errors = match self {
            Self::Invalid(errors) | Self::Refused { causes: errors, .. } => errors,
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: format!("urn:depman:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code,
            errors,
        };
        let mut response = (status, Json(problem)).into_response();
        if let Some(value) = challenge.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<crate::cancel::CancelError> for ApiError {
    fn from(error: crate::cancel::CancelError) -> Self {
        use crate::cancel::CancelError;
        match error {
            CancelError::NotFound(_) => Self::NotFound(error.to_string()),
            CancelError::Finished(_) | CancelError::Applying(_) => {
                Self::Conflict(error.to_string())
            }
            CancelError::Database(error) => error.into(),
        }
    }
}

impl From<crate::dry_run::DryRunError> for ApiError {
    fn from(error: crate::dry_run::DryRunError) -> Self {
        use crate::dry_run::DryRunError;
        match error {
            DryRunError::Refused {
                message, causes, ..
            } => Self::Refused { message, causes },
            DryRunError::Unavailable(message) => Self::DryRunUnavailable(message),
        }
    }
}

impl From<crate::identity::TokenError> for ApiError {
    fn from(error: crate::identity::TokenError) -> Self {
        match error {
            crate::identity::TokenError::Unavailable(reason) => Self::Unavailable {
                dependency: "identity provider",
                source: anyhow::anyhow!(reason),
            },
            other => Self::InvalidToken(other),
        }
    }
}

impl From<AcceptError> for ApiError {
    fn from(error: AcceptError) -> Self {
        match error {
            AcceptError::Invalid(errors) => Self::Invalid(errors),
            AcceptError::KeyReused(key) => Self::KeyReused(key),
            AcceptError::NotFound(message) => Self::NotFound(message),
            AcceptError::Conflict(message) => Self::Conflict(message),
            AcceptError::Forbidden(code, message) => Self::Forbidden(code, message),
            AcceptError::Database(error) => error.into(),
        }
    }
}

/// Database errors: an outage is a 503 naming PostgreSQL, anything else is
/// unexpected.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if is_outage(&error) {
            Self::Unavailable {
                dependency: "postgres",
                source: error.into(),
            }
        } else {
            Self::Unexpected(error.into())
        }
    }
}

/// True for errors that mean PostgreSQL cannot be reached or is going away,
/// as opposed to a query it refused.
pub fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01-57P03: shutdown, crash, starting up.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
