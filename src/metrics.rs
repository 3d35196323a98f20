//! The proxy's Prometheus metrics: one registry per proxy instance, every name in this file.
//!
//! The registry is owned here, not the process-global default one, so several proxies can
//! live in one process (the tests) and foyer's metrics (through mixtrics) land beside ours
//! with one `prometheus` version in the tree. Labels are bounded: route names come from the
//! config plus the catch-all, methods and statuses are folded into small fixed sets, cache
//! results and error kinds are fixed words. Every configured route has series from startup.
//!
//! Gauges that describe state rather than events (RSS, tier sizes, bans) are refreshed by the
//! admin listener just before each scrape ([`Metrics::refresh`]), so no sampler thread is needed.

use std::time::{Duration, SystemTime};

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Latency buckets in seconds: from a sub-millisecond hit to the ERP's 7 s cold forecast.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Kinds of upstream failure, the values of the `kind` label.
pub const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "timeout", "5xx", "other"];

/// The `reason` label of `knitcache_refusals_total`: the proxy's own answers in place of the
/// ERP's (`limits::refusal_reason` names the first four).
pub const REFUSAL_REASONS: [&str; 7] = [
    "breaker_open",
    "route_breaker_open",
    "queue_full",
    "queue_timeout",
    "rate_limited",
    REFUSED_ACCESS,
    AUTH_UNAVAILABLE,
];

/// The refusal reason of a request an access policy refused (`access`).
pub const REFUSED_ACCESS: &str = "access_denied";

/// The refusal reason of a request whose forward-auth service could not be asked (`503`).
pub const AUTH_UNAVAILABLE: &str = "auth_unavailable";

/// How a fresh hit was written: the `path` label of `knitcache_cache_hits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitPath {
    /// From the memory tier, header and body straight to the client's socket in one write.
    Direct,
    /// From the memory tier through pingora's response writer: `304`s, TLS, HTTP/2, a request
    /// with a body, a coding derived from another's copy.
    Writer,
    /// Through pingora-cache's own hit path: ranges, entries only on disk, entries the memory
    /// tier holds without a parsed header.
    Pingora,
}

impl HitPath {
    /// Every path, in the order of `Metrics::hits`.
    pub const ALL: [HitPath; 3] = [HitPath::Direct, HitPath::Writer, HitPath::Pingora];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            HitPath::Direct => "direct",
            HitPath::Writer => "writer",
            HitPath::Pingora => "pingora",
        }
    }
}

/// The metric families of one proxy.
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    upstream_seconds: HistogramVec,
    upstream_errors: IntCounterVec,
    client_aborts: IntCounterVec,
    client_refusals: IntCounterVec,
    /// Client connections open right now.
    pub client_connections: IntGauge,
    derived: IntCounterVec,
    /// `knitcache_cache_hits_total`'s series, resolved once: a hit pays no label lookup.
    hits: [prometheus::IntCounter; 3],
    refusals: IntCounterVec,
    access: IntCounterVec,
    lookups: IntCounterVec,
    coalesced: IntCounterVec,
    fills: IntCounterVec,
    /// Downstream requests being served right now.
    pub in_flight: IntGauge,
    upstream_up: IntGauge,
    probe_seconds: Gauge,
    probes: IntCounterVec,
    purges: IntCounterVec,
    bans: IntGauge,
    sealed_bodies: IntGauge,
    rss_bytes: IntGauge,
    rss_budget_bytes: IntGauge,
    tier_bytes: IntGaugeVec,
    tier_entries: IntGaugeVec,
    tier_capacity_bytes: IntGaugeVec,
}

/// `knitcache_access_log_dropped_total`. The count is the process's log sink's (the log is
/// shared by every proxy in the process); each scrape brings this counter up to it.
struct LogDropped {
    counter: prometheus::IntCounter,
    one_at_a_time: parking_lot::Mutex<()>,
}

impl prometheus::core::Collector for LogDropped {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let _scrape = self.one_at_a_time.lock();
        let (now, seen) = (crate::telemetry::dropped_lines(), self.counter.get());
        if now > seen {
            self.counter.inc_by(now - seen);
        }
        self.counter.collect()
    }
}

