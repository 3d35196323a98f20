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
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, HitHandler, RespCacheable,
};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

use crate::access_log::{self, AccessLine};
use crate::cache::bans::Bans;
use crate::cache::encoding;
use crate::cache::{Cache, key, policy};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::stats::{Observation, Stats};
pub use ctx::{CATCH_ALL_ROUTE, RequestCtx};

/// The proxy service's application: shared, read-only state for every request.
pub struct Proxy {
    config: Arc<ArcSwap<Config>>,
    storage: &'static crate::cache::HybridStorage,
    lock: &'static pingora_cache::lock::CacheKeyLockImpl,
    max_object_bytes: usize,
    metrics: Arc<Metrics>,
    bans: Arc<Bans>,
    stats: Option<Arc<Stats>>,
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
            bans: cache.bans.clone(),
            stats: None,
        }
    }

    /// Records per-route percentiles and hot keys into `stats` (when
    /// `observability.stats` is on).
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Feeds one finished request to the metrics, the statistics and the access log.
    fn observe(&self, session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let cache = cache_status::label(&session.cache.phase(), ctx.cacheable);
        let took = ctx.started.elapsed();
        let route = ctx.route_name();
        let upstream_error = ctx.upstream_error.or_else(|| {
            match error.filter(|e| e.esource() == &ErrorSource::Upstream) {
                Some(e) => Some(upstream_error_kind(e)),
                None => ctx.upstream_status.filter(|s| *s >= 500).map(|_| "5xx"),
            }
        });
        let coalesced = ctx.cacheable && session.cache.lock_duration().is_some();
        let m = &self.metrics;
        m.observe_request(route, &req.method, status, cache, took);
        if let Some(u) = ctx.upstream_took {
            m.observe_upstream(route, cache, u);
        }
        if let Some(kind) = upstream_error {
            m.observe_upstream_error(route, kind);
        }
        if ctx.cacheable {
            m.observe_lookup(route, cache, coalesced);
        }
        let switches = ctx.config.observability;
        let bytes = session.body_bytes_sent() as u64;
        if let Some(stats) = self.stats.as_ref().filter(|_| switches.stats) {
            stats.record(&Observation {
                route: ctx.route,
                route_name: route,
                cache,
                cacheable: ctx.cacheable,
                total: took,
                upstream: ctx.upstream_took,
                upstream_error: upstream_error.is_some(),
                coalesced,
                bytes,
            });
            if let (Some(hash), Some(policy)) = (ctx.key_hash, ctx.policy()) {
                stats.record_key(hash, || {
                    let uri = &req.uri;
                    let key = key::primary_key(uri.path(), uri.query(), &policy.query);
                    (access_log::mask_key(&key).into_owned(), route.to_owned())
                });
            }
        }
        if switches.access_log {
            access_log::write(&AccessLine {
                route,
                request: access_log::redact(req),
                status,
                cache,
                took,
                upstream: ctx.upstream_took,
                upstream_status: ctx.upstream_status,
                bytes,
                client: session.client_addr().map(ToString::to_string),
                error: error.map(ToString::to_string),
            });
        }
    }
}

/// The `kind` label of an ERP failure.
fn upstream_error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            "timeout"
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::ConnectProxyFailure
        | ErrorType::SocketError => "connect",
        ErrorType::HTTPStatus(s) if *s >= 500 => "5xx",
        _ => "other",
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let mut ctx = RequestCtx::new(self.config.load_full());
        ctx.in_flight = Some(ctx::InFlight::new(&self.metrics.in_flight));
        ctx
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
        let key = key::cache_key(uri.path(), uri.query(), &policy.query);
        ctx.key_hash = Some(u128::from_be_bytes(
            pingora_cache::key::CacheHashKey::primary_bin(&key),
        ));
        Ok(key)
    }

    /// A stored response older than a matching purge ban (prefix or route) is a miss: the fill
    /// replaces it. Exact-URL purges remove entries outright and need no check here.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        if self.bans.is_empty() {
            return Ok(None);
        }
        let path = session.req_header().uri.path();
        if self.bans.is_banned(path, ctx.route_name(), meta.created()) {
            return Ok(Some(ForcedFreshness::ForceMiss));
        }
        Ok(None)
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
        encoding::variance(ctx.coding, ctx.config.cache.compression.enabled)
    }

    /// Stale-while-revalidate (no error) is always allowed: the stored response's own window
    /// (the route's setting) bounds it. Stale-if-error covers every ERP failure: refused or
    /// timed-out connections and 5xx answers.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        if let Some(e) = error.filter(|e| e.esource() == &ErrorSource::Upstream) {
            // Served stale or not, the ERP failed: count it (logging sees no error then).
            ctx.upstream_error = Some(upstream_error_kind(e));
        }
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
        ctx.upstream_took = ctx.upstream_started.map(|s| s.elapsed());
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
        let fresh_until = session.cache.maybe_cache_meta().map(CacheMeta::fresh_until);
        let collapsed = session.cache.lock_duration().is_some();
        let value = cache_status::header_value(&phase, ctx.cacheable, fresh_until, collapsed);
        resp.insert_header("cache-status", value)?;
        Ok(())
    }

    /// One access line and the request's metrics and statistics.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        self.observe(session, error, ctx);
    }
}
