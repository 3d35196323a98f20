//! The validated runtime configuration: what the proxy, the cache and the CLI read.
//!
//! Nothing here knows about YAML; `validate.rs` builds these types from the file layer
//! (`file.rs`) and is the only place a `Config` is made from user input. Every duration is a
//! `Duration`, every address is parsed, every pattern is compiled.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// The ERP.
    pub upstream: UpstreamSettings,
    /// Memory and disk tiers.
    pub cache: CacheSettings,
    /// Process-level settings handed to pingora.
    pub server: ServerSettings,
    /// Routes in match order: the first route that matches a request wins.
    pub routes: Vec<Route>,
    /// Credentials of the mutating admin endpoints.
    pub admin: AdminSettings,
    /// Access log and statistics switches.
    pub observability: ObservabilitySettings,
}

/// Who may use `POST /purge`.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Token written in the file; wins over `token_env`.
    pub token: Option<String>,
    /// Environment variable read for the token when `token` is `None`.
    pub token_env: String,
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
}

/// Compression applied before a body is stored, so a hit never recompresses.
#[derive(Debug, Clone)]
pub struct CompressionSettings {
    /// Off: bodies are stored and served as the ERP sent them.
    pub enabled: bool,
    /// Compression level for gzip, br and zstd (1..=9).
    pub level: u32,
}

/// Process settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// On SIGTERM, how long in-flight requests get to finish before the process exits.
    pub grace_period: Duration,
    /// After the grace period, how long runtimes get to stop.
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
    pub statuses: Vec<u16>,
    /// Whether the ERP's own `Cache-Control`/`Expires` are honoured or overridden by `ttl`.
    pub origin_cache_control: OriginCacheControl,
    /// Store responses even if they carry `Cache-Control: no-store`/`private` or `Set-Cookie`.
    /// Only for routes known to return the same body to everyone.
    pub ignore_no_store: bool,
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
    /// Use the origin's `Cache-Control: max-age`/`s-maxage`/`Expires` when present, the route's
    /// TTL when absent.
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
            .map(|p| p.ttl + p.stale_while_revalidate.max(p.stale_if_error))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The first route matching `method` and `path`, with its index; `None` means the request
    /// is proxied untouched under the catch-all route.
    pub fn route_for(&self, method: &Method, path: &str) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(method, path))
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
