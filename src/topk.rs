//! The hottest keys of a stream in bounded memory: the Space-Saving algorithm (Metwally,
//! Agrawal and El Abbadi, 2005), optionally sharded so that concurrent requests rarely meet on
//! one lock. The one top-K of the program: `/stats` lists the hottest cache keys with it and
//! the warmer picks the keys to refresh with it, each keeping its own value per key.
//!
//! A shard keeps at most its share of the capacity. A key that is not tracked replaces the
//! least counted one and inherits its count (recorded as the error bound), so a key seen more
//! than `total / capacity` times is guaranteed to be present and a key that keeps coming back
//! climbs in. Memory never grows with traffic: a scan over a million distinct URLs costs the
//! same as one over ten. Counting a tracked key allocates nothing.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use parking_lot::Mutex;

/// One tracked key's value and counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted<V> {
    /// What the caller keeps for the key.
    pub value: V,
    /// Estimated count (never below the true count).
    pub count: u64,
    /// How much of `count` may belong to keys this one replaced.
    pub error: u64,
}

struct Shard<K, V> {
    slots: Vec<(K, Counted<V>)>,
    index: HashMap<K, usize>,
}

/// A Space-Saving summary of keys `K` (small, copied: a hash of the real key), each with a
/// value `V`.
pub struct TopK<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K: Copy + Eq + Hash, V> TopK<K, V> {
    /// A summary of at most `capacity` keys (rounded up to a multiple of `shards`) in
    /// `shards` independently locked parts. One shard keeps the exact `capacity` hottest.
    pub fn new(capacity: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let per_shard = capacity.max(1).div_ceil(shards);
        TopK {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        slots: Vec::with_capacity(per_shard),
                        index: HashMap::with_capacity(per_shard),
                    })
                })
                .collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<Shard<K, V>> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(key) as usize) % self.shards.len()
        };
        &self.shards[i]
    }

    /// Counts one occurrence of `key`. A tracked key's value goes through `update`, which
    /// returns false to leave it uncounted (the caller found a different key under the same
    /// hash); an untracked key gets the value `make` builds, called only then.
    pub fn record(&self, key: K, make: impl FnOnce() -> V, update: impl FnOnce(&mut V) -> bool) {
        let mut shard = self.shard(&key).lock();
        let shard = &mut *shard;
        if let Some(&i) = shard.index.get(&key) {
            let slot = &mut shard.slots[i].1;
            if update(&mut slot.value) {
                slot.count += 1;
            }
            return;
        }
        let value = make();
        if shard.slots.len() < self.per_shard {
            shard.index.insert(key, shard.slots.len());
            shard.slots.push((
                key,
                Counted {
                    value,
                    count: 1,
                    error: 0,
                },
            ));
            return;
        }
        let Some((i, floor)) = shard
            .slots
            .iter()
            .enumerate()
            .map(|(i, (_, c))| (i, c.count))
            .min_by_key(|&(_, count)| count)
        else {
            return;
        };
        shard.index.remove(&shard.slots[i].0);
        shard.index.insert(key, i);
        shard.slots[i] = (
            key,
            Counted {
                value,
                count: floor + 1,
                error: floor,
            },
        );
    }

    /// Changes a tracked key's value without counting it; false if `key` is not tracked.
    pub fn update(&self, key: K, f: impl FnOnce(&mut V)) -> bool {
        let mut shard = self.shard(&key).lock();
        let Some(&i) = shard.index.get(&key) else {
            return false;
        };
        f(&mut shard.slots[i].1.value);
        true
    }

    /// Halves every count and error, so hotness follows recent traffic; forgets the keys that
    /// reach zero.
    pub fn decay(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock();
            let shard = &mut *shard;
            for (_, c) in &mut shard.slots {
                c.count /= 2;
                c.error /= 2;
            }
            shard.slots.retain(|(_, c)| c.count > 0);
            shard.index.clear();
            for (i, (k, _)) in shard.slots.iter().enumerate() {
                shard.index.insert(*k, i);
            }
        }
    }

    /// Keys tracked now (at most the capacity).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().slots.len()).sum()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Copy + Eq + Hash, V: Clone> TopK<K, V> {
    /// The `n` most counted keys, most counted first (ties in no particular order).
    pub fn top(&self, n: usize) -> Vec<Counted<V>> {
        let mut all: Vec<Counted<V>> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .slots
                    .iter()
                    .map(|(_, c)| c.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.count));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(i: u64) -> impl FnOnce() -> String {
        move || format!("GET /k/{i}")
    }

    fn count(t: &TopK<u64, String>, i: u64) {
        t.record(i, label(i), |_| true);
    }

    #[test]
    fn heavy_hitters_survive_a_scan_and_memory_stays_bounded() {
        for shards in [1, 8] {
            let t = TopK::new(32, shards);
            for round in 0..2_000 {
                // Three hot keys, then a stream of keys seen once each.
                for hot in 0..3 {
                    count(&t, hot);
                }
                count(&t, 1_000_000 + round);
            }
            assert!(t.len() <= 32, "bounded: {}", t.len());
            let top = t.top(3);
            let mut labels: Vec<&str> = top.iter().map(|c| c.value.as_str()).collect();
            labels.sort_unstable();
            assert_eq!(labels, ["GET /k/0", "GET /k/1", "GET /k/2"], "{top:?}");
            assert!(top.iter().all(|c| c.count >= 2_000), "{top:?}");
        }
    }

    #[test]
    fn one_shard_keeps_exactly_the_capacity_and_a_returning_key_climbs_in() {
        let t = TopK::new(4, 1);
        for i in 0..1000 {
            count(&t, 10_000 + i);
        }
        assert_eq!(t.len(), 4, "never more than the capacity");
        for _ in 0..50 {
            count(&t, 7);
        }
        let top = t.top(1);
        assert_eq!(
            top[0].value, "GET /k/7",
            "a key that keeps coming back is tracked"
        );
        assert!(top[0].count >= 50 && top[0].error < top[0].count, "{top:?}");
        // Space-Saving's invariant: a newcomer inherits the count it evicts, so the counts of a
        // full summary add up to the whole stream.
        let counted: u64 = t.top(usize::MAX).iter().map(|c| c.count).sum();
        assert_eq!(counted, 1050);
    }

    #[test]
    fn make_is_called_once_per_tracked_key_and_update_may_refuse_the_count() {
        let t = TopK::new(8, 1);
        let mut made = 0;
        for _ in 0..100 {
            t.record(
                42,
                || {
                    made += 1;
                    "GET /x".to_owned()
                },
                |_| true,
            );
        }
        assert_eq!(made, 1);
        assert_eq!(t.top(1)[0].count, 100);
        // A different key under the same hash: not merged into the tracked one's count.
        t.record(42, || unreachable!(), |v| v == "GET /y");
        assert_eq!(t.top(1)[0].count, 100);
    }

    #[test]
    fn update_changes_a_value_without_counting() {
        let t = TopK::new(4, 1);
        count(&t, 1);
        assert!(t.update(1, |v| v.push_str(" (refreshed)")));
        assert!(!t.update(2, |_| unreachable!()), "untracked");
        let top = t.top(1);
        assert_eq!(
            (top[0].value.as_str(), top[0].count),
            ("GET /k/1 (refreshed)", 1)
        );
    }

    #[test]
    fn decay_forgets_what_went_cold_and_still_finds_the_rest() {
        let t = TopK::new(4, 2);
        count(&t, 1);
        for _ in 0..8 {
            count(&t, 2);
        }
        t.decay();
        let top = t.top(4);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].value.as_str(), top[0].count), ("GET /k/2", 4));
        count(&t, 2);
        assert_eq!(t.top(1)[0].count, 5, "the index still finds it after decay");
    }
}
