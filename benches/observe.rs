//! What does recording one finished request cost? The Prometheus families (`Metrics`), the
//! per-route percentiles and hot keys (`Stats`), and formatting one JSON access line (the write
//! itself is batched, 32 KiB per `write`). Compared in README.md ("Performance")
//! with the hits/s a whole hit costs.
//!
//! Run: `cargo bench --bench observe`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use knitcache::access_log::{self, AccessLine, Redacted};
use knitcache::metrics::Metrics;
use knitcache::stats::{Observation, Stats};
use knitcache::telemetry::LogFormat;

fn config() -> knitcache::config::Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/knitcache.yaml");
    knitcache::config::load(&path).expect("shipped config")
}

fn recording(c: &mut Criterion) {
    let config = config();
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    let metrics = Metrics::new(names.iter().copied()).expect("metrics");
    let stats = Stats::new(&config);
    let (index, route) = config
        .route_for(&http::Method::GET, "/api/comprehensive-kpis")
        .expect("kpis route");
    let name = route.name.clone();
    let mut g = c.benchmark_group("observe_hit");
    g.bench_function("prometheus", |b| {
        b.iter(|| {
            metrics.observe_request(
                &name,
                &http::Method::GET,
                200,
                "hit",
                Duration::from_micros(80),
            );
            metrics.observe_lookup(&name, "hit", false);
        })
    });
    let obs = Observation {
        route: Some(index),
        route_name: &name,
        cache: "hit",
        cacheable: true,
        total: Duration::from_micros(80),
        upstream: None,
        upstream_error: false,
        refused: false,
        coalesced: false,
        bytes: 342,
    };
    g.bench_function("stats", |b| {
        b.iter(|| {
            stats.record(black_box(&obs));
            stats.record_key(black_box(0x1234_5678_9abc_def0), || {
                ("GET /x".into(), "kpis".into())
            });
        })
    });
    let line = AccessLine {
        route: &name,
        request: Redacted {
            method: "GET",
            path: "/api/comprehensive-kpis",
        },
        status: 200,
        cache: "hit",
        fill: None,
        took: Duration::from_micros(80),
        upstream: None,
        upstream_status: None,
        bytes: 342,
        client: Some("127.0.0.1:50000".into()),
        error: None,
    };
    // Formatting the JSON access line into a reused buffer (what `access_log::write` does
    // before appending it to the log's batch).
    let mut buf = String::with_capacity(512);
    g.bench_function("access_line_json", |b| {
        b.iter(|| {
            buf.clear();
            access_log::format_line(
                &mut buf,
                black_box(&line),
                LogFormat::Json,
                SystemTime::now(),
            );
        })
    });
    g.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
