//! Latency percentiles of one route: HdrHistograms of microseconds for hits, misses (everything
//! the ERP answered) and the ERP's own time, since start and over a recent window.
//!
//! The recent window is two slots of half the window each: recording goes into the current
//! slot, reading merges both, and a slot older than a window is cleared when it is next touched.
//! So "recent" always covers between half a window and a whole one, with no sampler thread.
//! Histograms resize themselves, so an idle route costs a few hundred bytes.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Significant figures kept (1 % resolution is plenty for a latency report).
const SIGFIG: u8 = 2;

/// Which histogram a request goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Served from the cache (fresh or stale).
    Hit,
    /// Answered by the ERP (miss, expired, pass-through, uncacheable).
    Miss,
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest observation.
    pub max_ms: f64,
}

/// Hit, miss and ERP percentiles of one period.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Breakdown {
    /// Every request, hits and misses together: what a client of the route sees.
    pub all: Percentiles,
    /// Requests served from the cache.
    pub hit: Percentiles,
    /// Requests the ERP answered.
    pub miss: Percentiles,
    /// The ERP's own time (request sent to response header), for requests that went to it.
    pub upstream: Percentiles,
}

#[derive(Clone)]
struct Set {
    hit: Histogram<u32>,
    miss: Histogram<u32>,
    upstream: Histogram<u32>,
}

impl Set {
    fn new() -> Self {
        let h = || Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable_histogram());
        Set {
            hit: h(),
            miss: h(),
            upstream: h(),
        }
    }

    fn record(&mut self, served: Served, total_us: u64, upstream_us: Option<u64>) {
        let h = match served {
            Served::Hit => &mut self.hit,
            Served::Miss => &mut self.miss,
        };
        record(h, total_us);
        if let Some(u) = upstream_us {
            record(&mut self.upstream, u);
        }
    }

    fn clear(&mut self) {
        self.hit.reset();
        self.miss.reset();
        self.upstream.reset();
    }

    fn add(&mut self, other: &Set) {
        // Both sides auto-resize, so adding never fails for lack of range.
        let _ = self.hit.add(&other.hit);
        let _ = self.miss.add(&other.miss);
        let _ = self.upstream.add(&other.upstream);
    }

    fn breakdown(&self) -> Breakdown {
        let mut all = self.hit.clone();
        // Both auto-resize, so adding cannot fail for lack of range.
        let _ = all.add(&self.miss);
        Breakdown {
            all: percentiles(&all),
            hit: percentiles(&self.hit),
            miss: percentiles(&self.miss),
            upstream: percentiles(&self.upstream),
        }
    }
}

