//! What does the proxy spend per request before it touches storage? Cache key building
//! (normalising the query, hashing once) and route matching over the shipped route table.
//!
//! Run: `cargo bench --bench hot_path`. Figures are in README.md ("Performance").

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use knitcache::cache::key;
use knitcache::config::{self, QueryKey};

fn cache_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_key");
    g.bench_function("no_query", |b| {
        b.iter(|| key::cache_key(black_box("/api/comprehensive-kpis"), None, &QueryKey::All))
    });
    g.bench_function("three_params_sorted", |b| {
        b.iter(|| {
            key::cache_key(
                black_box("/api/ml-forecast-detailed"),
                Some(black_box("horizon=30&format=report&detail=full")),
                &QueryKey::All,
            )
        })
    });
    let only = QueryKey::Only(vec!["view".into(), "analysis".into()]);
    g.bench_function("only_list", |b| {
        b.iter(|| {
            key::cache_key(
                black_box("/api/yarn-intelligence"),
                Some(black_box("_=17&analysis=shortage&view=full")),
                &only,
            )
        })
    });
    g.finish();
}

fn route_matching(c: &mut Criterion) {
    let config = match config::load(std::path::Path::new("config/knitcache.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("shipped config must load: {e}"),
    };
    let mut g = c.benchmark_group("route_for");
    g.bench_function("first_route", |b| {
        let path = &config.routes[0];
        let probe = match &path.path {
            config::PathMatch::Exact(p) | config::PathMatch::Prefix(p) => p.clone(),
            config::PathMatch::Pattern(_) => "/".to_string(),
        };
        b.iter(|| config.route_for(&Method::GET, black_box(&probe)))
    });
    g.bench_function("dashboard_poll", |b| {
        b.iter(|| {
            config.route_for(
                &Method::GET,
                black_box("/api/inventory-intelligence-enhanced"),
            )
        })
    });
    g.bench_function("unmatched", |b| {
        b.iter(|| config.route_for(&Method::GET, black_box("/no/such/path")))
    });
    g.finish();
}

criterion_group!(benches, cache_keys, route_matching);
criterion_main!(benches);
