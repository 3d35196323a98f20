//! The validated runtime configuration: what the proxy, the cache and the CLI read.
//!
//! Nothing here knows about YAML; `validate/` builds these types from the file layer
//! (`file.rs`) and is the only place a `Config` is made from user input. Every duration is a
//! `Duration`, every address is parsed, every pattern is compiled.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use regex::Regex;

/// The whole configuration, as validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the proxy accepts client traffic (the ERP's public port, 5006).
    pub listen: SocketAddr,
    /// Where the admin endpoints listen (loopback by default).
    pub admin_listen: SocketAddr,
    /// HTTPS for clients (`listen_tls` and `tls:`); `None`: plain HTTP only.
    pub tls: Option<TlsSettings>,
    /// `listen` also speaks HTTP/2 to clients that start with its preface (h2c with prior
    /// knowledge); HTTP/1.1 clients are served as before.
    pub h2c: bool,
    /// The ERP.
    pub upstream: UpstreamSettings,
    /// Memory and disk tiers.
    pub cache: CacheSettings,
    /// Process-level settings handed to pingora.
    pub server: ServerSettings,
    /// Routes in match order: the first route that matches a request wins.
    pub routes: Vec<Route>,
    /// `routes` compiled for `route_for`.
    pub(super) route_index: super::route_index::RouteIndex,
    /// How the ERP is protected from bursts and failures.
    pub protection: Protection,
    /// Keeping hot keys and the warm list fresh before clients ask.
    pub warming: WarmingSettings,
    /// Purges triggered by successful writes, in order.
    pub invalidation: Vec<InvalidationRule>,
    /// Credentials of the mutating admin endpoints.
    pub admin: AdminSettings,
    /// Access log and statistics switches.
    pub observability: ObservabilitySettings,
    /// What a client may send and how long it may take.
    pub clients: ClientSettings,
    /// Who may use which route.
    pub access: AccessSettings,
    /// The Redis-protocol server the replicas share; `None`: a single node, as without it.
    pub cluster: Option<ClusterSettings>,
}

/// Access policies (`access:`), checked by `access` before the cache for every request.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// Every policy, by name, in the file's order.
    pub policies: Vec<Arc<AccessPolicy>>,
    /// The policy of routes that name none and of paths no route matches; `None`: open.
    pub default: Option<Arc<AccessPolicy>>,
}

/// One named access policy. A policy with no rules admits everyone (a route's way out of
/// `access.default`).
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// The policy's name, as routes refer to it.
    pub name: String,
    /// Clients admitted; empty: every address not in `deny`.
    pub allow: Vec<ipnet::IpNet>,
    /// Clients refused, whatever `allow` says.
    pub deny: Vec<ipnet::IpNet>,
    /// The login clients that pass the address lists must give, if any.
    pub login: Option<Login>,
    /// Whether the credentials the login consumed still reach the ERP (and the cache's
    /// decisions, where `Authorization` makes a response private).
    pub pass_credentials: bool,
}

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub enum Login {
    /// HTTP Basic against an htpasswd file, read with the configuration.
    Basic {
        /// The realm of the `WWW-Authenticate` challenge.
        realm: String,
        /// The file's users, and the checks remembered since it was read.
        users: Arc<crate::access::basic::Htpasswd>,
    },
    /// An external service decides (`access::forward`).
    Forward(Arc<crate::access::forward::ForwardAuth>),
}

/// HTTPS for clients: a TLS listener beside `listen`, serving the same routes and cache, with
/// HTTP/2 offered by ALPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Where TLS clients connect (`listen_tls`).
    pub listen: SocketAddr,
    /// The certificate chain in PEM, the server's own certificate first.
    pub cert_file: PathBuf,
    /// The certificate's private key in PEM.
    pub key_file: PathBuf,
    /// Requests on the plain `listen` port are answered `308` to the same path over HTTPS.
    pub redirect_http: bool,
    /// `Strict-Transport-Security: max-age=...` on HTTPS responses; `None`: not sent.
    pub hsts_max_age: Option<Duration>,
}

