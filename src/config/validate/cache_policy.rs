//! What a caching route stores and for how long: the `defaults:` section, a route's own caching
//! keys (freshness mode, TTL and stale windows, statuses, error statuses and their TTL, query
//! key, origin cache control, `ignore_no_store`, cookie handling, heuristics, variants), how a route's keys win over
//! `defaults:`, which keys contradict the route's freshness mode, and the cache keys a
//! `cache: false` route must not carry.

use std::time::Duration;

use http::Method;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::{Problems, last_key};

/// Longest TTL or stale window, in seconds (one year). Anything longer is taken as a unit slip.
const MAX_WINDOW_SECS: u64 = 365 * 24 * 3600;

/// Most stored variants of one URL a route may allow.
const MAX_VARIANTS: u64 = 1024;

/// The `defaults:` section; routes take from it what they do not set. Its problems are reported
/// once, here; an invalid value is `None`, so routes that inherit it build no policy.
pub(super) struct Inherited {
    ttl: u64,
    swr: u64,
    sie: u64,
    /// `Some(None)`: not written, so it depends on the route's freshness mode.
    statuses: Option<Option<Vec<u16>>>,
    error_statuses: Option<Vec<u16>>,
    error_ttl: u64,
    origin: OriginCacheControl,
    query: Option<QueryKey>,
    freshness: Freshness,
    request_cookies: RequestCookies,
    set_cookie: SetCookie,
    heuristic_percent: u64,
    heuristic_max: u64,
    heuristic_ok: bool,
    max_variants: Option<usize>,
}

pub(super) fn inherited(d: &FileDefaults, p: &mut Problems) -> Inherited {
    let windows = [
        ("ttl_secs", d.ttl_secs),
        ("stale_while_revalidate_secs", d.stale_while_revalidate_secs),
        ("stale_if_error_secs", d.stale_if_error_secs),
        ("error_ttl_secs", d.error_ttl_secs),
    ];
    for (key, value) in windows {
        window(value, &format!("defaults.{key}"), None, p);
    }
    let heuristic_ok = heuristic_valid(
        (d.heuristic_percent, true),
        (d.heuristic_max_secs, true),
        "defaults",
        None,
        p,
    );
    Inherited {
        ttl: d.ttl_secs,
        swr: d.stale_while_revalidate_secs,
        sie: d.stale_if_error_secs,
        statuses: match &d.statuses {
            None => Some(None),
            Some(list) => statuses(list, "defaults.statuses", None, p).map(Some),
        },
        error_statuses: error_statuses(&d.error_statuses, "defaults.error_statuses", None, p),
        error_ttl: d.error_ttl_secs,
        origin: origin(d.origin_cache_control),
        query: query_key(&d.query_key, "defaults.query_key", None, p),
        freshness: freshness(d.freshness),
        request_cookies: request_cookies(d.request_cookies),
        set_cookie: set_cookie(d.set_cookie),
        heuristic_percent: d.heuristic_percent,
        heuristic_max: d.heuristic_max_secs,
        heuristic_ok,
        max_variants: max_variants(d.max_variants, "defaults.max_variants", None, p),
    }
}

fn origin(o: FileOriginCacheControl) -> OriginCacheControl {
    match o {
        FileOriginCacheControl::Honour => OriginCacheControl::Honour,
        FileOriginCacheControl::Override => OriginCacheControl::Override,
    }
}

fn freshness(f: FileFreshness) -> Freshness {
    match f {
        FileFreshness::Route => Freshness::Route,
        FileFreshness::Origin => Freshness::Origin,
    }
}

fn request_cookies(c: FileRequestCookies) -> RequestCookies {
    match c {
        FileRequestCookies::Bypass => RequestCookies::Bypass,
        FileRequestCookies::Ignore => RequestCookies::Ignore,
    }
}

fn set_cookie(c: FileSetCookie) -> SetCookie {
    match c {
        FileSetCookie::Refuse => SetCookie::Refuse,
        FileSetCookie::Strip => SetCookie::Strip,
    }
}

