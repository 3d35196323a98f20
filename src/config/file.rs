//! The YAML schema: serde structs that mirror the config file key for key (`File*`).
//!
//! These types only describe what may be written; `validate/` turns them into the model that
//! the rest of the proxy reads. Nothing outside `config/` uses them. Every struct denies unknown
//! keys, so a typo is an error, and every key carries its unit in its name.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::defaults::*;
use super::model::{Freshness, OriginCacheControl, QueryKey, RequestCookies, SetCookie};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Address (`IP:port`) where clients connect. Default: `DEFAULT_LISTEN` (`0.0.0.0:5006`).
    pub listen: String,
    /// Address (`IP:port`) of the admin endpoints. Default: `DEFAULT_ADMIN_LISTEN`
    /// (`127.0.0.1:5009`).
    pub admin_listen: String,
    /// The ERP. Required: there is no sensible default for where the ERP runs.
    pub upstream: Option<FileUpstream>,
    /// The memory and disk tiers. Default: every `cache.*` default.
    pub cache: FileCache,
    /// Process settings handed to pingora. Default: every `server.*` default.
    pub server: FileServer,
    /// Cache settings inherited by every caching route that does not set its own.
    pub defaults: FileDefaults,
    /// The route table, in match order (first match wins). Default: empty, so everything passes
    /// through uncached.
    pub routes: Vec<FileRoute>,
    /// Rate limits, the concurrency cap, the circuit breaker and retries. Default: every
    /// `protection.*` default (rate limiting off, everything else on).
    pub protection: FileProtection,
    /// Refreshing hot keys before they expire, and the warm list. Default: every `warming.*`
    /// default (on, empty warm list).
    pub warming: FileWarming,
    /// The admin endpoints' credentials. Default: token from `KNITCACHE_ADMIN_TOKEN`, if set.
    pub admin: FileAdmin,
    /// Access log and statistics switches. Default: both on.
    pub observability: FileObservability,
    /// Purges triggered by successful writes. Default: none.
    pub invalidation: Vec<FileInvalidation>,
    /// What a client may send and how long it may take. Default: every `clients.*` default.
    pub clients: FileClients,
    /// Who may use which route. Default: no policy, everyone may use every route.
    pub access: FileAccess,
    /// Address (`IP:port`) of the HTTPS listener. Default: none (no TLS); needs `tls.cert_file`
    /// and `tls.key_file`.
    pub listen_tls: Option<String>,
    /// The HTTPS listener's certificate, key and options. Default: every `tls.*` default.
    pub tls: FileTls,
    /// Accept HTTP/2 with prior knowledge (h2c) on `listen`. Default: `DEFAULT_H2C` (false).
    pub h2c: bool,
    /// Sharing invalidations with other replicas through a Redis-protocol server. Default: off.
    pub cluster: FileCluster,
}

/// `access:`, named policies routes refer to with `access`, and the default one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAccess {
    /// The policy of routes that set no `access` and of paths no route matches. Default: none.
    pub default: Option<String>,
    /// Policies by name. Default: none.
    pub policies: std::collections::BTreeMap<String, FileAccessPolicy>,
}

/// One `access.policies` entry. A policy with no rules admits everyone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAccessPolicy {
    /// Clients (`IP` or `IP/prefix`) admitted. Default: every address.
    pub allow: Vec<String>,
    /// Clients (`IP` or `IP/prefix`) refused, whatever `allow` says. Default: none.
    pub deny: Vec<String>,
    /// HTTP Basic against an htpasswd file. Default: none.
    pub basic: Option<FileBasic>,
    /// An external service decides (nginx `auth_request`, Traefik ForwardAuth). Default: none.
    pub forward_auth: Option<FileForwardAuth>,
    /// Whether the credentials the login consumed (`Authorization`; with `forward_auth` also
    /// `Cookie`) still reach the ERP.
    /// Default: `DEFAULT_PASS_CREDENTIALS` (false).
    pub pass_credentials: bool,
}

/// `access.policies.<name>.basic:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileBasic {
    /// The htpasswd file (bcrypt or argon2 hashes). Required.
    pub htpasswd: Option<PathBuf>,
    /// The realm of the login prompt. Default: `DEFAULT_BASIC_REALM` (`knitcache`).
    pub realm: String,
    /// Seconds a successful check is remembered. Default: `DEFAULT_BASIC_CACHE_SECS` (60).
    pub cache_secs: u64,
}

/// `access.policies.<name>.forward_auth:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileForwardAuth {
    /// `http://IP:port/path` of the service. Required.
    pub url: Option<String>,
    /// Response fields of an admission copied onto the ERP's request. Default: none.
    pub copy_headers: Vec<String>,
    /// Longest exchange with the service, in milliseconds. Default:
    /// `DEFAULT_FORWARD_AUTH_TIMEOUT_MS` (2000).
    pub timeout_ms: u64,
    /// Seconds an admission is remembered. Default: `DEFAULT_FORWARD_AUTH_CACHE_SECS` (30).
    pub cache_secs: u64,
    /// Largest refusal body relayed to the client. Default:
    /// `DEFAULT_FORWARD_AUTH_MAX_BODY_BYTES` (65536).
    pub max_body_bytes: u64,
}

