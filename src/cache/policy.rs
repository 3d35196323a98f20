//! Which ERP responses are stored, and for how long (a route's `CachePolicy` applied to one
//! response header).
//!
//! The ERP sends no caching headers, so the route's TTL normally decides. A response is never
//! stored when it sets a cookie or says `no-store`/`private` (unless the route explicitly says
//! its content is the same for everyone), or when its status is not in the route's list.

use std::time::{Duration, SystemTime};

use pingora_cache::cache_control::CacheControl;
use pingora_cache::filters::calculate_expires_header_time;
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;

use crate::config::{CachePolicy, OriginCacheControl, StoredStatuses};

/// Why a response on a caching route was not stored; shown in `Cache-Status` as `detail=`.
pub const REASON_STATUS: &str = "status";
/// The response set a cookie.
pub const REASON_SET_COOKIE: &str = "set-cookie";
/// The response said `no-store` or `private`.
pub const REASON_NO_STORE: &str = "no-store";
/// The response's freshness lifetime was zero.
pub const REASON_NO_TTL: &str = "no-ttl";

/// Decides whether `resp` is stored under `policy`, and builds its metadata if so.
pub fn response_cacheability(
    policy: &CachePolicy,
    resp: &ResponseHeader,
    now: SystemTime,
) -> RespCacheable {
    let listed = match &policy.statuses {
        StoredStatuses::Only(list) => list.contains(&resp.status.as_u16()),
        StoredStatuses::Standard => true,
    };
    if !listed {
        return uncacheable(REASON_STATUS);
    }
    let cc = CacheControl::from_resp_headers(resp);
    if !policy.ignore_no_store {
        if resp.headers.contains_key(http::header::SET_COOKIE) {
            return uncacheable(REASON_SET_COOKIE);
        }
        if cc.as_ref().is_some_and(|cc| cc.no_store() || cc.private()) {
            return uncacheable(REASON_NO_STORE);
        }
    }
    let ttl = match policy.origin_cache_control {
        OriginCacheControl::Override => policy.ttl,
        OriginCacheControl::Honour => origin_ttl(cc.as_ref(), resp, now).unwrap_or(policy.ttl),
    };
    if ttl.is_zero() {
        return uncacheable(REASON_NO_TTL);
    }
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    RespCacheable::Cacheable(CacheMeta::new(
        now + ttl,
        now,
        secs(policy.stale_while_revalidate),
        secs(policy.stale_if_error),
        resp.clone(),
    ))
}

/// The freshness the origin asked for, if it asked: `s-maxage`, `max-age`, `no-cache` (zero),
/// then `Expires`.
fn origin_ttl(
    cc: Option<&CacheControl>,
    resp: &ResponseHeader,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(cc) = cc {
        if cc.no_cache() {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = cc
            .s_maxage()
            .ok()
            .flatten()
            .or_else(|| cc.max_age().ok().flatten())
        {
            return Some(Duration::from_secs(u64::from(secs)));
        }
    }
    calculate_expires_header_time(resp).map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn uncacheable(reason: &'static str) -> RespCacheable {
    RespCacheable::Uncacheable(NoCacheReason::Custom(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueryKey;

    fn policy(occ: OriginCacheControl) -> CachePolicy {
        CachePolicy {
            ttl: Duration::from_secs(180),
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(600),
            query: QueryKey::All,
            statuses: vec![200, 301, 308],
            origin_cache_control: occ,
            ignore_no_store: false,
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("header");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    fn fresh_secs(c: RespCacheable, now: SystemTime) -> u64 {
        match c {
            RespCacheable::Cacheable(meta) => meta
                .fresh_until()
                .duration_since(now)
                .expect("future")
                .as_secs(),
            RespCacheable::Uncacheable(r) => panic!("expected cacheable, got {r:?}"),
        }
    }

    fn reason(c: RespCacheable) -> NoCacheReason {
        match c {
            RespCacheable::Uncacheable(r) => r,
            RespCacheable::Cacheable(_) => panic!("expected uncacheable"),
        }
    }

    #[test]
    fn route_ttl_applies_when_the_erp_says_nothing() {
        let now = SystemTime::now();
        let c = response_cacheability(&policy(OriginCacheControl::Override), &resp(200, &[]), now);
        assert_eq!(fresh_secs(c, now), 180);
    }

    #[test]
    fn stale_windows_come_from_the_route() {
        let now = SystemTime::now();
        match response_cacheability(&policy(OriginCacheControl::Override), &resp(200, &[]), now) {
            RespCacheable::Cacheable(meta) => {
                assert_eq!(meta.stale_while_revalidate_sec(), 30);
                assert_eq!(meta.stale_if_error_sec(), 600);
            }
            RespCacheable::Uncacheable(r) => panic!("{r:?}"),
        }
    }

    #[test]
    fn statuses_outside_the_list_are_not_stored() {
        let c = response_cacheability(
            &policy(OriginCacheControl::Override),
            &resp(500, &[]),
            SystemTime::now(),
        );
        assert_eq!(reason(c), NoCacheReason::Custom(REASON_STATUS));
    }

    #[test]
    fn set_cookie_and_no_store_are_never_stored() {
        let p = policy(OriginCacheControl::Override);
        let now = SystemTime::now();
        let c = response_cacheability(&p, &resp(200, &[("set-cookie", "a=b")]), now);
        assert_eq!(reason(c), NoCacheReason::Custom(REASON_SET_COOKIE));
        let c = response_cacheability(&p, &resp(200, &[("cache-control", "no-store")]), now);
        assert_eq!(reason(c), NoCacheReason::Custom(REASON_NO_STORE));
        let c = response_cacheability(&p, &resp(200, &[("cache-control", "private")]), now);
        assert_eq!(reason(c), NoCacheReason::Custom(REASON_NO_STORE));
    }

    #[test]
    fn explicit_override_stores_no_store_responses() {
        let mut p = policy(OriginCacheControl::Override);
        p.ignore_no_store = true;
        let now = SystemTime::now();
        let h = [("cache-control", "no-cache, no-store, must-revalidate")];
        assert_eq!(
            fresh_secs(response_cacheability(&p, &resp(200, &h), now), now),
            180
        );
    }

    #[test]
    fn honour_uses_origin_max_age() {
        let p = policy(OriginCacheControl::Honour);
        let now = SystemTime::now();
        let c = response_cacheability(&p, &resp(200, &[("cache-control", "max-age=42")]), now);
        assert_eq!(fresh_secs(c, now), 42);
        let c = response_cacheability(
            &p,
            &resp(200, &[("cache-control", "s-maxage=7, max-age=42")]),
            now,
        );
        assert_eq!(fresh_secs(c, now), 7);
        let c = response_cacheability(&p, &resp(200, &[]), now);
        assert_eq!(fresh_secs(c, now), 180, "no origin directive: route ttl");
        let c = response_cacheability(&p, &resp(200, &[("cache-control", "no-cache")]), now);
        assert_eq!(reason(c), NoCacheReason::Custom(REASON_NO_TTL));
    }

    #[test]
    fn override_ignores_origin_max_age() {
        let p = policy(OriginCacheControl::Override);
        let now = SystemTime::now();
        let c = response_cacheability(&p, &resp(200, &[("cache-control", "max-age=5")]), now);
        assert_eq!(fresh_secs(c, now), 180);
    }
}
