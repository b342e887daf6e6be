//! Retry policy: which failures are retried ([`is_retryable`], [`may_resend`] — the only
//! places that decide), exponential backoff with jitter, `Retry-After` (seconds or an
//! HTTP-date), attempt and time budgets.
//!
//! A [`Retrier`] carries the state of one operation's retries. An operation made of several
//! requests (a download resumed with `Range`, an upload session: POST, PATCH…, PUT) shares
//! one retrier between them, so that retries do not multiply: a registry that always fails
//! sees at most `max_attempts` requests per operation, spread over the backoff delays. Progress
//! (bytes received) starts the count and the budget over, so a long download survives any
//! number of drops as long as each one moves it forward.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::limits::Stats;
use crate::error::{Cause, Error, ErrorKind};

/// Spack retries 5 times; so do we by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts per operation, the first included (1 = no retries).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts after this much time has passed since the first attempt (or since
    /// the last progress), and no `Retry-After` wait may end beyond it.
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

/// Why a failed attempt is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The error cannot go away by trying again (404, 403, a bad digest, …).
    NotRetryable,
    /// `max_attempts` attempts were made.
    Attempts,
    /// The time budget is spent (or the backoff would end beyond it).
    Budget,
    /// The registry asked to wait (`Retry-After`) longer than the budget allows.
    RetryAfter(Duration),
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempt counts from 1), or why to give up.
    pub fn decide(&self, attempt: u32, elapsed: Duration, err: &Error) -> Result<Duration, GiveUp> {
        if !err.is_retryable() {
            return Err(GiveUp::NotRetryable);
        }
        if attempt >= self.max_attempts {
            return Err(GiveUp::Attempts);
        }
        let delay = if let Some(after) = err.retry_after() {
            // Honour the registry's wish, plus a little jitter so that many clients told
            // the same date do not all come back at the same instant.
            if elapsed + after > self.budget {
                return Err(GiveUp::RetryAfter(after));
            }
            after + after.mul_f64(rand::random::<f64>() * 0.1)
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
            return Err(GiveUp::Budget);
        }
        Ok(delay)
    }

    /// The delay before attempt `attempt + 1`, or `None` to give up.
    pub fn delay(&self, attempt: u32, elapsed: Duration, err: &Error) -> Option<Duration> {
        self.decide(attempt, elapsed, err).ok()
    }
}

/// The retry state of one operation (see the module documentation).
#[derive(Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    stats: Arc<Stats>,
    start: Instant,
    /// Attempts since the start or the last progress, the current one included.
    attempt: u32,
    /// Failed attempts that were retried, over the whole operation.
    retries: u32,
}

impl Retrier {
    pub fn new(policy: &RetryPolicy) -> Self {
        Self::with_stats(policy, Arc::default())
    }

    /// A retrier whose waits and retries count in `stats`.
    pub fn with_stats(policy: &RetryPolicy, stats: Arc<Stats>) -> Self {
        Self {
            policy: policy.clone(),
            stats,
            start: Instant::now(),
            attempt: 1,
            retries: 0,
        }
    }

    /// Failed attempts that were retried so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The operation moved forward (bytes arrived): attempts and budget start over.
    pub fn progress(&mut self) {
        self.attempt = 1;
        self.start = Instant::now();
    }

