//! What a caching route stores and for how long: the `defaults:` section, a route's own caching
//! keys (TTL and stale windows, statuses, query key, origin cache control, `ignore_no_store`),
//! how a route's keys win over `defaults:`, and the cache keys a `cache: false` route must not
//! carry.

use std::time::Duration;

use http::Method;

use super::super::defaults::*;
use super::super::file::*;
use super::super::model::*;
use super::{Problems, last_key};

/// Longest TTL or stale window, in seconds (one year). Anything longer is taken as a unit slip.
const MAX_WINDOW_SECS: u64 = 365 * 24 * 3600;

/// The `defaults:` section; routes take from it what they do not set. Its problems are reported
/// once, here; an invalid list is `None`, so routes that inherit it build no policy.
pub(super) struct Inherited {
    ttl: u64,
    swr: u64,
    sie: u64,
    statuses: Option<Vec<u16>>,
    origin: OriginCacheControl,
    query: Option<QueryKey>,
}

pub(super) fn inherited(d: &FileDefaults, p: &mut Problems) -> Inherited {
    let windows = [
        ("ttl_secs", d.ttl_secs),
        ("stale_while_revalidate_secs", d.stale_while_revalidate_secs),
        ("stale_if_error_secs", d.stale_if_error_secs),
    ];
    for (key, value) in windows {
        window(value, &format!("defaults.{key}"), None, p);
    }
    let pair = Pair {
        ttl: (d.ttl_secs, true),
        swr: (d.stale_while_revalidate_secs, true),
        sie: (d.stale_if_error_secs, true),
    };
    pair.check("defaults", None, p);
    Inherited {
        ttl: d.ttl_secs,
        swr: d.stale_while_revalidate_secs,
        sie: d.stale_if_error_secs,
        statuses: statuses(&d.statuses, "defaults.statuses", None, p),
        origin: origin(d.origin_cache_control),
        query: query_key(&d.query_key, "defaults.query_key", None, p),
    }
}

fn origin(o: FileOriginCacheControl) -> OriginCacheControl {
    match o {
        FileOriginCacheControl::Honour => OriginCacheControl::Honour,
        FileOriginCacheControl::Override => OriginCacheControl::Override,
    }
}

/// A TTL or stale window must stay within a year; longer values are usually milliseconds
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

/// TTL and stale windows of one route (or of `defaults:`), each with whether the route itself
/// set it (`false`: inherited from `defaults:`).
struct Pair {
    ttl: (u64, bool),
    swr: (u64, bool),
    sie: (u64, bool),
}

impl Pair {
    /// TTL 0 means "always stale": that only makes sense as a stale-if-error fallback.
    fn check(&self, base: &str, route: Option<&str>, p: &mut Problems) -> bool {
        let from = |own: bool| if own { "" } else { " (from defaults)" };
        let (ttl, ttl_own) = self.ttl;
        let (swr, swr_own) = self.swr;
        let (sie, sie_own) = self.sie;
        if ttl != 0 {
            return true;
        }
        let path = format!("{base}.ttl_secs");
        if swr > 0 {
            let fix = if swr_own {
                "remove stale_while_revalidate_secs".to_owned()
            } else {
                "set stale_while_revalidate_secs: 0 on this route".to_owned()
            };
            let msg = format!(
                "ttl_secs = 0{} but stale_while_revalidate_secs = {swr}{}; set ttl_secs > 0 or \
                 {fix}",
                from(ttl_own),
                from(swr_own)
            );
            p.at(&path, route, msg);
            return false;
        }
        if sie == 0 {
            let msg = format!(
                "ttl_secs = 0{} and stale_if_error_secs = 0{}: nothing stored would ever be \
                 served; \
                 set ttl_secs > 0, or cache: false to pass the route through",
                from(ttl_own),
                from(sie_own)
            );
            p.at(&path, route, msg);
            return false;
        }
        true
    }
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
    let mut list = list.to_vec();
    list.sort_unstable();
    list.dedup();
    ok.then_some(list)
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
        ("origin_cache_control", r.origin_cache_control.is_some()),
        ("ignore_no_store", r.ignore_no_store.is_some()),
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
    ] {
        if let Some(v) = value {
            ok &= window(v, &format!("{base}.{key}"), name, p);
        }
    }
    let statuses = match &r.statuses {
        Some(list) => statuses(list, &format!("{base}.statuses"), name, p),
        None => d.statuses.clone(),
    };
    let query = match &r.query_key {
        Some(q) => query_key(q, &format!("{base}.query_key"), name, p),
        None => d.query.clone(),
    };
    let pair = Pair {
        ttl: (r.ttl_secs.unwrap_or(d.ttl), r.ttl_secs.is_some()),
        swr: (
            r.stale_while_revalidate_secs.unwrap_or(d.swr),
            r.stale_while_revalidate_secs.is_some(),
        ),
        sie: (
            r.stale_if_error_secs.unwrap_or(d.sie),
            r.stale_if_error_secs.is_some(),
        ),
    };
    // Pairs made only of inherited values were checked once, on `defaults:`.
    if pair.ttl.1 || pair.swr.1 || pair.sie.1 {
        ok &= pair.check(base, name, p);
    }
    if !ok {
        return None;
    }
    Some(CachePolicy {
        ttl: Duration::from_secs(pair.ttl.0),
        stale_while_revalidate: Duration::from_secs(pair.swr.0),
        stale_if_error: Duration::from_secs(pair.sie.0),
        query: query?,
        statuses: StoredStatuses::Only(statuses?),
        freshness: DEFAULT_FRESHNESS,
        origin_cache_control: r.origin_cache_control.map_or(d.origin, origin),
        ignore_no_store: r.ignore_no_store.unwrap_or(DEFAULT_IGNORE_NO_STORE),
        request_cookies: RequestCookies::Ignore,
        set_cookie: DEFAULT_SET_COOKIE,
        heuristic: Some(Heuristic {
            fraction: DEFAULT_HEURISTIC_PERCENT as f64 / 100.0,
            max: Duration::from_secs(DEFAULT_HEURISTIC_MAX_SECS),
        }),
        max_variants: DEFAULT_MAX_VARIANTS as usize,
    })
}
