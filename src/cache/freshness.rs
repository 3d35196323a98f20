//! RFC 9111 §4.2 arithmetic over one response: which caching directives apply to knitcache,
//! how long the response is fresh, how old it already is, and whether it may be served stale.
//!
//! Pure functions of the response header and two clock readings; `policy` decides from them
//! what is stored. The directives come from the most specific field present (RFC 9213):
//! `Knitcache-Cache-Control`, then `CDN-Cache-Control`, then `Cache-Control` (with `Expires`).

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use pingora_cache::cache_control::CacheControl;
use pingora_http::ResponseHeader;

use crate::config::Heuristic;

/// knitcache's own targeted field (RFC 9213 §2): directives for this cache only.
pub const KNITCACHE_CACHE_CONTROL: &str = "knitcache-cache-control";
/// The targeted field every CDN-like cache obeys (RFC 9213 §3).
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// The caching directives that apply to knitcache, and where they came from.
pub struct Directives {
    /// The parsed directives; `None` when the response has no applicable field.
    pub cc: Option<CacheControl>,
    /// They came from a targeted field: `Cache-Control` and `Expires` are ignored (RFC 9213 §2.2).
    pub targeted: bool,
}

/// The first targeted field that parses to at least one directive, else `Cache-Control`. A
/// targeted field that does not parse is ignored, as RFC 9213 §2.1 asks.
pub fn directives(resp: &ResponseHeader) -> Directives {
    for name in [KNITCACHE_CACHE_CONTROL, CDN_CACHE_CONTROL] {
        if let Some(cc) = CacheControl::from_resp_headers_named(name, resp)
            && !cc.directives.is_empty()
        {
            return Directives {
                cc: Some(cc),
                targeted: true,
            };
        }
    }
    Directives {
        cc: CacheControl::from_resp_headers(resp),
        targeted: false,
    }
}

impl Directives {
    /// `no-store`, or an unqualified or qualified `private`: a shared cache stores nothing
    /// (storing the rest of a qualified `private` response is allowed, not required). With
    /// `must-understand`, `no-store` is for caches that do not know the directive (RFC 9111
    /// §5.2.2.3): the caller has checked that the status is one knitcache understands.
    pub fn forbids_storing(&self) -> bool {
        self.cc.as_ref().is_some_and(|cc| {
            (cc.no_store() && !cc.has_key("must-understand")) || cc.has_key("private")
        })
    }

    /// `must-understand`: stored only by a cache that implements the status's caching rules.
    pub fn must_understand(&self) -> bool {
        self.cc
            .as_ref()
            .is_some_and(|cc| cc.has_key("must-understand"))
    }

    /// `no-cache`, qualified or not: stored, but never used without revalidation (a qualified
    /// `no-cache` may be honoured as the unqualified one, RFC 9111 §5.2.2.4).
    pub fn no_cache(&self) -> bool {
        self.cc.as_ref().is_some_and(|cc| cc.has_key("no-cache"))
    }

    /// `public`: storable even for a request with `Authorization`, and heuristically fresh
    /// whatever the status (RFC 9111 §3, §3.5).
    pub fn public(&self) -> bool {
        self.cc.as_ref().is_some_and(CacheControl::public)
    }

    /// `s-maxage` is present (valid or not): it implies `proxy-revalidate` (§5.2.2.10).
    pub fn has_s_maxage(&self) -> bool {
        self.cc.as_ref().is_some_and(|cc| cc.has_key("s-maxage"))
    }

    /// `must-revalidate`.
    pub fn must_revalidate(&self) -> bool {
        self.cc.as_ref().is_some_and(CacheControl::must_revalidate)
    }

    /// A shared cache may store a response to a request with `Authorization` only when the
    /// response says so: `public`, `s-maxage` or `must-revalidate` (RFC 9111 §3.5).
    pub fn allows_authorized(&self) -> bool {
        self.public() || self.has_s_maxage() || self.must_revalidate()
    }

    /// Serving this response stale is forbidden in every case (RFC 9111 §4.2.4): `no-cache`,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`.
    pub fn forbids_stale(&self) -> bool {
        self.no_cache()
            || self.must_revalidate()
            || self.has_s_maxage()
            || self.cc.as_ref().is_some_and(CacheControl::proxy_revalidate)
    }

