//! The value of every optional config key that the file leaves out, one `DEFAULT_*` constant each,
//! with its unit in the name or the doc comment.
//!
//! `file.rs` fills absent keys from here; a route's absent cache keys come from the file's
//! `defaults:` section, whose own absent keys come from here. Validation limits live in
//! `validate/`, not here: they are not defaults.

use super::model::{Freshness, OriginCacheControl, QueryKey, RequestCookies, SetCookie};

/// `listen`: where clients connect. Port 5006 because the ERP's dashboard hard-codes it.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5006";

/// `admin_listen`: metrics, health, stats and purge. Loopback, so purge is not exposed.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:5009";

/// `h2c`: off. Browsers never speak HTTP/2 in the clear; it is for clients and load balancers
/// configured for it, and HTTPS offers HTTP/2 by ALPN anyway.
pub const DEFAULT_H2C: bool = false;

/// `upstream.connect_timeout_ms`, in milliseconds. The ERP runs on loopback: a connect that takes
/// a second means it is down.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;

/// `upstream.read_timeout_ms`, in milliseconds. The slowest ERP handler takes 7 s cold, and its
/// CPU-bound handlers queue behind each other (p50 20 s at 10 concurrent forecast calls).
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 30_000;

/// `upstream.write_timeout_ms`, in milliseconds, to send a request (and its body) to the ERP.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 10_000;

/// `upstream.health_path`: what the health probe asks the ERP for. `/hello` exists in both of the
/// ERP's modes (as shipped and rollback) and returns 11 bytes of text; `/api/v2/health` 404s in
/// rollback mode.
pub const DEFAULT_HEALTH_PATH: &str = "/hello";

/// `upstream.health_interval_ms`, in milliseconds between two health probes of the ERP.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 5_000;

/// `upstream.health_timeout_ms`, in milliseconds a health probe may take before it counts as
/// failed.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;

/// `cache.dir`: directory of the disk tier.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/knitcache";

/// `cache.memory_mib`, in MiB (1 MiB = 1,048,576 bytes).
pub const DEFAULT_MEMORY_MIB: u64 = 256;

/// `cache.disk_mib`, in MiB.
pub const DEFAULT_DISK_MIB: u64 = 2_048;

/// `cache.max_object_bytes`, in bytes (4 MiB). The ERP's largest body is the 808 KB dashboard page.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 4 * 1024 * 1024;

/// `cache.lock_timeout_ms`, in milliseconds: how long a request waits for another request's
/// fill of the same key before going upstream itself.
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 10_000;

/// `cache.compression.enabled`.
pub const DEFAULT_COMPRESSION_ENABLED: bool = true;

/// `cache.compression.level`, 1 (fastest) ..= 9 (smallest).
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// `server.threads` when unset: one worker per CPU this process may run on. The standard
/// library counts the CPUs of the process's affinity mask and its cgroup CPU quota, so a proxy
/// started under `taskset -c 1` or in a container limited to one CPU gets one worker, not one
/// per core of the host (workers beyond the CPUs only take turns). 1 if it cannot tell.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `server.grace_period_secs`, in seconds: the longest in-flight requests get after SIGTERM.
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 10;

/// `server.graceful_shutdown_timeout_secs`, in seconds, for runtimes to stop after a graceful
/// upgrade's grace period.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// `server.pid_file`.
pub const DEFAULT_PID_FILE: &str = "/tmp/knitcache.pid";

/// `server.upgrade_sock`.
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/knitcache_upgrade.sock";

/// `defaults.ttl_secs`, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 60;

/// `defaults.stale_while_revalidate_secs`, in seconds.
pub const DEFAULT_STALE_WHILE_REVALIDATE_SECS: u64 = 30;

/// `defaults.stale_if_error_secs`, in seconds.
pub const DEFAULT_STALE_IF_ERROR_SECS: u64 = 600;

/// `defaults.statuses` of `freshness: route` routes (`freshness: origin` routes follow RFC 9111
/// unless a list is written): the statuses RFC 9111 calls heuristically cacheable that the ERP
/// sends (its 301/308 redirects are static mappings), plus 404/410. No 5xx: many of the ERP's
/// 500s depend on data state, and stale-if-error covers outages.
pub const DEFAULT_STATUSES: [u16; 8] = [200, 203, 204, 300, 301, 308, 404, 410];