/// Cluster mode (`cluster:`): invalidations, stored responses and fill leases are shared with
/// the other replicas through a Redis-protocol server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` URL, without credentials (checked by `cluster_url`).
    pub url: String,
    /// Environment variable read for the password at connect time.
    pub password_env: String,
    /// Prefix of every key written, followed by `:`.
    pub key_prefix: String,
    /// Longest wait for one operation.
    pub timeout: Duration,
    /// Largest stored response written to the shared tier; 0: no shared tier, no leases.
    pub shared_max_object_bytes: usize,
    /// Longest a fill lease is held (released earlier when the fill ends).
    pub lease: Duration,
}

impl ClusterSettings {
    /// Cluster mode on `url` (already checked) with every other key at its default: what
    /// `--cluster URL` turns on when the file has no `cluster:` section.
    pub fn with_url(url: String) -> Self {
        use super::defaults::*;
        ClusterSettings {
            url,
            password_env: DEFAULT_CLUSTER_PASSWORD_ENV.to_owned(),
            key_prefix: DEFAULT_CLUSTER_KEY_PREFIX.to_owned(),
            timeout: Duration::from_millis(DEFAULT_CLUSTER_TIMEOUT_MS),
            shared_max_object_bytes: DEFAULT_CLUSTER_SHARED_MAX_OBJECT_BYTES as usize,
            lease: Duration::from_millis(DEFAULT_CLUSTER_LEASE_MS),
        }
    }

    /// The password from `password_env`, if set and not empty.
    pub fn password(&self) -> Option<String> {
        std::env::var(&self.password_env)
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }
}

/// Limits on what one client connection may send and how long it may take (`clients:`).
/// Checked by `proxy::client_limits` before a request is proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// A request's header must arrive whole within this (from the connection's start, or from
    /// the first byte of a later request on a kept-alive connection); else `408`.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request started for this long is closed.
    pub idle_timeout: Duration,
    /// A request's body must arrive whole within this after its header; else `408`.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long (the client stopped reading)
    /// closes the connection.
    pub send_timeout: Duration,
    /// Longest request target (path and query); longer ones get `414`.
    pub max_uri_bytes: usize,
    /// Largest request head (request line and header fields); larger ones get `431`.
    pub max_header_bytes: usize,
    /// Most header fields (lines) in a request; more get `431`.
    pub max_headers: usize,
    /// Largest body of a GET or HEAD on a caching route; larger ones get `413`.
    pub max_read_body_bytes: u64,
    /// Most connections open at once from one client address; `None`: no cap.
    pub max_connections_per_address: Option<u32>,
}

/// The warmer: hot keys are refreshed shortly before they expire; the warm list is fetched at
/// startup and on a schedule.
#[derive(Debug, Clone)]
pub struct WarmingSettings {
    /// Off: nothing is fetched unless a client asks.
    pub enabled: bool,
    /// Keys tracked as hot (a bounded top-K).
    pub hot_keys: usize,
    /// A hot key is refreshed this long before its stored copy expires.
    pub lead: Duration,
    /// Only keys a client asked for within this window are refreshed.
    pub active: Duration,
    /// Warm requests in flight at once.
    pub concurrency: usize,
    /// The warm list is fetched this often (and at startup).
    pub interval: Duration,
    /// Paths (with query) fetched at startup and every `interval`.
    pub list: Vec<String>,
}

/// Rate limits, the cap on concurrent ERP work, the circuit breaker and retries.
#[derive(Debug, Clone)]
pub struct Protection {
    /// Per-client token buckets; `None` turns rate limiting off.
    pub rate_limit: Option<RateLimitSettings>,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer in front of the proxy): the
    /// client of rate limits, access rules and the ERP's forwarding fields
    /// (`limits::client::client_ip`). Written under `protection.rate_limit`, and in force
    /// whether or not rate limiting is on.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// At most this much concurrent work reaches the ERP.
    pub upstream_cap: ConcurrencySettings,
    /// The circuit breaker; `None` turns it off.
    pub breaker: Option<BreakerSettings>,
    /// Retries of idempotent requests whose connection to the ERP failed.
    pub retries: RetrySettings,
    /// `Retry-After` of a `503` when the ERP cannot be asked (breaker open, queue full) and the
    /// cache has nothing to serve.
    pub retry_after: Duration,
}