/// State sampled just before a scrape.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Resident set size of the process, in bytes.
    pub rss_bytes: u64,
    /// Bytes held by the memory tier.
    pub memory_bytes: u64,
    /// Entries in the memory tier.
    pub memory_entries: u64,
    /// Bytes of the disk tier in use (whole blocks), if there is a disk tier.
    pub disk_bytes: Option<u64>,
    /// Active purge bans.
    pub bans: u64,
    /// Stored bodies kept in sealed memory files (`cache::sealed_body`).
    pub sealed_bodies: u64,
}

impl Metrics {
    /// Creates the registry and registers every family. `routes` are the configured route
    /// names: their series exist from startup, before any traffic.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a str>) -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };

        let requests = counter(
            "knitcache_requests_total",
            "Requests by route, method, status class and cache result",
            &["route", "method", "status", "cache"],
        )?;
        let request_seconds = histogram(
            "knitcache_request_duration_seconds",
            "Time from request to response end, by route and cache result",
            &["route", "cache"],
        )?;
        let upstream_seconds = histogram(
            "knitcache_upstream_duration_seconds",
            "Time the ERP took to answer (until its response header), by route and cache result",
            &["route", "cache"],
        )?;
        let upstream_errors = counter(
            "knitcache_upstream_errors_total",
            "Failed ERP requests by route and kind (connect, timeout, 5xx, other)",
            &["route", "kind"],
        )?;
        let client_aborts = counter(
            "knitcache_client_aborts_total",
            "Requests whose client went away (or broke the connection) before the response was \
             complete, by route: not failures of knitcache or the ERP",
            &["route"],
        )?;
        let client_refusals = counter(
            "knitcache_client_refusals_total",
            "Requests and connections refused over a client limit (clients.*), by reason: \
             header_timeout, body_timeout, uri_too_long, header_too_large, too_many_headers, \
             body_too_large, bad_framing, too_many_connections",
            &["reason"],
        )?;
        let client_connections = gauge(
            "knitcache_client_connections",
            "Client connections open on the proxy port right now",
        )?;
        let refusals = counter(
            "knitcache_refusals_total",
            "Requests the proxy answered itself instead of sending them to the ERP, because a \
             limit refused them (503 for a breaker or the ERP queue, 429 for a rate limit) or an \
             access policy did (access_denied; auth_unavailable when its forward-auth service failed), by route and reason; \
             never counted as ERP errors",
            &["route", "reason"],
        )?;
        let access = counter(
            "knitcache_access_total",
            "Access decisions by route, rule (address, basic, forward) and result (allowed, \
             refused, unavailable: the forward-auth service failed); a request \
             is counted once per rule its route's policy applies",
            &["route", "rule", "result"],
        )?;
        let derived = counter(
            "knitcache_cache_derived_total",
            "Requests answered in a coding the cache did not hold, made from another coding's \
             fresh copy instead of asking the ERP, by route",
            &["route"],
        )?;
        let fills = counter(
            "knitcache_cache_fills_total",
            "Misses whose response was being stored as it streamed to the client, by route and \
             how the fill ended: stored, or not stored (purged: complete, but its URL was \
             purged after the response came; truncated: the ERP's body ended early or failed; \
             too_large: over cache.max_object_bytes; storage_error; client_abort; other)",
            &["route", "outcome"],
        )?;
        let hits_by_path = counter(
            "knitcache_cache_hits_total",
            "Fresh hits (the requests counted with cache=\"hit\") by how they were written: \
             direct (from the memory tier straight to the client's socket), writer (from the \
             memory tier through pingora's response writer: 304s, TLS, HTTP/2, derived codings) \
             or pingora (pingora-cache's hit path: ranges, entries only on disk)",
            &["path"],
        )?;
        let hits = HitPath::ALL.map(|p| hits_by_path.with_label_values(&[p.label()]));
        let lookups = counter(
            "knitcache_cache_lookups_total",
            "Cacheable requests by route and cache result (hit, stale, miss, expired, ...)",
            &["route", "result"],
        )?;
        let coalesced = counter(
            "knitcache_cache_coalesced_total",
            "Requests that waited for another request's fill of the same key, by route",
            &["route"],
        )?;
        let in_flight = gauge(
            "knitcache_downstream_requests_in_flight",
            "Client requests being served right now",
        )?;
        let upstream_up = gauge(
            "knitcache_upstream_up",
            "1 if the ERP answered its last health probe, else 0",
        )?;
        let probe_seconds = Gauge::new(
            "knitcache_upstream_health_probe_duration_seconds",
            "How long the last ERP health probe took",
        )?;
        registry.register(Box::new(probe_seconds.clone()))?;
        let probes = counter(
            "knitcache_upstream_health_probes_total",
            "ERP health probes by result (ok, failed)",
            &["result"],
        )?;
        let purges = counter(
            "knitcache_purges_total",
            "Purges through the admin API by kind (url, prefix, route, tag)",
            &["kind"],
        )?;
        let bans = gauge(
            "knitcache_cache_bans",
            "Bans in force: prefix, route and tag purges and invalidation rules (stored responses older than them are misses)",
        )?;
        let sealed_bodies = gauge(
            "knitcache_cache_sealed_bodies",
            "Stored bodies kept in sealed memory files, sent without a copy (one open file each, at most half of the open-file limit)",
        )?;
        let rss_bytes = gauge(
            "knitcache_process_resident_memory_bytes",
            "Resident set size of the knitcache process",
        )?;
        let rss_budget_bytes = gauge(
            "knitcache_process_memory_budget_bytes",
            "The RSS the process should stay under: the memory tier plus 64 MiB",
        )?;
        let tier_bytes = gauge_vec(
            "knitcache_cache_bytes",
            "Bytes held by each cache tier (disk: whole blocks in use)",
            &["tier"],
        )?;
        let tier_entries = gauge_vec(
            "knitcache_cache_entries",
            "Entries held by the memory tier",
            &["tier"],
        )?;
        let tier_capacity_bytes = gauge_vec(
            "knitcache_cache_capacity_bytes",
            "Configured size of each cache tier",
            &["tier"],
        )?;
        let start = gauge(
            "knitcache_start_time_seconds",
            "Start time of the process since the unix epoch",
        )?;
        start.set(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
        registry.register(Box::new(LogDropped {
            counter: prometheus::IntCounter::new(
                "knitcache_access_log_dropped_total",
                "Log lines (access lines, and any other) dropped because stderr did not keep up \
                 or failed: the proxy never waits for its log",
            )?,
            one_at_a_time: parking_lot::Mutex::new(()),
        }))?;
        let build = IntGaugeVec::new(
            Opts::new("knitcache_build_info", "Always 1; the version in a label"),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        for route in routes.into_iter().chain([crate::proxy::CATCH_ALL_ROUTE]) {
            for cache in ["hit", "miss"] {
                request_seconds.with_label_values(&[route, cache]);
                lookups.with_label_values(&[route, cache]);
            }
            upstream_seconds.with_label_values(&[route, "miss"]);
            coalesced.with_label_values(&[route]);
            for outcome in crate::proxy::fill::OUTCOMES {
                fills.with_label_values(&[route, outcome]);
            }
            client_aborts.with_label_values(&[route]);
            derived.with_label_values(&[route]);
            for reason in REFUSAL_REASONS {
                refusals.with_label_values(&[route, reason]);
            }
            for kind in UPSTREAM_ERROR_KINDS {
                upstream_errors.with_label_values(&[route, kind]);
            }
        }
        for reason in crate::proxy::client_limits::REFUSAL_REASONS {
            client_refusals.with_label_values(&[reason]);
        }
        for result in ["ok", "failed"] {
            probes.with_label_values(&[result]);
        }
        for kind in ["url", "prefix", "route"] {
            purges.with_label_values(&[kind]);
        }
        for tier in ["memory", "disk"] {
            tier_bytes.with_label_values(&[tier]);
        }
        tier_entries.with_label_values(&["memory"]);
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            upstream_seconds,
            upstream_errors,
            client_aborts,
            client_refusals,
            client_connections,
            derived,
            hits,
            refusals,
            access,
            lookups,
            coalesced,
            fills,
            in_flight,
            upstream_up,
            probe_seconds,
            probes,
            purges,
            bans,
            sealed_bodies,
            rss_bytes,
            rss_budget_bytes,
            tier_bytes,
            tier_entries,
            tier_capacity_bytes,
        })
    }

    /// Records one finished request.
    pub fn observe_request(
        &self,
        route: &str,
        method: &http::Method,
        status: u16,
        cache: &str,
        took: Duration,
    ) {
        self.requests
            .with_label_values(&[route, method_label(method), status_class(status), cache])
            .inc();
        self.request_seconds
            .with_label_values(&[route, cache])
            .observe(took.as_secs_f64());
    }

    /// Records how long the ERP took for one request, and what the cache did with it.
    pub fn observe_upstream(&self, route: &str, cache: &str, took: Duration) {
        self.upstream_seconds
            .with_label_values(&[route, cache])
            .observe(took.as_secs_f64());
    }

    /// Records one failed ERP request; `kind` is one of [`UPSTREAM_ERROR_KINDS`].
    pub fn observe_upstream_error(&self, route: &str, kind: &str) {
        self.upstream_errors.with_label_values(&[route, kind]).inc();
    }

    /// Counts a request or connection refused over a client limit (`reason`: one of
    /// `client_limits::REFUSAL_REASONS`).
    pub fn observe_client_refusal(&self, reason: &str) {
        self.client_refusals.with_label_values(&[reason]).inc();
    }

    /// Records one access decision: `rule` (one of `access::RULES`) `allowed` or `refused` it.
    pub fn observe_access(&self, route: &str, rule: &str, result: &str) {
        self.access.with_label_values(&[route, rule, result]).inc();
    }

    /// Records a request the proxy refused itself; `reason` is one of [`REFUSAL_REASONS`].
    pub fn observe_refusal(&self, route: &str, reason: &str) {
        self.refusals.with_label_values(&[route, reason]).inc();
    }

    /// Records a request whose client went away before its response was complete.
    pub fn observe_client_abort(&self, route: &str) {
        self.client_aborts.with_label_values(&[route]).inc();
    }

    /// Records a request answered from another coding's stored copy (`proxy::derive`).
    pub fn observe_derived(&self, route: &str) {
        self.derived.with_label_values(&[route]).inc();
    }

    /// Counts one fresh hit written by `path`.
    pub fn observe_hit(&self, path: HitPath) {
        self.hits[path as usize].inc();
    }

    /// Records what the cache did for one cacheable request, and whether it waited for another
    /// request's fill.
    pub fn observe_lookup(&self, route: &str, result: &str, coalesced: bool) {
        self.lookups.with_label_values(&[route, result]).inc();
        if coalesced {
            self.coalesced.with_label_values(&[route]).inc();
        }
    }

    /// Records how a miss's fill ended (`outcome`: one of `proxy::fill::OUTCOMES`).
    pub fn observe_fill(&self, route: &str, outcome: &str) {
        self.fills.with_label_values(&[route, outcome]).inc();
    }

    /// Records one ERP health probe.
    pub fn observe_health_probe(&self, up: bool, took: Duration) {
        self.upstream_up.set(i64::from(up));
        self.probe_seconds.set(took.as_secs_f64());
        self.probes
            .with_label_values(&[if up { "ok" } else { "failed" }])
            .inc();
    }

    /// Counts one purge of `kind` (`url`, `prefix` or `route`).
    pub fn observe_purge(&self, kind: &str) {
        self.purges.with_label_values(&[kind]).inc();
    }

    /// Sets the configured sizes: the tiers and the RSS budget (memory tier + 64 MiB).
    pub fn set_capacities(&self, memory_bytes: u64, disk_bytes: Option<u64>) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.tier_capacity_bytes
            .with_label_values(&["memory"])
            .set(as_i64(memory_bytes));
        if let Some(disk) = disk_bytes {
            self.tier_capacity_bytes
                .with_label_values(&["disk"])
                .set(as_i64(disk));
        }
        self.rss_budget_bytes
            .set(as_i64(memory_bytes.saturating_add(RSS_HEADROOM_BYTES)));
    }

    /// Updates the state gauges from a fresh sample (called before each scrape).
    pub fn refresh(&self, s: &Sample) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.rss_bytes.set(as_i64(s.rss_bytes));
        self.tier_bytes
            .with_label_values(&["memory"])
            .set(as_i64(s.memory_bytes));
        self.tier_entries
            .with_label_values(&["memory"])
            .set(as_i64(s.memory_entries));
        if let Some(disk) = s.disk_bytes {
            self.tier_bytes
                .with_label_values(&["disk"])
                .set(as_i64(disk));
        }
        self.bans.set(as_i64(s.bans));
        self.sealed_bodies.set(as_i64(s.sealed_bodies));
    }

    /// The value of a counter or gauge in this registry with the given label (foyer's families
    /// included), summed over the series that carry it; 0 if absent.
    pub fn read(&self, family: &str, label: (&str, &str)) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == family)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
            })
            .map(|m| {
                if m.get_counter().has_value() {
                    m.get_counter().value()
                } else {
                    m.get_gauge().value()
                }
            })
            .sum()
    }

    /// The text exposition of every registered family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = prometheus::Encoder::encode(&encoder, &self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The Redis operations timed and counted, the values of the `op` label.
