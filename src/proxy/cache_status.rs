//! The `Cache-Status` response header (RFC 9211) and the matching metric label, both derived
//! from pingora's `CachePhase` so there is one source of truth for what the cache did.

use std::time::SystemTime;

use pingora_cache::{CachePhase, NoCacheReason};

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "knitcache";

/// What the cache did with a request, as a bounded metric label.
pub fn label(phase: &CachePhase, cacheable: bool) -> &'static str {
    match phase {
        CachePhase::Hit => "hit",
        CachePhase::Stale => "stale",
        CachePhase::StaleUpdating => "stale",
        CachePhase::Miss => "miss",
        CachePhase::Expired => "expired",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "revalidated",
        CachePhase::Disabled(_) if cacheable => "uncacheable",
        _ => "bypass",
    }
}

/// The `Cache-Status` value. `fresh_until` is the stored response's freshness deadline when
/// one was served; `collapsed` is true when the request waited for another request's fill;
/// `stored` is true when a miss's fill was already complete as the header goes out.
///
/// `stored` means what RFC 9211 §2.6 says: the cache did store the response. A miss streams
/// its body to the client as it arrives, after this header, so most misses cannot say it yet:
/// they say `fwd=miss` alone, and how their fill ended is in the access line's `fill` and
/// `knitcache_cache_fills_total` (`proxy::fill`).
pub fn header_value(
    phase: &CachePhase,
    cacheable: bool,
    fresh_until: Option<SystemTime>,
    collapsed: bool,
    stored: bool,
) -> String {
    let ttl = fresh_until.map(|until| ttl_secs(until, SystemTime::now()));
    let mut v = String::with_capacity(48);
    v.push_str(CACHE_NAME);
    match phase {
        CachePhase::Hit => {
            v.push_str("; hit");
            push_ttl(&mut v, ttl);
            if collapsed {
                v.push_str("; collapsed");
            }
        }
        CachePhase::StaleUpdating => {
            v.push_str("; hit");
            push_ttl(&mut v, ttl);
            v.push_str("; detail=stale-while-revalidate");
        }
        CachePhase::Stale => {
            v.push_str("; hit");
            push_ttl(&mut v, ttl);
            v.push_str("; detail=stale-if-error");
        }
        CachePhase::Miss | CachePhase::Expired => {
            v.push_str(if *phase == CachePhase::Miss {
                "; fwd=miss"
            } else {
                "; fwd=stale"
            });
            if stored {
                v.push_str("; stored");
            }
        }
        CachePhase::Revalidated => v.push_str("; fwd=stale; fwd-status=304; stored"),
        CachePhase::RevalidatedNoCache(_) => v.push_str("; fwd=stale; fwd-status=304"),
        CachePhase::Disabled(reason) if cacheable => {
            v.push_str("; fwd=miss; detail=");
            v.push_str(reason_detail(reason));
        }
        _ => v.push_str("; fwd=bypass"),
    }
    v
}

/// The `detail` of a request on a caching route sent past the cache because it has a `Cookie`.
pub const BYPASS_COOKIE: &str = "cookie";

/// The `Cache-Status` value of a request the cache was told not to handle, and why.
pub fn bypass(detail: &str) -> String {
    format!("{CACHE_NAME}; fwd=bypass; detail={detail}")
}

/// The `Cache-Status` value of a fresh hit that did not wait for anyone, written without
/// building a `String`: the same text `header_value` makes for `CachePhase::Hit`.
pub struct FreshHit {
    /// The stored response's freshness deadline.
    pub fresh_until: SystemTime,
    /// The time of serving.
    pub now: SystemTime,
}

impl std::fmt::Display for FreshHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ttl = ttl_secs(self.fresh_until, self.now);
        write!(f, "{CACHE_NAME}; hit; ttl={ttl}")
    }
}

fn push_ttl(v: &mut String, ttl: Option<i64>) {
    if let Some(ttl) = ttl {
        v.push_str("; ttl=");
        v.push_str(&ttl.to_string());
    }
}

/// Remaining freshness in whole seconds; negative once stale (RFC 9211 §2.3).
fn ttl_secs(until: SystemTime, now: SystemTime) -> i64 {
    match until.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn reason_detail(reason: &NoCacheReason) -> &'static str {
    match reason {
        NoCacheReason::Custom(r) => r,
        NoCacheReason::ResponseTooLarge | NoCacheReason::PredictedResponseTooLarge => "too-large",
        NoCacheReason::OriginNotCache => "no-store",
        NoCacheReason::StorageError => "storage-error",
        NoCacheReason::UpstreamError => "upstream-error",
        NoCacheReason::CacheLockTimeout => "lock-timeout",
        NoCacheReason::CacheLockGiveUp => "lock-give-up",
        _ => "not-stored",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hit_reports_remaining_ttl() {
        let until = SystemTime::now() + Duration::from_secs(100);
        let v = header_value(&CachePhase::Hit, true, Some(until), false, false);
        assert!(
            v.starts_with("knitcache; hit; ttl=") && !v.contains("collapsed"),
            "{v}"
        );
        let ttl: i64 = v
            .rsplit('=')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("ttl");
        assert!((98..=100).contains(&ttl), "{v}");
    }

    #[test]
    fn a_fresh_hit_written_directly_reads_as_the_header_value() {
        // Half a second past the whole seconds, so both clock readings give the same ttl.
        let until = SystemTime::now() + Duration::from_millis(42_500);
        let direct = FreshHit {
            fresh_until: until,
            now: SystemTime::now(),
        };
        assert_eq!(
            direct.to_string(),
            header_value(&CachePhase::Hit, true, Some(until), false, false)
        );
    }

    #[test]
    fn stale_reports_negative_ttl_and_why() {
        let until = SystemTime::now() - Duration::from_secs(50);
        let v = header_value(&CachePhase::Stale, true, Some(until), false, false);
        assert!(
            v.contains("ttl=-") && v.ends_with("detail=stale-if-error"),
            "{v}"
        );
    }

    #[test]
    fn miss_and_uncacheable_and_bypass() {
        assert_eq!(
            header_value(&CachePhase::Miss, true, None, false, false),
            "knitcache; fwd=miss",
            "a fill still under way is not yet stored"
        );
        assert_eq!(
            header_value(&CachePhase::Miss, true, None, false, true),
            "knitcache; fwd=miss; stored"
        );
        assert_eq!(
            header_value(&CachePhase::Expired, true, None, false, false),
            "knitcache; fwd=stale"
        );
        let off = CachePhase::Disabled(NoCacheReason::Custom("set-cookie"));
        assert_eq!(
            header_value(&off, true, None, false, false),
            "knitcache; fwd=miss; detail=set-cookie"
        );
        let never = CachePhase::Disabled(NoCacheReason::NeverEnabled);
        assert_eq!(
            header_value(&never, false, None, false, false),
            "knitcache; fwd=bypass"
        );
        assert_eq!(label(&never, false), "bypass");
        assert_eq!(label(&off, true), "uncacheable");
    }
}