/// `heuristic_percent` and `heuristic_max_secs` of `defaults:` or of one route, each with
/// whether it was written there (only those are reported: inherited ones were checked on
/// `defaults:`).
fn heuristic_valid(
    (percent, percent_own): (u64, bool),
    (max, max_own): (u64, bool),
    base: &str,
    route: Option<&str>,
    p: &mut Problems,
) -> bool {
    let mut ok = true;
    if percent_own && percent > 100 {
        let msg = format!(
            "heuristic_percent = {percent} is over 100; write the share of the time since \
             Last-Modified a response stays fresh, from 0 (no heuristic freshness) to 100, e.g. \
             heuristic_percent: {DEFAULT_HEURISTIC_PERCENT}"
        );
        p.at(&format!("{base}.heuristic_percent"), route, msg);
        ok = false;
    }
    if max_own {
        ok &= window(max, &format!("{base}.heuristic_max_secs"), route, p);
    }
    if ok && (percent_own || max_own) && percent > 0 && max == 0 {
        let msg = format!(
            "heuristic_max_secs = 0 makes every heuristic lifetime 0; write e.g. \
             heuristic_max_secs: {DEFAULT_HEURISTIC_MAX_SECS}, or heuristic_percent: 0 to turn \
             heuristic freshness off"
        );
        let key = if max_own {
            "heuristic_max_secs"
        } else {
            "heuristic_percent"
        };
        p.at(&format!("{base}.{key}"), route, msg);
        ok = false;
    }
    ok
}

/// Most variants of one URL: at least one (or nothing is stored), at most `MAX_VARIANTS`.
fn max_variants(n: u64, path: &str, route: Option<&str>, p: &mut Problems) -> Option<usize> {
    let problem = if n == 0 {
        format!(
            "max_variants = 0 would store no response at all; write from 1 to {MAX_VARIANTS}, \
             e.g. max_variants: {DEFAULT_MAX_VARIANTS}"
        )
    } else if n > MAX_VARIANTS {
        format!(
            "max_variants = {n} is over {MAX_VARIANTS}: one URL could crowd the rest out of the \
             cache; write at most {MAX_VARIANTS}, e.g. max_variants: {DEFAULT_MAX_VARIANTS}"
        )
    } else {
        return usize::try_from(n).ok();
    };
    p.at(path, route, problem);
    None
}

/// A TTL, stale window or heuristic bound must stay within a year; longer values are usually milliseconds
/// written into a `_secs` key.
fn window(secs: u64, path: &str, route: Option<&str>, p: &mut Problems) -> bool {
    if secs <= MAX_WINDOW_SECS {
        return true;
    }
    let key = last_key(path);
    let hint = if secs / 1000 <= MAX_WINDOW_SECS {
        format!("; if you meant milliseconds, write {key}: {}", secs / 1000)
    } else {
        String::new()
    };
    let msg = format!(
        "{key} = {secs} is more than a year ({MAX_WINDOW_SECS} s); durations here are in \
         seconds{hint}"
    );
    p.at(path, route, msg);
    false
}

fn statuses(list: &[u16], path: &str, route: Option<&str>, p: &mut Problems) -> Option<Vec<u16>> {
    if list.is_empty() {
        let msg = "statuses is empty, so nothing would be stored; list the statuses to store, e.g. \
                   [200, 301, 308], or set cache: false";
        p.at(path, route, msg.to_owned());
        return None;
    }
    let mut ok = true;
    for (j, s) in list.iter().enumerate() {
        if !(100..=599).contains(s) {
            let msg = format!(
                "{s} is not an HTTP status (100..=599); write a status code, e.g. 200 or 404"
            );
            p.at(&format!("{path}[{j}]"), route, msg);
            ok = false;
        }
    }
    ok.then(|| sorted_unique(list))
}

/// `list` sorted, without repeats.
fn sorted_unique(list: &[u16]) -> Vec<u16> {
    let mut list = list.to_vec();
    list.sort_unstable();
    list.dedup();
    list
}

/// The 4xx statuses stored under the error rule. 5xx are refused: an ERP failure is what
/// `stale_if_error_secs` is for (the last good copy), and a stored 5xx would outlive the outage.
fn error_statuses(
    list: &[u16],
    path: &str,
    route: Option<&str>,
    p: &mut Problems,
) -> Option<Vec<u16>> {
    let mut ok = true;
    for (j, s) in list.iter().enumerate() {
        let msg = if (500..=599).contains(s) {
            format!(
                "{s} is a server error, and error_statuses takes client errors (400..=499) only: \
                 when the ERP fails, stale_if_error_secs serves the last good copy instead of \
                 an error; remove {s}"
            )
        } else if !(400..=499).contains(s) {
            format!(
                "{s} is not a client error status; error_statuses takes 400..=499 only, e.g. \
                 error_statuses: [400, 404] (statuses decides which other responses are stored)"
            )
        } else {
            continue;
        };
        p.at(&format!("{path}[{j}]"), route, msg);
        ok = false;
    }
    ok.then(|| sorted_unique(list))
}

