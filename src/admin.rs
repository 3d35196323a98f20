//! The admin listener, separate from proxied traffic (loopback by default).
//!
//! * `GET /healthz`  200 `ok` while the process serves.
//! * `GET /readyz`   200 with the state of the cache tiers as JSON; a memory-only fallback is
//!   degraded, not down, so it answers 200 and says why.
//! * `GET /metrics`  Prometheus text format: the proxy's families and foyer's.
//!
//! Anything else is 404; methods other than GET/HEAD are 405.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::cache::DiskTier;
use crate::metrics::Metrics;

/// The admin application.
pub struct Admin {
    metrics: Arc<Metrics>,
    disk: DiskTier,
}

impl Admin {
    /// Admin endpoints over this proxy's metrics and cache state.
    pub fn new(metrics: Arc<Metrics>, disk: DiskTier) -> Self {
        Admin { metrics, disk }
    }

    fn readiness(&self) -> Response<Vec<u8>> {
        let body = match &self.disk {
            DiskTier::Open => r#"{"ready":true,"cache":"memory+disk"}"#.to_string(),
            DiskTier::Recreated { .. } => {
                r#"{"ready":true,"cache":"memory+disk","note":"disk tier recreated empty at startup"}"#.to_string()
            }
            DiskTier::MemoryOnly { reason } => format!(
                r#"{{"ready":true,"cache":"memory-only","reason":{}}}"#,
                json_string(reason)
            ),
        };
        respond(StatusCode::OK, "application/json", body.into_bytes())
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::GET && req.method != Method::HEAD {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/healthz" => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => self.readiness(),
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// A JSON string literal for `s` (quotes, backslashes and control characters escaped).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }
}
