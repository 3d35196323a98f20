//! knitcache: a caching reverse proxy that makes a slow ERP fast.
//!
//! A request's way through: `proxy` matches a route from `config`, asks `cache` for a stored
//! response (keyed by `cache::key`, negotiated by `cache::encoding`), goes to the ERP on a
//! miss (coalesced by the cache lock), and stores what `cache::policy` allows. `app` wires it
//! all into one pingora server; `admin` serves health and metrics beside it.
//!
//! * `access`    access control per route (addresses, Basic, forward auth), before the cache
//! * `access_log` one structured line per request, and the redaction of what it may show
//! * `app`       builds the server (proxy + admin services + cache) from a `Config`, for
//!   `main` and the tests
//! * `admin`     the admin listener: health, readiness, metrics, stats, purge, dashboard
//! * `canonical` the one spelling of a request target that routing, keys, purges and the ERP see
//! * `cache`     foyer memory + disk tiers behind pingora-cache's `Storage`, keys, policy
//! * `cli`       the command line
//! * `cluster`   cluster mode: purges shared with the other replicas through Redis
//! * `config`    YAML schema, validation, the runtime model
//! * `drain`     a graceful stop: requests in flight, closing the listeners, waiting for them
//! * `log_sink`  the bounded buffer and writer thread every log line leaves through
//! * `limits`    protecting the ERP: rate limits, the concurrency cap, the circuit breaker
//! * `health`    the ERP health probe and its shared state
//! * `http_client` the one outgoing HTTP/1.1 client: health probe, warmer, `knitcache report`
//! * `invalidation` write-triggered purges, tags, `PURGE` on the proxy port
//! * `metrics`   the one Prometheus registry and the proxy's metric families
//! * `proxy`     the pingora `ProxyHttp` implementation, phase by phase
//! * `report`    `knitcache report`: the performance report read from `/stats`
//! * `stats`     per-route percentiles and hot keys for `/stats` and the dashboard
//! * `telemetry` logging setup (tracing, with pingora's `log` records bridged in)
//! * `tls`       the TLS listener's certificate: loading, checking, replacing it on reload
//! * `topk`      the bounded top-K (Space-Saving) behind `/stats`'s hot keys and the warmer
//! * `warming`   refreshing hot keys before they expire; the warm list

pub mod access;
pub mod access_log;
pub mod admin;
pub mod app;
pub mod cache;
pub mod canonical;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod drain;
pub mod health;
pub mod http_client;
pub mod invalidation;
pub mod limits;
pub mod log_sink;
pub mod metrics;
pub mod proxy;
pub mod report;
pub mod stats;
pub mod telemetry;
pub mod tls;
pub mod topk;
pub mod warming;