impl Default for FileForwardAuth {
    fn default() -> Self {
        Self {
            url: None,
            copy_headers: Vec::new(),
            timeout_ms: DEFAULT_FORWARD_AUTH_TIMEOUT_MS,
            cache_secs: DEFAULT_FORWARD_AUTH_CACHE_SECS,
            max_body_bytes: DEFAULT_FORWARD_AUTH_MAX_BODY_BYTES,
        }
    }
}

impl Default for FileBasic {
    fn default() -> Self {
        Self {
            htpasswd: None,
            realm: DEFAULT_BASIC_REALM.to_owned(),
            cache_secs: DEFAULT_BASIC_CACHE_SECS,
        }
    }
}

/// `tls:`, the HTTPS listener's certificate and what plain HTTP clients are told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTls {
    /// PEM certificate chain, the server's certificate first. Default: none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate. Default: none.
    pub key_file: Option<PathBuf>,
    /// Answer plain-HTTP requests with `308` to HTTPS. Default: false.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` max-age in seconds on HTTPS responses; 0: no header.
    /// Default: 0.
    pub hsts_max_age_secs: u64,
}

/// `cluster:`, the Redis-protocol server (Valkey, Redis 7) the replicas share. Off unless `url`
/// (or `--cluster`) is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileCluster {
    /// `redis://host:port/db`, or `rediss://` for TLS; no password in it. Default: none (off).
    pub url: Option<String>,
    /// Environment variable holding the server's password (the user name, if any, is in the
    /// URL). Default: `DEFAULT_CLUSTER_PASSWORD_ENV` (`KNITCACHE_REDIS_PASSWORD`).
    pub password_env: String,
    /// Prefix of every key knitcache writes, so several clusters can share one server.
    /// Default: `DEFAULT_CLUSTER_KEY_PREFIX` (`knitcache`).
    pub key_prefix: String,
    /// Milliseconds one operation on the server may take before it counts as failed.
    /// Default: `DEFAULT_CLUSTER_TIMEOUT_MS` (500).
    pub timeout_ms: u64,
    /// Largest stored response shared with the other replicas through Redis; 0 shares none
    /// (and takes no fill leases). Default: `DEFAULT_CLUSTER_SHARED_MAX_OBJECT_BYTES` (4 MiB).
    pub shared_max_object_bytes: u64,
    /// Milliseconds one replica's lease to fill a key lasts at most. Default:
    /// `DEFAULT_CLUSTER_LEASE_MS` (30000).
    pub lease_ms: u64,
}

impl Default for FileCluster {
    fn default() -> Self {
        Self {
            url: None,
            password_env: DEFAULT_CLUSTER_PASSWORD_ENV.to_owned(),
            key_prefix: DEFAULT_CLUSTER_KEY_PREFIX.to_owned(),
            timeout_ms: DEFAULT_CLUSTER_TIMEOUT_MS,
            shared_max_object_bytes: DEFAULT_CLUSTER_SHARED_MAX_OBJECT_BYTES,
            lease_ms: DEFAULT_CLUSTER_LEASE_MS,
        }
    }
}

/// `clients:`, limits on what one client connection may send and how long it may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileClients {
    /// Milliseconds for a request's whole header. Default: `DEFAULT_HEADER_TIMEOUT_MS` (10000).
    pub header_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may wait for its next request. Default:
    /// `DEFAULT_IDLE_TIMEOUT_MS` (60000).
    pub idle_timeout_ms: u64,
    /// Milliseconds for a whole request body. Default: `DEFAULT_BODY_TIMEOUT_MS` (60000).
    pub body_timeout_ms: u64,
    /// Milliseconds a response write may make no progress. Default: `DEFAULT_SEND_TIMEOUT_MS`
    /// (30000).
    pub send_timeout_ms: u64,
    /// Longest request target. Default: `DEFAULT_MAX_URI_BYTES` (8192).
    pub max_uri_bytes: u64,
    /// Largest request head. Default: `DEFAULT_MAX_HEADER_BYTES` (32768).
    pub max_header_bytes: u64,
    /// Most header fields. Default: `DEFAULT_MAX_HEADERS` (100).
    pub max_headers: u64,
    /// Largest body of a GET/HEAD on a caching route. Default: `DEFAULT_MAX_READ_BODY_BYTES` (0).
    pub max_read_body_bytes: u64,
    /// Most connections from one address; 0: no cap. Default:
    /// `DEFAULT_MAX_CONNECTIONS_PER_ADDRESS` (0).
    pub max_connections_per_address: u64,
}

