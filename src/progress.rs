//! Byte progress of a long operation (a copy, many downloads): counters shared by its
//! concurrent transfers, reported to one callback at most every [`ByteProgress::INTERVAL`]
//! (and once more at the end), so that a caller drawing a progress line is not called per
//! chunk. Reports are made one at a time, so the callback sees `done` only grow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Called with (bytes done, bytes expected so far).
pub type BytesFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Shared byte counters with a throttled callback.
pub struct ByteProgress {
    done: AtomicU64,
    total: AtomicU64,
    last: Mutex<Option<Instant>>,
    report: BytesFn,
}

impl ByteProgress {
    /// The shortest time between two reports.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    pub fn new(report: BytesFn) -> Arc<Self> {
        Arc::new(Self {
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            last: Mutex::new(None),
            report,
        })
    }

    /// `n` more bytes are expected.
    pub fn expect(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.maybe_report();
    }

    /// `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.maybe_report();
    }

    /// `n` fewer bytes are expected than said (a part turned out smaller, or failed).
    fn unexpect(&self, n: u64) {
        self.total.fetch_sub(n, Ordering::Relaxed);
    }

    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        let done = self.done.load(Ordering::Relaxed);
        (done, self.total.load(Ordering::Relaxed).max(done))
    }

    /// Report now, whatever the time since the last report (the end of the operation).
    pub fn finish(&self) {
        let _last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (done, total) = self.get();
        (self.report)(done, total);
    }

    /// Report unless one was made less than [`Self::INTERVAL`] ago or is being made (then
    /// it is skipped, never waited for: the next bytes report).
    fn maybe_report(&self) {
        let now = Instant::now();
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|t| now.duration_since(t) < Self::INTERVAL) {
            return;
        }
        *last = Some(now);
        let (done, total) = self.get();
        (self.report)(done, total);
    }
}

/// The share of one part (a layer of a push) in a [`ByteProgress`], expected to be
/// `expected` bytes. The part may be produced more than once (an interrupted upload archives
/// the tarball again): only bytes beyond the furthest point reached count.
pub struct Share {
    progress: Arc<ByteProgress>,
    expected: u64,
    reached: AtomicU64,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("expected", &self.expected)
            .field("reached", &self.reached)
            .finish_non_exhaustive()
    }
}

impl Share {
    /// A part of `expected` bytes (added to the progress's total, reported with the next
    /// bytes).
    pub fn new(progress: &Arc<ByteProgress>, expected: u64) -> Arc<Self> {
        progress.total.fetch_add(expected, Ordering::Relaxed);
        Arc::new(Self {
            progress: progress.clone(),
            expected,
            reached: AtomicU64::new(0),
        })
    }

    /// The current attempt at the part has done `n` bytes of it.
    pub fn reached(&self, n: u64) {
        let before = self.reached.fetch_max(n, Ordering::Relaxed);
        if n > before {
            self.progress.add(n - before);
        }
    }

    /// The part is over: all of it done (`ok`) or what was reached. The total is corrected
    /// to what the part really was, so that a finished progress has done == total.
    pub fn end(&self, ok: bool) {
        if ok {
            self.reached(self.expected);
        }
        let reached = self.reached.load(Ordering::Relaxed);
        if reached < self.expected {
            self.progress.unexpect(self.expected - reached);
        } else {
            self.progress.expect(reached - self.expected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ByteProgress, Share};
    use std::sync::{Arc, Mutex};

    #[test]
    fn throttled_then_final() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let p = ByteProgress::new(Arc::new(move |d, t| s.lock().unwrap().push((d, t))));
        p.expect(100);
        for _ in 0..10 {
            p.add(10);
        }
        p.finish();
        let seen = seen.lock().unwrap();
        // The first call reports, the nine quick ones after it do not, the end does.
        assert_eq!(seen.first(), Some(&(0, 100)));
        assert!(seen.len() < 5, "{seen:?}");
        assert_eq!(seen.last(), Some(&(100, 100)));
    }

    #[test]
    fn shares_count_once_and_end_exact() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let p = ByteProgress::new(Arc::new(move |d, t| s.lock().unwrap().push((d, t))));
        let (first, second) = (Share::new(&p, 100), Share::new(&p, 50));
        first.reached(60);
        first.reached(30); // archived again from the start: nothing new
        first.reached(90);
        assert_eq!(p.get(), (90, 150));
        first.end(true);
        second.reached(20);
        second.end(false); // failed: its other 30 bytes are not coming
        assert_eq!(p.get(), (120, 120));
        let larger = Share::new(&p, 10);
        larger.reached(25); // larger than expected
        larger.end(true);
        p.finish();
        assert_eq!(p.get(), (145, 145));
        let seen = seen.lock().unwrap();
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
        assert_eq!(seen.last(), Some(&(145, 145)));
    }
}
