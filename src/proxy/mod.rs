//! The pingora `ProxyHttp` implementation: what knitcache does in each phase of a request.
//!
//! Phases are kept thin and in pingora's order; decisions live in `cache::*` (keys, variants,
//! what is stored) and `config` (routes). Pass-through routes and unmatched paths are proxied
//! untouched. GET/HEAD on caching routes are answered in `request_filter` when a fresh copy is
//! in the memory tier (`fast_hit`); the rest go through pingora-cache with the foyer storage,
//! the cache lock (coalescing, stale-while-revalidate) and the route's stale-if-error window.

pub mod cache_status;
pub mod client_limits;
pub mod ctx;
pub mod derive;
pub mod fast_hit;
pub mod fill;
pub mod headers;
pub mod https;
pub mod refuse;
mod shared_fill;
pub mod socket_write;
pub mod tls_termination;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora_cache::key::HashBinary;
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, HitHandler, RespCacheable,
};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::access;
use crate::access_log::{self, AccessLine};
use crate::cache::bans::Bans;
use crate::cache::encoding;
use crate::cache::vary::{self, Vary};
use crate::cache::{Cache, freshness, key, no_transform, policy, validators};
use crate::canonical;
use crate::config::{Config, Login, RequestCookies};
use crate::invalidation::{self, Invalidator};
use crate::limits::{self, Limits};
use crate::metrics::{HitPath, Metrics};
use crate::stats::{Observation, Stats};
use crate::warming::client::WARM_HEADER;
use crate::warming::{WarmMode, Warming};
pub use ctx::{CATCH_ALL_ROUTE, RequestCtx};

/// The proxy service's application: shared, read-only state for every request.
pub struct Proxy {
    config: Arc<ArcSwap<Config>>,
    storage: &'static crate::cache::HybridStorage,
    lock: &'static pingora_cache::lock::CacheKeyLockImpl,
    max_object_bytes: usize,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    warming: Arc<Warming>,
    bans: Arc<Bans>,
    stats: Option<Arc<Stats>>,
    invalidator: Option<Arc<Invalidator>>,
}