impl Default for FileClients {
    fn default() -> Self {
        Self {
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            body_timeout_ms: DEFAULT_BODY_TIMEOUT_MS,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_read_body_bytes: DEFAULT_MAX_READ_BODY_BYTES,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

/// `warming:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileWarming {
    /// Turns the warmer on. Default: `DEFAULT_WARMING_ENABLED` (true).
    pub enabled: bool,
    /// Keys tracked as hot. Default: `DEFAULT_HOT_KEYS` (256).
    pub hot_keys: u64,
    /// Seconds before expiry a hot key is refreshed. Default: `DEFAULT_WARM_LEAD_SECS` (10).
    pub lead_secs: u64,
    /// Seconds since a client last asked within which a key is still refreshed. Default:
    /// `DEFAULT_WARM_ACTIVE_SECS` (120).
    pub active_secs: u64,
    /// Warm requests in flight at once. Default: `DEFAULT_WARM_CONCURRENCY` (2).
    pub concurrency: u64,
    /// Seconds between two fetches of the warm list. Default: `DEFAULT_WARM_INTERVAL_SECS` (60).
    pub interval_secs: u64,
    /// Paths (with query) fetched at startup and every `interval_secs`. Default: none.
    pub list: Vec<String>,
}

impl Default for FileWarming {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_WARMING_ENABLED,
            hot_keys: DEFAULT_HOT_KEYS,
            lead_secs: DEFAULT_WARM_LEAD_SECS,
            active_secs: DEFAULT_WARM_ACTIVE_SECS,
            concurrency: DEFAULT_WARM_CONCURRENCY,
            interval_secs: DEFAULT_WARM_INTERVAL_SECS,
            list: Vec::new(),
        }
    }
}

/// `protection:`, what keeps the single-process ERP alive under bursts and failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileProtection {
    /// `Retry-After` of a `503` when the ERP cannot be asked and nothing is cached, in seconds.
    /// Default: `DEFAULT_RETRY_AFTER_SECS` (5).
    pub retry_after_secs: u64,
    /// Per-client token buckets. Default: off.
    pub rate_limit: FileRateLimit,
    /// The cap on concurrent requests to the ERP. Default: every `upstream_cap.*` default.
    pub upstream_cap: FileUpstreamCap,
    /// The circuit breaker. Default: on, every `breaker.*` default.
    pub breaker: FileBreaker,
    /// Retries of idempotent requests whose connection failed. Default: every `retries.*` default.
    pub retries: FileRetries,
}

/// `protection.rate_limit:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileRateLimit {
    /// Turns per-client rate limiting on. Default: `DEFAULT_RATE_LIMIT_ENABLED` (false).
    pub enabled: bool,
    /// Sustained requests per second per client. Default: `DEFAULT_RATE_PER_SEC` (20).
    pub requests_per_sec: u64,
    /// Requests a client may send at once after being idle. Default: `DEFAULT_RATE_BURST` (60).
    pub burst: u64,
    /// Named classes (`name: { requests_per_sec, burst }`) that routes opt into with
    /// `rate_limit_class`. Default: none.
    pub classes: std::collections::BTreeMap<String, FileRateClass>,
    /// Peers (`IP` or `IP/prefix`) whose `X-Forwarded-For` names the client. Default: none.
    pub trusted_proxies: Vec<String>,
    /// Most clients tracked at once per rate class. Default: `DEFAULT_RATE_MAX_CLIENTS` (10000).
    pub max_clients: u64,
    /// How often, in seconds, clients whose bucket has refilled are forgotten. Default:
    /// `DEFAULT_RATE_IDLE_SECS` (300).
    pub idle_secs: u64,
}

/// One `protection.rate_limit.classes` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRateClass {
    /// Sustained requests per second per client.
    pub requests_per_sec: u64,
    /// Requests a client may send at once after being idle.
    pub burst: u64,
}

/// `protection.upstream_cap:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileUpstreamCap {
    /// Requests in flight to the ERP at once. Default: `DEFAULT_MAX_IN_FLIGHT` (8).
    pub max_in_flight: u64,
    /// Requests waiting for a slot. Default: `DEFAULT_QUEUE` (200).
    pub queue: u64,
    /// Longest wait for a slot, in milliseconds. Default: `DEFAULT_QUEUE_TIMEOUT_MS` (10000).
    pub queue_timeout_ms: u64,
}

