//! The pingora `ProxyHttp` implementation: what knitcache does in each phase of a request.
//!
//! Phases are kept thin and in pingora's order; decisions live in `cache::*` (keys, variants,
//! what is stored) and `config` (routes). Pass-through routes and unmatched paths are proxied
//! untouched; GET/HEAD on caching routes go through pingora-cache with the foyer storage, the
//! cache lock (coalescing, stale-while-revalidate) and the route's stale-if-error window.

pub mod cache_status;
pub mod ctx;
pub mod headers;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Method;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, CacheOptionOverrides, RespCacheable, VarianceBuilder};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

use crate::cache::encoding;
use crate::cache::{Cache, key, policy};
use crate::config::Config;
use crate::metrics::Metrics;
pub use ctx::{CATCH_ALL_ROUTE, RequestCtx};

/// The proxy service's application: shared, read-only state for every request.
pub struct Proxy {
    config: Arc<ArcSwap<Config>>,
    storage: &'static crate::cache::HybridStorage,
    lock: &'static pingora_cache::lock::CacheKeyLockImpl,
    max_object_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy over `cache`, reading the live configuration from `config` once per request.
    pub fn new(config: Arc<ArcSwap<Config>>, cache: &Cache, metrics: Arc<Metrics>) -> Self {
        Proxy {
            config,
            storage: cache.storage,
            lock: cache.lock,
            max_object_bytes: cache.max_object_bytes,
            metrics,
        }
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.config.load_full())
    }

    /// Match the route; for cacheable requests pick the stored variant and ask the ERP for
    /// exactly that coding, so the body compressed on the way in is the one stored.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.route = ctx
            .config
            .route_for(&req.method, req.uri.path())
            .map(|(i, _)| i);
        ctx.cacheable =
            is_read(&req.method) && ctx.route().and_then(|r| r.cache_policy()).is_some();
        if ctx.cacheable && ctx.config.cache.compression.enabled {
            ctx.coding = encoding::negotiate(req.headers.get(http::header::ACCEPT_ENCODING));
            let req = session.req_header_mut();
            match ctx.coding.token() {
                Some(token) => req.insert_header(http::header::ACCEPT_ENCODING, token)?,
                None => {
                    req.remove_header(&http::header::ACCEPT_ENCODING);
                }
            }
            session
                .upstream_compression
                .adjust_level(ctx.config.cache.compression.level);
        }
        Ok(false)
    }

    /// Turn the cache on for GET/HEAD on caching routes only; everything else never touches it.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if !ctx.cacheable {
            return Ok(());
        }
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(ctx.config.cache.lock_timeout);
        session
            .cache
            .enable(self.storage, None, None, Some(self.lock), Some(overrides));
        session.cache.set_max_file_size_bytes(self.max_object_bytes);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        let policy = ctx.policy().ok_or_else(|| {
            Error::explain(
                pingora_error::ErrorType::InternalError,
                "cache key for an uncacheable request",
            )
        })?;
        let uri = &session.req_header().uri;
        Ok(key::cache_key(uri.path(), uri.query(), &policy.query))
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        match ctx.policy() {
            Some(p) => Ok(policy::response_cacheability(p, resp, SystemTime::now())),
            None => Ok(RespCacheable::Uncacheable(
                pingora_cache::NoCacheReason::NeverEnabled,
            )),
        }
    }

    /// Stored variants differ only by the coding chosen in `request_filter`.
    fn cache_vary_filter(
        &self,
        _meta: &CacheMeta,
        ctx: &mut RequestCtx,
        _req: &RequestHeader,
    ) -> Option<HashBinary> {
        if !ctx.config.cache.compression.enabled {
            return None;
        }
        let mut variance = VarianceBuilder::new();
        variance.add_value("coding", ctx.coding.token().unwrap_or("identity"));
        variance.finalize()
    }

    /// Stale-while-revalidate (no error) is always allowed: the stored response's own window
    /// (the route's setting) bounds it. Stale-if-error covers every ERP failure: refused or
    /// timed-out connections and 5xx answers.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        error.is_none_or(|e| e.esource() == &ErrorSource::Upstream)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let upstream = &ctx.config.upstream;
        let mut peer = HttpPeer::new(upstream.address, false, String::new());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.write_timeout);
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        if let Some(started) = ctx.upstream_started {
            self.metrics
                .observe_upstream(ctx.route_name(), started.elapsed());
        }
        headers::strip_hop_by_hop(resp);
        Ok(())
    }

    /// Say what the cache did (`Cache-Status`); pingora has already set `Age` on hits.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let phase = session.cache.phase();
        if phase == pingora_cache::CachePhase::Stale {
            // Served stale because the ERP failed: pingora will not keep this connection (the
            // ERP leg failed), so say so instead of closing under a client that reuses it.
            session.set_keepalive(None);
        }
        let fresh_until = session.cache.maybe_cache_meta().map(CacheMeta::fresh_until);
        let collapsed = session.cache.lock_duration().is_some();
        let value = cache_status::header_value(&phase, ctx.cacheable, fresh_until, collapsed);
        resp.insert_header("cache-status", value)?;
        Ok(())
    }

    /// One access line and the request's metrics.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let cache = cache_status::label(&session.cache.phase(), ctx.cacheable);
        let took = ctx.started.elapsed();
        self.metrics
            .observe_request(ctx.route_name(), &req.method, status, cache, took);
        tracing::info!(
            target: "access",
            route = ctx.route_name(),
            method = %req.method,
            path = req.uri.path(),
            status,
            cache,
            upstream_status = ctx.upstream_status,
            took_us = took.as_micros() as u64,
            error = error.map(|e| e.to_string()),
            "request"
        );
    }
}
