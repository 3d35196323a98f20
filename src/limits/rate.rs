//! Per-client token buckets (GCRA, from the `governor` crate), one set per rate class, kept in
//! a bounded client table.
//!
//! A bucket holds `burst` requests and refills at `per_sec`. Each class tracks at most
//! `max_clients` clients (an IPv4 address or an IPv6 /64, see `client::bucket_key`) in a
//! `quick_cache` table: a sharded concurrent map with a scan-resistant eviction policy
//! (CLOCK-Pro, close to S3-FIFO). Every request does the same constant work, one lookup in one
//! shard and one atomic update of its bucket; nothing counts or sweeps the table on the way.
//!
//! Under a flood of distinct addresses the table stays full and a newcomer takes the place of
//! another entry. The policy picks that entry among clients seen once and not again (the flood's
//! own addresses), so clients already tracked and still active keep their buckets, with whatever
//! they have spent. A newcomer always gets its own bucket: there is no shared overflow bucket,
//! because a bucket shared by newcomers is spent by the flood within a second and then refuses
//! every legitimate newcomer for as long as the flood lasts, while per-address buckets cannot
//! stop a flood whose addresses each send a request or two anyway (the concurrency cap and the
//! breaker protect the ERP from that). A client pushed out comes back with a full bucket. The
//! periodic sweep (`sweep`, every `idle_secs`) forgets only clients whose bucket has refilled,
//! which changes no answer, so the table holds the active clients when there is no flood.

use std::convert::Infallible;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, UnitWeighter};

use super::client::bucket_key;
use crate::config::{RateClass, RateLimitSettings};

/// The buckets of every rate class.
pub struct RateLimits<C: Clock = DefaultClock> {
    /// Index 0 is the default class.
    classes: Vec<ClassLimiter<C>>,
    clock: C,
}

struct ClassLimiter<C: Clock> {
    name: String,
    class: RateClass,
    limiter: RateLimiter<IpAddr, ClientTable, C, NoOpMiddleware<C::Instant>>,
}

/// One class's clients: at most `max_clients` GCRA states, by client key. The state is shared
/// (`Arc`) so a lookup holds the shard's read lock only while it clones the handle.
pub struct ClientTable {
    map: Cache<IpAddr, Arc<InMemoryState>>,
}

/// Shards of at least this many clients: smaller ones would make the bound coarse (each shard
/// evicts on its own) for no gain in contention.
const MIN_SHARD_CLIENTS: usize = 32;

impl ClientTable {
    /// A table holding at most `max_clients` clients (at least one).
    pub fn new(max_clients: usize) -> Self {
        let max_clients = max_clients.max(1);
        // As many shards as quick_cache would pick (4 per core), fewer for small tables; the
        // capacity is rounded down to a multiple of them, so the bound holds exactly.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut shards = (cores * 4).next_power_of_two();
        while shards > 1 && max_clients / shards < MIN_SHARD_CLIENTS {
            shards /= 2;
        }
        let capacity = max_clients / shards * shards;
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(capacity)
            .weight_capacity(capacity as u64)
            .build();
        let map = match options {
            Ok(options) => Cache::with_options(
                options,
                UnitWeighter,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            ),
            // Only a missing capacity fails, and both are set: the default layout is as bounded.
            Err(_) => Cache::new(capacity),
        };
        ClientTable { map }
    }
}

/// The theoretical arrival time a state holds (`None`: a fresh, full bucket), read without
/// changing it: the update closure declines and hands the value back.
fn arrival(state: &InMemoryState) -> Option<Nanos> {
    state
        .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
        .err()
        .flatten()
}

