//! Reads that wait: `?wait=30s&until=applied|rolled_out` on a request holds
//! the answer until the request gets there, or the wait ends. Also the time
//! any request may take, which a wait extends.

use std::time::Duration;

use axum::{
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::{
    domain::{rollout::RolloutState, status::RequestStatus},
    store::requests::RequestRow,
};

/// What any request may take, waiting aside.
pub const LIMIT: Duration = Duration::from_secs(30);
/// The longest wait; a longer one is cut to this.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to wait for `until`: `30s`, `500ms`, or seconds (`30`); at
    /// most 60 s (longer is cut to 60 s). Without it, the request is
    /// answered at once.
    #[param(pattern = r"^[0-9]{1,6}(ms|s)?$")]
    pub wait: Option<String>,
    /// `applied`: until the request is SUCCESS or FAILURE; `rolled_out`
    /// (default): until, besides, the rollout it started has ended.
    #[param(inline)]
    pub until: Option<Until>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    Applied,
    RolledOut,
}

impl Until {
    pub fn reached(self, request: &RequestRow) -> bool {
        match (self, request.status) {
            (_, RequestStatus::Created) => false,
            (Self::Applied, _) | (Self::RolledOut, RequestStatus::Failure) => true,
            (Self::RolledOut, _) => request
                .rollout
                .as_ref()
                .is_none_or(|rollout| rollout.state != RolloutState::Progressing),
        }
    }
}

impl WaitQuery {
    /// How long to wait and for what; `None` without `wait`.
    pub fn parse(&self) -> Result<Option<(Duration, Until)>, ApiError> {
        let Some(text) = &self.wait else {
            return Ok(None);
        };
        let wait = parse_wait(text).ok_or_else(|| {
            ApiError::invalid("wait", "must be a duration such as `30s`, `500ms` or `30`")
        })?;
        Ok(Some((wait, self.until.unwrap_or(Until::RolledOut))))
    }
}

/// `30s`, `500ms` or `30` (seconds), cut to [`MAX_WAIT`].
fn parse_wait(text: &str) -> Option<Duration> {
    let (digits, unit) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, Duration::from_millis(1))
    } else {
        (
            text.strip_suffix('s').unwrap_or(text),
            Duration::from_secs(1),
        )
    };
    let valid = (1..=6).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let amount: u32 = digits.parse().ok().filter(|_| valid)?;
    Some((unit * amount).min(MAX_WAIT))
}

/// Middleware: a request that takes longer than [`LIMIT`] plus the wait it
/// asked for is cut off with `503`. An event stream has no limit: it lasts
/// as long as its client stays.
pub async fn time_limit(request: Request, next: Next) -> Response {
    if super::events::wants_stream(request.headers()) {
        return next.run(request).await;
    }
    let waited = request
        .uri()
        .query()
        .and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "wait")
                .and_then(|(_, value)| parse_wait(&value))
        })
        .unwrap_or_default();
    match tokio::time::timeout(LIMIT + waited, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::TimedOut.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_seconds_or_milliseconds_up_to_a_minute() {
        let secs = Duration::from_secs;
        assert_eq!(parse_wait("30s"), Some(secs(30)));
        assert_eq!(parse_wait("30"), Some(secs(30)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("0"), Some(Duration::ZERO));
        assert_eq!(parse_wait("999999s"), Some(MAX_WAIT));
        for bad in ["", "s", "ms", "-1s", "1.5s", "1m", "1234567", "30 s", "+3"] {
            assert_eq!(parse_wait(bad), None, "{bad}");
        }
    }
}