pub const CLUSTER_OPS: [&str; 9] = [
    "publish",
    "read",
    "shared_get",
    "shared_store",
    "shared_delete",
    "lease",
    "lease_wait",
    "lease_release",
    "warm_lease",
];

/// Redis round trips: from loopback's tens of microseconds to the operation timeout.
const CLUSTER_OP_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Cluster mode's families (`cluster`): registered only when `cluster:` is on, so a single node
/// exports what it always did.
pub struct ClusterMetrics {
    /// `knitcache_cluster_redis_up`: 1 while the last operation on the server succeeded.
    pub up: IntGauge,
    /// `knitcache_cluster_redis_op_duration_seconds{op}`.
    pub op_seconds: HistogramVec,
    /// `knitcache_cluster_redis_errors_total{op}`.
    pub op_errors: IntCounterVec,
    /// `knitcache_cluster_invalidations_published_total`.
    pub published: prometheus::IntCounter,
    /// `knitcache_cluster_invalidations_applied_total`.
    pub applied: prometheus::IntCounter,
    /// `knitcache_cluster_invalidations_dropped_total`.
    pub dropped: prometheus::IntCounter,
    /// `knitcache_cluster_invalidations_pending`.
    pub pending: IntGauge,
    /// `knitcache_cluster_invalidation_lag_seconds`.
    pub lag_seconds: prometheus::Histogram,
    /// `knitcache_cluster_shared_lookups_total{outcome}`.
    pub shared_lookups: IntCounterVec,
    /// `knitcache_cluster_shared_stores_total{outcome}`.
    pub shared_stores: IntCounterVec,
    /// `knitcache_cluster_leases_total{outcome}`.
    pub leases: IntCounterVec,
    /// `knitcache_cluster_warm_refreshes_total{outcome}`.
    pub warm_refreshes: IntCounterVec,
}