impl StateStore for ClientTable {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // One read-locked lookup when the client is tracked; a newcomer is inserted once even
        // when its first requests race (the others wait for that insert, a few instructions).
        let state = match self
            .map
            .get_or_insert_with(key, || Ok::<_, Infallible>(Arc::default()))
        {
            Ok(state) => state,
            Err(never) => match never {},
        };
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for ClientTable {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map
            .retain(|_, state| arrival(state).is_some_and(|tat| tat > drop_below));
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A request over its client's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// When the client may send the next request.
    pub retry_after: Duration,
    /// The class whose bucket is empty.
    pub class: String,
    /// That class's bucket.
    pub rate: RateClass,
}

impl Limited {
    /// Whole seconds to wait, at least 1 (`Retry-After` has no fractions).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the quota `q` is the bucket,
    /// refilled over the window `w` seconds.
    pub fn policy_header(&self) -> String {
        let window = (f64::from(self.rate.burst) / f64::from(self.rate.per_sec))
            .ceil()
            .max(1.0);
        format!(
            "\"{}\";q={};w={}",
            self.class, self.rate.burst, window as u64
        )
    }

    /// `RateLimit`: nothing remains, and when it resets.
    pub fn limit_header(&self) -> String {
        format!("\"{}\";r=0;t={}", self.class, self.retry_after_secs())
    }
}

fn quota(class: RateClass) -> Quota {
    let per_sec = NonZeroU32::new(class.per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(class.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_sec).allow_burst(burst)
}

impl RateLimits {
    /// Buckets for the default class and every named class.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self::with_clock(settings, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// As `new`, on `clock` (tests pass a clock they advance by hand).
    pub fn with_clock(settings: &RateLimitSettings, clock: C) -> Self {
        let class = |name: &str, class: RateClass| ClassLimiter {
            name: name.to_owned(),
            class,
            limiter: RateLimiter::new(
                quota(class),
                ClientTable::new(settings.max_clients),
                clock.clone(),
            ),
        };
        let mut classes = vec![class("default", settings.default)];
        for (name, c) in &settings.classes {
            classes.push(class(name, *c));
        }
        RateLimits { classes, clock }
    }

    /// The index of a route's class (validation guarantees named classes exist).
    pub fn class_index(&self, name: Option<&str>) -> usize {
        name.and_then(|n| self.classes.iter().position(|c| c.name == n))
            .unwrap_or(0)
    }

    /// Charges one request of `client` to class `class`: to its own bucket, or its /64's for
    /// IPv6 (`client::bucket_key`).
    pub fn check(&self, class: usize, client: IpAddr) -> Result<(), Limited> {
        let Some(c) = self.classes.get(class).or_else(|| self.classes.first()) else {
            return Ok(());
        };
        c.limiter
            .check_key(&bucket_key(client))
            .map_err(|not_until| Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                class: c.name.clone(),
                rate: c.class,
            })
    }

    /// Forgets clients whose buckets have refilled; run periodically, never per request.
    pub fn sweep(&self) {
        for c in &self.classes {
            c.limiter.retain_recent();
        }
    }

    /// Clients tracked across all classes.
    pub fn tracked(&self) -> usize {
        self.classes.iter().map(|c| c.limiter.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn settings(per_sec: u32, burst: u32, max_clients: usize) -> RateLimitSettings {
        RateLimitSettings {
            default: RateClass { per_sec, burst },
            classes: vec![(
                "heavy".into(),
                RateClass {
                    per_sec: 1,
                    burst: 1,
                },
            )],
            max_clients,
            idle: Duration::from_secs(60),
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn burst_then_limited_with_a_wait() {
        let r = RateLimits::new(&settings(1, 3, 100));
        for _ in 0..3 {
            assert!(r.check(0, ip(1)).is_ok());
        }
        let limited = r
            .check(0, ip(1))
            .expect_err("fourth request is over the burst");
        assert!(
            limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_secs(1)
        );
        assert_eq!(limited.retry_after_secs(), 1);
        assert_eq!(limited.policy_header(), "\"default\";q=3;w=3");
        assert_eq!(limited.limit_header(), "\"default\";r=0;t=1");
        assert!(
            r.check(0, ip(2)).is_ok(),
            "other clients have their own bucket"
        );
    }

    #[test]
    fn classes_are_separate_buckets() {
        let r = RateLimits::new(&settings(100, 100, 100));
        let heavy = r.class_index(Some("heavy"));
        assert_eq!(heavy, 1);
        assert_eq!(r.class_index(None), 0);
        assert!(r.check(heavy, ip(1)).is_ok());
        let limited = r.check(heavy, ip(1)).expect_err("heavy allows one");
        assert_eq!(limited.class, "heavy");
        assert!(r.check(0, ip(1)).is_ok(), "the default class is untouched");
    }

    /// Limits on a clock that moves only when the test says.
    fn frozen(
        per_sec: u32,
        burst: u32,
        max_clients: usize,
    ) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimits::with_clock(&settings(per_sec, burst, max_clients), clock.clone()),
            clock,
        )
    }

    /// A distinct address per `n`, IPv4 (flood traffic).
    fn flood_ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 | n))
    }

