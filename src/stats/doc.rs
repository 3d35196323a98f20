//! The `/stats` JSON document. The admin listener writes it and `knitcache report` reads it, so
//! both sides share these types. Times are milliseconds, sizes bytes, ratios 0..=1; a value that
//! does not exist (no disk tier, no traffic yet) is `null`, never a made-up 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::latency::{Breakdown, Percentiles};

/// The whole document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsDoc {
    /// knitcache's version.
    pub version: String,
    /// Seconds since the proxy started.
    pub uptime_secs: f64,
    /// A hash of the loaded configuration (changes whenever the file's text changes).
    pub config_version: String,
    /// Whether per-route percentiles and hot keys are recorded (`observability.stats`).
    pub stats_enabled: bool,
    /// Length of the `recent` window, in seconds.
    pub recent_window_secs: u64,
    /// The process.
    pub process: ProcessDoc,
    /// The ERP, as the health probe sees it.
    pub erp: ErpDoc,
    /// The cache tiers.
    pub cache: CacheDoc,
    /// All routes together.
    pub totals: RouteDoc,
    /// Every configured route in config order, then `unmatched`.
    pub routes: Vec<RouteDoc>,
    /// The slowest routes by p95, slowest first.
    pub slowest: Vec<SlowRoute>,
    /// The most requested cache keys, hottest first.
    pub hot_keys: Vec<HotKey>,
    /// Requests the proxy kept from the ERP since start (served stale, or refused with `503`),
    /// by reason (`breaker_open`, `route_breaker_open`, `queue_full`, `queue_timeout`), all
    /// routes together. `null` where not known (an older proxy).
    #[serde(default)]
    pub kept_from_erp: Option<BTreeMap<String, u64>>,
    /// Cluster mode as this replica sees it; `null` on a single node (or an older proxy).
    #[serde(default)]
    pub cluster: Option<ClusterDoc>,
}

/// Cluster mode: the shared Redis, the shared tier, fill and warm leases and the invalidation
/// stream, counted by this replica since it started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterDoc {
    /// The server (`cluster.url`, which never carries a password).
    pub url: String,
    /// Whether the last operation on the server succeeded.
    pub redis_up: bool,
    /// Shared-tier lookups by outcome: `hit`, `miss`, `error`.
    pub shared_lookups: BTreeMap<String, u64>,
    /// Fills written to the shared tier by outcome: `stored`, `too_large`, `dropped`, `error`.
    pub shared_stores: BTreeMap<String, u64>,
    /// Fill leases by outcome: `won`, `waited`, `expired`, `error`.
    pub leases: BTreeMap<String, u64>,
    /// Warm refreshes by outcome: `won`, `left`, `error`.
    pub warm_refreshes: BTreeMap<String, u64>,
    /// Purges and invalidations of this replica published to the stream.
    pub invalidations_published: u64,
    /// Other replicas' purges and invalidations applied here.
    pub invalidations_applied: u64,
    /// This replica's waiting to be published.
    pub invalidations_pending: u64,
    /// Mean time from another replica's purge to its application here; `null` before one.
    pub invalidation_lag_ms: Option<f64>,
    /// Operations on the server by name (`shared_get`, `lease`, `publish`, ...).
    pub redis_ops: BTreeMap<String, RedisOpDoc>,
}

/// One kind of operation on the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RedisOpDoc {
    /// Operations made, failed ones included.
    pub count: u64,
    /// Failed or timed out.
    pub errors: u64,
    /// Mean duration; `null` before the first.
    pub mean_ms: Option<f64>,
    /// The bucket bound 99 % of them stayed within (`le` of the histogram); `null` before the
    /// first, or when beyond the last bound.
    pub p99_ms: Option<f64>,
}

/// The process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessDoc {
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
    /// The RSS the process should stay under (memory tier + 64 MiB).
    pub rss_budget_bytes: u64,
    /// Client requests being served right now.
    pub requests_in_flight: i64,
}