/// A token bucket: `per_sec` tokens are added each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateClass {
    /// Sustained requests per second.
    pub per_sec: u32,
    /// Requests allowed at once after an idle period.
    pub burst: u32,
}

/// Per-client rate limiting.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// The bucket of routes that name no class.
    pub default: RateClass,
    /// Named buckets routes can opt into (`rate_limit_class`), e.g. a tight one for forecasts.
    pub classes: Vec<(String, RateClass)>,
    /// Most clients tracked at once per class; beyond it a newcomer evicts a client seen once.
    pub max_clients: usize,
    /// How often clients whose bucket has refilled are forgotten (`RateLimits::sweep`). A
    /// forgotten client comes back with a full bucket, which it had anyway.
    pub idle: Duration,
}

/// The cap on concurrent requests to the ERP, with a bounded queue in front of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConcurrencySettings {
    /// Requests in flight to the ERP at once.
    pub max_in_flight: usize,
    /// Requests waiting for a slot; beyond it a request is refused at once.
    pub queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
}

/// When the breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Opens when at least this share of the requests in `window` failed (0.0..=1.0) ...
    pub error_ratio: f64,
    /// ... over this window ...
    pub window: Duration,
    /// ... once the window holds at least this many requests.
    pub min_requests: u32,
    /// Stays open this long before letting probes through.
    pub open_for: Duration,
    /// Requests let through at once while half-open.
    pub half_open_probes: u32,
    /// Whether an ERP 5xx counts as a failure (connect errors and timeouts always do).
    pub trip_on_5xx: bool,
}

/// Retries after a failed connection (the request never reached the ERP).
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Most retries of one request.
    pub max_per_request: u32,
    /// Retries may add at most this share of requests (0.0..=1.0) on top of the traffic.
    pub budget_ratio: f64,
}

/// A route's own protection settings.
#[derive(Debug, Clone, Default)]
pub struct RouteLimits {
    /// The rate class its requests are charged to; `None` is the default class.
    pub rate_class: Option<String>,
    /// Whether cache hits are charged too (they cost the ERP nothing).
    pub rate_limit_hits: bool,
    /// This route's own cap on requests in flight to the ERP, inside the global one.
    pub max_in_flight: Option<usize>,
    /// Overrides `upstream.connect_timeout_ms`.
    pub connect_timeout: Option<Duration>,
    /// Overrides `upstream.read_timeout_ms`: the longest wait for the response to start (and
    /// between any two reads).
    pub first_byte_timeout: Option<Duration>,
    /// The longest the whole ERP response may take, body included.
    pub total_timeout: Option<Duration>,
}

/// Who may use `POST /purge`, and the read endpoints when they are protected.
///
/// `Debug` never shows the token: the configuration's version (`admin::stats::config_version`)
/// is a digest of its `Debug` form and is published unauthenticated, and logs print it too.
#[derive(Clone)]
pub struct AdminSettings {
    /// Token written in the file; wins over `token_env`.
    pub token: Option<String>,
    /// Environment variable read for the token when `token` is `None`.
    pub token_env: String,
    /// Clients allowed to send `PURGE` to the proxy port.
    pub purge_from: Vec<ipnet::IpNet>,
    /// `/stats`, `/metrics` and `/dashboard` need the token too.
    pub protect_reads: bool,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .field("token_env", &self.token_env)
            .field("purge_from", &self.purge_from)
            .field("protect_reads", &self.protect_reads)
            .finish()
    }
}

/// A write-triggered invalidation: when a request matching `path` and `methods` succeeds (2xx),
/// the listed cached content is purged.
#[derive(Debug, Clone)]
pub struct InvalidationRule {
    /// Unique name, for logs and metrics.
    pub name: String,
    /// Which request paths trigger it.
    pub path: PathMatch,
    /// Which methods trigger it.
    pub methods: Vec<Method>,
    /// What it purges.
    pub purge: PurgeSet,
    /// Refresh the purged keys that clients use right away, instead of on their next request.
    pub rewarm: bool,
}

