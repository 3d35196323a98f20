//! The hottest cache keys in bounded memory: the Space-Saving algorithm (Metwally, Agrawal and
//! El Abbadi, 2005), sharded so that concurrent requests rarely meet on one lock.
//!
//! Each shard keeps at most `capacity` counters. A key that is not tracked replaces the smallest
//! counter and inherits its count (recorded as the error bound), so any key seen more than
//! `total / capacity` times is guaranteed to be present. Memory never grows with traffic: a scan
//! over a million distinct URLs costs the same as one over ten.

use parking_lot::Mutex;

/// Shards: a power of two, a little above the proxy's worker count.
const SHARDS: usize = 8;

/// One tracked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// What to show for the key.
    pub label: String,
    /// The route it belongs to.
    pub route: String,
    /// Estimated count (never below the true count).
    pub count: u64,
    /// How much of `count` may belong to keys this one replaced.
    pub error: u64,
}

struct Slot {
    hash: u128,
    counted: Counted,
}

/// A sharded Space-Saving summary keyed by a 128-bit hash (the cache key's).
pub struct TopK {
    shards: Vec<Mutex<Vec<Slot>>>,
    capacity: usize,
}

impl TopK {
    /// A summary keeping `capacity` counters per shard.
    pub fn new(capacity: usize) -> Self {
        TopK {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Vec::with_capacity(capacity)))
                .collect(),
            capacity: capacity.max(1),
        }
    }

    /// Counts one occurrence of `hash`. `describe` gives its label and route; it is called only
    /// when the key starts being tracked, so a hot key costs no allocation.
    pub fn record(&self, hash: u128, describe: impl FnOnce() -> (String, String)) {
        // The low bits of a cache key hash are uniformly distributed.
        let shard = &self.shards[(hash as usize) & (SHARDS - 1)];
        let mut slots = shard.lock();
        if let Some(slot) = slots.iter_mut().find(|s| s.hash == hash) {
            slot.counted.count += 1;
            return;
        }
        let (label, route) = describe();
        if slots.len() < self.capacity {
            slots.push(Slot {
                hash,
                counted: Counted {
                    label,
                    route,
                    count: 1,
                    error: 0,
                },
            });
            return;
        }
        if let Some(min) = slots.iter_mut().min_by_key(|s| s.counted.count) {
            let floor = min.counted.count;
            *min = Slot {
                hash,
                counted: Counted {
                    label,
                    route,
                    count: floor + 1,
                    error: floor,
                },
            };
        }
    }

    /// The `n` keys with the highest counts, highest first.
    pub fn top(&self, n: usize) -> Vec<Counted> {
        let mut all: Vec<Counted> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .map(|slot| slot.counted.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.label.cmp(&b.label)));
        all.truncate(n);
        all
    }

    /// Keys tracked right now (bounded by shards x capacity).
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u128) -> (u128, impl FnOnce() -> (String, String)) {
        (i, move || (format!("GET /k/{i}"), "r".to_owned()))
    }

    #[test]
    fn heavy_hitters_survive_a_scan_and_memory_stays_bounded() {
        let t = TopK::new(4);
        for round in 0..2_000u128 {
            // Three hot keys, then a stream of keys seen once each.
            for hot in 0..3u128 {
                let (h, d) = key(hot * SHARDS as u128); // all in shard 0
                t.record(h, d);
            }
            let (h, d) = key(1_000_000 + round);
            t.record(h, d);
        }
        assert!(t.tracked() <= SHARDS * 4, "bounded: {}", t.tracked());
        let top = t.top(3);
        let labels: Vec<&str> = top.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["GET /k/0", "GET /k/16", "GET /k/8"], "{top:?}");
        assert!(top.iter().all(|c| c.count >= 2_000), "{top:?}");
    }

    #[test]
    fn describe_is_called_once_per_tracked_key() {
        let t = TopK::new(8);
        let mut calls = 0;
        for _ in 0..100 {
            t.record(42, || {
                calls += 1;
                ("GET /x".into(), "r".into())
            });
        }
        assert_eq!(calls, 1);
        assert_eq!(t.top(1)[0].count, 100);
    }
}