fn query_key(
    q: &FileQueryKey,
    path: &str,
    route: Option<&str>,
    p: &mut Problems,
) -> Option<QueryKey> {
    let (names, kind) = match q {
        FileQueryKey::All => return Some(QueryKey::All),
        FileQueryKey::Only(names) => (names, "only"),
        FileQueryKey::Ignore(names) => (names, "ignore"),
    };
    let mut ok = true;
    for (j, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.contains(['&', '=']) {
            let msg =
                format!("{name:?} is not a query parameter name; write the name alone, e.g. view");
            p.at(&format!("{path}.{kind}[{j}]"), route, msg);
            ok = false;
        }
    }
    let mut names = names.clone();
    names.sort_unstable();
    names.dedup();
    ok.then(|| {
        if kind == "only" {
            QueryKey::Only(names)
        } else {
            QueryKey::Ignore(names)
        }
    })
}

/// A `cache: false` route must not carry cache keys: they would silently do nothing.
pub(super) fn pass_only(r: &FileRoute, base: &str, name: Option<&str>, p: &mut Problems) -> bool {
    let set = [
        ("ttl_secs", r.ttl_secs.is_some()),
        (
            "stale_while_revalidate_secs",
            r.stale_while_revalidate_secs.is_some(),
        ),
        ("stale_if_error_secs", r.stale_if_error_secs.is_some()),
        ("query_key", r.query_key.is_some()),
        ("statuses", r.statuses.is_some()),
        ("error_statuses", r.error_statuses.is_some()),
        ("error_ttl_secs", r.error_ttl_secs.is_some()),
        ("origin_cache_control", r.origin_cache_control.is_some()),
        ("ignore_no_store", r.ignore_no_store.is_some()),
        ("freshness", r.freshness.is_some()),
        ("request_cookies", r.request_cookies.is_some()),
        ("set_cookie", r.set_cookie.is_some()),
        ("heuristic_percent", r.heuristic_percent.is_some()),
        ("heuristic_max_secs", r.heuristic_max_secs.is_some()),
        ("max_variants", r.max_variants.is_some()),
    ];
    let mut ok = true;
    for (key, is_set) in set {
        if is_set {
            let msg = format!(
                "{key} is set but the route has cache: false (pass-through), so it would do \
                 nothing; remove {key} or set cache: true"
            );
            p.at(&format!("{base}.{key}"), name, msg);
            ok = false;
        }
    }
    ok
}

