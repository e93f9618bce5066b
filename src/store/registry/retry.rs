//! One retry policy for every registry request: exponential backoff with full jitter on connection errors,
//! 429 and 5xx, honouring `Retry-After`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The backoff ceiling of the first retry; doubles with each further one.
    pub base_delay: Duration,
    /// No single wait is longer, whatever the attempt or `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Whether an HTTP status is worth another attempt.
pub fn is_retryable(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status) && status != 501
}

impl RetryPolicy {
    /// How long to wait after failed attempt `attempt` (1-based): what the server asked for, else a random
    /// wait up to the doubled base (full jitter spreads clients that failed together).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let delay = retry_after.unwrap_or_else(|| {
            let ceiling = self
                .base_delay
                .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
            let ceiling = ceiling.min(self.max_delay);
            ceiling.mul_f64(fastrand::f64())
        });
        delay.min(self.max_delay)
    }
}

/// `Retry-After` as seconds; the HTTP-date form is rare from registries and read as absent.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_what_may_pass_next_time() {
        for status in [429, 500, 502, 503, 504] {
            assert!(is_retryable(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 501] {
            assert!(!is_retryable(status), "{status}");
        }
    }

    #[test]
    fn backoff_doubles_within_bounds_and_honours_the_server() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for attempt in 1..=6 {
            let delay = policy.delay(attempt, None);
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt - 1)).min(policy.max_delay);
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} > {ceiling:?}"
            );
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(60))),
            policy.max_delay
        );
        assert_eq!(parse_retry_after(" 1 "), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
