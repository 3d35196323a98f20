//! The admin listener, separate from proxied traffic (loopback by default). [`ENDPOINTS`] is
//! the one list of what it serves (path, methods, who may call it); docs/ADMIN_API.md and
//! docs/openapi.yaml document it, and a test holds the three together.
//!
//! * `GET  /healthz`    200 `ok` while the process serves (liveness).
//! * `GET  /readyz`     200 while the process can serve (listeners bound, config loaded, cache
//!   storage open; memory-only is `degraded` but ready); 503 once the storage is closed. The
//!   ERP's health is reported in the JSON but never makes it 503. See [`ready`].
//! * `GET  /metrics`    Prometheus text format: the proxy's families and foyer's.
//! * `GET  /stats`      JSON: per-route requests, hit ratio, p50/p95/p99 (hit, miss, ERP),
//!   tiers, evictions, coalescing, slowest routes, hot keys, RSS, uptime, config version, and
//!   in cluster mode the shared tier, leases and Redis operations (`cluster_stats`).
//! * `POST /purge`      body `{"url": ..}`, `{"prefix": ..}`, `{"route": ..}` or `{"tag": ..}`;
//!   bearer token when one is configured (else loopback clients only). JSON says what was purged.
//! * `GET  /dashboard`  a live page that polls `/stats` (no external resources).
//! * `GET  /`           the list of endpoints, as plain text.
//!
//! With `admin.protect_reads`, `/metrics`, `/stats` and `/dashboard` need the admin token too
//! (`read_auth`: bearer, or Basic from a browser); `/healthz` and `/readyz` stay open.
//! Anything else is 404; a wrong method is 405 with `Allow`. Every GET endpoint answers HEAD.

mod cluster_stats;
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
            &self.storage.health().state(),
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
        let outcome = match purge::parse(&body) {
            Ok(req) => {
                let config = self.config.load_full();
                purge::execute(req, &config, self.storage, &self.bans).await
            }
            Err(refusal) => Err(refusal),
        };
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

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Whoever reaches the listener: probes carry no credentials.
    Open,
    /// Whoever reaches the listener, unless `admin.protect_reads` is on: then the holder of the
    /// admin token (`read_auth`: bearer, or Basic with the token as the password).
    Read,
    /// The holder of the admin token, as a bearer token; with no token configured, loopback
    /// clients only (`purge::authorize`).
    Token,
}

/// What an endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Index,
    Live,
    Ready,
    Metrics,
    Stats,
    Dashboard,
    Purge,
}

/// One admin endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// The exact path (no prefix matching).
    pub path: &'static str,
    /// The methods it answers, as a `405`'s `Allow` lists them.
    pub allow: &'static str,
    /// Who may call it.
    pub access: Access,
    op: Op,
}

impl Endpoint {
    /// The methods it answers.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        self.allow.split(", ")
    }

    fn answers(&self, method: &Method) -> bool {
        self.methods().any(|m| m == method.as_str())
    }
}

const READ: &str = "GET, HEAD";

/// Everything the admin listener serves: the router reads this table and nothing else, so an
/// endpoint missing here is not served, and the API's documentation is checked against it.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/",
        allow: READ,
        access: Access::Open,
        op: Op::Index,
    },
    Endpoint {
        path: "/healthz",
        allow: READ,
        access: Access::Open,
        op: Op::Live,
    },
    Endpoint {
        path: "/readyz",
        allow: READ,
        access: Access::Open,
        op: Op::Ready,
    },
    Endpoint {
        path: "/metrics",
        allow: READ,
        access: Access::Read,
        op: Op::Metrics,
    },
    Endpoint {
        path: "/stats",
        allow: READ,
        access: Access::Read,
        op: Op::Stats,
    },
    Endpoint {
        path: "/dashboard",
        allow: READ,
        access: Access::Read,
        op: Op::Dashboard,
    },
    Endpoint {
        path: "/dashboard/",
        allow: READ,
        access: Access::Read,
        op: Op::Dashboard,
    },
    Endpoint {
        path: "/purge",
        allow: "POST",
        access: Access::Token,
        op: Op::Purge,
    },
];

/// The body of `GET /`: one line per endpoint, from the table.
fn index() -> String {
    let mut out = String::from("knitcache admin endpoints:");
    for e in ENDPOINTS {
        out.push_str(&format!("\n{:<10} {}", e.allow, e.path));
    }
    out
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Answer {
        let req = session.req_header();
        let path = req.uri.path();
        let Some(endpoint) = ENDPOINTS.iter().find(|e| e.path == path) else {
            return response::not_found("not found; see / for the endpoints");
        };
        if !endpoint.answers(&req.method) {
            return response::method_not_allowed(endpoint.allow);
        }
        if endpoint.access == Access::Read
            && let Some(refusal) = self.refuse_read(session)
        {
            return refusal;
        }
        match endpoint.op {
            Op::Index => response::text(&index()),
            Op::Live => response::text("ok"),
            Op::Ready => self.readiness(),
            Op::Metrics => self.metrics(),
            Op::Stats => response::json(StatusCode::OK, &self.stats_doc()),
            Op::Dashboard => response::html(dashboard::PAGE),
            // `Access::Token` is checked inside, after the method and before the body is read.
            Op::Purge => self.purge(session).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_methods_known() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert!(
                ENDPOINTS[..i].iter().all(|o| o.path != e.path),
                "{} twice",
                e.path
            );
            for m in e.methods() {
                assert!(
                    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&m),
                    "{}: {m:?}",
                    e.path
                );
            }
            // The purge checks its token itself; every other endpoint only reads.
            assert_eq!(e.op == Op::Purge, e.access == Access::Token, "{}", e.path);
        }
    }

    #[test]
    fn the_index_lists_every_endpoint() {
        let text = index();
        for e in ENDPOINTS {
            assert!(
                text.lines()
                    .any(|l| l.ends_with(&format!(" {}", e.path)) && l.starts_with(e.allow)),
                "{}: {text}",
                e.path
            );
        }
    }
}