/// `defaults.error_statuses`: no error status is stored with its own TTL unless the operator
/// lists it (negative caching changes what clients see when the origin misbehaves, so it is a
/// decision per deployment).
pub const DEFAULT_ERROR_STATUSES: [u16; 0] = [];

/// `defaults.error_ttl_secs`, in seconds: how long a listed error status is fresh. Long enough
/// that a burst of dashboard polls costs the ERP one request, short enough that a fixed error
/// is gone before anyone reloads twice.
pub const DEFAULT_ERROR_TTL_SECS: u64 = 30;

/// `defaults.query_key`: every query parameter is part of the cache key (ERP responses vary by
/// path and query only).
pub const DEFAULT_QUERY_KEY: QueryKey = QueryKey::All;

/// `defaults.origin_cache_control`: the ERP sends no freshness headers, so the route decides.
pub const DEFAULT_ORIGIN_CACHE_CONTROL: OriginCacheControl = OriginCacheControl::Override;

/// `routes[].cache`: a route caches unless it says `cache: false`.
pub const DEFAULT_ROUTE_CACHE: bool = true;

/// `routes[].ignore_no_store`: `no-store` and `private` are honoured. (It has no say over
/// `Set-Cookie`: that is `set_cookie`'s.)
pub const DEFAULT_IGNORE_NO_STORE: bool = false;

/// `defaults.freshness`: the route's TTL decides (the ERP sends no caching headers).
pub const DEFAULT_FRESHNESS: Freshness = Freshness::Route;

/// `defaults.request_cookies`: a request with `Cookie` is never answered from the cache, since
/// its answer may be personal. Origins known to use no cookies (the ERP) set `ignore`.
pub const DEFAULT_REQUEST_COOKIES: RequestCookies = RequestCookies::Bypass;

/// `defaults.set_cookie`: responses that set a cookie are never stored.
pub const DEFAULT_SET_COOKIE: SetCookie = SetCookie::Refuse;

/// `defaults.heuristic_percent`: a response with `Last-Modified` and no explicit lifetime is
/// fresh for 10 % of its age (RFC 9111 §4.2.2's example), in `freshness: origin` only.
pub const DEFAULT_HEURISTIC_PERCENT: u64 = 10;

/// `defaults.heuristic_max_secs`: a heuristic lifetime never exceeds a day.
pub const DEFAULT_HEURISTIC_MAX_SECS: u64 = 86_400;

/// `defaults.max_variants`: stored variants (`Vary`, codings) of one URL. Four codings times a
/// few request variants; a `Vary: User-Agent` origin cannot flood the cache with one URL.
pub const DEFAULT_MAX_VARIANTS: u64 = 16;

/// The statuses RFC 9110 §15.1 calls heuristically cacheable: stored by a `freshness: origin`
/// route without explicit freshness (when they have `Last-Modified`). 206 is on the list but
/// never stored: a partial response is not the whole representation.
pub const HEURISTIC_STATUSES: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// The final statuses RFC 9110 §15 defines, whose caching requirements knitcache implements: a
/// response saying `must-understand` (RFC 9111 §5.2.2.3) is stored only with one of these.
/// 418 is not among them: RFC 9110 §15.5.19 leaves it unused.
pub const UNDERSTOOD_STATUSES: [u16; 42] = [
    200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403,
    404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501,
    502, 503, 504, 505,
];

/// `protection.retry_after_secs`, in seconds: what a `503` tells clients to wait. Two polls of a
/// busy dashboard tab fit in it, and a restarting ERP is usually back by then.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// `protection.rate_limit.enabled`. Off: the ERP has no authentication and every user sits behind
/// the same office NAT, so a per-IP limit must be sized by the operator before it is switched on.
pub const DEFAULT_RATE_LIMIT_ENABLED: bool = false;

/// `protection.rate_limit.requests_per_sec`, per client. A dashboard tab sends about 6 requests
/// per 30 s poll; 20/s leaves room for several tabs and page loads.
pub const DEFAULT_RATE_PER_SEC: u64 = 20;

/// `protection.rate_limit.burst`, requests. A dashboard page load sends about a dozen at once.
pub const DEFAULT_RATE_BURST: u64 = 60;

/// `protection.rate_limit.max_clients`: clients tracked at once per class (~120 bytes each).
pub const DEFAULT_RATE_MAX_CLIENTS: u64 = 10_000;

