//! Exponential backoff with jitter, for everything depman retries.

use std::time::Duration;

use rand::Rng;

/// `base` doubled for each attempt after the first, up to `max`, with ±25%
/// jitter so that things failing together do not retry together; whole
/// milliseconds (PostgreSQL intervals hold no finer).
pub fn jittered(base: Duration, attempts: i32, max: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 20) as u32;
    let delay = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(max)
        .mul_f64(rand::rng().random_range(0.75..1.25));
    Duration::from_millis(delay.as_millis() as u64)
}