/// What an invalidation rule purges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PurgeSet {
    /// Routes by name.
    pub routes: Vec<String>,
    /// Path prefixes.
    pub prefixes: Vec<String>,
    /// Tags (from routes' `tags` and the ERP's tag header).
    pub tags: Vec<String>,
    /// Everything cached.
    pub everything: bool,
}

impl AdminSettings {
    /// The bearer token in force: the file's, else the environment variable's (if set and not
    /// empty). `None` means no token is configured and purge answers loopback clients only.
    pub fn resolve_token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::env::var(&self.token_env)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        })
    }
}

/// What is recorded per request besides the Prometheus metrics (which are always on).
#[derive(Debug, Clone, Copy)]
pub struct ObservabilitySettings {
    /// One access line per request (log target `access`).
    pub access_log: bool,
    /// Latency percentiles and hot keys for `/stats`, the dashboard and `knitcache report`.
    pub stats: bool,
}

/// How to reach the ERP.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The ERP's address, e.g. `127.0.0.1:5007`.
    pub address: SocketAddr,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for response bytes once the request is sent (the slowest ERP handler
    /// takes 7 s cold, so this must be generous).
    pub read_timeout: Duration,
    /// Longest wait to write the request (body) to the ERP.
    pub write_timeout: Duration,
    /// Path the health probe GETs (in both ERP modes; any answer below 500 means "up").
    pub health_path: String,
    /// Time between two health probes.
    pub health_interval: Duration,
    /// Longest a health probe may take.
    pub health_timeout: Duration,
    /// How the ERP reads request targets: the form they are brought to (`canonical`).
    pub url_form: crate::canonical::Form,
}

/// The hybrid cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Directory of the disk tier.
    pub dir: PathBuf,
    /// Bytes the memory tier may hold (bodies + headers).
    pub memory_bytes: u64,
    /// Bytes the disk tier may use.
    pub disk_bytes: u64,
    /// Largest body that is stored; larger responses are proxied but not cached.
    pub max_object_bytes: u64,
    /// How long a request waits for another request's fill of the same key before it goes
    /// upstream itself (request coalescing).
    pub lock_timeout: Duration,
    /// Compression of stored bodies for clients that accept it.
    pub compression: CompressionSettings,
    /// Response header whose space- or comma-separated words tag a stored response
    /// (`Surrogate-Key`); `None`: only route tags.
    pub tag_header: Option<http::HeaderName>,
}

/// Compression applied before a body is stored, so a hit never recompresses.
#[derive(Debug, Clone)]
pub struct CompressionSettings {
    /// Off: bodies are stored and served as the ERP sent them.
    pub enabled: bool,
    /// Compression level for gzip and zstd (1..=9).
    pub level: u32,
}

/// Process settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// On SIGTERM, the longest in-flight requests get to finish before the process exits (it
    /// exits as soon as they have).
    pub grace_period: Duration,
    /// After a graceful upgrade's grace period, how long runtimes get to stop.
    pub graceful_shutdown_timeout: Duration,
    /// pid file (used by pingora's graceful upgrade).
    pub pid_file: PathBuf,
    /// Unix socket that hands listeners to a new process during a graceful upgrade.
    pub upgrade_sock: PathBuf,
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name, used in logs and metric labels.
    pub name: String,
    /// Which paths the route matches.
    pub path: PathMatch,
    /// Which methods the route matches; `None` matches every method.
    pub methods: Option<Vec<Method>>,
    /// What happens to matching requests.
    pub action: RouteAction,
    /// Rate class, concurrency cap and timeouts of the route.
    pub limits: RouteLimits,
    /// Tags every response of the route carries, for purges by tag.
    pub tags: Vec<String>,
    /// The route's own access policy; `None`: `access.default`.
    pub access: Option<Arc<AccessPolicy>>,
}

/// How a route matches a request path (the query string is never part of the match).
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string.
    Prefix(String),
    /// The whole path matches this regular expression (anchored at both ends).
    Pattern(Regex),
}