/// `protection.breaker:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileBreaker {
    /// Turns the breaker on. Default: `DEFAULT_BREAKER_ENABLED` (true).
    pub enabled: bool,
    /// Failures in a row that open it. Default: `DEFAULT_BREAKER_CONSECUTIVE` (5).
    pub consecutive_failures: u64,
    /// Share of failed requests, in percent, that opens it. Default:
    /// `DEFAULT_BREAKER_ERROR_PERCENT` (50).
    pub error_ratio_percent: u64,
    /// Window of that share, in seconds. Default: `DEFAULT_BREAKER_WINDOW_SECS` (30).
    pub window_secs: u64,
    /// Requests the window must hold before the share counts. Default:
    /// `DEFAULT_BREAKER_MIN_REQUESTS` (20).
    pub min_requests: u64,
    /// Seconds it stays open before probing. Default: `DEFAULT_BREAKER_OPEN_SECS` (10).
    pub open_secs: u64,
    /// Probe requests let through at once while half-open. Default:
    /// `DEFAULT_BREAKER_PROBES` (1).
    pub half_open_probes: u64,
    /// Whether an ERP 5xx counts as a failure. Default: `DEFAULT_BREAKER_TRIP_ON_5XX` (true).
    pub trip_on_5xx: bool,
}

/// `protection.retries:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileRetries {
    /// Most retries of one request. Default: `DEFAULT_RETRIES` (1).
    pub max_per_request: u64,
    /// Retries may add at most this share of requests, in percent. Default:
    /// `DEFAULT_RETRY_BUDGET_PERCENT` (10).
    pub budget_percent: u64,
}

impl Default for FileProtection {
    fn default() -> Self {
        Self {
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            rate_limit: FileRateLimit::default(),
            upstream_cap: FileUpstreamCap::default(),
            breaker: FileBreaker::default(),
            retries: FileRetries::default(),
        }
    }
}

impl Default for FileRateLimit {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_RATE_LIMIT_ENABLED,
            requests_per_sec: DEFAULT_RATE_PER_SEC,
            burst: DEFAULT_RATE_BURST,
            classes: Default::default(),
            trusted_proxies: Vec::new(),
            max_clients: DEFAULT_RATE_MAX_CLIENTS,
            idle_secs: DEFAULT_RATE_IDLE_SECS,
        }
    }
}

impl Default for FileUpstreamCap {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            queue: DEFAULT_QUEUE,
            queue_timeout_ms: DEFAULT_QUEUE_TIMEOUT_MS,
        }
    }
}

impl Default for FileBreaker {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_BREAKER_ENABLED,
            consecutive_failures: DEFAULT_BREAKER_CONSECUTIVE,
            error_ratio_percent: DEFAULT_BREAKER_ERROR_PERCENT,
            window_secs: DEFAULT_BREAKER_WINDOW_SECS,
            min_requests: DEFAULT_BREAKER_MIN_REQUESTS,
            open_secs: DEFAULT_BREAKER_OPEN_SECS,
            half_open_probes: DEFAULT_BREAKER_PROBES,
            trip_on_5xx: DEFAULT_BREAKER_TRIP_ON_5XX,
        }
    }
}

impl Default for FileRetries {
    fn default() -> Self {
        Self {
            max_per_request: DEFAULT_RETRIES,
            budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
        }
    }
}

/// `admin:`, who may use the mutating admin endpoints (`POST /purge`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAdmin {
    /// Bearer token for `POST /purge`, written in the file. Wins over `token_env`.
    /// Default: none.
    pub token: Option<String>,
    /// Environment variable holding the bearer token when `token` is not set.
    /// Default: `DEFAULT_ADMIN_TOKEN_ENV` (`KNITCACHE_ADMIN_TOKEN`).
    pub token_env: String,
    /// Clients (`IP` or `IP/prefix`) allowed to send `PURGE` to the proxy port.
    /// Default: loopback only.
    pub purge_from: Vec<String>,
    /// Require the admin token for `/stats`, `/metrics` and `/dashboard` too.
    /// Default: `DEFAULT_ADMIN_PROTECT_READS` (off).
    pub protect_reads: bool,
}

/// One `invalidation[]` rule. Exactly one of `exact`, `prefix` and `pattern` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInvalidation {
    /// Unique name, for logs and metrics. Required.
    pub name: Option<String>,
    /// Triggered by a request path equal to this.
    pub exact: Option<String>,
    /// Triggered by a request path starting with this.
    pub prefix: Option<String>,
    /// Triggered by a request path matching this regular expression (anchored).
    pub pattern: Option<String>,
    /// Triggering methods. Default: `[POST, PUT, PATCH, DELETE]`.
    pub methods: Option<Vec<String>>,
    /// What a successful (2xx) triggering request purges. Required.
    pub purge: Option<FilePurgeSet>,
    /// Refresh purged keys in use right away. Default: false.
    #[serde(default)]
    pub rewarm: bool,
}

/// `invalidation[].purge`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilePurgeSet {
    /// Route names.
    pub routes: Vec<String>,
    /// Path prefixes.
    pub prefixes: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Everything cached.
    pub everything: bool,
}

/// `observability:`, what is recorded per request besides the Prometheus metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileObservability {
    /// One access line per request. Default: `DEFAULT_ACCESS_LOG` (true).
    pub access_log: bool,
    /// Latency percentiles and hot keys for `/stats`. Default: `DEFAULT_STATS` (true).
    pub stats: bool,
}