/// The ERP's health.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErpDoc {
    /// Where the ERP is.
    pub address: String,
    /// The probed path.
    pub health_path: String,
    /// Whether it answered the last probe; `null` before the first probe completes.
    pub healthy: Option<bool>,
    /// Seconds since the last probe completed.
    pub last_checked_secs_ago: Option<f64>,
    /// How long the last probe took.
    pub last_latency_ms: Option<f64>,
    /// Status of the last answer.
    pub last_status: Option<u16>,
    /// Why the last probe failed.
    pub last_error: Option<String>,
    /// Failed probes in a row.
    pub consecutive_failures: u32,
}

/// The cache tiers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheDoc {
    /// The memory tier.
    pub memory: TierDoc,
    /// The disk tier.
    pub disk: TierDoc,
    /// Entries evicted from the memory tier since start.
    pub memory_evictions: u64,
    /// Requests that waited for another request's fill, since start.
    pub coalesced: u64,
    /// Bans in force: prefix, route and tag purges and invalidation rules.
    pub bans: usize,
}

/// One tier.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TierDoc {
    /// `open`, `recreated` (moved aside at startup), `degraded` (out of use after a storage
    /// fault while running), `memory-only` (no disk tier) or `memory`.
    pub state: String,
    /// Why the disk tier is `degraded`, `memory-only` or `recreated` (`null` otherwise).
    #[serde(default)]
    pub reason: Option<String>,
    /// When the disk tier was degraded, milliseconds since the unix epoch (`null` otherwise).
    #[serde(default)]
    pub since_unix_ms: Option<u64>,
    /// Bytes in use (`null` when the tier does not exist).
    pub bytes: Option<u64>,
    /// Entries held (`null` where the tier cannot count them: foyer's disk tier).
    pub entries: Option<u64>,
    /// Configured size.
    pub capacity_bytes: u64,
}

/// One route (or `all`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteDoc {
    /// Route name from the config, `unmatched` or `all`.
    pub name: String,
    /// `cache`, `pass`, `unmatched` or `all`.
    pub kind: String,
    /// Requests since start.
    pub requests: u64,
    /// Cacheable requests served from the cache (fresh or stale).
    pub hits: u64,
    /// Of `hits`, those served stale (while revalidating, or because the ERP failed).
    pub stale: u64,
    /// Cacheable requests the ERP answered.
    pub misses: u64,
    /// Requests that waited for another request's fill.
    pub coalesced: u64,
    /// ERP failures (refused, timed out, 5xx, ...).
    pub upstream_errors: u64,
    /// Responses with a 5xx status, whoever wrote them: the ERP's own, the proxy's 502/504 for
    /// an ERP failure and its 503 refusals. `null` where not known (an older proxy).
    #[serde(default)]
    pub responses_5xx: Option<u64>,
    /// Requests the proxy refused itself with `503` and `Retry-After` (a breaker open, the ERP's
    /// queue full or timed out) with no stale copy to serve. `null` from an older proxy, which
    /// did not count them per route: then [`StatsDoc::kept_from_erp`] has the proxy-wide counts.
    #[serde(default)]
    pub refused: Option<u64>,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// hits / (hits + misses); `null` without cacheable requests.
    pub hit_ratio: Option<f64>,
    /// Percentiles since start.
    pub latency: Breakdown,
    /// Percentiles over the recent window.
    pub recent: Breakdown,
}

/// A slow route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlowRoute {
    /// The route.
    pub route: String,
    /// Its requests since start.
    pub requests: u64,
    /// p95 of all its requests.
    pub p95_ms: f64,
    /// p99 of all its requests.
    pub p99_ms: f64,
}

/// A hot key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HotKey {
    /// The cache key (method class, path, key parameters; sensitive values masked).
    pub key: String,
    /// Its route.
    pub route: String,
    /// Estimated requests (at least the true count).
    pub count: u64,
    /// How much of `count` may belong to keys it replaced in the summary.
    pub error: u64,
}