    /// After a failed attempt: wait as the policy says and return `Ok` to try again, or
    /// return the error to give up. An error given up on after retries says how many
    /// attempts were made, and is marked final so that an enclosing operation sharing this
    /// retrier, or a caller with its own, does not retry it again.
    pub async fn wait(&mut self, err: Error, what: &str) -> Result<(), Error> {
        let elapsed = self.start.elapsed();
        match self.policy.decide(self.attempt, elapsed, &err) {
            Ok(delay) => {
                tracing::info!(
                    "{what}: attempt {} failed ({err}); retrying in {:.1}s",
                    self.attempt,
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                if is_throttle(&err) {
                    self.stats.waited(delay);
                }
                self.stats.retried();
                self.attempt += 1;
                self.retries += 1;
                Ok(())
            }
            Err(GiveUp::NotRetryable) => Err(err),
            Err(GiveUp::Attempts) if self.attempt > 1 => Err(err
                .context(format!("after {} attempts", self.attempt))
                .exhausted()),
            Err(GiveUp::Attempts) => Err(err.exhausted()),
            Err(GiveUp::Budget) => Err(err
                .context(format!(
                    "after {} attempts in {:.1}s (retry budget {:.1}s)",
                    self.attempt,
                    elapsed.as_secs_f64(),
                    self.policy.budget.as_secs_f64()
                ))
                .exhausted()),
            Err(GiveUp::RetryAfter(after)) => Err(err
                .context(format!(
                    "the registry asked to retry after {:.0}s, beyond the retry budget \
                     ({:.1}s left of {:.1}s)",
                    after.as_secs_f64(),
                    self.policy.budget.saturating_sub(elapsed).as_secs_f64(),
                    self.policy.budget.as_secs_f64()
                ))
                .exhausted()),
        }
    }
}

/// Whether an HTTP status may succeed when retried.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a status says the registry is shedding load (it slows the whole registry).
pub fn is_throttle_status(status: u16) -> bool {
    matches!(status, 429 | 503)
}

fn is_throttle(err: &Error) -> bool {
    err.status().is_some_and(is_throttle_status) || err.has_code("TOOMANYREQUESTS")
}

/// THE decision: whether trying an operation again may succeed, from the error's kind, cause,
/// status and registry codes. Local mistakes (files, arguments, references, digests),
/// authentication, a missing object and protocol violations are final; so is an unreachable
/// registry (reported at once, once) and a TLS failure; load shedding (429/503,
/// `TOOMANYREQUESTS`), 408, 5xx, timeouts and interrupted connections are retried, until
/// the retries of the operation are spent ([`Error::is_exhausted`]).
pub fn is_retryable(err: &Error) -> bool {
    if err.is_exhausted() {
        return false;
    }
    if err.has_code("BLOB_UPLOAD_UNKNOWN") {
        // The upload session is gone: a new one may succeed.
        return true;
    }
    match err.cause() {
        Some(Cause::Timeout | Cause::Interrupted | Cause::BadRange) => return true,
        Some(Cause::Unreachable | Cause::Tls) => return false,
        None => {}
    }
    match err.kind() {
        ErrorKind::Registry | ErrorKind::NotFound | ErrorKind::Authentication => {
            err.status().is_some_and(is_retryable_status) || err.has_code("TOOMANYREQUESTS")
        }
        ErrorKind::Transport => true,
        _ => false,
    }
}

/// Whether the same request may simply be sent again after `err` (else the operation it
/// belongs to decides, e.g. an upload asks its session how far it got): only when the
/// body can be replayed, and, after an interruption (the registry may have acted on part of
/// it), only for idempotent requests.
pub fn may_resend(idempotent: bool, replayable_body: bool, err: &Error) -> bool {
    let interrupted = matches!(err.cause(), Some(Cause::Interrupted | Cause::Timeout));
    is_retryable(err)
        && replayable_body
        && (idempotent || !interrupted)
        && !err.has_code("BLOB_UPLOAD_UNKNOWN")
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
        let e = Error::new(ErrorKind::Transport, "x").with_cause(Cause::Interrupted);
        let d1 = p.delay(1, Duration::ZERO, &e).unwrap();
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
        let d3 = p.delay(3, Duration::ZERO, &e).unwrap();
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        assert_eq!(p.decide(5, Duration::ZERO, &e), Err(GiveUp::Attempts));
        let e2 = e.clone().with_retry_after(Some(Duration::from_secs(2)));
        let d = p.delay(1, Duration::ZERO, &e2).unwrap();
        assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(2200));
        assert_eq!(
            p.decide(1, Duration::from_secs(299), &e2),
            Err(GiveUp::RetryAfter(Duration::from_secs(2)))
        );
        assert_eq!(
            p.decide(1, Duration::from_secs(300), &e),
            Err(GiveUp::Budget)
        );
        // A Retry-After longer than the backoff cap is honoured, not shortened.
        let long = e.clone().with_retry_after(Some(Duration::from_secs(60)));
        assert!(p.delay(1, Duration::ZERO, &long).unwrap() >= Duration::from_secs(60));
        let fatal = Error::new(ErrorKind::NotFound, "x");
        assert_eq!(
            p.decide(1, Duration::ZERO, &fatal),
            Err(GiveUp::NotRetryable)
        );
    }

    #[tokio::test]
    async fn retrier_shares_attempts_and_marks_final_errors() {
        let p = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let mut r = Retrier::new(&p);
        let e = Error::new(ErrorKind::Transport, "reset").with_cause(Cause::Interrupted);
        assert!(r.wait(e.clone(), "x").await.is_ok());
        assert!(r.wait(e.clone(), "x").await.is_ok());
        let last = r.wait(e.clone(), "x").await.unwrap_err();
        assert!(last.message().starts_with("after 3 attempts"), "{last}");
        assert!(!last.is_retryable());
        // An enclosing loop with the same retrier passes a final error through unchanged.
        assert_eq!(
            r.wait(last.clone(), "x").await.unwrap_err().message(),
            last.message()
        );
        // Progress starts the count over.
        r.progress();
        assert!(r.wait(e.clone(), "x").await.is_ok());
        assert_eq!(r.retries(), 3);
        // A Retry-After beyond the budget gives up at once, saying so.
        let mut r = Retrier::new(&RetryPolicy {
            budget: Duration::from_secs(5),
            ..p
        });
        let e = e.with_retry_after(Some(Duration::from_secs(3600)));
        let err = r.wait(e, "x").await.unwrap_err();
        assert!(err.message().contains("retry after 3600s"), "{err}");
    }

    #[test]
    fn one_decision_for_every_error() {
        let http = |status: u16| Error::http(ErrorKind::Registry, "x", status, Vec::new());
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(&http(s)), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 413, 416, 501] {
            assert!(!is_retryable(&http(s)), "{s}");
        }
        let toomany = Error::http(
            ErrorKind::Authentication,
            "x",
            403,
            vec![crate::error::RegistryCode {
                code: "TOOMANYREQUESTS".into(),
                message: String::new(),
            }],
        );
        assert!(is_retryable(&toomany), "Docker Hub's 403 TOOMANYREQUESTS");
        let t = |c: Cause| Error::new(ErrorKind::Transport, "x").with_cause(c);
        assert!(is_retryable(&t(Cause::Timeout)));
        assert!(is_retryable(&t(Cause::Interrupted)));
        assert!(!is_retryable(&t(Cause::Unreachable)));
        assert!(!is_retryable(&t(Cause::Tls)));
        for kind in [
            ErrorKind::Io,
            ErrorKind::InvalidInput,
            ErrorKind::InvalidDigest,
        ] {
            assert!(!is_retryable(&Error::new(kind, "x")), "{kind:?}");
        }
        assert!(!is_retryable(&http(503).exhausted()));
        // A reset PATCH is not blindly re-sent; a 429 to it is.
        assert!(!may_resend(false, true, &t(Cause::Interrupted)));
        assert!(may_resend(false, true, &http(429)));
        assert!(may_resend(true, true, &t(Cause::Interrupted)));
        assert!(!may_resend(true, false, &http(429)), "a consumed stream");
    }

    #[tokio::test]
    async fn throttled_waits_are_counted() {
        let stats = Arc::new(Stats::default());
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let mut r = Retrier::with_stats(&p, stats.clone());
        let e = Error::http(ErrorKind::Registry, "x", 429, Vec::new())
            .with_retry_after(Some(Duration::from_millis(50)));
        r.wait(e, "x").await.unwrap();
        let s = stats.snapshot();
        assert_eq!(s.retried, 1);
        assert!(s.waited >= Duration::from_millis(50), "{s:?}");
    }
}
