//! Retries: how long to wait before the next attempt (runs, notifications, the managed daemon).

use std::time::Duration;

use rand::Rng;

/// How long to wait before attempt `attempt + 1`: doubling from `base`, times a jitter in [0.5, 1.5),
/// at most five minutes.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter = rand::rng().random_range(0.5..1.5);
    doubled.mul_f64(jitter).min(Duration::from_secs(300))
}