/// `upstream:`, how to reach the ERP.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileUpstream {
    /// The ERP's address, `IP:port` (host names are not resolved). Required.
    pub address: Option<String>,
    /// TCP connect timeout, in milliseconds. Default: `DEFAULT_CONNECT_TIMEOUT_MS` (1000).
    pub connect_timeout_ms: u64,
    /// Longest wait for response bytes once the request is sent, in milliseconds.
    /// Default: `DEFAULT_READ_TIMEOUT_MS` (30000).
    pub read_timeout_ms: u64,
    /// Longest wait to write the request to the ERP, in milliseconds.
    /// Default: `DEFAULT_WRITE_TIMEOUT_MS` (10000).
    pub write_timeout_ms: u64,
    /// Path the health probe GETs; any answer below 500 means the ERP is up.
    /// Default: `DEFAULT_HEALTH_PATH` (`/hello`).
    pub health_path: String,
    /// Time between two health probes, in milliseconds.
    /// Default: `DEFAULT_HEALTH_INTERVAL_MS` (5000).
    pub health_interval_ms: u64,
    /// Longest a health probe may take, in milliseconds.
    /// Default: `DEFAULT_HEALTH_TIMEOUT_MS` (2000).
    pub health_timeout_ms: u64,
    /// How the origin reads request targets, so which rewrites keep the URL it names.
    /// Default: `wsgi` (the ERP's).
    pub url_form: FileUrlForm,
}

/// `upstream.url_form:` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileUrlForm {
    /// `wsgi`: every escape decoded (`%2F` is `/`), runs of `/` merged, `+` in a query a space.
    #[default]
    Wsgi,
    /// `rfc3986`: only RFC 3986's normalisation; `%2F`, `//`, `+` and `;` stay as sent.
    Rfc3986,
}

/// `cache:`, the hybrid memory + disk cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileCache {
    /// Directory of the disk tier; relative paths are relative to the working directory.
    /// Default: `DEFAULT_CACHE_DIR` (`/var/cache/knitcache`).
    pub dir: PathBuf,
    /// Size of the memory tier, in MiB. Default: `DEFAULT_MEMORY_MIB` (256).
    pub memory_mib: u64,
    /// Size of the disk tier, in MiB. Default: `DEFAULT_DISK_MIB` (2048).
    pub disk_mib: u64,
    /// Largest body that is stored, in bytes; larger responses are proxied but not cached.
    /// At most the memory tier and at most 64 MiB. Default: `DEFAULT_MAX_OBJECT_BYTES` (4194304).
    pub max_object_bytes: u64,
    /// How long a request waits for another request's fill of the same key, in milliseconds.
    /// Default: `DEFAULT_LOCK_TIMEOUT_MS` (10000).
    pub lock_timeout_ms: u64,
    /// Compression of stored bodies. Default: enabled, level 6.
    pub compression: FileCompression,
    /// Response header whose words tag a stored response; empty turns it off.
    /// Default: `DEFAULT_TAG_HEADER` (`surrogate-key`).
    pub tag_header: String,
}

/// `cache.compression:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileCompression {
    /// Compress bodies once, before they are stored. Default: `DEFAULT_COMPRESSION_ENABLED` (true).
    pub enabled: bool,
    /// Level, 1 (fastest) ..= 9 (smallest). Default: `DEFAULT_COMPRESSION_LEVEL` (6).
    pub level: u32,
}

/// `server:`, process settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileServer {
    /// Worker threads of the proxy service, at least 1. Default (unset): `default_threads()`,
    /// one per CPU the process may run on.
    pub threads: Option<usize>,
    /// The longest in-flight requests get after SIGTERM, in seconds.
    /// Default: `DEFAULT_GRACE_PERIOD_SECS` (10).
    pub grace_period_secs: u64,
    /// Time runtimes get to stop after a graceful upgrade's grace period, in seconds.
    /// Default: `DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECS` (5).
    pub graceful_shutdown_timeout_secs: u64,
    /// pid file for graceful upgrades. Default: `DEFAULT_PID_FILE` (`/tmp/knitcache.pid`).
    pub pid_file: PathBuf,
    /// Unix socket that hands listeners to the next process in a graceful upgrade.
    /// Default: `DEFAULT_UPGRADE_SOCK` (`/tmp/knitcache_upgrade.sock`).
    pub upgrade_sock: PathBuf,
}

