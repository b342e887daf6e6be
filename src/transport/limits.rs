//! Per-registry limits: how many requests are in flight, how fast they start, and what the
//! registry's rate limiting cost.
//!
//! A 429 or 503 slows the whole registry, not just the request that met it (AIMD, as TCP
//! does): the concurrency limit halves, and requests are paced at half the rate that was
//! just accepted; every success adds back a little (one lane per `limit` successes, a rate
//! step per success), until the limit is the configured maximum and pacing is off. A
//! `Retry-After` also holds back every request to that registry until it has passed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Faster than this, pacing stops: the registry has shown it takes what we send.
const PACING_OFF_RATE: f64 = 1000.0;
/// The paced rate never falls below this (requests per second).
const MIN_RATE: f64 = 2.0;

/// What rate limiting cost, over a client's life (see [`Stats::snapshot`]).
#[derive(Debug, Default)]
pub struct Stats {
    throttled: AtomicU64,
    waited_us: AtomicU64,
    /// The end of the latest wait counted: concurrent waits count once (wall-clock time).
    waited_until: Mutex<Option<Instant>>,
    resumed: AtomicU64,
    retried: AtomicU64,
}

/// A copy of [`Stats`] at one moment; subtract two to get one operation's share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests the registry refused with 429 or 503.
    pub throttled: u64,
    /// Wall-clock time during which requests waited for the registry (`Retry-After`, backoff
    /// after throttling, pacing); concurrent waits count once.
    pub waited: Duration,
    /// Uploads and downloads continued from an offset after an interruption.
    pub resumed: u64,
    /// Failed attempts that were tried again.
    pub retried: u64,
}

impl StatsSnapshot {
    /// What happened between `earlier` and `self`.
    #[must_use]
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            throttled: self.throttled.saturating_sub(earlier.throttled),
            waited: self.waited.saturating_sub(earlier.waited),
            resumed: self.resumed.saturating_sub(earlier.resumed),
            retried: self.retried.saturating_sub(earlier.retried),
        }
    }
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            throttled: self.throttled.load(Ordering::Relaxed),
            waited: Duration::from_micros(self.waited_us.load(Ordering::Relaxed)),
            resumed: self.resumed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A wait of `d` that ended now.
    pub(crate) fn waited(&self, d: Duration) {
        let end = Instant::now();
        let start = end.checked_sub(d).unwrap_or(end);
        let mut until = self.waited_until.lock().expect("stats lock");
        let from = until.map_or(start, |u| u.max(start));
        let new = end.saturating_duration_since(from);
        *until = Some(until.map_or(end, |u| u.max(end)));
        drop(until);
        let us = u64::try_from(new.as_micros()).unwrap_or(u64::MAX);
        self.waited_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn resumed(&self) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct State {
    max: usize,
    /// Current concurrency limit, 1..=max.
    limit: usize,
    inflight: usize,
    /// Successes since the limit last grew.
    successes: usize,
    /// Paced rate (requests per second) while throttled; `None`: no pacing.
    rate: Option<f64>,
    /// The next paced start, and no request starts before `hold` (a `Retry-After`).
    next_start: Instant,
    hold: Instant,
    /// Starts in the last second, for the rate that was accepted.
    recent: std::collections::VecDeque<Instant>,
}

/// The limits of one registry host.
#[derive(Debug)]
pub struct HostLimit {
    state: Mutex<State>,
    notify: Notify,
    stats: Arc<Stats>,
}

/// A request slot; frees it when dropped.
#[derive(Debug)]
pub struct Permit {
    host: Arc<HostLimit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.host.state.lock().expect("limit lock");
        s.inflight -= 1;
        drop(s);
        self.host.notify.notify_one();
    }
}

