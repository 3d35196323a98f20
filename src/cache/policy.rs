//! Which responses are stored, and for how long: a route's `CachePolicy` applied to one
//! request and its response.
//!
//! Request-side safety holds in every mode: a response to a request with `Authorization` is
//! stored only when it says it may be shared (RFC 9111 §3.5), `Vary: *` is never stored,
//! `Set-Cookie` is refused or stripped as the route says, `no-store`/`private` are honoured
//! unless the route says its content is the same for everyone. Freshness comes from the route
//! (`Freshness::Route`: the ERP sends no caching headers) or from the origin, as RFC 9111 §4.2
//! computes it (`freshness`).
//!
//! Negative caching: under `Freshness::Route`, a status in the route's `error_statuses` is
//! stored with the route's `error_ttl` (the origin's lifetime under `honour`) and never with a
//! stale window, whether or not `statuses` lists it; `no-store` and `private` always keep such
//! a response out, `ignore_no_store` or not.

use std::time::{Duration, SystemTime};

use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};

use super::freshness::{self, Directives};
use super::variants::StoreHints;
use super::vary::Vary;
use crate::config::defaults::{HEURISTIC_STATUSES, MAX_ORIGIN_LIFETIME_SECS, UNDERSTOOD_STATUSES};
use crate::config::{CachePolicy, Freshness, OriginCacheControl, SetCookie, StoredStatuses};

/// Why a response on a caching route was not stored; shown in `Cache-Status` as `detail=`.
pub const REASON_STATUS: &str = "status";
/// The response set a cookie.
pub const REASON_SET_COOKIE: &str = "set-cookie";
/// The response said `no-store` or `private`.
pub const REASON_NO_STORE: &str = "no-store";
/// The response could never be served: not fresh, nothing to revalidate with, no stale window.
pub const REASON_NO_TTL: &str = "no-ttl";
/// The request carried `Authorization` and the response did not say it may be shared.
pub const REASON_AUTHORIZATION: &str = "authorization";
/// The response said `Vary: *`.
pub const REASON_VARY_STAR: &str = "vary-star";

/// One request and the response the origin gave it, with when it arrived.
pub struct Exchange<'a> {
    /// The client's request.
    pub req: &'a RequestHeader,
    /// The origin's response header (for a `304`, the stored header merged with it).
    pub resp: &'a ResponseHeader,
    /// When the response header arrived.
    pub received: SystemTime,
    /// From sending the request to receiving the response header.
    pub response_delay: Duration,
}

/// How long a stored response is fresh, counted from `epoch` (the instant its age was zero),
/// and how long after that it may be served stale.
struct Lifetime {
    epoch: SystemTime,
    fresh: Duration,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
}

impl Lifetime {
    /// Within `MAX_ORIGIN_LIFETIME_SECS` each, so that purge bans outlive every stored response.
    fn capped(self) -> Lifetime {
        let max = Duration::from_secs(MAX_ORIGIN_LIFETIME_SECS);
        Lifetime {
            epoch: self.epoch,
            fresh: self.fresh.min(max),
            stale_while_revalidate: self.stale_while_revalidate.min(max),
            stale_if_error: self.stale_if_error.min(max),
        }
    }
}