/// `defaults:`, cache settings for caching routes that do not set their own. `ignore_no_store`
/// is deliberately not here: storing `no-store` responses is a decision per route.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileDefaults {
    /// Freshness lifetime, in seconds. Default: `DEFAULT_TTL_SECS` (60).
    pub ttl_secs: u64,
    /// Time after `ttl_secs` during which a stale copy is served while one background request
    /// refreshes it, in seconds. Default: `DEFAULT_STALE_WHILE_REVALIDATE_SECS` (30).
    pub stale_while_revalidate_secs: u64,
    /// Time after `ttl_secs` during which a stale copy is served when the ERP fails, in seconds.
    /// Default: `DEFAULT_STALE_IF_ERROR_SECS` (600).
    pub stale_if_error_secs: u64,
    /// Response statuses that may be stored, each in 100..=599. Absent: `DEFAULT_STATUSES`
    /// (200, 203, 204, 300, 301, 308, 404, 410) on `freshness: route` routes, RFC 9111's rules on
    /// `freshness: origin` routes.
    pub statuses: Option<Vec<u16>>,
    /// 4xx statuses stored with `error_ttl_secs` and no stale windows (`freshness: route` only),
    /// whether or not `statuses` lists them. Default: `DEFAULT_ERROR_STATUSES` (none).
    pub error_statuses: Vec<u16>,
    /// Freshness lifetime of the `error_statuses`, in seconds; `0`: they are not stored.
    /// Default: `DEFAULT_ERROR_TTL_SECS` (30).
    pub error_ttl_secs: u64,
    /// Whether the ERP's `Cache-Control`/`Expires` freshness wins over `ttl_secs` (in
    /// `freshness: route`). Default: `override`.
    pub origin_cache_control: FileOriginCacheControl,
    /// Which query parameters form the cache key. Default: `all`.
    pub query_key: FileQueryKey,
    /// Who decides how long a stored response is fresh: `route` (`ttl_secs`) or `origin` (its
    /// headers, as RFC 9111 says). Default: `DEFAULT_FRESHNESS` (`route`).
    pub freshness: FileFreshness,
    /// What a request carrying `Cookie` gets: `bypass` (never answered from or stored in the
    /// cache) or `ignore` (treated like any other). Default: `DEFAULT_REQUEST_COOKIES` (`bypass`).
    pub request_cookies: FileRequestCookies,
    /// What happens to a response carrying `Set-Cookie`: `refuse` (not stored) or `strip`
    /// (stored without it). Default: `DEFAULT_SET_COOKIE` (`refuse`).
    pub set_cookie: FileSetCookie,
    /// Heuristic freshness in `freshness: origin`, in percent of the time since `Last-Modified`,
    /// 0..=100; 0 turns it off. Default: `DEFAULT_HEURISTIC_PERCENT` (10).
    pub heuristic_percent: u64,
    /// Longest heuristic lifetime, in seconds. Default: `DEFAULT_HEURISTIC_MAX_SECS` (86400).
    pub heuristic_max_secs: u64,
    /// Most stored variants (`Vary`, codings) of one URL, 1..=1024.
    /// Default: `DEFAULT_MAX_VARIANTS` (16).
    pub max_variants: u64,
}

