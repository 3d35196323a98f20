//! Request statistics for `/stats`, the dashboard and `knitcache report`: per-route counters and
//! latency percentiles, and the hottest cache keys. Prometheus metrics are separate
//! (`metrics.rs`); these are what a person reads.
//!
//! Recording is cheap and lock-light: per-route state is created once at startup (the configured
//! routes plus the catch-all), counters are atomics, each route's histograms sit behind the
//! route's own short mutex, and hot keys go to a sharded bounded summary (`crate::topk`). No lock is
//! shared by all requests, and nothing grows with traffic.
//!
//! * `latency` hit / miss / ERP percentiles since start and over a recent window
//! * `doc`     the `/stats` JSON document, shared with `knitcache report`

pub mod doc;
pub mod latency;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Config;
use crate::proxy::CATCH_ALL_ROUTE;
use crate::topk::TopK;
use doc::{HotKey, RouteDoc, SlowRoute};
use latency::{Aggregate, Latencies, Served};

/// Length of the recent window the dashboard shows.
pub const RECENT_WINDOW: Duration = Duration::from_secs(60);
/// Hot keys tracked: 32 per shard.
const HOT_KEY_CAPACITY: usize = 32 * HOT_KEY_SHARDS;
/// Independently locked parts of the hot-key summary: a power of two, a little above the
/// proxy's worker count, so concurrent requests rarely meet on one lock.
const HOT_KEY_SHARDS: usize = 8;
/// Hot keys listed in `/stats`.
pub const HOT_KEYS_SHOWN: usize = 20;
/// Slowest routes listed in `/stats`.
pub const SLOWEST_SHOWN: usize = 10;

/// One finished request, as the statistics see it.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Index of the matched route in the config the request ran under.
    pub route: Option<usize>,
    /// The route's name (`unmatched` for the catch-all).
    pub route_name: &'a str,
    /// The cache result label (`hit`, `stale`, `miss`, `expired`, `bypass`, ...).
    pub cache: &'a str,
    /// Whether the request was cacheable (GET/HEAD on a caching route).
    pub cacheable: bool,
    /// Time from request to response end.
    pub total: Duration,
    /// The ERP's time, if the ERP was asked.
    pub upstream: Option<Duration>,
    /// Whether the ERP failed (refused connect, timed out, 5xx, ...).
    pub upstream_error: bool,
    /// Whether the proxy refused the request itself (`503` with `Retry-After`: a breaker open,
    /// the ERP's queue full or timed out) and had no stale copy to serve.
    pub refused: bool,
    /// Whether the request waited for another request's fill.
    pub coalesced: bool,
    /// Response body bytes sent to the client.
    pub bytes: u64,
}

/// Counters and histograms of one route.
struct RouteStats {
    name: String,
    kind: &'static str,
    requests: AtomicU64,
    hits: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    upstream_errors: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
    latencies: Mutex<Latencies>,
}

impl RouteStats {
    fn new(name: &str, kind: &'static str) -> Self {
        RouteStats {
            name: name.to_owned(),
            kind,
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            latencies: Mutex::new(Latencies::new(RECENT_WINDOW)),
        }
    }
}

/// The statistics of one proxy.
pub struct Stats {
    started: Instant,
    /// Configured routes in config order, then the catch-all.
    routes: Vec<RouteStats>,
    /// Keyed by the cache key's hash; the value is the key's label and route.
    hot: TopK<u128, (String, String)>,
}

impl Stats {
    /// Per-route state for every route of `config`, plus the catch-all.
    pub fn new(config: &Config) -> Self {
        let mut routes: Vec<RouteStats> = config
            .routes
            .iter()
            .map(|r| {
                let kind = if r.cache_policy().is_some() {
                    "cache"
                } else {
                    "pass"
                };
                RouteStats::new(&r.name, kind)
            })
            .collect();
        routes.push(RouteStats::new(CATCH_ALL_ROUTE, "unmatched"));
        Stats {
            started: Instant::now(),
            routes,
            hot: TopK::new(HOT_KEY_CAPACITY, HOT_KEY_SHARDS),
        }
    }

    /// Time since the statistics began.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The state of a route: by index when the names agree (the common case), by name after a
    /// configuration change, else the catch-all.
    fn route(&self, index: Option<usize>, name: &str) -> &RouteStats {
        let last = self.routes.len() - 1;
        if let Some(r) = index.and_then(|i| self.routes[..last].get(i))
            && r.name == name
        {
            return r;
        }
        self.routes
            .iter()
            .find(|r| r.name == name)
            .unwrap_or(&self.routes[last])
    }

