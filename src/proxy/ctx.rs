//! Per-request state shared by the proxy phases.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_cache::CacheKey;
use prometheus::IntGauge;

use super::fast_hit::Served;
use crate::cache::encoding::Coding;
use crate::config::{CachePolicy, Config, Route};
use crate::limits::{Probes, Slots};
use crate::warming::WarmMode;

/// The metric and log name of requests no route matches (they are proxied untouched).
pub const CATCH_ALL_ROUTE: &str = "unmatched";

/// State of one request, created in `new_ctx`.
pub struct RequestCtx {
    /// The configuration this request was admitted under; every phase sees the same one, even
    /// if the configuration is replaced meanwhile.
    pub config: Arc<Config>,
    /// Index of the matched route in `config.routes`; `None` for the catch-all.
    pub route: Option<usize>,
    /// True when this request is served under the route's cache policy (GET/HEAD on a caching
    /// route).
    pub cacheable: bool,
    /// The stored variant this request asks for.
    pub coding: Coding,
    /// When the request arrived.
    pub started: Instant,
    /// When the request to the ERP was sent, if one was.
    pub upstream_started: Option<Instant>,
    /// Status the ERP answered, if it was asked.
    pub upstream_status: Option<u16>,
    /// The client the request is from (rate limits and access rules judge it), once resolved.
    pub client: Option<IpAddr>,
    /// The rate limit is charged only if the request misses the cache.
    pub rate_deferred: bool,
    /// The breakers let the request go to the ERP (`probes`: as a half-open probe of which).
    pub admitted: bool,
    /// The breakers it was admitted by as a half-open probe.
    pub probes: Probes,
    /// Slots held at the ERP; freed when the ERP's answer is complete.
    pub slots: Slots,
    /// Retries spent on this request.
    pub retries: u32,
    /// `Retry-After` for a `503` this request may get (the breaker's remaining cool-down).
    pub retry_after: Option<Duration>,
    /// Set for the warmer's own requests.
    pub warm: Option<WarmMode>,
    /// How long the ERP took to send its response header.
    pub upstream_took: Option<Duration>,
    /// How the ERP failed, if it did (one of `metrics::UPSTREAM_ERROR_KINDS`).
    pub upstream_error: Option<&'static str>,
    /// The primary cache key's hash, for cacheable requests (hot-key statistics).
    pub key_hash: Option<u128>,
    /// The cache key, computed once in `request_filter` and handed to pingora if the request
    /// is not answered there.
    pub key: Option<CacheKey>,
    /// The origin's `304` to a revalidation, whole, for freshening the stored response.
    pub not_modified: Option<Box<pingora_http::ResponseHeader>>,
    /// Why a request on a caching route was sent past the cache (`Cache-Status` detail).
    pub bypass: Option<&'static str>,
    /// The response header went out while a fill of the cache was under way (a miss).
    pub fill_began: bool,
    /// That fill was seen complete (its body stored) by the header or the body filter.
    pub fill_complete: bool,
    /// Set when `request_filter` answered the request from the memory tier.
    pub served: Option<Served>,
    /// Holds the in-flight gauge up while the request lives.
    pub in_flight: Option<InFlight>,
    /// The cluster-wide fill lease this request holds (`shared_fill`), released when it ends.
    pub lease: Option<crate::cluster::lease::Lease>,
}

/// Counts a request as in flight from creation until drop, whichever way the request ends.
pub struct InFlight(IntGauge);

impl InFlight {
    /// Increments `gauge` now and decrements it on drop.
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RequestCtx {
    /// A fresh context over `config`.
    pub fn new(config: Arc<Config>) -> Self {
        RequestCtx {
            config,
            route: None,
            cacheable: false,
            coding: Coding::Identity,
            started: Instant::now(),
            upstream_started: None,
            upstream_status: None,
            client: None,
            rate_deferred: false,
            admitted: false,
            probes: Probes::default(),
            slots: Slots::default(),
            retries: 0,
            retry_after: None,
            warm: None,
            upstream_took: None,
            upstream_error: None,
            key_hash: None,
            key: None,
            not_modified: None,
            bypass: None,
            fill_began: false,
            fill_complete: false,
            served: None,
            in_flight: None,
            lease: None,
        }
    }

    /// The matched route, if any.
    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.config.routes.get(i))
    }

    /// The route name for logs and metrics.
    pub fn route_name(&self) -> &str {
        self.route().map_or(CATCH_ALL_ROUTE, |r| r.name.as_str())
    }

    /// The cache policy applied to this request, if it is cacheable.
    pub fn policy(&self) -> Option<&CachePolicy> {
        if !self.cacheable {
            return None;
        }
        self.route().and_then(Route::cache_policy)
    }
}