impl ClusterMetrics {
    /// Registers the cluster families in `registry`; every `op` has series from startup.
    pub fn new(registry: &Registry) -> prometheus::Result<ClusterMetrics> {
        let up = IntGauge::new(
            "knitcache_cluster_redis_up",
            "1 while the shared Redis answers (the last operation succeeded), 0 while this replica \
             runs on its own tiers alone",
        )?;
        let op_seconds = HistogramVec::new(
            HistogramOpts::new(
                "knitcache_cluster_redis_op_duration_seconds",
                "Time of each operation on the shared Redis (failed ones included), by operation",
            )
            .buckets(CLUSTER_OP_BUCKETS.to_vec()),
            &["op"],
        )?;
        let op_errors = IntCounterVec::new(
            Opts::new(
                "knitcache_cluster_redis_errors_total",
                "Operations on the shared Redis that failed or timed out, by operation",
            ),
            &["op"],
        )?;
        let published = prometheus::IntCounter::new(
            "knitcache_cluster_invalidations_published_total",
            "Purges and invalidations of this replica written to the shared stream",
        )?;
        let applied = prometheus::IntCounter::new(
            "knitcache_cluster_invalidations_applied_total",
            "Purges and invalidations of other replicas read from the shared stream and applied",
        )?;
        let dropped = prometheus::IntCounter::new(
            "knitcache_cluster_invalidations_dropped_total",
            "Purges and invalidations never published: the queue waiting for Redis was full, or \
             their record in the outbox file was unreadable at start",
        )?;
        let pending = IntGauge::new(
            "knitcache_cluster_invalidations_pending",
            "Purges and invalidations of this replica waiting to be published (Redis slow or down)",
        )?;
        let lag_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "knitcache_cluster_invalidation_lag_seconds",
                "From another replica's purge to its application here (clocks of both replicas)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(op_seconds.clone()))?;
        registry.register(Box::new(op_errors.clone()))?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(lag_seconds.clone()))?;
        for op in CLUSTER_OPS {
            op_seconds.with_label_values(&[op]);
            op_errors.with_label_values(&[op]);
        }
        use crate::cluster::{lease, shared_tier};
        let outcomes = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), &["outcome"])?;
            registry.register(Box::new(v.clone()))?;
            for l in labels {
                v.with_label_values(&[l]);
            }
            Ok::<_, prometheus::Error>(v)
        };
        let shared_lookups = outcomes(
            "knitcache_cluster_shared_lookups_total",
            "Lookups in the shared tier after both local tiers missed (or held an expired copy): \
             hit (a copy was there), miss, error (failed, timed out, or skipped while Redis is down)",
            &shared_tier::LOOKUP_OUTCOMES,
        )?;
        let shared_stores = outcomes(
            "knitcache_cluster_shared_stores_total",
            "Fills written to the shared tier: stored, too_large (above \
             cluster.shared_max_object_bytes), dropped (too many writes in flight), error",
            &shared_tier::STORE_OUTCOMES,
        )?;
        let leases = outcomes(
            "knitcache_cluster_leases_total",
            "Fill leases: won (this replica asked the ERP), waited (served what the holder \
             stored), expired (the holder stored nothing usable in time: asked the ERP), error \
             (Redis failed: filled alone)",
            &lease::LEASE_OUTCOMES,
        )?;
        let warm_refreshes = outcomes(
            "knitcache_cluster_warm_refreshes_total",
            "Warm refreshes: won (this replica refreshed the key for the cluster), left (another \
             replica did), error (Redis failed: refreshed alone)",
            &lease::WARM_OUTCOMES,
        )?;
        Ok(ClusterMetrics {
            up,
            op_seconds,
            op_errors,
            published,
            applied,
            dropped,
            pending,
            lag_seconds,
            shared_lookups,
            shared_stores,
            leases,
            warm_refreshes,
        })
    }
}