impl HostLimit {
    pub fn new(max: usize, stats: Arc<Stats>) -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(State {
                max: max.max(1),
                limit: max.max(1),
                inflight: 0,
                successes: 0,
                rate: None,
                next_start: now,
                hold: now,
                recent: std::collections::VecDeque::new(),
            }),
            notify: Notify::new(),
            stats,
        }
    }

    /// Wait for a slot (and for the pace and any `Retry-After` hold).
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        let start = Instant::now();
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_start() {
                Ok(()) => break,
                Err(Some(at)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = &mut notified => {}
                    }
                }
                Err(None) => notified.await,
            }
        }
        let waited = start.elapsed();
        if waited > Duration::from_millis(1) && self.is_paced() {
            self.stats.waited(waited);
        }
        Permit { host: self.clone() }
    }

    fn is_paced(&self) -> bool {
        let s = self.state.lock().expect("limit lock");
        s.rate.is_some() || s.hold > Instant::now()
    }

    /// Start now, or say until when to wait (`None`: until a slot frees).
    fn try_start(&self) -> Result<(), Option<Instant>> {
        let mut s = self.state.lock().expect("limit lock");
        let now = Instant::now();
        if s.hold > now {
            return Err(Some(s.hold));
        }
        if s.inflight >= s.limit {
            return Err(None);
        }
        if s.rate.is_some() && s.next_start > now {
            return Err(Some(s.next_start));
        }
        s.inflight += 1;
        if let Some(rate) = s.rate {
            s.next_start = now.max(s.next_start) + Duration::from_secs_f64(1.0 / rate);
        }
        s.recent.push_back(now);
        while s
            .recent
            .front()
            .is_some_and(|t| now - *t > Duration::from_secs(1))
        {
            s.recent.pop_front();
        }
        Ok(())
    }

    /// The registry accepted a request: grow back.
    pub fn success(&self) {
        let mut s = self.state.lock().expect("limit lock");
        s.successes += 1;
        if s.successes >= s.limit && s.limit < s.max {
            s.limit += 1;
            s.successes = 0;
        }
        if let Some(rate) = s.rate {
            let grown = rate + 1.0 / rate.max(1.0);
            s.rate = (grown < PACING_OFF_RATE).then_some(grown);
        }
        drop(s);
        self.notify.notify_one();
    }

    /// The registry refused a request for load (429/503): halve, pace, hold.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        self.stats.throttled();
        let mut s = self.state.lock().expect("limit lock");
        let now = Instant::now();
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
        // Half of what went through in the last second, or half the paced rate.
        let accepted = s.recent.len() as f64;
        let base = s.rate.map_or(accepted, |r| r.min(accepted.max(MIN_RATE)));
        s.rate = Some((base / 2.0).max(MIN_RATE));
        if let Some(after) = retry_after {
            s.hold = s.hold.max(now + after);
        }
        s.next_start = s.next_start.max(now);
    }

    /// Current concurrency limit and paced rate (for tests and logs).
    pub fn current(&self) -> (usize, Option<f64>) {
        let s = self.state.lock().expect("limit lock");
        (s.limit, s.rate)
    }
}

/// The limits of every registry a client talks to.
#[derive(Debug, Default)]
pub struct Limits {
    hosts: Mutex<HashMap<String, Arc<HostLimit>>>,
    stats: Arc<Stats>,
}

impl Limits {
    pub fn host(&self, host: &str, max: usize) -> Arc<HostLimit> {
        let mut hosts = self.hosts.lock().expect("limits lock");
        hosts
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(HostLimit::new(max, self.stats.clone())))
            .clone()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aimd_halves_and_grows_back() {
        let h = HostLimit::new(8, Arc::default());
        h.throttled(None);
        assert_eq!(h.current().0, 4);
        h.throttled(None);
        h.throttled(None);
        h.throttled(None);
        assert_eq!(h.current().0, 1, "never below one lane");
        assert_eq!(h.current().1, Some(MIN_RATE), "paced, at the floor");
        for _ in 0..100 {
            h.success();
        }
        let (limit, rate) = h.current();
        assert_eq!(limit, 8, "back to the maximum");
        assert!(rate.unwrap() > 5.0, "{rate:?}");
        assert_eq!(h.stats.snapshot().throttled, 4);
    }

    #[tokio::test]
    async fn retry_after_holds_every_request() {
        let h = Arc::new(HostLimit::new(4, Arc::default()));
        h.throttled(Some(Duration::from_millis(200)));
        let t = Instant::now();
        drop(h.acquire().await);
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
        assert!(h.stats.snapshot().waited >= Duration::from_millis(190));
    }
}
