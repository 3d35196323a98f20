//! Per-client token buckets (GCRA, from the `governor` crate), one set per rate class.
//!
//! A bucket holds `burst` requests and refills at `per_sec`. Memory is bounded: a periodic
//! sweep forgets every client whose bucket has refilled (an idle client), and when more than
//! `max_clients` are tracked anyway (a flood of distinct addresses) new clients share one
//! overflow bucket instead of growing the table.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{RateClass, RateLimitSettings};

/// The key every client shares once the table is full.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The buckets of every rate class.
pub struct RateLimits {
    /// Index 0 is the default class.
    classes: Vec<ClassLimiter>,
    max_clients: usize,
    clock: DefaultClock,
}

struct ClassLimiter {
    name: String,
    class: RateClass,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
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
        let mut classes = vec![ClassLimiter {
            name: "default".to_owned(),
            class: settings.default,
            limiter: RateLimiter::dashmap(quota(settings.default)),
        }];
        for (name, class) in &settings.classes {
            classes.push(ClassLimiter {
                name: name.clone(),
                class: *class,
                limiter: RateLimiter::dashmap(quota(*class)),
            });
        }
        RateLimits {
            classes,
            max_clients: settings.max_clients,
            clock: DefaultClock::default(),
        }
    }

    /// The index of a route's class (validation guarantees named classes exist).
    pub fn class_index(&self, name: Option<&str>) -> usize {
        name.and_then(|n| self.classes.iter().position(|c| c.name == n))
            .unwrap_or(0)
    }

    /// Charges one request of `client` to class `class`.
    pub fn check(&self, class: usize, client: IpAddr) -> Result<(), Limited> {
        let Some(c) = self.classes.get(class).or_else(|| self.classes.first()) else {
            return Ok(());
        };
        let mut key = client;
        if c.limiter.len() >= self.max_clients {
            c.limiter.retain_recent();
            if c.limiter.len() >= self.max_clients {
                key = OVERFLOW;
            }
        }
        c.limiter.check_key(&key).map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(self.clock.now()),
            class: c.name.clone(),
            rate: c.class,
        })
    }

    /// Forgets clients whose buckets have refilled; run periodically.
    pub fn sweep(&self) {
        for c in &self.classes {
            c.limiter.retain_recent();
            c.limiter.shrink_to_fit();
        }
    }

    /// Clients tracked across all classes.
    pub fn tracked(&self) -> usize {
        self.classes.iter().map(|c| c.limiter.len()).sum()
    }
}

#[cfg(test)]
mod tests {
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
            trusted_proxies: vec![],
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

    #[test]
    fn a_flood_of_clients_shares_the_overflow_bucket() {
        let r = RateLimits::new(&settings(1, 2, 4));
        for n in 0..4 {
            assert!(r.check(0, ip(n)).is_ok());
        }
        assert_eq!(r.tracked(), 4);
        // the table is full of busy clients: newcomers share one bucket of 2
        assert!(r.check(0, ip(10)).is_ok());
        assert!(r.check(0, ip(11)).is_ok());
        assert!(r.check(0, ip(12)).is_err(), "the overflow bucket is shared");
        assert!(r.tracked() <= 5, "memory stays bounded: {}", r.tracked());
    }

    #[test]
    fn refilled_clients_are_forgotten() {
        let r = RateLimits::new(&settings(1000, 1, 100));
        assert!(r.check(0, ip(1)).is_ok());
        assert_eq!(r.tracked(), 1);
        std::thread::sleep(Duration::from_millis(5));
        r.sweep();
        assert_eq!(r.tracked(), 0, "a client whose bucket refilled is dropped");
    }
}