/// Records `us` (at least 1), growing the histogram as needed; only if even that fails (a
/// count overflow) is the value clamped, never lost silently to a panic.
fn record(h: &mut Histogram<u32>, us: u64) {
    let v = us.max(1);
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

/// `Histogram::new(2)` only fails for significant figures above 5; keep a valid fallback
/// without panicking.
fn unreachable_histogram() -> Histogram<u32> {
    debug_assert!(false, "histogram with {SIGFIG} significant figures");
    Histogram::new_with_bounds(1, 2, 1).unwrap_or_else(|_| unreachable_histogram())
}

fn percentiles(h: &Histogram<u32>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| (us as f64) / 1000.0;
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

/// The latency record of one route.
pub struct Latencies {
    total: Set,
    slots: [Set; 2],
    /// Index of the half-window the current slot belongs to.
    slot_epoch: u64,
    half_window: Duration,
}

impl Latencies {
    /// Empty histograms; `window` is the length of the recent window.
    pub fn new(window: Duration) -> Self {
        Latencies {
            total: Set::new(),
            slots: [Set::new(), Set::new()],
            slot_epoch: 0,
            half_window: (window / 2).max(Duration::from_millis(1)),
        }
    }

    /// Records one request; `at` is the time since the stats began.
    pub fn record(
        &mut self,
        at: Duration,
        served: Served,
        total: Duration,
        upstream: Option<Duration>,
    ) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.advance(at);
        let total_us = us(total);
        let upstream_us = upstream.map(us);
        self.total.record(served, total_us, upstream_us);
        let current = (self.slot_epoch % 2) as usize;
        self.slots[current].record(served, total_us, upstream_us);
    }

    /// Moves the current slot to the half-window containing `at`, clearing what fell out.
    fn advance(&mut self, at: Duration) {
        let epoch = (at.as_nanos() / self.half_window.as_nanos().max(1)) as u64;
        if epoch == self.slot_epoch {
            return;
        }
        if epoch >= self.slot_epoch + 2 {
            self.slots[0].clear();
            self.slots[1].clear();
        } else {
            self.slots[(epoch % 2) as usize].clear();
        }
        self.slot_epoch = epoch;
    }

    /// Percentiles since start.
    pub fn since_start(&self) -> Breakdown {
        self.total.breakdown()
    }

    /// Percentiles over the recent window ending at `at`.
    pub fn recent(&mut self, at: Duration) -> Breakdown {
        self.advance(at);
        let mut merged = self.slots[0].clone();
        merged.add(&self.slots[1]);
        merged.breakdown()
    }

    /// Adds this route's histograms into `agg` (the all-routes summary) as of `at`.
    pub fn add_to(&mut self, at: Duration, agg: &mut Aggregate) {
        self.advance(at);
        agg.total.add(&self.total);
        agg.recent.add(&self.slots[0]);
        agg.recent.add(&self.slots[1]);
    }
}

/// Several routes' latencies added together.
pub struct Aggregate {
    total: Set,
    recent: Set,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            total: Set::new(),
            recent: Set::new(),
        }
    }
}

impl Aggregate {
    /// Percentiles since start.
    pub fn since_start(&self) -> Breakdown {
        self.total.breakdown()
    }

    /// Percentiles over the recent window.
    pub fn recent(&self) -> Breakdown {
        self.recent.breakdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn hits_and_misses_are_kept_apart() {
        let mut l = Latencies::new(Duration::from_secs(60));
        for i in 1..=100u32 {
            l.record(Duration::ZERO, Served::Hit, MS * i / 100, None);
            l.record(Duration::ZERO, Served::Miss, MS * i * 10, Some(MS * i * 9));
        }
        let b = l.since_start();
        assert_eq!(
            (b.hit.count, b.miss.count, b.upstream.count),
            (100, 100, 100)
        );
        assert!((0.49..=0.51).contains(&b.hit.p50_ms), "{b:?}");
        assert!((940.0..=960.0).contains(&b.miss.p95_ms), "{b:?}");
        assert!((980.0..=1000.0).contains(&b.miss.p99_ms), "{b:?}");
        assert!(b.upstream.p50_ms < b.miss.p50_ms);
        assert_eq!(b.all.count, 200);
        // The 190th of 200: the 90th miss (900 ms).
        assert!((890.0..=910.0).contains(&b.all.p95_ms), "{b:?}");
    }

    #[test]
    fn the_recent_window_forgets_old_requests() {
        let w = Duration::from_secs(60);
        let mut l = Latencies::new(w);
        l.record(Duration::ZERO, Served::Hit, MS, None);
        assert_eq!(l.recent(Duration::from_secs(10)).hit.count, 1);
        l.record(Duration::from_secs(40), Served::Hit, MS, None);
        assert_eq!(
            l.recent(Duration::from_secs(45)).hit.count,
            2,
            "both within the window"
        );
        assert_eq!(
            l.recent(Duration::from_secs(65)).hit.count,
            1,
            "the first one fell out"
        );
        assert_eq!(l.recent(Duration::from_secs(300)).hit.count, 0);
        assert_eq!(l.since_start().hit.count, 2, "since start keeps everything");
    }
}
