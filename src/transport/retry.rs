//! Retry policy: exponential backoff with jitter, `Retry-After`, attempt and time budgets.

use std::time::{Duration, SystemTime};

use crate::error::Error;

/// Spack retries 5 times; so do we by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts per request, the first included (1 = no retries).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts after this much time has passed since the first attempt.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            budget: DEFAULT_RETRY_BUDGET,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempt counts from 1), or `None` to give up.
    pub fn delay(&self, attempt: u32, elapsed: Duration, err: &Error) -> Option<Duration> {
        if !err.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let delay = if let Some(after) = err.retry_after() {
            after.min(self.max_backoff)
        } else {
            let exp = self
                .initial_backoff
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(self.max_backoff);
            // Jitter: between half and the whole delay.
            let half = exp / 2;
            half + exp.mul_f64(rand::random::<f64>() * 0.5)
        };
        if elapsed + delay > self.budget {
            return None;
        }
        Some(delay)
    }
}

/// Whether an HTTP status may succeed when retried.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parse `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let future = SystemTime::now() + Duration::from_secs(100);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(d > Duration::from_secs(90) && d <= Duration::from_secs(100));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff() {
        let p = RetryPolicy::default();
        let e = Error::new(ErrorKind::Transport, "x").with_retryable(true);
        let d1 = p.delay(1, Duration::ZERO, &e).unwrap();
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
        assert!(p.delay(5, Duration::ZERO, &e).is_none());
        let e2 = e.clone().with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(
            p.delay(1, Duration::ZERO, &e2),
            Some(Duration::from_secs(2))
        );
        assert!(p.delay(1, Duration::from_secs(299), &e2).is_none());
        let fatal = Error::new(ErrorKind::NotFound, "x");
        assert!(p.delay(1, Duration::ZERO, &fatal).is_none());
    }
}