/// `protection.rate_limit.idle_secs`, in seconds: how often clients whose bucket has refilled are
/// forgotten.
pub const DEFAULT_RATE_IDLE_SECS: u64 = 300;

/// `routes[].rate_limit_hits`: hits are not charged, since they cost the ERP nothing.
pub const DEFAULT_RATE_LIMIT_HITS: bool = false;

/// `protection.upstream_cap.max_in_flight`, requests. The ERP is one Python process on 2 cores;
/// more concurrent work only makes every request slower.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 8;

/// `protection.upstream_cap.queue`, requests waiting for a slot.
pub const DEFAULT_QUEUE: u64 = 200;

/// `protection.upstream_cap.queue_timeout_ms`, in milliseconds, the longest wait for a slot.
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 10_000;

/// `protection.breaker.enabled`.
pub const DEFAULT_BREAKER_ENABLED: bool = true;

/// `protection.breaker.consecutive_failures`: failures in a row that open the breaker.
pub const DEFAULT_BREAKER_CONSECUTIVE: u64 = 5;

/// `protection.breaker.error_ratio_percent`, in percent of the requests in the window.
pub const DEFAULT_BREAKER_ERROR_PERCENT: u64 = 50;

/// `protection.breaker.window_secs`, in seconds.
pub const DEFAULT_BREAKER_WINDOW_SECS: u64 = 30;

/// `protection.breaker.min_requests`: the window must hold this many before the share counts.
pub const DEFAULT_BREAKER_MIN_REQUESTS: u64 = 20;

/// `protection.breaker.open_secs`, in seconds before half-open probes.
pub const DEFAULT_BREAKER_OPEN_SECS: u64 = 10;

/// `protection.breaker.half_open_probes`: requests let through at once while half-open.
pub const DEFAULT_BREAKER_PROBES: u64 = 1;

/// `protection.breaker.trip_on_5xx`: ERP 5xx answers count as failures.
pub const DEFAULT_BREAKER_TRIP_ON_5XX: bool = true;

/// `protection.retries.max_per_request`: one retry covers an ERP restart's refused connect.
pub const DEFAULT_RETRIES: u64 = 1;

/// `protection.retries.budget_percent`, in percent of requests.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u64 = 10;

/// `warming.enabled`: hot keys are refreshed before they expire, so the dashboard never waits.
pub const DEFAULT_WARMING_ENABLED: bool = true;

/// `warming.hot_keys`: the ERP has about 120 read endpoints with a few query variants each.
pub const DEFAULT_HOT_KEYS: u64 = 256;

/// `warming.lead_secs`, in seconds: longer than the slowest handler's warm time (2.5 s) and a
/// queue behind it, so the refreshed copy is stored before the old one expires.
pub const DEFAULT_WARM_LEAD_SECS: u64 = 10;

/// `warming.active_secs`, in seconds: four 30 s dashboard polls; keys nobody polls any more are
/// left to expire instead of costing the ERP refreshes.
pub const DEFAULT_WARM_ACTIVE_SECS: u64 = 120;

/// `warming.concurrency`: refreshes run beside client traffic, so they stay few.
pub const DEFAULT_WARM_CONCURRENCY: u64 = 2;

/// `warming.interval_secs`, in seconds, between fetches of the warm list.
pub const DEFAULT_WARM_INTERVAL_SECS: u64 = 60;

/// `admin.token_env`: the environment variable that holds the admin bearer token (for
/// `POST /purge`) when the file sets no `admin.token`.
pub const DEFAULT_ADMIN_TOKEN_ENV: &str = "KNITCACHE_ADMIN_TOKEN";

/// `admin.protect_reads`: `/stats`, `/metrics` and `/dashboard` answer without a token, so a
/// Prometheus scrape needs no credentials; the admin listener is on loopback by default.
pub const DEFAULT_ADMIN_PROTECT_READS: bool = false;