    /// The origin's `stale-while-revalidate` and `stale-if-error` windows (RFC 5861), each
    /// `None` when absent or invalid.
    pub fn stale_windows(&self) -> (Option<Duration>, Option<Duration>) {
        let Some(cc) = &self.cc else {
            return (None, None);
        };
        let secs = |v: pingora_error::Result<Option<u32>>| {
            v.ok().flatten().map(|s| Duration::from_secs(u64::from(s)))
        };
        (secs(cc.stale_while_revalidate()), secs(cc.stale_if_error()))
    }

    /// The explicit freshness lifetime (RFC 9111 §4.2.1): `s-maxage`, else `max-age`, else
    /// `Expires` minus `Date` (the receipt time when `Date` is absent). An invalid `max-age`
    /// or `Expires` (RFC 9111 §5.3: "0" included) makes the response stale: `Some(ZERO)`.
    /// `None`: the response states no lifetime.
    pub fn explicit_lifetime(
        &self,
        resp: &ResponseHeader,
        received: SystemTime,
    ) -> Option<Duration> {
        if let Some(cc) = &self.cc {
            for name in ["s-maxage", "max-age"] {
                if cc.has_key(name) {
                    let value = match name {
                        "s-maxage" => cc.s_maxage(),
                        _ => cc.max_age(),
                    };
                    let secs = value.ok().flatten().unwrap_or(0);
                    return Some(Duration::from_secs(u64::from(secs)));
                }
            }
        }
        if self.targeted {
            return None;
        }
        let mut expires = resp.headers.get_all(EXPIRES).iter();
        let first = expires.next()?;
        if expires.next().is_some() {
            // Several `Expires` lines: treated as stale rather than guessing which one counts.
            return Some(Duration::ZERO);
        }
        let Some(at) = http_date(first) else {
            return Some(Duration::ZERO);
        };
        let date = date(resp).unwrap_or(received);
        Some(at.duration_since(date).unwrap_or(Duration::ZERO))
    }
}

/// The heuristic lifetime (RFC 9111 §4.2.2): a fraction of the time between `Last-Modified`
/// and `Date`, capped. `None` without a usable `Last-Modified`.
pub fn heuristic_lifetime(
    resp: &ResponseHeader,
    received: SystemTime,
    heuristic: &Heuristic,
) -> Option<Duration> {
    let modified = http_date(resp.headers.get(LAST_MODIFIED)?)?;
    let date = date(resp).unwrap_or(received);
    let since = date.duration_since(modified).ok()?;
    Some(since.mul_f64(heuristic.fraction).min(heuristic.max))
}

