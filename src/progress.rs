//! Byte progress of a long operation (a copy, many downloads): counters shared by its
//! concurrent transfers, reported to one callback at most every [`ByteProgress::INTERVAL`]
//! (and once more at the end), so that a caller drawing a progress line is not called per
//! chunk.

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

    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        let done = self.done.load(Ordering::Relaxed);
        (done, self.total.load(Ordering::Relaxed).max(done))
    }

    /// Report now, whatever the time since the last report (the end of the operation).
    pub fn finish(&self) {
        let (done, total) = self.get();
        (self.report)(done, total);
    }

    fn maybe_report(&self) {
        let now = Instant::now();
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < Self::INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        let (done, total) = self.get();
        (self.report)(done, total);
    }
}

#[cfg(test)]
mod tests {
    use super::ByteProgress;
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
}