/// What a route does with a request.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// GET/HEAD are cached with this policy; other methods pass through.
    Cache(CachePolicy),
    /// Everything passes through untouched and is never cached (writes, side-effect GETs).
    Pass,
}

/// How responses of a caching route are cached.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// Freshness lifetime of a stored response.
    pub ttl: Duration,
    /// After `ttl`, how long a stale copy may be served while one background request
    /// refreshes it.
    pub stale_while_revalidate: Duration,
    /// After `ttl`, how long a stale copy may be served when the ERP fails or is down.
    pub stale_if_error: Duration,
    /// Which query parameters form the cache key.
    pub query: QueryKey,
    /// Response statuses that may be stored.
    pub statuses: StoredStatuses,
    /// In `Freshness::Route`: 4xx statuses stored with `error_ttl` as their lifetime and no
    /// stale windows, whether or not `statuses` lists them (sorted, deduplicated; empty on
    /// `Freshness::Origin` routes, where the origin's headers decide).
    pub error_statuses: Vec<u16>,
    /// Freshness lifetime of the `error_statuses`; zero: they are not stored.
    pub error_ttl: Duration,
    /// Who decides how long a stored response is fresh: the route (`ttl`) or the origin's
    /// headers, as RFC 9111 says.
    pub freshness: Freshness,
    /// In `Freshness::Route`: whether the ERP's own `Cache-Control`/`Expires` are honoured or
    /// overridden by `ttl`.
    pub origin_cache_control: OriginCacheControl,
    /// Store responses even if they carry `Cache-Control: no-store`/`private`. Only for routes
    /// known to return the same body to everyone. `Set-Cookie` is `set_cookie`'s decision.
    pub ignore_no_store: bool,
    /// What a request carrying `Cookie` gets.
    pub request_cookies: RequestCookies,
    /// What happens to a response carrying `Set-Cookie`.
    pub set_cookie: SetCookie,
    /// Heuristic freshness (RFC 9111 §4.2.2) in `Freshness::Origin`; `None`: never heuristic.
    pub heuristic: Option<Heuristic>,
    /// Most stored variants (`Vary`, codings) of one URL; the oldest is evicted past it.
    pub max_variants: usize,
}

/// Which response statuses may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredStatuses {
    /// Only these (sorted, deduplicated).
    Only(Vec<u16>),
    /// RFC 9111 §3: any status whose response has explicit freshness (or validators, to be
    /// revalidated), and the heuristically cacheable statuses (RFC 9110 §15.1) heuristically.
    Standard,
}

/// Who decides a stored response's freshness lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The route's `ttl` and stale windows (the ERP sends no caching headers), subject to
    /// `origin_cache_control`.
    Route,
    /// RFC 9111: `Knitcache-Cache-Control`, then `CDN-Cache-Control` (RFC 9213), then
    /// `Cache-Control` and `Expires`, the current age from `Age` and `Date`, heuristics for
    /// responses that say nothing; the route's stale windows only where the origin allows.
    Origin,
}

/// What a request with a `Cookie` header gets from a caching route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCookies {
    /// Passed to the origin, never answered from or stored in the cache: the answer may depend
    /// on who is asking.
    Bypass,
    /// Treated like any other request (for origins, like the ERP, that use no cookies).
    Ignore,
}

/// What happens to a response carrying `Set-Cookie` on a caching route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCookie {
    /// Never stored: the cookie is meant for one client.
    Refuse,
    /// Stored without its `Set-Cookie` fields; the client that caused the fill still gets them.
    Strip,
}

/// Heuristic freshness for responses with `Last-Modified` and no explicit lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heuristic {
    /// Share of the time since `Last-Modified` the response stays fresh (RFC 9111 suggests 10 %).
    pub fraction: f64,
    /// Longest heuristic lifetime.
    pub max: Duration,
}

/// Which query parameters form the cache key. Parameters in the key are sorted, so
/// `?a=1&b=2` and `?b=2&a=1` share one entry. The request sent upstream is never changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKey {
    /// Every parameter.
    All,
    /// Only these parameters; the others do not change the key.
    Only(Vec<String>),
    /// Every parameter except these.
    Ignore(Vec<String>),
}