/// Decides whether the response in `ex` is stored under `policy`, and builds its metadata if so.
pub fn response_cacheability(policy: &CachePolicy, ex: &Exchange<'_>) -> RespCacheable {
    let resp = ex.resp;
    let d = freshness::directives(resp);
    if ex.req.headers.contains_key(http::header::AUTHORIZATION) && !d.allows_authorized() {
        return uncacheable(REASON_AUTHORIZATION);
    }
    if Vary::of(&resp.headers) == Vary::Star {
        return uncacheable(REASON_VARY_STAR);
    }
    let sets_cookie = resp.headers.contains_key(http::header::SET_COOKIE);
    if sets_cookie && policy.set_cookie == SetCookie::Refuse {
        return uncacheable(REASON_SET_COOKIE);
    }
    // RFC 9111 §5.2.2.3: "limits caching of the response to a cache that understands and
    // conforms to the requirements for that response's status code".
    if d.must_understand() && !UNDERSTOOD_STATUSES.contains(&resp.status.as_u16()) {
        return uncacheable(REASON_STATUS);
    }
    let error = policy.is_error_status(resp.status.as_u16());
    // `ignore_no_store` vouches for a route's content, not for its errors: an error the origin
    // marks `no-store` or `private` is never stored.
    if (!policy.ignore_no_store || error) && d.forbids_storing() {
        return uncacheable(REASON_NO_STORE);
    }
    let lifetime = match lifetime(policy, &d, ex) {
        Ok(l) if error => Lifetime {
            // Never a stale error: once its TTL is over, the origin is asked again, and an
            // origin failure is not answered with an old error.
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            ..l.capped()
        },
        Ok(l) => l.capped(),
        Err(reason) => return uncacheable(reason),
    };
    let fresh_until = lifetime.epoch + lifetime.fresh;
    let has_validators = resp.headers.contains_key(http::header::ETAG)
        || resp.headers.contains_key(http::header::LAST_MODIFIED);
    let useful = fresh_until > ex.received
        || has_validators
        || !lifetime.stale_while_revalidate.is_zero()
        || !lifetime.stale_if_error.is_zero();
    if !useful {
        return uncacheable(REASON_NO_TTL);
    }
    let mut stored = resp.clone();
    // Read above; clients never see knitcache's own targeted field (RFC 9213 §2), and a hit
    // written from the stored header must not either.
    stored.remove_header(freshness::KNITCACHE_CACHE_CONTROL);
    // Every use generates its own `Age` from the metadata's epoch (RFC 9111 §4).
    stored.remove_header(&http::header::AGE);
    if sets_cookie {
        // `SetCookie::Strip`: the client that caused the fill still gets its cookie, from the
        // origin's header; the stored copy is what everyone else gets.
        stored.remove_header(&http::header::SET_COOKIE);
    }
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let mut meta = CacheMeta::new(
        fresh_until,
        ex.received,
        secs(lifetime.stale_while_revalidate),
        secs(lifetime.stale_if_error),
        stored,
    );
    if lifetime.epoch != ex.received {
        // `Age` on every use counts from when the response was new, not from when it was stored.
        meta.set_epoch_override(lifetime.epoch);
    }
    meta.extensions_mut()
        .insert(store_hints(policy, resp.status.as_u16()));
    RespCacheable::Cacheable(meta)
}

/// What the storage must know of `policy` to store a response with `status`.
pub fn store_hints(policy: &CachePolicy, status: u16) -> StoreHints {
    StoreHints {
        // Not on a stored error: preconditions apply to 2xx responses only (RFC 9110 §13.2.1),
        // so a validator would invite 304s that say nothing.
        computed_etag: policy.freshness == Freshness::Route && !policy.is_error_status(status),
        max_variants: policy.max_variants,
    }
}

/// The response's lifetime under the route's freshness mode, or why it is not stored.
fn lifetime(
    policy: &CachePolicy,
    d: &Directives,
    ex: &Exchange<'_>,
) -> Result<Lifetime, &'static str> {
    let status = ex.resp.status.as_u16();
    if status == 206 || status == 304 || status < 200 {
        // Partial content would be served as the whole (ranges are answered from complete
        // stored responses, RFC 9111 §3.3); a 304 or an interim response has no body to store.
        return Err(REASON_STATUS);
    }
    // The error rule wins over `statuses` for the statuses it lists (404 is in the default
    // `statuses`, with the route's TTL): its own TTL, no stale windows (set by the caller).
    let error = policy.is_error_status(status);
    if error && policy.error_ttl.is_zero() {
        return Err(REASON_STATUS);
    }
    let listed = match &policy.statuses {
        StoredStatuses::Only(list) => Some(error || list.contains(&status)),
        StoredStatuses::Standard => None,
    };
    if listed == Some(false) {
        return Err(REASON_STATUS);
    }
    let route_ttl = if error { policy.error_ttl } else { policy.ttl };
    let route_windows = (policy.stale_while_revalidate, policy.stale_if_error);
    let explicit = || {
        if d.no_cache() {
            Some(Duration::ZERO)
        } else {
            d.explicit_lifetime(ex.resp, ex.received)
        }
    };
    let aged = || {
        let age = freshness::initial_age(ex.resp, ex.received, ex.response_delay);
        ex.received.checked_sub(age).unwrap_or(ex.received)
    };
    match (policy.freshness, policy.origin_cache_control) {
        (Freshness::Route, OriginCacheControl::Override) => Ok(Lifetime {
            epoch: ex.received,
            fresh: route_ttl,
            stale_while_revalidate: route_windows.0,
            stale_if_error: route_windows.1,
        }),
        (Freshness::Route, OriginCacheControl::Honour) => {
            let (epoch, fresh) = match explicit() {
                Some(fresh) => (aged(), fresh),
                None => (ex.received, route_ttl),
            };
            Ok(with_windows(d, epoch, fresh, route_windows))
        }
        (Freshness::Origin, _) => {
            let heuristic_status = HEURISTIC_STATUSES.contains(&status) || d.public();
            let fresh = match explicit() {
                Some(fresh) => fresh,
                // Only statuses known to be cacheable, or listed by the operator, are stored
                // without an explicit lifetime (RFC 9111 §3).
                None if heuristic_status || listed == Some(true) => policy
                    .heuristic
                    .as_ref()
                    .filter(|_| heuristic_status)
                    .and_then(|h| freshness::heuristic_lifetime(ex.resp, ex.received, h))
                    .unwrap_or(Duration::ZERO),
                None => return Err(REASON_STATUS),
            };
            Ok(with_windows(d, aged(), fresh, route_windows))
        }
    }
}

