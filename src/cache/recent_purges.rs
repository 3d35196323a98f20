//! URL purges that a fill already in flight must not undo.
//!
//! A miss's response is stored when its body is complete, which can be after a purge of its URL
//! was acknowledged: a purge (or a write's invalidation) sent while the ERP's body is still
//! streaming, or the instant the client has read the last bytes, finds nothing to remove, and the
//! fill would then store the copy the purge was meant to retire. So each URL purge is recorded
//! here, by primary key, with its time, before it removes anything, and a fill is stored only
//! through `store_unless_purged`: not at all if its response arrived at or before a purge of its
//! key. The check and the store hold the lock a record takes, so a purge is either recorded
//! before the check (the fill is dropped, nothing reaches the disk) or after the store (the
//! purge's own removal finds the entry and writes its removal to disk before it is
//! acknowledged): a crash right after the acknowledgement cannot bring the copy back either.
//!
//! A record is kept for `HORIZON`: longer than any fill stays in flight in practice (a body read
//! stalling for `upstream.read_timeout_ms` fails the fill long before). The list is bounded
//! (`MAX_RECORDS`): under a flood of purges the oldest records go first.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// How long a purge is remembered.
pub const HORIZON: Duration = Duration::from_secs(600);

/// Most purges remembered at once (about 40 bytes each).
pub const MAX_RECORDS: usize = 100_000;

/// The URL purges of the last `HORIZON`, by primary key hash.
#[derive(Default)]
pub struct RecentPurges {
    by_key: Mutex<HashMap<u128, SystemTime>>,
}

impl RecentPurges {
    /// Records a purge of `primary` at `at`.
    pub fn record(&self, primary: u128, at: SystemTime) {
        let mut by_key = self.by_key.lock();
        if by_key.len() >= MAX_RECORDS {
            let horizon = at.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH);
            by_key.retain(|_, t| *t > horizon);
            if by_key.len() >= MAX_RECORDS
                && let Some(oldest) = by_key.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                by_key.remove(&oldest);
            }
        }
        let slot = by_key.entry(primary).or_insert(at);
        *slot = (*slot).max(at);
    }

    /// Runs `store` unless a response for `primary` that arrived at `received` was purged
    /// since; `true` if it ran. No purge is recorded while it runs (keep `store` short: a memory
    /// insert and a hand-over to the disk tier's writer).
    pub fn store_unless_purged(
        &self,
        primary: u128,
        received: SystemTime,
        store: impl FnOnce(),
    ) -> bool {
        let by_key = self.by_key.lock();
        if by_key
            .get(&primary)
            .is_some_and(|purged| received <= *purged)
        {
            return false;
        }
        store();
        true
    }

    /// Whether a response for `primary` that arrived at `received` was purged since.
    #[cfg(test)]
    fn covers(&self, primary: u128, received: SystemTime) -> bool {
        !self.store_unless_purged(primary, received, || ())
    }

    /// How many purges are remembered.
    pub fn len(&self) -> usize {
        self.by_key.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_that_arrived_before_the_purge_is_covered_and_a_later_one_is_not() {
        let purges = RecentPurges::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        purges.record(7, t);
        assert!(purges.covers(7, t - Duration::from_millis(1)));
        assert!(
            purges.covers(7, t),
            "arrived at the purge's instant: covered"
        );
        assert!(!purges.covers(7, t + Duration::from_millis(1)));
        assert!(
            !purges.covers(8, t - Duration::from_millis(1)),
            "another key"
        );
    }

    #[test]
    fn the_latest_purge_of_a_key_counts() {
        let purges = RecentPurges::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        purges.record(7, t + Duration::from_secs(5));
        purges.record(7, t);
        assert!(purges.covers(7, t + Duration::from_secs(4)));
        assert_eq!(purges.len(), 1);
    }

    #[test]
    fn a_full_list_forgets_what_is_past_the_horizon_then_the_oldest() {
        let purges = RecentPurges::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000_000);
        for k in 0..MAX_RECORDS as u128 {
            // Half past the horizon of the last record, half within it.
            let at = if k % 2 == 0 {
                t - HORIZON - Duration::from_secs(1)
            } else {
                t - Duration::from_secs(1) + Duration::from_nanos(k as u64)
            };
            purges.record(k, at);
        }
        assert_eq!(purges.len(), MAX_RECORDS);
        purges.record(u128::MAX, t);
        assert_eq!(purges.len(), MAX_RECORDS / 2 + 1);
        assert!(purges.covers(1, t - Duration::from_secs(2)));
        assert!(!purges.covers(0, t - HORIZON - Duration::from_secs(2)));

        // Full of records within the horizon: the oldest one makes room.
        let full = RecentPurges::default();
        for k in 0..MAX_RECORDS as u128 {
            full.record(k, t + Duration::from_nanos(k as u64));
        }
        full.record(u128::MAX, t + Duration::from_secs(1));
        assert_eq!(full.len(), MAX_RECORDS);
        assert!(!full.covers(0, t), "the oldest was forgotten");
        assert!(full.covers(1, t));
        assert!(full.covers(u128::MAX, t));
    }
}
