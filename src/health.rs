//! The ERP health probe: a pingora `BackgroundService` that GETs `upstream.health_path` every
//! `upstream.health_interval_ms` and keeps what it found in a small shared [`HealthState`].
//!
//! Readiness (`/readyz`) and `/stats` read the state; the circuit breaker may too. Any HTTP answer
//! below 500 counts as "the ERP answered": the probe asks whether the process serves, not whether
//! one handler works. The probe talks to the ERP directly (never through the proxy or its cache),
//! over one short HTTP/1.1 connection per probe, as the ERP closes every connection anyway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use http::header::{ACCEPT, USER_AGENT};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::watch;

use crate::http_client;
use crate::metrics::Metrics;

/// What the probes have found so far. `healthy` is `None` until the first probe completes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErpHealth {
    /// Whether the ERP answered the last probe (`None`: no probe has completed yet).
    pub healthy: Option<bool>,
    /// When the last probe completed.
    pub last_checked: Option<SystemTime>,
    /// How long the last probe took (connect until the response head arrived, or until it failed).
    pub last_latency: Option<Duration>,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<u16>,
    /// Why the last probe failed; `None` after a success.
    pub last_error: Option<String>,
    /// Failed probes in a row (0 after a success).
    pub consecutive_failures: u32,
}

/// The shared, cheaply cloned health state; the probe writes it, anyone may read or watch it.
#[derive(Debug, Clone)]
pub struct HealthState(Arc<watch::Sender<ErpHealth>>);

impl Default for HealthState {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthState {
    /// A state that has not been probed yet.
    pub fn new() -> Self {
        HealthState(Arc::new(watch::Sender::new(ErpHealth::default())))
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> ErpHealth {
        self.0.borrow().clone()
    }

    /// A receiver that sees every change (for consumers that react to transitions).
    pub fn subscribe(&self) -> watch::Receiver<ErpHealth> {
        self.0.subscribe()
    }

    /// Records the outcome of one probe.
    pub fn record(&self, outcome: &Result<u16, String>, took: Duration, at: SystemTime) {
        self.0.send_modify(|h| {
            h.last_checked = Some(at);
            h.last_latency = Some(took);
            match outcome {
                Ok(status) if *status < 500 => {
                    h.healthy = Some(true);
                    h.last_status = Some(*status);
                    h.last_error = None;
                    h.consecutive_failures = 0;
                }
                Ok(status) => {
                    h.healthy = Some(false);
                    h.last_status = Some(*status);
                    h.last_error = Some(format!("the ERP answered {status}"));
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                }
                Err(e) => {
                    h.healthy = Some(false);
                    h.last_status = None;
                    h.last_error = Some(e.clone());
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                }
            }
        });
    }
}

/// The background service that probes the ERP.
pub struct HealthProbe {
    addr: SocketAddr,
    path: String,
    interval: Duration,
    timeout: Duration,
    state: HealthState,
    metrics: Arc<Metrics>,
}

impl HealthProbe {
    /// A probe of `addr` + `path`, writing into `state` and the `knitcache_upstream_*` gauges.
    pub fn new(
        addr: SocketAddr,
        path: String,
        interval: Duration,
        timeout: Duration,
        state: HealthState,
        metrics: Arc<Metrics>,
    ) -> Self {
        HealthProbe {
            addr,
            path,
            interval,
            timeout,
            state,
            metrics,
        }
    }

    async fn probe_once(&self) {
        let started = Instant::now();
        let outcome = probe(self.addr, &self.path, self.timeout).await;
        let took = started.elapsed();
        let before = self.state.snapshot().healthy;
        self.state.record(&outcome, took, SystemTime::now());
        let after = self.state.snapshot();
        let up = after.healthy == Some(true);
        self.metrics.observe_health_probe(up, took);
        // Transitions only: a steady state logs nothing.
        match (before, up) {
            (Some(true) | None, false) => tracing::warn!(
                erp = %self.addr,
                path = %self.path,
                error = after.last_error.as_deref().unwrap_or(""),
                "ERP health probe failed"
            ),
            (Some(false), true) => tracing::info!(
                erp = %self.addr,
                took_ms = took.as_millis() as u64,
                "ERP answers health probes again"
            ),
            _ => {}
        }
    }
}

#[async_trait]
impl BackgroundService for HealthProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.probe_once().await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One probe: connect, send a GET, wait for the response head (the body is not read). The whole
/// exchange is bounded by `timeout`. Every probe is a new connection (see [`http_client`]), so
/// its latency includes a real connect, as a client's first request to the ERP would. Returns
/// the status, or why there was none.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    http_client::Get::new(addr, path)
        .header(USER_AGENT, "knitcache-health")
        .header(ACCEPT, "*/*")
        .connect_timeout(timeout)
        .timeout(timeout)
        .body(http_client::Body::Skip)
        .send()
        .await
        .map(|answer| answer.status)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_counts_failures_and_resets_on_success() {
        let s = HealthState::new();
        assert_eq!(s.snapshot().healthy, None, "unknown before the first probe");
        let now = SystemTime::now();
        s.record(&Err("refused".into()), Duration::from_millis(1), now);
        s.record(&Ok(503), Duration::from_millis(2), now);
        let h = s.snapshot();
        assert_eq!(h.healthy, Some(false));
        assert_eq!(h.consecutive_failures, 2);
        assert_eq!(h.last_status, Some(503));
        assert_eq!(h.last_error.as_deref(), Some("the ERP answered 503"));
        s.record(&Ok(404), Duration::from_millis(3), now);
        let h = s.snapshot();
        assert_eq!(
            h.healthy,
            Some(true),
            "any answer below 500 means the ERP answered"
        );
        assert_eq!((h.consecutive_failures, h.last_error), (0, None));
    }

    /// A peer that answers one connection with `answer`, whatever the request.
    async fn answering(answer: &'static [u8]) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn probe_reads_the_status_and_refuses_what_is_not_http() {
        let t = Duration::from_secs(2);
        let ok = answering(b"HTTP/1.1 204 NO CONTENT\r\n\r\n").await;
        assert_eq!(probe(ok, "/hello", t).await, Ok(204));
        // HTTP/1.0 and a status without a reason phrase.
        let old = answering(b"HTTP/1.0 500\r\nContent-Length: 3\r\n\r\nbad").await;
        assert_eq!(probe(old, "/hello", t).await, Ok(500));
        let ssh = answering(b"SSH-2.0-OpenSSH\r\n").await;
        let e = probe(ssh, "/hello", t).await.expect_err("not HTTP");
        assert!(e.contains("not valid HTTP"), "{e}");
        let garbled = answering(b"HTTP/1.1 abc\r\n\r\n").await;
        let e = probe(garbled, "/hello", t).await.expect_err("no status");
        assert!(e.contains("not valid HTTP"), "{e}");
    }

    #[tokio::test]
    async fn probe_reports_refused_and_silent_peers() {
        // A port with no listener: bind, note the port, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let e = probe(addr, "/hello", Duration::from_secs(2))
            .await
            .expect_err("nobody listens");
        assert!(e.contains("cannot connect"), "{e}");

        // A listener that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr");
        let keep = tokio::spawn(async move {
            let conn = silent.accept().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(conn);
        });
        let e = probe(addr, "/hello", Duration::from_millis(100))
            .await
            .expect_err("silent");
        assert!(e.contains("within 100 ms"), "{e}");
        keep.abort();
    }
}
