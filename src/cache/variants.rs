//! The bound on stored variants per URL: `Vary` on a field with many values (a `User-Agent`,
//! a session header) must not let one URL fill the cache with copies of itself.
//!
//! Each fill of a variant's own slot is recorded under its URL's primary key, oldest first;
//! past the route's `max_variants` (the primary slot counts as one) the oldest variant is
//! removed from the cache. The record is memory only and bounded: past `TRACKED_URLS` URLs it
//! starts again, which at worst lets a few URLs keep more variants until the tiers evict them.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// URLs whose variants are tracked at once.
const TRACKED_URLS: usize = 65_536;

/// What a response's storage needs to know of its route's policy, carried to the storage in
/// the metadata's extensions (never serialised).
#[derive(Debug, Clone, Copy)]
pub struct StoreHints {
    /// Add a strong `ETag` over the stored bytes when the origin sent no validator (routes
    /// whose origin sends none, like the ERP's). Never in `freshness: origin`, where a hit must
    /// not carry a validator its miss did not.
    pub computed_etag: bool,
    /// The route's `max_variants`.
    pub max_variants: usize,
}

/// The variants stored per URL, oldest first.
#[derive(Default)]
pub struct Variants {
    by_url: Mutex<HashMap<u128, VecDeque<u128>>>,
}

impl Variants {
    /// Records that `slot` (a variant's own slot) of the URL `primary` is being filled, and
    /// returns the slots to remove so that at most `max` variants remain, the primary slot
    /// included.
    pub fn admit(&self, primary: u128, slot: u128, max: usize) -> Vec<u128> {
        let mut by_url = self.by_url.lock();
        if by_url.len() >= TRACKED_URLS && !by_url.contains_key(&primary) {
            by_url.clear();
        }
        let slots = by_url.entry(primary).or_default();
        slots.retain(|s| *s != slot);
        slots.push_back(slot);
        // The slot being filled always stays: `max` 1 keeps the newest variant besides the
        // primary slot.
        let keep = max.saturating_sub(1).max(1);
        let excess = slots.len().saturating_sub(keep);
        slots.drain(..excess).collect()
    }

    /// Forgets the variants of `primary` (its URL was purged).
    pub fn forget(&self, primary: u128) {
        self.by_url.lock().remove(&primary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_variant_goes_first() {
        let v = Variants::default();
        assert!(v.admit(1, 10, 3).is_empty());
        assert!(v.admit(1, 11, 3).is_empty());
        assert_eq!(v.admit(1, 12, 3), [10], "primary + two variants");
        assert!(v.admit(2, 20, 3).is_empty(), "per URL");
        // A refill of a kept slot makes it the newest.
        assert!(v.admit(1, 11, 3).is_empty());
        assert_eq!(v.admit(1, 13, 3), [12]);
        assert_eq!(
            v.admit(1, 14, 1),
            [11, 13],
            "max 1: the newest besides the primary"
        );
        // Purged: its variants are gone, and the next one is its only one.
        v.forget(1);
        assert!(v.admit(1, 15, 2).is_empty());
        assert_eq!(v.admit(1, 16, 2), [15]);
    }

    #[test]
    fn the_record_is_bounded() {
        let v = Variants::default();
        for url in 0..(TRACKED_URLS as u128 + 10) {
            v.admit(url, url + 1_000_000, 4);
        }
        assert!(v.by_url.lock().len() <= TRACKED_URLS);
    }
}