impl Proxy {
    /// A proxy over `cache`, reading the live configuration from `config` once per request.
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        cache: &Cache,
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
        warming: Arc<Warming>,
    ) -> Self {
        Proxy {
            config,
            storage: cache.storage,
            lock: cache.lock,
            max_object_bytes: cache.max_object_bytes,
            metrics,
            limits,
            warming,
            bans: cache.bans.clone(),
            invalidator: None,
            stats: None,
        }
    }

    /// Recognises the warmer's own requests (loopback peer, this process's token) and removes
    /// the marker, so neither the ERP nor a forged marker ever sees an effect.
    fn take_warm_marker(&self, session: &mut Session) -> Option<WarmMode> {
        let header = session.req_header().headers.get(WARM_HEADER)?;
        let loopback = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| a.ip().is_loopback());
        let mode = if loopback {
            self.warming.mode(header.as_bytes())
        } else {
            None
        };
        session.req_header_mut().remove_header(WARM_HEADER);
        mode
    }

    /// Charges the request to its client's bucket; `false` if it was refused with `429`.
    async fn charge(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let tuned = self.limits.tuned();
        let Some(rate) = &tuned.rate else {
            return Ok(true);
        };
        let client = client_ip(session, ctx);
        let class = rate.class_index(ctx.route().and_then(|r| r.limits.rate_class.as_deref()));
        match rate.check(class, client) {
            Ok(()) => Ok(true),
            Err(limited) => {
                self.limits.count_limited(&limited.class);
                self.metrics
                    .observe_refusal(ctx.route_name(), "rate_limited");
                tracing::debug!(client = %client, class = %limited.class, "rate limited");
                refuse::too_many_requests(session, &limited).await?;
                Ok(false)
            }
        }
    }

    /// The route's access policy (`access`) decides whether the request may go on; `true` when
    /// it was refused here. Runs before the cache in every form, so nothing stored reaches a
    /// refused client.
    async fn gate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let config = ctx.config.clone();
        let matched = ctx.route.and_then(|i| config.routes.get(i));
        let Some(policy) = config.access_policy(matched) else {
            return Ok(false);
        };
        let route = matched.map_or(CATCH_ALL_ROUTE, |r| r.name.as_str());
        if access::checks_address(policy) {
            let client = client_ip(session, ctx);
            if !access::address_allowed(policy, client) {
                self.metrics
                    .observe_access(route, access::RULE_ADDRESS, "refused");
                self.metrics
                    .observe_refusal(route, crate::metrics::REFUSED_ACCESS);
                tracing::debug!(client = %client, route, policy = %policy.name, "refused by address");
                refuse::forbidden(session).await?;
                return Ok(true);
            }
            self.metrics
                .observe_access(route, access::RULE_ADDRESS, "allowed");
        }
        let Some(login) = &policy.login else {
            return Ok(false);
        };
        let rule = match login {
            Login::Basic { users, realm } => {
                let given = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION);
                if !users.admits(given.map(|v| v.as_bytes())).await {
                    self.refused(route, access::RULE_BASIC, crate::metrics::REFUSED_ACCESS);
                    refuse::unauthorized(session, realm).await?;
                    return Ok(true);
                }
                access::RULE_BASIC
            }
            Login::Forward(service) => {
                let client = client_ip(session, ctx);
                let tls = https::is_tls(session);
                match service.check(session.req_header(), client, tls).await {
                    access::forward::Verdict::Allow(fields) => {
                        let req = session.req_header_mut();
                        // Only the service names the user: a client's own copies go first.
                        for name in service.copy_headers() {
                            req.remove_header(name);
                        }
                        for (name, value) in fields {
                            req.append_header(name, value)?;
                        }
                        access::RULE_FORWARD
                    }
                    access::forward::Verdict::Refuse(answer) => {
                        self.refused(route, access::RULE_FORWARD, crate::metrics::REFUSED_ACCESS);
                        refuse::relay(session, answer).await?;
                        return Ok(true);
                    }
                    access::forward::Verdict::Unavailable(why) => {
                        self.metrics
                            .observe_access(route, access::RULE_FORWARD, "unavailable");
                        self.metrics
                            .observe_refusal(route, crate::metrics::AUTH_UNAVAILABLE);
                        tracing::warn!(route, policy = %policy.name, error = %why, "forward auth failed; answering 503");
                        refuse::auth_unavailable(session, config.protection.retry_after).await?;
                        return Ok(true);
                    }
                }
            }
        };
        self.metrics.observe_access(route, rule, "allowed");
        if !policy.pass_credentials {
            // Consumed here: the cache decides and the ERP answers as for anyone admitted.
            let req = session.req_header_mut();
            req.remove_header(&http::header::AUTHORIZATION);
            if rule == access::RULE_FORWARD {
                req.remove_header(&http::header::COOKIE);
            }
        }
        Ok(false)
    }

    /// Counts a request an access rule refused.
    fn refused(&self, route: &str, rule: &str, reason: &str) {
        self.metrics.observe_access(route, rule, "refused");
        self.metrics.observe_refusal(route, reason);
    }

    /// Answers a fresh hit from the memory tier (see `fast_hit`); `false` leaves the request to
    /// pingora's cache, with its key already computed.
    async fn fast_hit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(policy) = ctx.policy() else {
            return Ok(false);
        };
        let uri = &session.req_header().uri;
        let mut key = key::cache_key(uri.path(), uri.query(), &policy.query);
        ctx.key_hash = Some(u128::from_be_bytes(
            pingora_cache::key::CacheHashKey::primary_bin(&key),
        ));
        let selector = fast_hit::Selector {
            coding: ctx.coding,
            compression: ctx.config.cache.compression.enabled,
            req: &session.req_header().headers,
        };
        let entry = fast_hit::find(self.storage, &mut key, &selector);
        ctx.key = Some(key);
        let Some((entry, meta)) = entry.as_ref().and_then(|e| Some((e, fast_hit::parsed(e)?)))
        else {
            return Ok(false);
        };
        let now = SystemTime::now();
        let path = session.req_header().uri.path();
        if !fast_hit::is_fresh(meta, now)
            || self.is_banned(path, ctx, meta.created(), meta.hit_header())
        {
            return Ok(false);
        }
        let served = ctx.served.insert(fast_hit::Served::of(meta));
        let hsts = https::hsts(session, &ctx.config);
        served.sent = fast_hit::serve(session, meta, entry.value(), now, hsts.as_deref()).await?;
        Ok(true)
    }

    /// Answers a miss (or an expired copy) of one coding from a fresh copy in another, stored
    /// as this coding's variant on the way (`derive`). `true` when the response was written.
    async fn derived(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        use pingora_cache::CachePhase;
        let phase = session.cache.phase();
        if !ctx.cacheable
            || !ctx.config.cache.compression.enabled
            || !matches!(
                phase,
                CachePhase::Miss | CachePhase::Expired | CachePhase::Stale
            )
        {
            return Ok(false);
        }
        let Some(policy) = ctx.policy() else {
            return Ok(false);
        };
        // An expired copy (or the one the warmer refreshes, which pingora calls stale) is
        // replaced only by something newer than itself.
        let stale = session.cache.maybe_cache_meta().map(CacheMeta::created);
        let recipe = derive::Recipe {
            want: ctx.coding,
            level: ctx.config.cache.compression.level,
            max_bytes: self.max_object_bytes,
            policy,
        };
        let path = session.req_header().uri.path();
        let banned = |m: &crate::cache::parsed::ParsedMeta| {
            self.is_banned(path, ctx, m.created(), m.hit_header())
        };
        let key = session.cache.cache_key();
        let entry = match derive::variant(
            self.storage,
            key,
            session.req_header(),
            &recipe,
            stale,
            banned,
        )
        .await
        {
            Ok(entry) => entry,
            Err(e) => {
                // The ERP can still answer: a recoding failure is never the client's.
                tracing::warn!(error = %e, "deriving a coding from a stored variant failed");
                None
            }
        };
        let Some((entry, meta)) = entry.as_ref().and_then(|e| Some((e, fast_hit::parsed(e)?)))
        else {
            return Ok(false);
        };
        ctx.served = Some(fast_hit::Served::of(meta));
        self.metrics.observe_derived(ctx.route_name());
        let hsts = https::hsts(session, &ctx.config);
        fast_hit::write_through_session(
            session,
            meta,
            &entry.value().body,
            SystemTime::now(),
            hsts.as_deref(),
        )
        .await?;
        Ok(true)
    }

    /// Whether a purge covers a response for `path` stored at `created` with header `stored`:
    /// a ban (prefix, route or tag), or a purge of its URL (which removed it, but the disk tier
    /// can bring a removed entry back after a crash: `cache::recent_purges`).
    fn is_banned(
        &self,
        path: &str,
        ctx: &RequestCtx,
        created: SystemTime,
        stored: &ResponseHeader,
    ) -> bool {
        if ctx
            .key_hash
            .is_some_and(|primary| self.storage.purged_since(primary, created))
        {
            return true;
        }
        if self.bans.is_empty() {
            return false;
        }
        let route_tags: &[String] = ctx.route().map_or(&[], |r| r.tags.as_slice());
        let header = ctx.config.cache.tag_header.as_ref();
        let has_tag = |tag: &str| invalidation::has_tag(route_tags, &stored.headers, header, tag);
        self.bans
            .is_banned(path, ctx.route_name(), created, &has_tag)
    }

    /// A warm refresh of the stored copy `meta`: fetched again, unless in cluster mode the copy
    /// is not due (`lead` before its expiry: one adopted from another replica's refresh), or
    /// another replica claimed this copy's refresh (`cluster::lease`); then its new copy is
    /// adopted from the shared tier as soon as it is there (now, at the warmer's next try, or at
    /// the first lookup after this copy expires). `None`: served as it is.
    async fn warm_refresh(
        &self,
        session: &Session,
        meta: &CacheMeta,
        lead: Duration,
    ) -> Option<ForcedFreshness> {
        let Some(tier) = self.storage.shared() else {
            return Some(ForcedFreshness::ForceExpired);
        };
        let now = SystemTime::now();
        if meta
            .fresh_until()
            .duration_since(now)
            .is_ok_and(|left| left > lead)
        {
            return None;
        }
        let key = session.cache.cache_key();
        let slot = u128::from_be_bytes(pingora_cache::key::CacheHashKey::combined_bin(key));
        let primary = u128::from_be_bytes(pingora_cache::key::CacheHashKey::primary_bin(key));
        let until = meta.fresh_until();
        // One claim per stored copy (the round is its expiry), held past it: a replica that
        // adopts the new copy never refreshes the old one again.
        let round = until
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ttl = until.duration_since(now).unwrap_or_default() + tier.lease_time();
        if tier.warm_claim(slot, round, ttl).await != Some(false) {
            return Some(ForcedFreshness::ForceExpired);
        }
        if let Some(found) = tier.get(slot).await
            && found
                .parsed
                .as_ref()
                .is_some_and(|p| p.fresh_until() > until)
        {
            self.storage.adopt(slot, primary, &found);
        }
        None
    }

    /// Spends one of this request's retries, if the policy (`retries.max_per_request`) and the
    /// shared retry budget allow it.
    fn take_retry(&self, ctx: &mut RequestCtx) -> bool {
        let retry = ctx.retries < ctx.config.protection.retries.max_per_request
            && self.limits.retry_budget.withdraw();
        if retry {
            ctx.retries += 1;
            self.limits.count_retry();
        }
        retry
    }

    /// Records per-route percentiles and hot keys into `stats` (when
    /// `observability.stats` is on).
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Fires the configured invalidation rules after successful requests.
    pub fn with_invalidator(mut self, invalidator: Arc<Invalidator>) -> Self {
        self.invalidator = Some(invalidator);
        self
    }

    /// Feeds one finished request to the metrics, the statistics and the access log.
    fn observe(
        &self,
        session: &Session,
        error: Option<&Error>,
        ctx: &RequestCtx,
        fill: Option<fill::Outcome>,
    ) {
        let sent = ctx.served.and_then(|s| s.sent);
        let status = match sent {
            Some(sent) => sent.status,
            None => session.response_written().map_or(0, |r| r.status.as_u16()),
        };
        let req = session.req_header();
        let cache = match ctx.served {
            Some(_) => "hit",
            None => cache_status::label(&session.cache.phase(), ctx.cacheable),
        };
        let took = ctx.started.elapsed();
        let route = ctx.route_name();
        let upstream_error =
            ctx.upstream_error
                .or_else(|| match error.filter(|e| is_erp_failure(e)) {
                    Some(e) => Some(upstream_error_kind(e)),
                    None => ctx.upstream_status.filter(|s| *s >= 500).map(|_| "5xx"),
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
        // Answered 503 by the proxy; one served stale instead is not a refusal.
        if let Some(reason) = error
            .filter(|_| status == 503)
            .and_then(|e| limits::refusal_reason(e))
        {
            m.observe_refusal(route, reason);
        }
        if ctx.cacheable {
            m.observe_lookup(route, cache, coalesced);
        }
        if let Some(fill) = fill {
            m.observe_fill(route, fill.label());
        }
        if cache == "hit" {
            m.observe_hit(match ctx.served {
                Some(fast_hit::Served { sent: Some(_), .. }) => HitPath::Direct,
                Some(_) => HitPath::Writer,
                None => HitPath::Pingora,
            });
        }
        let switches = ctx.config.observability;
        let bytes = match sent {
            Some(sent) => sent.body_bytes,
            None => session.body_bytes_sent(),
        } as u64;
        if let Some(stats) = self.stats.as_ref().filter(|_| switches.stats) {
            stats.record(&Observation {
                route: ctx.route,
                route_name: route,
                cache,
                cacheable: ctx.cacheable,
                total: took,
                upstream: ctx.upstream_took,
                upstream_error: upstream_error.is_some(),
                refused: status == 503 && error.is_some_and(limits::is_refusal),
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
        if switches.access_log && access_log::enabled() {
            access_log::write(&AccessLine {
                route,
                request: access_log::redact(req),
                status,
                cache,
                fill: fill.map(fill::Outcome::label),
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

/// The client the request is from, resolved once per request: the peer, or what a trusted
/// proxy's `X-Forwarded-For` names (`limits::client::client_ip`). Rate limits and access
/// rules judge this address.
fn client_ip(session: &Session, ctx: &mut RequestCtx) -> std::net::IpAddr {
    *ctx.client.get_or_insert_with(|| {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let trusted = &ctx.config.protection.trusted_proxies;
        limits::client::client_ip(peer, &session.req_header().headers, trusted)
    })
}

/// An error of the ERP leg that the ERP itself caused. The proxy's own refusals (breaker open,
/// queue full) are upstream-sourced so that a stale copy can be served for them, but the ERP
/// never saw those requests: they are counted in `knitcache_upstream_refused_total`, never as
/// ERP errors.
fn is_erp_failure(e: &Error) -> bool {
    e.esource() == &ErrorSource::Upstream && !limits::is_refusal(e)
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

    /// Refuse what a client must not send (`client_limits`) before anything else looks at it.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.req_header().version == http::Version::HTTP_2 {
            // pingora makes a background refresh (stale-while-revalidate) a subrequest by
            // writing the request as HTTP/1 and parsing it again, and `HTTP/2` does not parse:
            // the refresh would be lost. The ERP is asked in HTTP/1.1 anyway (with the `Host`
            // of `headers::for_erp`); the client's HTTP/2 framing does not depend on this.
            session.req_header_mut().set_version(http::Version::HTTP_11);
        }
        client_limits::check_request(session, ctx)
    }

    /// Match the route; for cacheable requests pick the stored variant and ask the ERP for
    /// exactly that coding, so the body compressed on the way in is the one stored.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // From here on the target is canonical: routes, keys, purges and the ERP see one form.
        if let Err(rejected) =
            canonical::apply(session.req_header_mut(), ctx.config.upstream.url_form)
        {
            refuse::bad_target(session, rejected).await?;
            return Ok(true);
        }
        if invalidation::is_purge(&session.req_header().method) {
            invalidation::purge_request(session, &ctx.config, self.storage, &self.bans).await?;
            return Ok(true);
        }
        ctx.warm = self.take_warm_marker(session);
        // The warmer asks on the plain port by design; everyone else is sent to HTTPS.
        if ctx.warm.is_none()
            && let Some(tls) = https::redirects(session, &ctx.config)
        {
            https::redirect(session, tls).await?;
            return Ok(true);
        }
        let req = session.req_header();
        ctx.route = ctx
            .config
            .route_for(&req.method, req.uri.path())
            .map(|(i, _)| i);
        // Before the cache in every form; the warmer's own requests are the proxy's, not a
        // client's.
        if ctx.warm.is_none() && self.gate(session, ctx).await? {
            return Ok(true);
        }
        let req = session.req_header();
        let cookies = ctx
            .route()
            .and_then(|r| r.cache_policy())
            .map(|p| p.request_cookies);
        ctx.cacheable = is_read(&req.method) && cookies.is_some();
        if ctx.cacheable
            && cookies == Some(RequestCookies::Bypass)
            && req.headers.contains_key(http::header::COOKIE)
        {
            // The answer may be personal: neither served from nor stored in the cache.
            ctx.cacheable = false;
            ctx.bypass = Some(cache_status::BYPASS_COOKIE);
        }
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
            // pingora would weaken the origin's ETag of a body it compresses; it gets a derived
            // strong one instead (`upstream_response_filter`).
            session.upstream_compression.adjust_preserve_etag(true);
        }
        // Hits cost the ERP nothing: unless the route says otherwise, a cacheable request is
        // only charged once it misses (in `proxy_upstream_filter`).
        let hits_free = ctx.cacheable && !ctx.route().is_some_and(|r| r.limits.rate_limit_hits);
        if ctx.warm.is_some() || ctx.config.protection.rate_limit.is_none() {
            // off, or the warmer (gentle by construction): nothing to charge
        } else if hits_free {
            ctx.rate_deferred = true;
        } else if !self.charge(session, ctx).await? {
            return Ok(true);
        }
        if ctx.cacheable && ctx.warm.is_none() && fast_hit::applies(session.req_header()) {
            return self.fast_hit(session, ctx).await;
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

    /// A miss is about to go to the ERP. A fresh copy in another coding answers it instead
    /// (`derive`); otherwise a deferred rate limit is charged now.
    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if self.derived(session, ctx).await? || self.shared_fill(session, ctx).await? {
            return Ok(false);
        }
        if ctx.rate_deferred {
            ctx.rate_deferred = false;
            return self.charge(session, ctx).await;
        }
        Ok(true)
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        if let Some(key) = ctx.key.take() {
            return Ok(key);
        }
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

    /// The warmer's refresh fetches a fresh entry again (clients keep getting the old copy
    /// until the new one is stored; in cluster mode one replica refreshes: `warm_refresh`). A
    /// stored response older than a matching purge ban
    /// (prefix or route), or than a purge of its URL (which removed it, unless the disk tier
    /// brought it back), is a miss: the fill replaces it.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        if ctx.warm == Some(WarmMode::Refresh)
            && let Some(forced) = self
                .warm_refresh(session, meta, ctx.config.warming.lead)
                .await
        {
            return Ok(Some(forced));
        }
        let path = session.req_header().uri.path();
        if self.is_banned(path, ctx, meta.created(), meta.response_header()) {
            return Ok(Some(ForcedFreshness::ForceMiss));
        }
        Ok(None)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        // A 304 freshens every field of the stored response (RFC 9111 §4.3.4). pingora merged
        // only a few into `resp`, the origin's entity tag among them even over one derived for
        // a compressed body: start again from the stored header.
        let freshened = ctx.not_modified.take().map(|nm| {
            let stored = session
                .cache
                .maybe_cache_meta()
                .map_or(resp, CacheMeta::response_header);
            validators::freshen(stored, &nm, ctx.coding.token())
        });
        let Some(p) = ctx.policy() else {
            return Ok(RespCacheable::Uncacheable(
                pingora_cache::NoCacheReason::NeverEnabled,
            ));
        };
        let exchange = policy::Exchange {
            req: session.req_header(),
            resp: freshened.as_ref().unwrap_or(resp),
            received: SystemTime::now(),
            response_delay: ctx.upstream_took.unwrap_or_default(),
        };
        Ok(policy::response_cacheability(p, &exchange))
    }

    /// A stored variant is selected by the coding chosen in `request_filter` and by the
    /// request's values of the fields the stored response's `Vary` names.
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        let compression = ctx.config.cache.compression.enabled;
        let stored = Vary::of(meta.headers());
        vary::variance(ctx.coding, compression, stored.fields(), &req.headers)
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
        if let Some(e) = error.filter(|e| is_erp_failure(e)) {
            // Served stale or not, the ERP failed: count it (logging sees no error then).
            ctx.upstream_error = Some(upstream_error_kind(e));
        }
        error.is_none_or(|e| e.esource() == &ErrorSource::Upstream)
    }

    /// Ask the breaker, then take a slot at the ERP (route cap, then global cap). Either may
    /// refuse: the error is upstream-sourced, so a stale copy is served where there is one.
    /// Called again on a retry, which keeps what the first attempt obtained.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let config = ctx.config.clone();
        let route = ctx
            .route
            .and_then(|i| config.routes.get(i))
            .map(|r| r.name.as_str());
        if !ctx.admitted {
            match self.limits.admit(route) {
                Ok(probes) => {
                    ctx.admitted = true;
                    ctx.probes = probes;
                    self.limits.retry_budget.deposit();
                }
                Err((kind, retry_after)) => {
                    ctx.retry_after = Some(retry_after);
                    return Err(limits::refusal(kind));
                }
            }
        }
        if let Err(refused) = self.limits.enter(route, &mut ctx.slots).await {
            // Never reached the ERP: give back probe slots without judging anyone.
            self.limits
                .record(route, limits::Verdict::Abandoned, ctx.probes);
            ctx.admitted = false;
            return Err(limits::refusal(match refused {
                limits::concurrency::Refused::QueueFull => limits::QUEUE_FULL,
                limits::concurrency::Refused::Timeout => limits::QUEUE_TIMEOUT,
            }));
        }
        let upstream = &ctx.config.upstream;
        let route = ctx.route().map(|r| &r.limits);
        let mut peer = HttpPeer::new(upstream.address, false, String::new());
        peer.options.connection_timeout = Some(
            route
                .and_then(|l| l.connect_timeout)
                .unwrap_or(upstream.connect_timeout),
        );
        peer.options.read_timeout = Some(
            route
                .and_then(|l| l.first_byte_timeout)
                .unwrap_or(upstream.read_timeout),
        );
        peer.options.write_timeout = Some(upstream.write_timeout);
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    /// Retry only idempotent requests, only after a failed connect (nothing reached the ERP),
    /// and only within the retry policy.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retry = session.req_header().method.is_idempotent() && self.take_retry(ctx);
        e.set_retry(retry);
        e
    }

    /// pingora retries an idempotent request whose reused ERP connection failed (the ERP may
    /// have closed it), up to its own limit of 16: one client request once made 13 ERP
    /// requests. Such retries now count against the same policy as failed connects, so a client
    /// request makes at most `1 + retries.max_per_request` ERP requests.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            // pingora's own rule first: some errors are retried only on a reused connection.
            e.retry.decide_reuse(client_reused);
            if e.retry() && !self.take_retry(ctx) {
                e.set_retry(false);
            }
        }
        e
    }

    /// The request body's deadline and, on caching routes, its size (`client_limits`).
    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        client_limits::check_body_chunk(session, end_of_stream, ctx)
    }

    /// The ERP gets a `Host` and forwarding fields no client chose (`headers::for_erp`). A
    /// revalidation asks the origin with the origin's own entity tags, not the ones derived for
    /// compressed variants.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let trusted = &ctx.config.protection.trusted_proxies;
        let tls = https::is_tls(session);
        headers::for_erp(
            upstream_request,
            ctx.config.upstream.address,
            peer,
            trusted,
            tls,
        )?;
        if let (true, Some(coding)) = (ctx.cacheable, ctx.coding.token())
            && let Some(inm) = upstream_request.headers.get(http::header::IF_NONE_MATCH)
        {
            let origin = validators::to_origin(inm, coding);
            upstream_request.insert_header(http::header::IF_NONE_MATCH, origin)?;
        }
        Ok(())
    }

    /// Runs before pingora's compression decides on a fill's body: a response that says
    /// `no-transform` is passed on and stored as the origin sent it (RFC 9110 §7.7).
    async fn adjust_upstream_modules(
        &self,
        session: &mut Session,
        resp: &ResponseHeader,
        _end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        let compression = &mut session.upstream_compression;
        // Informational heads come first; the final one decides. The phase check keeps the
        // adjustments (which panic once a body is being encoded) to the header phase.
        if compression.is_enabled()
            && compression.is_header_phase()
            && !resp.status.is_informational()
            && no_transform::forbidden(resp)
        {
            compression.adjust_level(0);
            compression.adjust_decompression(false);
        }
        Ok(())
    }

    /// Runs before the response is stored. A body knitcache compresses gets an entity tag
    /// derived from the origin's; a `304` is kept whole for freshening the stored response.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        ctx.upstream_took = ctx.upstream_started.map(|s| s.elapsed());
        headers::strip_hop_by_hop(resp);
        if !ctx.cacheable {
            return Ok(());
        }
        if resp.status == http::StatusCode::NOT_MODIFIED {
            ctx.not_modified = Some(Box::new(resp.clone()));
        } else if let (Some(coding), Some(_)) =
            (ctx.coding.token(), session.upstream_compression.get_info())
            && let Some(etag) = resp.headers.get(http::header::ETAG)
        {
            match validators::derive(etag, coding) {
                Some(derived) => resp.insert_header(http::header::ETAG, derived)?,
                None => {
                    resp.remove_header(&http::header::ETAG);
                }
            }
        }
        Ok(())
    }

    /// Enforce the route's total timeout; free the ERP slots as soon as its answer is complete
    /// (not when the client has read it all).
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            ctx.slots.release();
            return Ok(None);
        }
        let total = ctx.route().and_then(|r| r.limits.total_timeout);
        if let (Some(total), Some(started)) = (total, ctx.upstream_started)
            && started.elapsed() > total
        {
            return Err(Error::create(
                ErrorType::Custom(limits::TOTAL_TIMEOUT),
                ErrorSource::Upstream,
                Some(format!("the ERP took longer than {} ms", total.as_millis()).into()),
                None,
            ));
        }
        Ok(None)
    }

    /// Note when a miss's fill completes: pingora has written each chunk to the cache before
    /// it reaches this filter, and finishes the fill with the last one.
    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if end_of_stream && ctx.fill_began && !ctx.fill_complete {
            ctx.fill_complete = fill::complete(session);
        }
        Ok(None)
    }

    /// Say what the cache did (`Cache-Status`; pingora has already set `Age` on hits), and
    /// invalidate what a successful write changed.
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
        // knitcache's own targeted field is for knitcache alone (RFC 9213 §2).
        resp.remove_header(freshness::KNITCACHE_CACHE_CONTROL);
        if let Some(invalidator) = &self.invalidator {
            // On receipt, before the client sees the answer (RFC 9111 §4.4): a client that
            // reads right after its write must not get the copy the write replaced, not even
            // after a crash right after the answer (the removal is on disk first, as a URL
            // purge's is).
            if invalidator.after_unsafe(&ctx.config, session.req_header(), resp) > 0 {
                invalidator.written().await;
            }
        }
        let fresh_until = session.cache.maybe_cache_meta().map(CacheMeta::fresh_until);
        let collapsed = session.cache.lock_duration().is_some();
        let stored = fill::complete(session);
        if matches!(
            phase,
            pingora_cache::CachePhase::Miss | pingora_cache::CachePhase::Expired
        ) {
            ctx.fill_began = true;
            ctx.fill_complete = stored;
        }
        let value = match ctx.bypass {
            Some(reason) => cache_status::bypass(reason),
            None => {
                cache_status::header_value(&phase, ctx.cacheable, fresh_until, collapsed, stored)
            }
        };
        // The spelling a hit's header has (`hit_head`), so both hit paths send the same bytes.
        resp.insert_header(crate::cache::hit_head::CACHE_STATUS, value)?;
        if let Some(hsts) = https::hsts(session, &ctx.config) {
            resp.insert_header(https::HSTS, hsts)?;
        }
        Ok(())
    }

    /// A client that closed its connection early is nobody's failure: pingora would log it at
    /// ERROR (40-47 lines a minute against the real ERP, none of them a fault). It is counted
    /// in `knitcache_client_aborts_total` and logged at debug instead.
    fn suppress_error_log(&self, session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        if let Some(refusal) = client_limits::Refusal::of_error(error) {
            // Over a client limit: counted, logged at debug (a hostile client must not flood
            // the log).
            self.metrics.observe_client_refusal(refusal.reason());
            tracing::debug!(error = %error, "request refused over a client limit");
            return true;
        }
        if error.esource() != &ErrorSource::Downstream {
            return false;
        }
        let route = ctx.route_name();
        self.metrics.observe_client_abort(route);
        tracing::debug!(
            route,
            client = ?session.client_addr().map(ToString::to_string),
            error = %error,
            "client went away before its response was complete"
        );
        true
    }

    /// A refusal (breaker open, queue full) with nothing stale to serve becomes a fast `503`
    /// with `Retry-After`; ERP timeouts become `504`, other ERP failures `502`.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = if limits::is_refusal(e) {
            let retry_after = ctx.retry_after.unwrap_or(ctx.config.protection.retry_after);
            if let Err(write) = refuse::unavailable(session, retry_after, e).await {
                tracing::debug!(error = %write, "could not send 503");
            }
            return FailToProxy {
                error_code: 503,
                can_reuse_downstream: false,
            };
        } else {
            refuse::status_for(e)
        };
        // pingora closes the client connection after a failed ERP leg: announce it.
        session.set_keepalive(None);
        if code > 0
            && let Err(write) = session.respond_error(code).await
        {
            tracing::debug!(error = %write, "could not send the error response");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// The breaker learns how the ERP leg ended, the warmer which keys are in use; then one
    /// access line, the request's metrics and statistics.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.slots.release();
        // Whatever became of the fill: a lease its store did not release goes now.
        if let (Some(lease), Some(tier)) = (ctx.lease.take(), self.storage.shared()) {
            tier.release(lease);
        }
        if ctx.admitted {
            let trips = self.limits.trips_on_5xx(&ctx.config);
            let verdict = limits::verdict(ctx.upstream_status, error, trips);
            let route = ctx.route().map(|r| r.name.as_str());
            self.limits.record(route, verdict, ctx.probes);
        }
        let served = ctx.served.map(|s| (s.created, s.fresh_until)).or_else(|| {
            let meta = session.cache.maybe_cache_meta()?;
            Some((meta.created(), meta.fresh_until()))
        });
        if ctx.cacheable
            && let Some((stored, until)) = served
        {
            let req = session.req_header();
            let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let coding = ctx.coding.token();
            match ctx.warm {
                None => self.warming.hot.observe(pq, coding, stored, until),
                Some(_) => self.warming.hot.refreshed(pq, coding, stored, until),
            }
        }
        let fill = fill::at_end(session, ctx.fill_began, ctx.fill_complete, error).map(|o| {
            // Complete, but a purge that came after the response did kept it out of the cache.
            let purged = o == fill::Outcome::Stored
                && ctx
                    .key_hash
                    .zip(session.cache.maybe_cache_meta())
                    .is_some_and(|(primary, meta)| {
                        self.storage.purged_since(primary, meta.created())
                    });
            if purged { fill::Outcome::Purged } else { o }
        });
        if let Some(outcome) = fill.filter(|o| *o != fill::Outcome::Stored) {
            tracing::debug!(
                route = ctx.route_name(),
                outcome = outcome.label(),
                "a miss's fill was abandoned: nothing stored"
            );
        }
        self.observe(session, error, ctx, fill);
        if let (Some(invalidator), Some(resp)) = (&self.invalidator, session.response_written()) {
            let req = session.req_header();
            invalidator.after_response(
                &ctx.config,
                &req.method,
                req.uri.path(),
                resp.status.as_u16(),
            );
        }
    }
}