/// One `routes[]` entry. Exactly one of `exact`, `prefix` and `pattern` is required. Absent cache
/// keys come from `defaults:`; on a `cache: false` route they must be absent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// Unique name, used in logs, metric labels and the route table. Required.
    pub name: Option<String>,
    /// Matches a path equal to this, e.g. `/api/comprehensive-kpis`.
    pub exact: Option<String>,
    /// Matches a path starting with this, e.g. `/api/backtest/`.
    pub prefix: Option<String>,
    /// Regular expression matched against the whole path (we anchor it with `^(?:…)$`).
    pub pattern: Option<String>,
    /// Methods the route matches, upper case (`[GET, HEAD]`). Absent: every method.
    pub methods: Option<Vec<String>>,
    /// `true` caches GET/HEAD (other methods pass through); `false` passes everything through
    /// untouched (writes, GETs with side effects). Default: `DEFAULT_ROUTE_CACHE` (true).
    pub cache: Option<bool>,
    /// Freshness lifetime, in seconds (`freshness: route` only). `0`: stored but never fresh, so
    /// every request revalidates with the ERP (conditionally when the response has validators),
    /// within the stale windows. Default: `defaults.ttl_secs`.
    pub ttl_secs: Option<u64>,
    /// Stale-while-revalidate window after `ttl_secs`, in seconds.
    /// Default: `defaults.stale_while_revalidate_secs`.
    pub stale_while_revalidate_secs: Option<u64>,
    /// Stale-if-error window after `ttl_secs`, in seconds. Default: `defaults.stale_if_error_secs`.
    pub stale_if_error_secs: Option<u64>,
    /// Which query parameters form the cache key. Default: `defaults.query_key`.
    pub query_key: Option<FileQueryKey>,
    /// Response statuses that may be stored. Default: `defaults.statuses`.
    pub statuses: Option<Vec<u16>>,
    /// 4xx statuses stored with `error_ttl_secs` and no stale windows (`freshness: route`
    /// only); `[]`: none. Default: `defaults.error_statuses`.
    pub error_statuses: Option<Vec<u16>>,
    /// Freshness lifetime of the `error_statuses`, in seconds (`freshness: route` only); `0`:
    /// they are not stored. Default: `defaults.error_ttl_secs`.
    pub error_ttl_secs: Option<u64>,
    /// `honour` or `override` the ERP's freshness headers (`freshness: route` only).
    /// Default: `defaults.origin_cache_control`.
    pub origin_cache_control: Option<FileOriginCacheControl>,
    /// Store responses even with `Cache-Control: no-store`/`private`; only for routes that return
    /// the same body to everyone (`Set-Cookie` is `set_cookie`'s). Default:
    /// `DEFAULT_IGNORE_NO_STORE` (false).
    pub ignore_no_store: Option<bool>,
    /// `route` or `origin` decides freshness. Default: `defaults.freshness`.
    pub freshness: Option<FileFreshness>,
    /// `bypass` or `ignore` requests carrying `Cookie`. Default: `defaults.request_cookies`.
    pub request_cookies: Option<FileRequestCookies>,
    /// `refuse` or `strip` responses carrying `Set-Cookie`. Default: `defaults.set_cookie`.
    pub set_cookie: Option<FileSetCookie>,
    /// Heuristic freshness in percent (`freshness: origin` only). Default:
    /// `defaults.heuristic_percent`.
    pub heuristic_percent: Option<u64>,
    /// Longest heuristic lifetime, in seconds (`freshness: origin` only). Default:
    /// `defaults.heuristic_max_secs`.
    pub heuristic_max_secs: Option<u64>,
    /// Most stored variants of one URL. Default: `defaults.max_variants`.
    pub max_variants: Option<u64>,
    /// The `protection.rate_limit.classes` entry this route's requests are charged to.
    /// Default: the default class.
    pub rate_limit_class: Option<String>,
    /// Tags of every response of the route, for purges by tag. Default: none.
    pub tags: Option<Vec<String>>,
    /// Whether cache hits are charged to the client's bucket. Default:
    /// `DEFAULT_RATE_LIMIT_HITS` (false: hits cost the ERP nothing).
    pub rate_limit_hits: Option<bool>,
    /// This route's own cap on requests in flight to the ERP. Default: only the global cap.
    pub max_in_flight: Option<u64>,
    /// Connect timeout for this route, in milliseconds. Default: `upstream.connect_timeout_ms`.
    pub connect_timeout_ms: Option<u64>,
    /// Longest wait for the ERP's response to start, in milliseconds. Default:
    /// `upstream.read_timeout_ms`.
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest the whole ERP response may take, in milliseconds. Default: no limit beyond the
    /// other two.
    pub total_timeout_ms: Option<u64>,
    /// The `access.policies` entry that decides who may use the route. Default:
    /// `access.default`.
    pub access: Option<String>,
}

/// `origin_cache_control:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOriginCacheControl {
    /// `honour` (or `honor`): the ERP's max-age/Expires win when present.
    #[serde(alias = "honor")]
    Honour,
    /// `override`: the route's TTL always wins.
    Override,
}

/// `freshness:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFreshness {
    /// `route`: the route's `ttl_secs` (and `origin_cache_control`) decide.
    Route,
    /// `origin`: the origin's `Cache-Control`/`Expires`, or heuristics, decide (RFC 9111).
    Origin,
}

/// `request_cookies:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRequestCookies {
    /// `bypass`: a request with `Cookie` goes to the origin and is never answered from the cache.
    Bypass,
    /// `ignore`: `Cookie` changes nothing (origins that use no cookies).
    Ignore,
}

/// `set_cookie:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSetCookie {
    /// `refuse`: a response that sets a cookie is not stored.
    Refuse,
    /// `strip`: it is stored without its `Set-Cookie` fields.
    Strip,
}

/// `query_key:` value: `all`, `{ only: [a, b] }` or `{ ignore: [a, b] }`. Written by hand because
/// serde_yaml 0.9 reads enums only from YAML tags (`!only [a]`), not from the map form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileQueryKey {
    /// `all`: every parameter.
    All,
    /// `{ only: [...] }`: only these parameters; `{ only: [] }` ignores the query string.
    Only(Vec<String>),
    /// `{ ignore: [...] }`: every parameter except these.
    Ignore(Vec<String>),
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            admin_listen: DEFAULT_ADMIN_LISTEN.to_owned(),
            listen_tls: None,
            tls: FileTls::default(),
            h2c: DEFAULT_H2C,
            upstream: None,
            cache: FileCache::default(),
            server: FileServer::default(),
            defaults: FileDefaults::default(),
            routes: Vec::new(),
            protection: FileProtection::default(),
            warming: FileWarming::default(),
            invalidation: Vec::new(),
            admin: FileAdmin::default(),
            observability: FileObservability::default(),
            clients: FileClients::default(),
            access: FileAccess::default(),
            cluster: FileCluster::default(),
        }
    }
}

impl Default for FileAdmin {
    fn default() -> Self {
        Self {
            token: None,
            token_env: DEFAULT_ADMIN_TOKEN_ENV.to_owned(),
            purge_from: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            protect_reads: DEFAULT_ADMIN_PROTECT_READS,
        }
    }
}

