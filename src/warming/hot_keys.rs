//! Which keys are hot: the requests the cache serves, counted in the program's bounded top-K
//! (`crate::topk`), so memory never grows with traffic. Each tracked key keeps what the warmer
//! needs to refresh it: the request as the client sent it, the stored coding, and when the
//! stored copy stops being fresh.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime};

use crate::topk::{Counted, TopK};
/// One tracked key.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKey {
    /// Path and query as the client sent them (what the warmer requests again).
    pub path_and_query: String,
    /// The `Accept-Encoding` token of the stored variant, `None` for identity.
    pub coding: Option<&'static str>,
    /// Requests counted (an overestimate by at most `error` for keys that replaced others).
    pub count: u64,
    /// Overestimate inherited from the key this one replaced.
    pub error: u64,
    /// When the stored copy stops being fresh.
    pub fresh_until: SystemTime,
    /// When the stored copy was made (so `fresh_until - stored` is its TTL).
    pub stored: SystemTime,
    /// When a client last asked for it.
    pub last_seen: Instant,
}

/// The identity of a tracked key: the request and its variant.
/// Keyed by a hash of the request, so counting a known key (every hit) allocates nothing; the
/// path itself is kept in the entry and compared, so a hash collision is never merged.
type Id = (u64, Option<&'static str>);

/// What the warmer keeps per tracked key (the counts are the top-K's).
#[derive(Debug, Clone)]
struct Entry {
    path_and_query: String,
    coding: Option<&'static str>,
    fresh_until: SystemTime,
    stored: SystemTime,
    last_seen: Instant,
}

/// The bounded set of hot keys.
pub struct HotKeys {
    top: TopK<Id, Entry>,
    hasher: RandomState,
}

impl HotKeys {
    /// Tracks at most `capacity` keys (one lock: the warmer wants exactly the hottest
    /// `capacity`, and `/stats`'s sharded summary already takes the per-request contention).
    pub fn new(capacity: usize) -> Self {
        HotKeys {
            top: TopK::new(capacity, 1),
            hasher: RandomState::new(),
        }
    }

    fn id(&self, path_and_query: &str, coding: Option<&'static str>) -> Id {
        (self.hasher.hash_one(path_and_query), coding)
    }

    /// Counts one request for a key and remembers its freshness.
    pub fn observe(
        &self,
        path_and_query: &str,
        coding: Option<&'static str>,
        stored: SystemTime,
        fresh_until: SystemTime,
    ) {
        let now = Instant::now();
        self.top.record(
            self.id(path_and_query, coding),
            || Entry {
                path_and_query: path_and_query.to_owned(),
                coding,
                fresh_until,
                stored,
                last_seen: now,
            },
            |e| {
                if e.path_and_query != path_and_query {
                    return false; // a 64-bit collision: leave the tracked key alone
                }
                e.fresh_until = fresh_until;
                e.stored = stored;
                e.last_seen = now;
                true
            },
        );
    }

    /// Records that a warm request stored a new copy, without counting it as client interest.
    pub fn refreshed(
        &self,
        path_and_query: &str,
        coding: Option<&'static str>,
        stored: SystemTime,
        fresh_until: SystemTime,
    ) {
        self.top.update(self.id(path_and_query, coding), |e| {
            if e.path_and_query == path_and_query {
                e.fresh_until = fresh_until;
                e.stored = stored;
            }
        });
    }

    /// True if `key` should be refreshed now: a client asked within `active`, and its copy
    /// expires within `lead`, but never before half its TTL has passed (so a short TTL is not
    /// refreshed again right after each refresh).
    pub fn due(key: &HotKey, now: SystemTime, lead: Duration, active: Duration) -> bool {
        let ttl = key
            .fresh_until
            .duration_since(key.stored)
            .unwrap_or_default();
        let lead = lead.min(ttl / 2);
        // already expired counts as nothing left
        let left = key.fresh_until.duration_since(now).unwrap_or_default();
        key.last_seen.elapsed() <= active && left <= lead
    }

    /// The tracked keys, hottest first.
    pub fn snapshot(&self) -> Vec<HotKey> {
        self.top
            .top(usize::MAX)
            .into_iter()
            .map(
                |Counted {
                     value,
                     count,
                     error,
                 }| HotKey {
                    path_and_query: value.path_and_query,
                    coding: value.coding,
                    count,
                    error,
                    fresh_until: value.fresh_until,
                    stored: value.stored,
                    last_seen: value.last_seen,
                },
            )
            .collect()
    }

    /// Halves every count, so hotness follows recent traffic; drops keys that reached zero.
    pub fn decay(&self) {
        self.top.decay();
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.top.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.top.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    #[test]
    fn counts_and_orders_by_heat() {
        let h = HotKeys::new(8);
        for _ in 0..5 {
            h.observe("/a", None, SystemTime::now(), soon());
        }
        h.observe("/b", Some("br"), SystemTime::now(), soon());
        h.observe("/a", Some("br"), SystemTime::now(), soon());
        let s = h.snapshot();
        assert_eq!(s[0].path_and_query, "/a");
        assert_eq!((s[0].coding, s[0].count), (None, 5));
        assert_eq!(s.len(), 3, "variants are separate keys");
    }

    #[test]
    fn memory_is_bounded_and_a_returning_key_climbs_in() {
        let h = HotKeys::new(4);
        for i in 0..1000 {
            h.observe(&format!("/cold/{i}"), None, SystemTime::now(), soon());
        }
        assert_eq!(h.len(), 4, "never more than the capacity");
        for _ in 0..50 {
            h.observe("/hot", None, SystemTime::now(), soon());
        }
        let s = h.snapshot();
        assert_eq!(
            s[0].path_and_query, "/hot",
            "a key that keeps coming back is tracked"
        );
        assert!(s[0].count >= 50);
    }

    #[test]
    fn a_refresh_moves_the_deadline_but_not_the_count() {
        let h = HotKeys::new(4);
        h.observe("/a", None, SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH);
        let later = soon();
        h.refreshed("/a", None, SystemTime::now(), later);
        h.refreshed("/untracked", None, SystemTime::now(), later);
        let s = h.snapshot();
        assert_eq!((s.len(), s[0].count, s[0].fresh_until), (1, 1, later));
    }

    #[test]
    fn due_only_near_expiry_and_while_in_use() {
        let now = SystemTime::now();
        let key = |stored_ago: u64, left: u64| HotKey {
            path_and_query: "/k".into(),
            coding: None,
            count: 1,
            error: 0,
            fresh_until: now + Duration::from_secs(left),
            stored: now - Duration::from_secs(stored_ago),
            last_seen: Instant::now(),
        };
        let (lead, active) = (Duration::from_secs(10), Duration::from_secs(120));
        assert!(
            HotKeys::due(&key(170, 10), now, lead, active),
            "180 s TTL, 10 s left"
        );
        assert!(!HotKeys::due(&key(100, 80), now, lead, active), "80 s left");
        // a 4 s TTL: the lead shrinks to 2 s, so a fresh refresh is not refreshed again
        assert!(!HotKeys::due(&key(1, 3), now, lead, active));
        assert!(HotKeys::due(&key(2, 2), now, lead, active));
    }

    #[test]
    fn decay_forgets_what_went_cold() {
        let h = HotKeys::new(4);
        h.observe("/once", None, SystemTime::now(), soon());
        for _ in 0..8 {
            h.observe("/often", None, SystemTime::now(), soon());
        }
        h.decay();
        let s = h.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].path_and_query.as_str(), s[0].count), ("/often", 4));
        h.observe("/often", None, SystemTime::now(), soon());
        assert_eq!(
            h.snapshot()[0].count,
            5,
            "the index still finds it after decay"
        );
    }
}