/// `access.policies.<name>.pass_credentials`: the gate consumes what it checked, so neither the
/// cache decisions nor the ERP see a login.
pub const DEFAULT_PASS_CREDENTIALS: bool = false;
/// `access.policies.<name>.basic.realm`: the name a browser shows in its login prompt.
pub const DEFAULT_BASIC_REALM: &str = "knitcache";
/// `access.policies.<name>.basic.cache_secs`: a successful check is remembered this long, so a
/// dashboard polling every 30 s costs one bcrypt run per user per minute.
pub const DEFAULT_BASIC_CACHE_SECS: u64 = 60;
/// `access.policies.<name>.forward_auth.timeout_ms`: an SSO answers in milliseconds; two
/// seconds without an answer is an outage (`503`), not a reason to hold the client.
pub const DEFAULT_FORWARD_AUTH_TIMEOUT_MS: u64 = 2000;
/// `access.policies.<name>.forward_auth.cache_secs`: one round trip per user and path per
/// dashboard poll at most; a logout or revoked session is honoured within this.
pub const DEFAULT_FORWARD_AUTH_CACHE_SECS: u64 = 30;
/// `access.policies.<name>.forward_auth.max_body_bytes`: a login redirect or error page.
pub const DEFAULT_FORWARD_AUTH_MAX_BODY_BYTES: u64 = 64 * 1024;

/// `observability.access_log`: one structured line per request to the log target `access`.
pub const DEFAULT_ACCESS_LOG: bool = true;

/// `observability.stats`: per-route latency percentiles and hot keys for `/stats`, the dashboard
/// and `knitcache report`. Prometheus metrics are always on.
pub const DEFAULT_STATS: bool = true;

/// `cache.tag_header`: the header CDNs use for tags (Fastly's `Surrogate-Key`).
pub const DEFAULT_TAG_HEADER: &str = "surrogate-key";

/// The longest lifetime, and the longest stale window, a stored response takes from the
/// origin's headers (a year, as the longest `ttl_secs`): purge bans must outlive every stored
/// response they cover, so the lifetimes an origin may ask for are bounded.
pub const MAX_ORIGIN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// `clients.header_timeout_ms`, in milliseconds: a request's whole header, from the connection's
/// start (or a later request's first byte). A real client sends its header in one packet.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;

/// `clients.idle_timeout_ms`, in milliseconds a kept-alive connection may wait for its next
/// request (pingora's own figure for a new connection).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

/// `clients.body_timeout_ms`, in milliseconds for a whole request body after its header.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 60_000;

/// `clients.send_timeout_ms`, in milliseconds a response write may make no progress.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 30_000;

/// `clients.max_uri_bytes`: the request target, as most servers allow (8 KiB).
pub const DEFAULT_MAX_URI_BYTES: u64 = 8_192;

/// `clients.max_header_bytes`: request line and header fields (32 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 32_768;

/// `clients.max_headers`: header fields of one request.
pub const DEFAULT_MAX_HEADERS: u64 = 100;

/// `clients.max_read_body_bytes`: a GET or HEAD on a caching route carries no body (its answer is
/// cached without regard to one).
pub const DEFAULT_MAX_READ_BODY_BYTES: u64 = 0;

/// `clients.max_connections_per_address`: 0, no cap (behind a load balancer every client shares
/// its address).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: u64 = 0;

/// `cluster.password_env`: the environment variable holding the Redis password, which is never
/// written in the file.
pub const DEFAULT_CLUSTER_PASSWORD_ENV: &str = "KNITCACHE_REDIS_PASSWORD";

/// `cluster.key_prefix`: every key knitcache writes in Redis starts with this and a colon.
pub const DEFAULT_CLUSTER_KEY_PREFIX: &str = "knitcache";

/// `cluster.timeout_ms`, in milliseconds one Redis operation may take. A loopback or same-zone
/// round trip is well under a millisecond; past this the server counts as down for that
/// operation and the replica carries on alone.
pub const DEFAULT_CLUSTER_TIMEOUT_MS: u64 = 500;

/// `cluster.shared_max_object_bytes`: the largest stored response also written to the shared
/// tier. Bigger ones stay in each replica's own tiers: a Redis value is read whole into the
/// server's memory and sent in one reply, and the forecasts that matter are far below this.
pub const DEFAULT_CLUSTER_SHARED_MAX_OBJECT_BYTES: u64 = 4 * 1024 * 1024;

/// `cluster.lease_ms`: how long one replica's claim to fill a key lasts at most (it is released
/// as soon as the fill ends). The ERP's read timeout: a slow forecast fill is still one fill.
pub const DEFAULT_CLUSTER_LEASE_MS: u64 = DEFAULT_READ_TIMEOUT_MS;