    /// Requests `client` may still send before it is refused.
    fn allowance(r: &RateLimits<FakeRelativeClock>, client: IpAddr) -> u32 {
        (0..10_000)
            .take_while(|_| r.check(0, client).is_ok())
            .count() as u32
    }

    #[test]
    fn tracked_clients_keep_their_buckets_through_an_address_flood() {
        let (r, _clock) = frozen(1, 10, 64);
        let (spent, saver) = (ip(1), ip(2));
        for _ in 0..10 {
            assert!(r.check(0, spent).is_ok());
        }
        for _ in 0..4 {
            assert!(r.check(0, saver).is_ok());
        }
        // 20,000 addresses, one request each, through a table of 64.
        for n in 0..20_000 {
            assert!(
                r.check(0, flood_ip(n)).is_ok(),
                "every newcomer has a bucket of its own"
            );
            assert!(r.tracked() <= 64, "the table is bounded: {}", r.tracked());
        }
        assert!(
            r.check(0, spent).is_err(),
            "a spent client stays limited: its bucket was neither forgotten nor reset"
        );
        assert_eq!(
            allowance(&r, saver),
            6,
            "a client keeps exactly what it had left, shared with nobody"
        );
    }

    #[test]
    fn newcomers_past_the_bound_are_limited_one_by_one() {
        let (r, _clock) = frozen(1, 3, 32);
        for n in 0..1_000 {
            assert!(r.check(0, flood_ip(n)).is_ok());
        }
        let newcomer = ip(200);
        assert_eq!(allowance(&r, newcomer), 3, "its own burst, then 429");
        assert!(r.tracked() <= 32, "{}", r.tracked());
    }

    #[test]
    fn an_ipv6_flood_from_one_64_is_one_client() {
        let (r, _clock) = frozen(1, 5, 64);
        let in_64 = |n: u64| {
            IpAddr::V6(Ipv6Addr::from_bits(
                (0x2001_0db8_0000_0001u128 << 64) | u128::from(n),
            ))
        };
        let allowed = (0..1_000).filter(|n| r.check(0, in_64(*n)).is_ok()).count();
        assert_eq!(
            allowed, 5,
            "a thousand addresses of one /64 share its burst"
        );
        assert_eq!(r.tracked(), 1);
        let other = IpAddr::V6(Ipv6Addr::from_bits(0x2001_0db8_0000_0002u128 << 64));
        assert!(r.check(0, other).is_ok(), "the next /64 is another client");
    }

    #[test]
    fn refilled_clients_are_forgotten_by_the_sweep() {
        let (r, clock) = frozen(1, 2, 100);
        assert!(r.check(0, ip(1)).is_ok());
        assert!(r.check(0, ip(2)).is_ok());
        assert!(r.check(0, ip(2)).is_ok());
        assert_eq!(r.tracked(), 2);
        // governor keeps a state until it cannot be told from a fresh one: one emission
        // interval (1 s here) after the bucket refilled
        clock.advance(Duration::from_millis(2_500));
        r.sweep();
        assert_eq!(
            r.tracked(),
            1,
            "the client whose bucket refilled is dropped, the one still refilling is kept"
        );
        clock.advance(Duration::from_secs(1));
        r.sweep();
        assert_eq!(r.tracked(), 0);
    }
}
