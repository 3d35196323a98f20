//! The admin listener, separate from proxied traffic (loopback by default).
//!
//! * `GET  /healthz`    200 `ok` while the process serves (liveness).
//! * `GET  /readyz`     200 while the process can serve (listeners bound, config loaded, cache
//!   storage open; memory-only is `degraded` but ready); 503 once the storage is closed. The
//!   ERP's health is reported in the JSON but never makes it 503. See [`ready`].
//! * `GET  /metrics`    Prometheus text format: the proxy's families and foyer's.
//! * `GET  /stats`      JSON: per-route requests, hit ratio, p50/p95/p99 (hit, miss, ERP),
//!   tiers, evictions, coalescing, slowest routes, hot keys, RSS, uptime, config version.
//! * `POST /purge`      body `{"url": ..}`, `{"prefix": ..}`, `{"route": ..}` or `{"tag": ..}`; bearer token
//!   when one is configured (else loopback clients only). JSON says what was purged.
//! * `GET  /dashboard`  a live page that polls `/stats` (no external resources).
//!
//! With `admin.protect_reads`, `/metrics`, `/stats` and `/dashboard` need the admin token too
//! (`read_auth`: bearer, or Basic from a browser); `/healthz` and `/readyz` stay open.
//! Anything else is 404; a wrong method is 405 with `Allow`.

mod dashboard;
pub mod purge;
pub mod read_auth;
pub mod ready;
pub mod response;
pub mod stats;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Method, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::cache::bans::Bans;
use crate::cache::{Cache, DiskTier, HybridStorage};
use crate::config::Config;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::stats::Stats;
use purge::Refusal;
use response::Answer;

/// Largest purge body read.
const MAX_PURGE_BODY_BYTES: usize = 64 * 1024;

/// The admin application.
pub struct Admin {
    config: Arc<ArcSwap<Config>>,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    health: HealthState,
    disk: DiskTier,
    storage: &'static HybridStorage,
    bans: Arc<Bans>,
    token: Option<String>,
    /// `admin.protect_reads` at startup (changing it takes a restart, as the token does).
    protect_reads: bool,
}

impl Admin {
    /// Admin endpoints over this proxy's configuration, metrics, statistics, ERP health and
    /// cache. `token` guards `POST /purge` (`None`: loopback clients only).
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        metrics: Arc<Metrics>,
        stats: Arc<Stats>,
        health: HealthState,
        cache: &Cache,
        token: Option<String>,
    ) -> Self {
        let protect_reads = config.load().admin.protect_reads;
        Admin {
            config,
            metrics,
            stats,
            health,
            disk: cache.disk.clone(),
            storage: cache.storage,
            bans: cache.bans.clone(),
            token,
            protect_reads,
        }
    }

    /// `None` if the request may read the protected endpoints, else the 401.
    fn refuse_read(&self, session: &ServerSession) -> Option<Answer> {
        if !self.protect_reads {
            return None;
        }
        let auth = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION);
        // No token in force with protect_reads on (validation refuses it): nobody reads.
        if let Some(token) = self.token.as_deref()
            && read_auth::allowed(token, auth.map(|v| v.as_bytes()))
        {
            return None;
        }
        Some(response::unauthorized_read(
            "this endpoint needs the admin token (admin.protect_reads): \
             Authorization: Bearer <token>, or Basic with the token as the password",
        ))
    }

    fn readiness(&self) -> Answer {
        let config = self.config.load_full();
        let r = ready::readiness(
            &self.disk,
            self.storage.memory_usage().is_some(),
            &self.health.snapshot(),
            stats::config_version(&config),
        );
        let status = if r.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        response::json(status, &r)
    }

    fn metrics(&self) -> Answer {
        self.metrics.refresh(&self.sample());
        response::metrics(self.metrics.render())
    }

    async fn purge(&self, session: &mut ServerSession) -> Answer {
        let req = session.req_header();
        let client: Option<IpAddr> = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let auth = req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        if let Err(refusal) = purge::authorize(self.token.as_deref(), auth.as_deref(), client) {
            return refused(refusal);
        }
        let body = match read_body(session, MAX_PURGE_BODY_BYTES).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };
        let outcome = purge::parse(&body).and_then(|req| {
            let config = self.config.load_full();
            purge::execute(req, &config, self.storage, &self.bans)
        });
        match outcome {
            Ok(done) => {
                self.metrics.observe_purge(done.purged);
                response::json(StatusCode::OK, &done)
            }
            Err(refusal) => refused(refusal),
        }
    }
}

fn refused(r: Refusal) -> Answer {
    match r {
        Refusal::Unauthorized(why) => response::unauthorized(why),
        Refusal::Forbidden(why) => response::forbidden(why),
        Refusal::BadRequest(why) => response::bad_request(&why),
        Refusal::NotFound(why) => response::not_found(&why),
        Refusal::Internal(why) => response::internal_error(&why),
    }
}

/// Reads the request body, up to `limit` bytes.
async fn read_body(session: &mut ServerSession, limit: usize) -> Result<Vec<u8>, Answer> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(response::payload_too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(response::bad_request(&format!(
                    "cannot read the request body: {e}"
                )));
            }
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Answer {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_owned();
        let read = method == Method::GET || method == Method::HEAD;
        match path.as_str() {
            "/purge" if method == Method::POST => self.purge(session).await,
            "/purge" => response::method_not_allowed("POST"),
            "/healthz" | "/readyz" | "/metrics" | "/stats" | "/dashboard" if !read => {
                response::method_not_allowed("GET, HEAD")
            }
            "/healthz" => response::text("ok"),
            "/readyz" => self.readiness(),
            "/metrics" | "/stats" | "/dashboard" | "/dashboard/"
                if let Some(refusal) = self.refuse_read(session) =>
            {
                refusal
            }
            "/metrics" => self.metrics(),
            "/stats" => response::json(StatusCode::OK, &self.stats_doc()),
            "/dashboard" | "/dashboard/" => response::html(dashboard::PAGE),
            "/" => response::text(
                "knitcache admin: /healthz /readyz /metrics /stats /dashboard, POST /purge",
            ),
            _ => response::not_found("not found; see / for the endpoints"),
        }
    }
}
