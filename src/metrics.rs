//! The proxy's Prometheus metrics: one registry per proxy instance, every name in this file.
//!
//! The registry is owned here, not the process-global default one, so several proxies can
//! live in one process (the tests) and foyer's metrics (through mixtrics) land beside ours
//! with one `prometheus` version in the tree. Labels are bounded: route names come from the
//! config plus the catch-all, methods and statuses are folded into small fixed sets.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Latency buckets in seconds: from a sub-millisecond hit to the ERP's 7 s cold forecast.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metric families of one proxy.
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    upstream_seconds: HistogramVec,
}

impl Metrics {
    /// Creates the registry and registers every family. `routes` are the configured route
    /// names: their series exist from startup, before any traffic.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a str>) -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "knitcache_requests_total",
                "Requests by route, method, status class and cache result",
            ),
            &["route", "method", "status", "cache"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "knitcache_request_duration_seconds",
                "Time from request to response end, by route and cache result",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "cache"],
        )?;
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new(
                "knitcache_upstream_duration_seconds",
                "Time the ERP took to answer, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(upstream_seconds.clone()))?;
        for route in routes.into_iter().chain([crate::proxy::CATCH_ALL_ROUTE]) {
            upstream_seconds.with_label_values(&[route]);
            request_seconds.with_label_values(&[route, "hit"]);
            request_seconds.with_label_values(&[route, "miss"]);
        }
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            upstream_seconds,
        })
    }

    /// Records one finished request.
    pub fn observe_request(
        &self,
        route: &str,
        method: &http::Method,
        status: u16,
        cache: &str,
        took: Duration,
    ) {
        self.requests
            .with_label_values(&[route, method_label(method), status_class(status), cache])
            .inc();
        self.request_seconds
            .with_label_values(&[route, cache])
            .observe(took.as_secs_f64());
    }

    /// Records how long the ERP took for one request.
    pub fn observe_upstream(&self, route: &str, took: Duration) {
        self.upstream_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The text exposition of every registered family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = prometheus::Encoder::encode(&encoder, &self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_routes_are_exported_before_traffic() {
        let m = Metrics::new(["kpis", "forecast"]).expect("metrics");
        let text = String::from_utf8(m.render()).expect("utf8");
        for route in ["kpis", "forecast", "unmatched"] {
            assert!(
                text.contains(&format!("route=\"{route}\"")),
                "{route} missing:\n{text}"
            );
        }
    }

    #[test]
    fn requests_are_counted_with_bounded_labels() {
        let m = Metrics::new(["kpis"]).expect("metrics");
        m.observe_request(
            "kpis",
            &http::Method::from_bytes(b"BREW").expect("m"),
            503,
            "miss",
            Duration::from_millis(3),
        );
        let text = String::from_utf8(m.render()).expect("utf8");
        assert!(
            text.contains(r#"knitcache_requests_total{cache="miss",method="other",route="kpis",status="5xx"} 1"#),
            "{text}"
        );
    }
}