/// A lifetime whose stale windows are the origin's (RFC 5861) where it gave them, the route's
/// where it did not, and none where the origin forbids serving stale (RFC 9111 §4.2.4).
fn with_windows(
    d: &Directives,
    epoch: SystemTime,
    fresh: Duration,
    (route_swr, route_sie): (Duration, Duration),
) -> Lifetime {
    let (swr, sie) = if d.forbids_stale() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        let (swr, sie) = d.stale_windows();
        (swr.unwrap_or(route_swr), sie.unwrap_or(route_sie))
    };
    Lifetime {
        epoch,
        fresh,
        stale_while_revalidate: swr,
        stale_if_error: sie,
    }
}

fn uncacheable(reason: &'static str) -> RespCacheable {
    RespCacheable::Uncacheable(NoCacheReason::Custom(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Heuristic, QueryKey, RequestCookies};

    fn policy(freshness: Freshness, occ: OriginCacheControl) -> CachePolicy {
        CachePolicy {
            ttl: Duration::from_secs(180),
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(600),
            query: QueryKey::All,
            statuses: match freshness {
                Freshness::Route => StoredStatuses::Only(vec![200, 301, 308]),
                Freshness::Origin => StoredStatuses::Standard,
            },
            error_statuses: Vec::new(),
            error_ttl: Duration::from_secs(30),
            freshness,
            origin_cache_control: occ,
            ignore_no_store: false,
            request_cookies: RequestCookies::Bypass,
            set_cookie: SetCookie::Refuse,
            heuristic: Some(Heuristic {
                fraction: 0.1,
                max: Duration::from_secs(86_400),
            }),
            max_variants: 16,
        }
    }

    fn route() -> CachePolicy {
        policy(Freshness::Route, OriginCacheControl::Override)
    }

    fn origin() -> CachePolicy {
        policy(Freshness::Origin, OriginCacheControl::Override)
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("header");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    const NOW: u64 = 1_700_000_000;

    fn decide(p: &CachePolicy, rq: &RequestHeader, rs: &ResponseHeader) -> RespCacheable {
        let ex = Exchange {
            req: rq,
            resp: rs,
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
            response_delay: Duration::ZERO,
        };
        response_cacheability(p, &ex)
    }

    fn stored(p: &CachePolicy, headers: &[(&str, &str)]) -> CacheMeta {
        stored_with(p, &req(&[]), 200, headers)
    }

    fn stored_with(
        p: &CachePolicy,
        rq: &RequestHeader,
        status: u16,
        h: &[(&str, &str)],
    ) -> CacheMeta {
        match decide(p, rq, &resp(status, h)) {
            RespCacheable::Cacheable(meta) => meta,
            RespCacheable::Uncacheable(r) => panic!("expected cacheable, got {r:?}"),
        }
    }

    fn reason(
        p: &CachePolicy,
        rq: &RequestHeader,
        status: u16,
        h: &[(&str, &str)],
    ) -> &'static str {
        match decide(p, rq, &resp(status, h)) {
            RespCacheable::Uncacheable(NoCacheReason::Custom(r)) => r,
            RespCacheable::Uncacheable(r) => panic!("unexpected reason {r:?}"),
            RespCacheable::Cacheable(_) => panic!("expected uncacheable"),
        }
    }

    /// Seconds of freshness left at arrival (negative: stale on arrival).
    fn fresh_secs(meta: &CacheMeta) -> i64 {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
        match meta.fresh_until().duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    fn age_secs(meta: &CacheMeta) -> u64 {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
        now.duration_since(meta.epoch())
            .expect("epoch in the past")
            .as_secs()
    }

    fn stamp(offset: i64) -> String {
        httpdate::fmt_http_date(
            SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.saturating_add_signed(offset)),
        )
    }

    #[test]
    fn route_ttl_and_windows_apply_when_the_erp_says_nothing() {
        let meta = stored(&route(), &[]);
        assert_eq!(fresh_secs(&meta), 180);
        assert_eq!(meta.stale_while_revalidate_sec(), 30);
        assert_eq!(meta.stale_if_error_sec(), 600);
        assert_eq!(age_secs(&meta), 0);
    }

    #[test]
    fn statuses_outside_the_list_are_not_stored() {
        assert_eq!(reason(&route(), &req(&[]), 500, &[]), REASON_STATUS);
    }

    #[test]
    fn set_cookie_no_store_and_private_are_not_stored() {
        let p = route();
        let r = req(&[]);
        assert_eq!(
            reason(&p, &r, 200, &[("set-cookie", "a=b")]),
            REASON_SET_COOKIE
        );
        assert_eq!(
            reason(&p, &r, 200, &[("cache-control", "no-store")]),
            REASON_NO_STORE
        );
        assert_eq!(
            reason(&p, &r, 200, &[("cache-control", "private")]),
            REASON_NO_STORE
        );
    }

    #[test]
    fn ignore_no_store_stores_no_store_but_not_set_cookie() {
        let mut p = route();
        p.ignore_no_store = true;
        let h = [("cache-control", "no-cache, no-store, must-revalidate")];
        assert_eq!(fresh_secs(&stored(&p, &h)), 180);
        assert_eq!(
            reason(&p, &req(&[]), 200, &[("set-cookie", "a=b")]),
            REASON_SET_COOKIE
        );
    }

    #[test]
    fn strip_stores_the_response_without_its_cookie() {
        let mut p = route();
        p.set_cookie = SetCookie::Strip;
        let meta = stored(&p, &[("set-cookie", "a=b"), ("x-kept", "1")]);
        assert!(!meta.headers().contains_key("set-cookie"));
        assert!(meta.headers().contains_key("x-kept"));
    }

    #[test]
    fn authorization_needs_the_response_to_allow_sharing() {
        let alice = req(&[("authorization", "Bearer alice")]);
        for p in [route(), origin()] {
            let h = [("cache-control", "max-age=60")];
            assert_eq!(reason(&p, &alice, 200, &h), REASON_AUTHORIZATION);
            for cc in [
                "public, max-age=60",
                "s-maxage=60",
                "max-age=60, must-revalidate",
            ] {
                stored_with(&p, &alice, 200, &[("cache-control", cc)]);
            }
        }
        assert_eq!(reason(&route(), &alice, 200, &[]), REASON_AUTHORIZATION);
    }

    #[test]
    fn vary_star_is_never_stored() {
        for p in [route(), origin()] {
            let h = [("cache-control", "max-age=60"), ("vary", "origin, *")];
            assert_eq!(reason(&p, &req(&[]), 200, &h), REASON_VARY_STAR);
        }
    }

    #[test]
    fn honour_uses_the_origins_lifetime_minus_its_age() {
        let p = policy(Freshness::Route, OriginCacheControl::Honour);
        assert_eq!(
            fresh_secs(&stored(&p, &[("cache-control", "max-age=42")])),
            42
        );
        let h = [("cache-control", "s-maxage=7, max-age=42")];
        assert_eq!(fresh_secs(&stored(&p, &h)), 7);
        assert_eq!(fresh_secs(&stored(&p, &[])), 180, "no directive: route ttl");
        let meta = stored(&p, &[("cache-control", "max-age=3600"), ("age", "7200")]);
        assert_eq!(fresh_secs(&meta), -3600);
        assert_eq!(age_secs(&meta), 7200);
        let meta = stored(&p, &[("cache-control", "no-cache"), ("etag", "\"a\"")]);
        assert!(fresh_secs(&meta) <= 0, "no-cache: always revalidated");
    }

    #[test]
    fn override_ignores_origin_freshness() {
        let meta = stored(&route(), &[("cache-control", "max-age=5"), ("age", "100")]);
        assert_eq!(fresh_secs(&meta), 180);
        assert_eq!(
            meta.stale_if_error_sec(),
            600,
            "the ERP's route windows stay"
        );
    }

    #[test]
    fn origin_freshness_counts_age_and_date() {
        let p = origin();
        let meta = stored(&p, &[("cache-control", "max-age=3600"), ("age", "1800")]);
        assert_eq!(fresh_secs(&meta), 1800);
        assert_eq!(age_secs(&meta), 1800);
        let (date, expires) = (stamp(3600), stamp(1800));
        let h = [
            ("date", date.as_str()),
            ("expires", expires.as_str()),
            ("etag", "\"a\""),
        ];
        assert!(
            fresh_secs(&stored(&p, &h)) <= 0,
            "Expires before Date: stale"
        );
        let (date, expires) = (stamp(-100), stamp(500));
        let h = [("date", date.as_str()), ("expires", expires.as_str())];
        assert_eq!(fresh_secs(&stored(&p, &h)), 500);
    }

    #[test]
    fn origin_stale_windows_and_what_forbids_them() {
        let p = origin();
        let meta = stored(
            &p,
            &[("cache-control", "max-age=1, stale-while-revalidate=5")],
        );
        assert_eq!(meta.stale_while_revalidate_sec(), 5);
        assert_eq!(
            meta.stale_if_error_sec(),
            600,
            "the route's window where the origin is silent"
        );
        for cc in [
            "max-age=1, must-revalidate",
            "max-age=1, proxy-revalidate",
            "s-maxage=1",
            "no-cache, max-age=1, stale-if-error=60",
        ] {
            let mut h = vec![("cache-control", cc)];
            h.push(("etag", "\"a\""));
            let meta = stored(&p, &h);
            assert_eq!(meta.stale_while_revalidate_sec(), 0, "{cc}");
            assert_eq!(meta.stale_if_error_sec(), 0, "{cc}");
        }
    }

    #[test]
    fn origin_heuristics_need_last_modified_and_a_heuristic_status() {
        let p = origin();
        let (date, modified) = (stamp(0), stamp(-1000));
        let h = [
            ("date", date.as_str()),
            ("last-modified", modified.as_str()),
        ];
        assert_eq!(fresh_secs(&stored_with(&p, &req(&[]), 200, &h)), 100);
        assert_eq!(fresh_secs(&stored_with(&p, &req(&[]), 404, &h)), 100);
        assert_eq!(reason(&p, &req(&[]), 302, &h), REASON_STATUS);
        let public = [
            ("cache-control", "public"),
            ("date", &date),
            ("last-modified", &modified),
        ];
        assert_eq!(fresh_secs(&stored_with(&p, &req(&[]), 302, &public)), 100);
        let mut off = origin();
        off.heuristic = None;
        assert!(
            fresh_secs(&stored_with(&off, &req(&[]), 200, &h)) <= 0,
            "stored to revalidate"
        );
        let mut strict = origin();
        strict.stale_while_revalidate = Duration::ZERO;
        strict.stale_if_error = Duration::ZERO;
        assert_eq!(reason(&strict, &req(&[]), 200, &[]), REASON_NO_TTL);
        let meta = stored(&p, &[]);
        assert!(
            fresh_secs(&meta) <= 0,
            "route windows make it a stale fallback"
        );
        assert_eq!(meta.stale_if_error_sec(), 600);
    }

    #[test]
    fn origin_stores_any_status_with_explicit_freshness_unless_listed() {
        let p = origin();
        let h = [("cache-control", "max-age=60")];
        for status in [302, 418, 500] {
            assert_eq!(
                fresh_secs(&stored_with(&p, &req(&[]), status, &h)),
                60,
                "{status}"
            );
        }
        let partial = [
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 0-2/7"),
        ];
        assert_eq!(reason(&p, &req(&[]), 206, &partial), REASON_STATUS);
        let mut all = route();
        all.statuses = StoredStatuses::Only(vec![200, 206]);
        assert_eq!(
            reason(&all, &req(&[]), 206, &partial),
            REASON_STATUS,
            "even listed"
        );
        let mut listed = origin();
        listed.statuses = StoredStatuses::Only(vec![200]);
        assert_eq!(reason(&listed, &req(&[]), 302, &h), REASON_STATUS);
    }

    #[test]
    fn targeted_fields_decide_over_cache_control() {
        let p = origin();
        let h = [
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ];
        assert_eq!(fresh_secs(&stored(&p, &h)), 60);
        let h = [
            ("cache-control", "max-age=60"),
            ("knitcache-cache-control", "no-store"),
        ];
        assert_eq!(reason(&p, &req(&[]), 200, &h), REASON_NO_STORE);
    }

    #[test]
    fn origin_lifetimes_are_capped_so_bans_outlive_them() {
        let p = origin();
        let meta = stored(
            &p,
            &[(
                "cache-control",
                "max-age=999999999, stale-if-error=999999999",
            )],
        );
        let cap = MAX_ORIGIN_LIFETIME_SECS;
        assert_eq!(fresh_secs(&meta), cap as i64);
        assert_eq!(u64::from(meta.stale_if_error_sec()), cap);
        assert!(p.longest_retention() >= Duration::from_secs(2 * cap));
        let honour = policy(Freshness::Route, OriginCacheControl::Honour);
        assert!(honour.longest_retention() >= Duration::from_secs(2 * cap));
        assert_eq!(route().longest_retention(), Duration::from_secs(780));
    }

    #[test]
    fn partial_not_modified_and_interim_responses_are_never_stored() {
        let h = [("cache-control", "max-age=60")];
        let mut listed = route();
        listed.statuses = StoredStatuses::Only(vec![103, 200, 206, 304]);
        for p in [origin(), listed] {
            for status in [103, 206, 304] {
                assert_eq!(reason(&p, &req(&[]), status, &h), REASON_STATUS, "{status}");
            }
        }
    }

    #[test]
    fn the_storage_learns_the_routes_validator_and_variant_rules() {
        let hints = |p: &CachePolicy| {
            *stored(p, &[("cache-control", "max-age=60")])
                .extensions()
                .get::<StoreHints>()
                .expect("hints")
        };
        let mut p = route();
        p.max_variants = 3;
        let h = hints(&p);
        assert!(
            h.computed_etag,
            "the ERP sends no validator: one is computed"
        );
        assert_eq!(h.max_variants, 3);
        assert!(
            !hints(&origin()).computed_etag,
            "never a validator the miss lacked"
        );
    }

    #[test]
    fn knitcaches_own_field_is_not_stored() {
        let meta = stored(&origin(), &[("knitcache-cache-control", "max-age=60")]);
        assert_eq!(fresh_secs(&meta), 60);
        assert!(!meta.headers().contains_key("knitcache-cache-control"));
    }

    #[test]
    fn nothing_useful_is_not_stored() {
        let mut p = route();
        p.ttl = Duration::ZERO;
        p.stale_while_revalidate = Duration::ZERO;
        p.stale_if_error = Duration::ZERO;
        assert_eq!(reason(&p, &req(&[]), 200, &[]), REASON_NO_TTL);
        assert!(
            fresh_secs(&stored(&p, &[("etag", "\"v1\"")])) <= 0,
            "revalidated each use"
        );
        p.stale_if_error = Duration::from_secs(60);
        assert_eq!(
            stored(&p, &[]).stale_if_error_sec(),
            60,
            "ttl 0: a stale-if-error fallback"
        );
    }

    fn negative() -> CachePolicy {
        let mut p = route();
        p.statuses = StoredStatuses::Only(vec![200, 404]);
        p.error_statuses = vec![400, 404];
        p
    }

    #[test]
    fn error_statuses_are_stored_with_their_own_ttl_and_no_stale_windows() {
        let p = negative();
        for status in [400, 404] {
            let meta = stored_with(&p, &req(&[]), status, &[]);
            assert_eq!(
                fresh_secs(&meta),
                30,
                "{status}: the error TTL, not the route's"
            );
            assert_eq!(meta.stale_while_revalidate_sec(), 0, "{status}");
            assert_eq!(
                meta.stale_if_error_sec(),
                0,
                "{status}: never a stale error"
            );
            let hints = *meta.extensions().get::<StoreHints>().expect("hints");
            assert!(!hints.computed_etag, "{status}: no validator on an error");
        }
        assert_eq!(reason(&p, &req(&[]), 403, &[]), REASON_STATUS, "unlisted");
        let ok = stored(&p, &[]);
        assert_eq!(
            fresh_secs(&ok),
            180,
            "other statuses keep the route's rules"
        );
        assert_eq!(ok.stale_if_error_sec(), 600);
        let windows = [("cache-control", "max-age=5, stale-if-error=60")];
        let mut honour = negative();
        honour.origin_cache_control = OriginCacheControl::Honour;
        let meta = stored_with(&honour, &req(&[]), 400, &windows);
        assert_eq!(fresh_secs(&meta), 5, "honour: the origin's lifetime");
        assert_eq!(meta.stale_if_error_sec(), 0, "but never its stale window");
        assert_eq!(fresh_secs(&stored_with(&honour, &req(&[]), 400, &[])), 30);
        let meta = stored_with(&p, &req(&[]), 400, &windows);
        assert_eq!(fresh_secs(&meta), 30, "override: the error TTL");
        assert_eq!(meta.stale_if_error_sec(), 0);
    }

    #[test]
    fn error_ttl_zero_stores_no_listed_error() {
        let mut p = negative();
        p.error_ttl = Duration::ZERO;
        assert_eq!(reason(&p, &req(&[]), 400, &[]), REASON_STATUS);
        assert_eq!(
            reason(&p, &req(&[]), 404, &[]),
            REASON_STATUS,
            "the error rule wins over statuses"
        );
        assert_eq!(fresh_secs(&stored(&p, &[])), 180);
    }

    #[test]
    fn must_understand_stores_only_understood_statuses_and_lifts_only_no_store() {
        let p = origin();
        let lifted = [("cache-control", "must-understand, no-store, max-age=60")];
        assert_eq!(fresh_secs(&stored_with(&p, &req(&[]), 200, &lifted)), 60);
        assert_eq!(
            fresh_secs(&stored_with(&p, &req(&[]), 505, &lifted)),
            60,
            "the last of the list"
        );
        for status in [418, 299, 599] {
            let h = [("cache-control", "must-understand, max-age=60")];
            assert_eq!(reason(&p, &req(&[]), status, &h), REASON_STATUS, "{status}");
            // Without the directive the status's explicit freshness is enough (RFC 9111 §3).
            let plain = [("cache-control", "max-age=60")];
            assert_eq!(fresh_secs(&stored_with(&p, &req(&[]), status, &plain)), 60);
        }
        let private = [("cache-control", "must-understand, private, max-age=60")];
        assert_eq!(reason(&p, &req(&[]), 200, &private), REASON_NO_STORE);
        assert_eq!(reason(&route(), &req(&[]), 200, &private), REASON_NO_STORE);
    }

    #[test]
    fn no_store_and_private_keep_errors_out_even_with_ignore_no_store() {
        let mut p = negative();
        for ignore in [false, true] {
            p.ignore_no_store = ignore;
            for cc in ["no-store", "private"] {
                let h = [("cache-control", cc)];
                assert_eq!(
                    reason(&p, &req(&[]), 400, &h),
                    REASON_NO_STORE,
                    "{cc}, ignore_no_store {ignore}"
                );
            }
        }
        let h = [("cache-control", "no-store")];
        assert_eq!(
            fresh_secs(&stored(&p, &h)),
            180,
            "ignore_no_store still stores the route's content"
        );
    }

    #[test]
    fn error_statuses_do_not_apply_under_origin_freshness() {
        let mut p = origin();
        p.error_statuses = vec![400];
        assert_eq!(
            reason(&p, &req(&[]), 400, &[]),
            REASON_STATUS,
            "no explicit freshness, not heuristically cacheable"
        );
        let meta = stored_with(&p, &req(&[]), 400, &[("cache-control", "max-age=60")]);
        assert_eq!(fresh_secs(&meta), 60, "the origin's lifetime");
        assert_eq!(meta.stale_if_error_sec(), 600, "and the usual windows");
    }

    #[test]
    fn longest_retention_covers_a_longer_error_ttl() {
        let mut p = negative();
        assert_eq!(p.longest_retention(), Duration::from_secs(780));
        p.error_ttl = Duration::from_secs(3600);
        assert_eq!(p.longest_retention(), Duration::from_secs(3600));
        p.error_statuses.clear();
        assert_eq!(
            p.longest_retention(),
            Duration::from_secs(780),
            "no error stored"
        );
    }
}