    /// Records one finished request.
    pub fn record(&self, o: &Observation<'_>) {
        let r = self.route(o.route, o.route_name);
        r.requests.fetch_add(1, Ordering::Relaxed);
        r.bytes.fetch_add(o.bytes, Ordering::Relaxed);
        let served = match o.cache {
            "hit" => Served::Hit,
            "stale" => {
                r.stale.fetch_add(1, Ordering::Relaxed);
                Served::Hit
            }
            _ => Served::Miss,
        };
        if o.cacheable {
            let counter = match served {
                Served::Hit => &r.hits,
                Served::Miss => &r.misses,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if o.coalesced {
            r.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        if o.upstream_error {
            r.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
        if o.refused {
            r.refused.fetch_add(1, Ordering::Relaxed);
        }
        let at = self.started.elapsed();
        r.latencies.lock().record(at, served, o.total, o.upstream);
    }

    /// Counts one request for the cache key hashed `hash`; `describe` names it (called only when
    /// the key starts being tracked).
    pub fn record_key(&self, hash: u128, describe: impl FnOnce() -> (String, String)) {
        self.hot.record(hash, describe, |_| true);
    }

    /// Every route (configured order, catch-all last) and all routes together.
    pub fn routes(&self) -> (Vec<RouteDoc>, RouteDoc) {
        let at = self.started.elapsed();
        let mut all = Aggregate::default();
        let mut total = RouteDoc {
            name: "all".to_owned(),
            kind: "all".to_owned(),
            ..RouteDoc::default()
        };
        let docs = self
            .routes
            .iter()
            .map(|r| {
                let mut lat = r.latencies.lock();
                let mut doc = RouteDoc {
                    name: r.name.clone(),
                    kind: r.kind.to_owned(),
                    requests: r.requests.load(Ordering::Relaxed),
                    hits: r.hits.load(Ordering::Relaxed),
                    stale: r.stale.load(Ordering::Relaxed),
                    misses: r.misses.load(Ordering::Relaxed),
                    coalesced: r.coalesced.load(Ordering::Relaxed),
                    upstream_errors: r.upstream_errors.load(Ordering::Relaxed),
                    // Not in an `Observation`: `/stats` fills it from the request counters.
                    responses_5xx: None,
                    refused: Some(r.refused.load(Ordering::Relaxed)),
                    bytes_sent: r.bytes.load(Ordering::Relaxed),
                    hit_ratio: None,
                    latency: lat.since_start(),
                    recent: lat.recent(at),
                };
                lat.add_to(at, &mut all);
                doc.hit_ratio = ratio(doc.hits, doc.misses);
                total.requests += doc.requests;
                total.hits += doc.hits;
                total.stale += doc.stale;
                total.misses += doc.misses;
                total.coalesced += doc.coalesced;
                total.upstream_errors += doc.upstream_errors;
                total.refused = Some(total.refused.unwrap_or(0) + doc.refused.unwrap_or(0));
                total.bytes_sent += doc.bytes_sent;
                doc
            })
            .collect();
        total.hit_ratio = ratio(total.hits, total.misses);
        total.latency = all.since_start();
        total.recent = all.recent();
        (docs, total)
    }

    /// The hottest keys, hottest first.
    pub fn hot_keys(&self) -> Vec<HotKey> {
        let mut top = self.hot.top(usize::MAX);
        // Ties in a stable order, so that two reads of an idle proxy list the same keys.
        top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        top.truncate(HOT_KEYS_SHOWN);
        top.into_iter()
            .map(|c| HotKey {
                key: c.value.0,
                route: c.value.1,
                count: c.count,
                error: c.error,
            })
            .collect()
    }
}

/// The slowest routes by the p95 of all their requests since start (routes without traffic left
/// out).
pub fn slowest(routes: &[RouteDoc]) -> Vec<SlowRoute> {
    let mut slow: Vec<SlowRoute> = routes
        .iter()
        .filter(|r| r.requests > 0)
        .map(|r| SlowRoute {
            route: r.name.clone(),
            requests: r.requests,
            p95_ms: r.latency.all.p95_ms,
            p99_ms: r.latency.all.p99_ms,
        })
        .collect();
    slow.sort_by(|a, b| b.p95_ms.total_cmp(&a.p95_ms));
    slow.truncate(SLOWEST_SHOWN);
    slow
}

/// The p95 and p99 a client of this route sees, hits and misses together: the larger of the two
/// classes' values (an upper bound; exact merging needs the histograms).
pub fn worst(r: &RouteDoc) -> (f64, f64) {
    let l = &r.latency;
    (
        l.hit.p95_ms.max(l.miss.p95_ms),
        l.hit.p99_ms.max(l.miss.p99_ms),
    )
}

fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let n = hits + misses;
    (n > 0).then(|| hits as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "upstream: { address: \"127.0.0.1:5007\" }\nroutes:\n  - name: kpis\n    exact: /k\n  \
             - name: reload\n    exact: /r\n    cache: false\n",
            "t.yaml",
        )
        .expect("config")
    }

    fn obs<'a>(route: Option<usize>, name: &'a str, cache: &'a str, ms: u64) -> Observation<'a> {
        Observation {
            route,
            route_name: name,
            cache,
            cacheable: cache != "bypass",
            total: Duration::from_millis(ms),
            upstream: (cache != "hit").then(|| Duration::from_millis(ms)),
            upstream_error: false,
            refused: false,
            coalesced: false,
            bytes: 100,
        }
    }

    #[test]
    fn routes_count_hits_misses_and_the_catch_all() {
        let s = Stats::new(&config());
        s.record(&obs(Some(0), "kpis", "miss", 50));
        for _ in 0..3 {
            s.record(&obs(Some(0), "kpis", "hit", 1));
        }
        s.record(&obs(Some(1), "reload", "bypass", 20));
        s.record(&obs(None, "unmatched", "bypass", 5));
        // A route index from a replaced config whose name no longer matches: found by name.
        s.record(&obs(Some(7), "kpis", "hit", 1));
        let (routes, all) = s.routes();
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["kpis", "reload", "unmatched"]);
        let kpis = &routes[0];
        assert_eq!((kpis.requests, kpis.hits, kpis.misses), (5, 4, 1));
        assert_eq!(kpis.hit_ratio, Some(0.8));
        assert_eq!(kpis.latency.hit.count, 4);
        assert_eq!(kpis.recent.miss.count, 1);
        assert_eq!(
            routes[1].hit_ratio, None,
            "a pass-through route has no hit ratio"
        );
        assert_eq!(routes[2].requests, 1);
        assert_eq!((all.requests, all.bytes_sent), (7, 700));
        assert_eq!(all.latency.hit.count + all.latency.miss.count, 7);
        let slow = slowest(&routes);
        assert_eq!(slow[0].route, "kpis", "{slow:?}");
    }
}