/// The response's age when it arrived (RFC 9111 §4.2.3's `corrected_initial_age`): the larger
/// of its apparent age (arrival minus `Date`) and the origin's `Age` plus the time the request
/// took. `response_delay` is the time from sending the request to receiving the response.
pub fn initial_age(
    resp: &ResponseHeader,
    received: SystemTime,
    response_delay: Duration,
) -> Duration {
    let apparent = date(resp)
        .and_then(|d| received.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    let corrected = age_value(resp) + response_delay;
    apparent.max(corrected)
}

/// The `Age` field's value (RFC 9111 §5.1): the first member's delta-seconds (a list's later
/// members are discarded, as the RFC asks); an invalid value counts as none, a huge one
/// saturates.
fn age_value(resp: &ResponseHeader) -> Duration {
    resp.headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| {
            let s = s.split(',').next().unwrap_or_default().trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(s.parse::<u64>().unwrap_or(u64::from(u32::MAX)))
        })
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// The response's `Date`, if it has a valid one.
pub fn date(resp: &ResponseHeader) -> Option<SystemTime> {
    http_date(resp.headers.get(DATE)?)
}

fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn stamp(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    fn resp(fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("header");
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    fn lifetime(fields: &[(&str, &str)]) -> Option<u64> {
        let r = resp(fields);
        directives(&r)
            .explicit_lifetime(&r, at(T0))
            .map(|d| d.as_secs())
    }

    #[test]
    fn s_maxage_wins_over_max_age_and_max_age_over_expires() {
        let expires = stamp(T0 + 500);
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60, s-maxage=7")]),
            Some(7)
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), ("expires", &expires)]),
            Some(60)
        );
        assert_eq!(lifetime(&[("expires", &expires)]), Some(500));
        assert_eq!(lifetime(&[]), None);
        assert_eq!(lifetime(&[("cache-control", "public")]), None);
    }

    #[test]
    fn expires_counts_from_date_not_from_the_local_clock() {
        // The origin's clock is an hour ahead; Expires is 60 s after its Date.
        let date = stamp(T0 + 3600);
        let expires = stamp(T0 + 3660);
        assert_eq!(
            lifetime(&[("date", &date), ("expires", &expires)]),
            Some(60)
        );
        // Expires before Date: stale at once, however far ahead of our clock.
        let expires = stamp(T0 + 1800);
        assert_eq!(lifetime(&[("date", &date), ("expires", &expires)]), Some(0));
    }

    #[test]
    fn invalid_or_repeated_freshness_is_stale() {
        assert_eq!(lifetime(&[("expires", "0")]), Some(0));
        let e = stamp(T0 + 60);
        assert_eq!(lifetime(&[("expires", &e), ("expires", &e)]), Some(0));
        assert_eq!(lifetime(&[("cache-control", "max-age=soon")]), Some(0));
    }

    #[test]
    fn targeted_fields_take_precedence_in_order() {
        let r = resp(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ]);
        let d = directives(&r);
        assert!(d.targeted && !d.forbids_storing());
        assert_eq!(
            d.explicit_lifetime(&r, at(T0)),
            Some(Duration::from_secs(60))
        );
        let r = resp(&[
            ("cdn-cache-control", "max-age=60"),
            ("knitcache-cache-control", "no-store"),
        ]);
        assert!(directives(&r).forbids_storing());
        // A targeted field ignores Expires too.
        let e = stamp(T0 + 60);
        let r = resp(&[("cdn-cache-control", "public"), ("expires", &e)]);
        assert_eq!(directives(&r).explicit_lifetime(&r, at(T0)), None);
        // An empty targeted field is not valid: Cache-Control applies.
        let r = resp(&[("cdn-cache-control", ""), ("cache-control", "no-store")]);
        assert!(!directives(&r).targeted && directives(&r).forbids_storing());
    }

    #[test]
    fn what_forbids_stale_and_what_allows_authorized() {
        let d = |cc: &str| directives(&resp(&[("cache-control", cc)]));
        for cc in [
            "no-cache",
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage=5",
            "no-cache=\"x\"",
        ] {
            assert!(d(cc).forbids_stale(), "{cc}");
        }
        assert!(!d("max-age=5, stale-if-error=60").forbids_stale());
        for cc in ["public", "s-maxage=5", "must-revalidate"] {
            assert!(d(cc).allows_authorized(), "{cc}");
        }
        assert!(!d("max-age=60").allows_authorized());
        assert!(d("private=\"set-cookie\"").forbids_storing());
        assert_eq!(
            d("max-age=1, stale-while-revalidate=30, stale-if-error=600").stale_windows(),
            (
                Some(Duration::from_secs(30)),
                Some(Duration::from_secs(600))
            )
        );
    }

    #[test]
    fn initial_age_is_the_larger_of_apparent_and_corrected_age() {
        let received = at(T0);
        let r = resp(&[("age", "7200")]);
        assert_eq!(
            initial_age(&r, received, Duration::from_secs(2)).as_secs(),
            7202
        );
        let date = stamp(T0 - 100);
        let r = resp(&[("date", &date), ("age", "10")]);
        assert_eq!(initial_age(&r, received, Duration::ZERO).as_secs(), 100);
        // A Date ahead of our clock is no negative age.
        let date = stamp(T0 + 100);
        let r = resp(&[("date", &date)]);
        assert_eq!(initial_age(&r, received, Duration::ZERO), Duration::ZERO);
        let r = resp(&[("age", "7200, 5")]);
        assert_eq!(initial_age(&r, received, Duration::ZERO).as_secs(), 7200);
        let r = resp(&[("age", "-5")]);
        assert_eq!(initial_age(&r, received, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn heuristic_is_a_capped_fraction_of_the_time_since_modification() {
        let h = Heuristic {
            fraction: 0.1,
            max: Duration::from_secs(86_400),
        };
        let date = stamp(T0);
        let modified = stamp(T0 - 1000);
        let r = resp(&[("date", &date), ("last-modified", &modified)]);
        assert_eq!(
            heuristic_lifetime(&r, at(T0), &h),
            Some(Duration::from_secs(100))
        );
        let modified = stamp(T0 - 100 * 86_400);
        let r = resp(&[("date", &date), ("last-modified", &modified)]);
        assert_eq!(heuristic_lifetime(&r, at(T0), &h), Some(h.max));
        assert_eq!(heuristic_lifetime(&resp(&[]), at(T0), &h), None);
    }
}