/// The RSS the process may use beyond its memory tier: the budget is tier + 64 MiB
/// (docs/DEPLOY.md, "Memory budget"; the systemd unit and the manifests size to it).
pub const RSS_HEADROOM_BYTES: u64 = 64 * 1024 * 1024;

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_routes_are_exported_before_traffic() {
        let m = Metrics::new(["kpis", "forecast"]).expect("metrics");
        let text = String::from_utf8(m.render()).expect("utf8");
        for route in ["kpis", "forecast", "unmatched"] {
            for family in [
                "knitcache_request_duration_seconds_bucket",
                "knitcache_upstream_duration_seconds_bucket",
                "knitcache_cache_lookups_total",
                "knitcache_cache_coalesced_total",
                "knitcache_upstream_errors_total",
            ] {
                assert!(
                    text.lines()
                        .any(|l| l.starts_with(family) && l.contains(&format!("route=\"{route}\""))),
                    "{family} for {route} missing:\n{text}"
                );
            }
        }
    }

    #[test]
    fn requests_are_counted_with_bounded_labels() {
        let m = Metrics::new(["kpis"]).expect("metrics");
        m.observe_request(
            "kpis",
            &http::Method::from_bytes(b"BREW").expect("m"),
            503,
            "miss",
            Duration::from_millis(3),
        );
        let text = String::from_utf8(m.render()).expect("utf8");
        assert!(
            text.contains(r#"knitcache_requests_total{cache="miss",method="other",route="kpis",status="5xx"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn read_finds_labelled_values() {
        let m = Metrics::new(["kpis"]).expect("metrics");
        m.observe_lookup("kpis", "hit", true);
        m.observe_lookup("kpis", "hit", false);
        assert_eq!(
            m.read("knitcache_cache_lookups_total", ("result", "hit")),
            2.0
        );
        assert_eq!(
            m.read("knitcache_cache_coalesced_total", ("route", "kpis")),
            1.0
        );
        assert_eq!(m.read("no_such_family", ("a", "b")), 0.0);
    }

    #[test]
    fn hits_are_counted_by_path_with_every_path_exported() {
        let m = Metrics::new(["kpis"]).expect("metrics");
        m.observe_hit(HitPath::Direct);
        m.observe_hit(HitPath::Direct);
        m.observe_hit(HitPath::Pingora);
        let text = String::from_utf8(m.render()).expect("utf8");
        for line in [
            r#"knitcache_cache_hits_total{path="direct"} 2"#,
            r#"knitcache_cache_hits_total{path="writer"} 0"#,
            r#"knitcache_cache_hits_total{path="pingora"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