pub(super) fn cache_policy(
    r: &FileRoute,
    base: &str,
    name: Option<&str>,
    methods: Option<&Vec<Method>>,
    d: &Inherited,
    p: &mut Problems,
) -> Option<CachePolicy> {
    let mut ok = true;
    if let Some(ms) = methods
        && !ms.contains(&Method::GET)
        && !ms.contains(&Method::HEAD)
    {
        let list: Vec<&str> = ms.iter().map(Method::as_str).collect();
        let msg = format!(
            "methods = [{}] on a caching route: only GET and HEAD are ever cached, so this route \
             caches nothing; set cache: false, or add GET",
            list.join(", ")
        );
        p.at(&format!("{base}.methods"), name, msg);
        ok = false;
    }
    for (key, value) in [
        ("ttl_secs", r.ttl_secs),
        ("stale_while_revalidate_secs", r.stale_while_revalidate_secs),
        ("stale_if_error_secs", r.stale_if_error_secs),
        ("error_ttl_secs", r.error_ttl_secs),
    ] {
        if let Some(v) = value {
            ok &= window(v, &format!("{base}.{key}"), name, p);
        }
    }
    let mode = r.freshness.map_or(d.freshness, freshness);
    let from = if r.freshness.is_some() {
        ""
    } else {
        " (from defaults)"
    };
    match mode {
        Freshness::Origin => {
            if r.ttl_secs.is_some() {
                let msg = format!(
                    "ttl_secs has no effect with freshness: origin{from}: the origin's \
                     Cache-Control/Expires (or heuristics) decide; remove ttl_secs, or set \
                     freshness: route"
                );
                p.at(&format!("{base}.ttl_secs"), name, msg);
                ok = false;
            }
            if r.origin_cache_control.is_some() {
                let msg = format!(
                    "origin_cache_control has no effect with freshness: origin{from}: the \
                     origin's Cache-Control/Expires (or heuristics) always decide; remove \
                     origin_cache_control, or set freshness: route"
                );
                p.at(&format!("{base}.origin_cache_control"), name, msg);
                ok = false;
            }
            for (key, set) in [
                ("error_statuses", r.error_statuses.is_some()),
                ("error_ttl_secs", r.error_ttl_secs.is_some()),
            ] {
                if set {
                    let msg = format!(
                        "{key} has no effect with freshness: origin{from}: the origin's \
                         Cache-Control/Expires decide whether an error is stored and for how \
                         long; remove {key}, or set freshness: route"
                    );
                    p.at(&format!("{base}.{key}"), name, msg);
                    ok = false;
                }
            }
        }
        Freshness::Route => {
            for (key, set) in [
                ("heuristic_percent", r.heuristic_percent.is_some()),
                ("heuristic_max_secs", r.heuristic_max_secs.is_some()),
            ] {
                if set {
                    let msg = format!(
                        "{key} only applies with freshness: origin; remove it or set freshness: \
                         origin"
                    );
                    p.at(&format!("{base}.{key}"), name, msg);
                    ok = false;
                }
            }
        }
    }
    let heuristic_percent = r.heuristic_percent.unwrap_or(d.heuristic_percent);
    let heuristic_max = r.heuristic_max_secs.unwrap_or(d.heuristic_max);
    let heuristic_ok = if mode == Freshness::Origin {
        heuristic_valid(
            (heuristic_percent, r.heuristic_percent.is_some()),
            (heuristic_max, r.heuristic_max_secs.is_some()),
            base,
            name,
            p,
        )
    } else {
        true
    };
    let statuses = match (&r.statuses, &d.statuses) {
        (Some(list), _) => {
            statuses(list, &format!("{base}.statuses"), name, p).map(StoredStatuses::Only)
        }
        (None, Some(Some(list))) => Some(StoredStatuses::Only(list.clone())),
        (None, Some(None)) => Some(match mode {
            Freshness::Route => StoredStatuses::Only(DEFAULT_STATUSES.to_vec()),
            Freshness::Origin => StoredStatuses::Standard,
        }),
        (None, None) => None,
    };
    let errors = match (mode, &r.error_statuses) {
        // The origin's headers decide; `defaults:` serves routes of both modes.
        (Freshness::Origin, _) => Some(Vec::new()),
        (Freshness::Route, Some(list)) => {
            error_statuses(list, &format!("{base}.error_statuses"), name, p)
        }
        (Freshness::Route, None) => d.error_statuses.clone(),
    };
    let error_ttl = match mode {
        Freshness::Origin => 0,
        Freshness::Route => r.error_ttl_secs.unwrap_or(d.error_ttl),
    };
    let query = match &r.query_key {
        Some(q) => query_key(q, &format!("{base}.query_key"), name, p),
        None => d.query.clone(),
    };
    let max_variants = match r.max_variants {
        Some(n) => max_variants(n, &format!("{base}.max_variants"), name, p),
        None => d.max_variants,
    };
    if !ok || !heuristic_ok || !d.heuristic_ok {
        return None;
    }
    let ttl = match mode {
        // The origin's headers decide; the route gives no lifetime of its own.
        Freshness::Origin => 0,
        Freshness::Route => r.ttl_secs.unwrap_or(d.ttl),
    };
    Some(CachePolicy {
        ttl: Duration::from_secs(ttl),
        stale_while_revalidate: Duration::from_secs(r.stale_while_revalidate_secs.unwrap_or(d.swr)),
        stale_if_error: Duration::from_secs(r.stale_if_error_secs.unwrap_or(d.sie)),
        query: query?,
        statuses: statuses?,
        error_statuses: errors?,
        error_ttl: Duration::from_secs(error_ttl),
        freshness: mode,
        origin_cache_control: r.origin_cache_control.map_or(d.origin, origin),
        ignore_no_store: r.ignore_no_store.unwrap_or(DEFAULT_IGNORE_NO_STORE),
        request_cookies: r.request_cookies.map_or(d.request_cookies, request_cookies),
        set_cookie: r.set_cookie.map_or(d.set_cookie, set_cookie),
        heuristic: (heuristic_percent > 0).then(|| Heuristic {
            fraction: heuristic_percent as f64 / 100.0,
            max: Duration::from_secs(heuristic_max),
        }),
        max_variants: max_variants?,
    })
}