/// The ERP's own caching headers (it sends none today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCacheControl {
    /// Use the origin's `Cache-Control: max-age`/`s-maxage`/`Expires` (and its targeted fields)
    /// when present, corrected by the response's age, the route's TTL when absent.
    Honour,
    /// Always use the route's TTL; origin freshness directives are ignored (`no-store` and
    /// `private` still prevent storing unless `ignore_no_store`).
    Override,
}

impl PathMatch {
    /// True if `path` (without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Pattern(re) => re.is_match(path),
        }
    }
}

impl CachePolicy {
    /// The longest a response stored under this policy may be served: its TTL and the longer
    /// stale window, or the error TTL of a stored error if that is longer; where the origin's
    /// headers set the lifetime and windows, their cap.
    pub fn longest_retention(&self) -> Duration {
        let origin_decides = self.freshness == Freshness::Origin
            || self.origin_cache_control == OriginCacheControl::Honour;
        if origin_decides {
            return 2 * Duration::from_secs(super::defaults::MAX_ORIGIN_LIFETIME_SECS);
        }
        let stored = self.ttl + self.stale_while_revalidate.max(self.stale_if_error);
        if self.error_statuses.is_empty() {
            return stored;
        }
        // A stored error has no stale windows.
        stored.max(self.error_ttl)
    }

    /// True if a response with `status` is stored under the error rule (`error_statuses`,
    /// `Freshness::Route` only) rather than the route's `statuses` and TTL.
    pub fn is_error_status(&self, status: u16) -> bool {
        self.freshness == Freshness::Route && self.error_statuses.binary_search(&status).is_ok()
    }
}

impl Route {
    /// True if the route matches this method and path.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.contains(method)) && self.path.matches(path)
    }

    /// The cache policy, if this route caches.
    pub fn cache_policy(&self) -> Option<&CachePolicy> {
        match &self.action {
            RouteAction::Cache(p) => Some(p),
            RouteAction::Pass => None,
        }
    }
}

impl Config {
    /// The longest time any stored response may still be served (TTL plus the longer stale
    /// window) over every caching route; a purge ban older than this matches nothing.
    pub fn longest_retention(&self) -> Duration {
        self.routes
            .iter()
            .filter_map(Route::cache_policy)
            .map(CachePolicy::longest_retention)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The access policy of `route` (`None`: a path no route matches): the route's own, else
    /// `access.default`; `None` when nothing restricts it.
    pub fn access_policy<'a>(&'a self, route: Option<&'a Route>) -> Option<&'a Arc<AccessPolicy>> {
        route
            .and_then(|r| r.access.as_ref())
            .or(self.access.default.as_ref())
    }

    /// The first route matching `method` and `path`, with its index; `None` means the request
    /// is proxied untouched under the catch-all route.
    pub fn route_for(&self, method: &Method, path: &str) -> Option<(usize, &Route)> {
        let i = self.route_index.find(&self.routes, method, path)?;
        self.routes.get(i).map(|r| (i, r))
    }
}

impl fmt::Display for PathMatch {
    /// `exact /api/x`, `prefix /api/backtest/`, or `pattern <expression as written>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Exact(p) => write!(f, "exact {p}"),
            PathMatch::Prefix(p) => write!(f, "prefix {p}"),
            PathMatch::Pattern(re) => {
                // Validation anchors the expression as `^(?:…)$`; show what the file says.
                let s = re.as_str();
                let written = s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$"));
                write!(f, "pattern {}", written.unwrap_or(s))
            }
        }
    }
}

impl fmt::Display for QueryKey {
    /// `all`, `none` (`only: []`), `only(a,b)` or `ignore(a,b)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryKey::All => f.write_str("all"),
            QueryKey::Only(names) if names.is_empty() => f.write_str("none"),
            QueryKey::Only(names) => write!(f, "only({})", names.join(",")),
            QueryKey::Ignore(names) => write!(f, "ignore({})", names.join(",")),
        }
    }
}