impl Default for FileObservability {
    fn default() -> Self {
        Self {
            access_log: DEFAULT_ACCESS_LOG,
            stats: DEFAULT_STATS,
        }
    }
}

impl Default for FileUpstream {
    fn default() -> Self {
        Self {
            address: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            read_timeout_ms: DEFAULT_READ_TIMEOUT_MS,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
            health_path: DEFAULT_HEALTH_PATH.to_owned(),
            health_interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            health_timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            url_form: FileUrlForm::default(),
        }
    }
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_CACHE_DIR),
            memory_mib: DEFAULT_MEMORY_MIB,
            disk_mib: DEFAULT_DISK_MIB,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            lock_timeout_ms: DEFAULT_LOCK_TIMEOUT_MS,
            compression: FileCompression::default(),
            tag_header: DEFAULT_TAG_HEADER.to_owned(),
        }
    }
}

impl Default for FileCompression {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_COMPRESSION_ENABLED,
            level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

impl Default for FileServer {
    fn default() -> Self {
        Self {
            threads: None,
            grace_period_secs: DEFAULT_GRACE_PERIOD_SECS,
            graceful_shutdown_timeout_secs: DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECS,
            pid_file: PathBuf::from(DEFAULT_PID_FILE),
            upgrade_sock: PathBuf::from(DEFAULT_UPGRADE_SOCK),
        }
    }
}

impl Default for FileDefaults {
    fn default() -> Self {
        Self {
            ttl_secs: DEFAULT_TTL_SECS,
            stale_while_revalidate_secs: DEFAULT_STALE_WHILE_REVALIDATE_SECS,
            stale_if_error_secs: DEFAULT_STALE_IF_ERROR_SECS,
            statuses: None,
            error_statuses: DEFAULT_ERROR_STATUSES.to_vec(),
            error_ttl_secs: DEFAULT_ERROR_TTL_SECS,
            origin_cache_control: FileOriginCacheControl::default(),
            query_key: FileQueryKey::default(),
            freshness: FileFreshness::default(),
            request_cookies: FileRequestCookies::default(),
            set_cookie: FileSetCookie::default(),
            heuristic_percent: DEFAULT_HEURISTIC_PERCENT,
            heuristic_max_secs: DEFAULT_HEURISTIC_MAX_SECS,
            max_variants: DEFAULT_MAX_VARIANTS,
        }
    }
}

impl Default for FileFreshness {
    fn default() -> Self {
        match DEFAULT_FRESHNESS {
            Freshness::Route => Self::Route,
            Freshness::Origin => Self::Origin,
        }
    }
}

impl Default for FileRequestCookies {
    fn default() -> Self {
        match DEFAULT_REQUEST_COOKIES {
            RequestCookies::Bypass => Self::Bypass,
            RequestCookies::Ignore => Self::Ignore,
        }
    }
}

impl Default for FileSetCookie {
    fn default() -> Self {
        match DEFAULT_SET_COOKIE {
            SetCookie::Refuse => Self::Refuse,
            SetCookie::Strip => Self::Strip,
        }
    }
}

impl Default for FileOriginCacheControl {
    fn default() -> Self {
        match DEFAULT_ORIGIN_CACHE_CONTROL {
            OriginCacheControl::Honour => Self::Honour,
            OriginCacheControl::Override => Self::Override,
        }
    }
}

impl Default for FileQueryKey {
    fn default() -> Self {
        match DEFAULT_QUERY_KEY {
            QueryKey::All => Self::All,
            QueryKey::Only(names) => Self::Only(names),
            QueryKey::Ignore(names) => Self::Ignore(names),
        }
    }
}

impl<'de> Deserialize<'de> for FileQueryKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QueryKeyVisitor)
    }
}

struct QueryKeyVisitor;

impl<'de> Visitor<'de> for QueryKeyVisitor {
    type Value = FileQueryKey;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`all`, `{ only: [names] }` or `{ ignore: [names] }`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FileQueryKey, E> {
        match v {
            "all" => Ok(FileQueryKey::All),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileQueryKey, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let names: Vec<String> = map.next_value()?;
        let value = match key.as_str() {
            "only" => FileQueryKey::Only(names),
            "ignore" => FileQueryKey::Ignore(names),
            other => return Err(de::Error::unknown_field(other, &["only", "ignore"])),
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(
                "query_key takes one of `only` or `ignore`, not both; keep one",
            ));
        }
        Ok(value)
    }
}

/// The keys a `File*` struct accepts, read from its serde derive so that the list used in
/// "unknown key" messages can never drift from the structs above.
pub(crate) fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    // The probe fails on purpose once it has seen the field list.
    let _ = T::deserialize(KeyProbe(&mut keys));
    keys
}

/// A deserializer that records the field list serde's derive passes to `deserialize_struct`.
struct KeyProbe<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("key probe done")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeDone
    }
}

impl<'de> Deserializer<'de> for KeyProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.0 = fields;
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
