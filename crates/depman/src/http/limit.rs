//! The per-user rate limit of the routes that change something (contract:
//! "Namespaces and limits"): a token bucket per user in each api process,
//! advertised with the `RateLimit-Policy` and `RateLimit` fields of the
//! IETF draft (draft-ietf-httpapi-ratelimit-headers), and `429` with
//! `Retry-After` past it.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use sha2::{Digest, Sha256};

use super::{
    error::ApiError,
    extract::{bearer, header_user},
    state::AppState,
};

/// `N/s`, `N/m` or `N/h`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens per second; `None`: no limit.
    per_second: Option<f64>,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self { per_second: None });
        }
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected N/s, N/m, N/h or off"))?;
        let count: u32 = count
            .parse()
            .map_err(|_| format!("`{text}`: {count} is not a whole number"))?;
        let seconds = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("`{text}`: unit `{other}` is not s, m or h")),
        };
        if count == 0 {
            return Err(format!("`{text}`: use `off` for no limit"));
        }
        Ok(Self {
            per_second: Some(f64::from(count) / seconds),
        })
    }
}

/// The buckets of one api process.
#[derive(Clone)]
pub struct RateLimiter {
    per_second: Option<f64>,
    burst: f64,
    buckets: Arc<Mutex<Buckets>>,
}

struct Buckets {
    by_user: HashMap<String, Bucket>,
    /// The size at which full buckets are next forgotten: twice what was
    /// left after the last sweep, so that sweeps stay rare.
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What one call found: whether it may go on, and the state to advertise.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Verdict {
    allowed: bool,
    remaining: u64,
    /// Seconds until the next token.
    reset: u64,
}

/// Buckets beyond which full ones are forgotten (a full bucket is what a
/// new one would be).
const KEPT: usize = 10_000;

impl RateLimiter {
    pub fn new(rate: Rate, burst: u32) -> Self {
        Self {
            per_second: rate.per_second,
            burst: f64::from(burst.max(1)),
            buckets: Arc::new(Mutex::new(Buckets {
                by_user: HashMap::new(),
                sweep_at: KEPT,
            })),
        }
    }

    fn take(&self, user: &str, now: Instant) -> Option<Verdict> {
        let per_second = self.per_second?;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.by_user.len() > buckets.sweep_at {
            let burst = self.burst;
            buckets.by_user.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
            buckets.sweep_at = (buckets.by_user.len() * 2).max(KEPT);
        }
        let bucket = buckets.by_user.entry(user.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(self.burst);
        bucket.at = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let missing = (1.0 - bucket.tokens).max(0.0);
        Some(Verdict {
            allowed,
            remaining: bucket.tokens.floor() as u64,
            reset: (missing / per_second).ceil() as u64,
        })
    }

    /// `"changes";q=<burst>;w=<seconds to refill it>`.
    fn policy(&self) -> Option<String> {
        let per_second = self.per_second?;
        let window = (self.burst / per_second).ceil().max(1.0);
        Some(format!("\"changes\";q={};w={window}", self.burst))
    }
}

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const STATE: HeaderName = HeaderName::from_static("ratelimit");

/// Limits the caller's changes (`POST`, `PATCH`, `PUT`, `DELETE` under
/// `/api/v1`); reads are not limited. A call that names no caller it could
/// be goes on, to be refused as such.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request.uri().path().starts_with("/api/v1/");
    let limiter = &state.limiter;
    let Some(user) = changes.then(|| bucket_key(&state, &request)).flatten() else {
        return next.run(request).await;
    };
    let Some(verdict) = limiter.take(&user, Instant::now()) else {
        return next.run(request).await;
    };
    let mut response = if verdict.allowed {
        next.run(request).await
    } else {
        let mut refused = ApiError::RateLimited(Duration::from_secs(verdict.reset)).into_response();
        insert(
            refused.headers_mut(),
            header::RETRY_AFTER,
            verdict.reset.to_string(),
        );
        refused
    };
    if let Some(policy) = limiter.policy() {
        let headers = response.headers_mut();
        insert(headers, POLICY, policy);
        let state = format!("\"changes\";r={};t={}", verdict.remaining, verdict.reset);
        insert(headers, STATE, state);
    }
    response
}

/// Whose bucket a call spends, as the mode names callers: a well-formed
/// `X-User-ID` from a trusted peer, or (with tokens) a digest of the token
/// itself, never a claim read before the token is verified, which anyone
/// could forge to spend another user's budget.
fn bucket_key(state: &AppState, request: &Request) -> Option<String> {
    let headers = request.headers();
    if state.verifier.is_some() {
        let token = bearer(headers)?;
        let digest = Sha256::digest(token.as_bytes());
        return Some(format!("token:{digest:x}"));
    }
    let user = header_user(headers, request.extensions(), state).ok()?;
    Some(user.to_owned())
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_parsed_with_their_unit() {
        assert_eq!("10/s".parse::<Rate>().map(|r| r.per_second), Ok(Some(10.0)));
        assert_eq!("120/m".parse::<Rate>().map(|r| r.per_second), Ok(Some(2.0)));
        assert_eq!("off".parse::<Rate>().map(|r| r.per_second), Ok(None));
        for bad in ["10", "10/d", "x/s", "0/s", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_is_spent_then_refilled_at_the_rate() {
        let limiter = RateLimiter::new("2/s".parse().expect("a rate"), 3);
        let start = Instant::now();
        let verdicts: Vec<bool> = (0..4)
            .map(|_| limiter.take("alice", start).is_some_and(|v| v.allowed))
            .collect();
        assert_eq!(verdicts, [true, true, true, false]);
        let refused = limiter.take("alice", start).expect("limited");
        assert_eq!((refused.remaining, refused.reset), (0, 1));
        // Another user has a bucket of their own.
        assert!(limiter.take("bob", start).is_some_and(|v| v.allowed));
        // Half a second later one token is back.
        let later = start + Duration::from_millis(500);
        assert!(limiter.take("alice", later).is_some_and(|v| v.allowed));
        assert!(limiter.take("alice", later).is_some_and(|v| !v.allowed));
        assert_eq!(limiter.policy().as_deref(), Some("\"changes\";q=3;w=2"));
    }

    #[test]
    fn off_limits_nothing() {
        let limiter = RateLimiter::new("off".parse().expect("a rate"), 1);
        assert_eq!(limiter.take("alice", Instant::now()), None);
        assert_eq!(limiter.policy(), None);
    }
}
