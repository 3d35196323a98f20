//! `/metrics` from a real proxy running the shipped route table: every configured route has its
//! series from startup, requests and ERP failures are counted with bounded labels, the scrape
//! passes `promtool check metrics`, and the alert rules and the Grafana dashboard only use
//! metrics that exist (those of cluster mode in a replica started with `--cluster` on a real
//! redis-server: a single node does not export them).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Series lines (`name{labels} value`) of a text exposition.
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// The series of family `name` (exactly) carrying every one of `labels`.
fn matching<'a>(text: &'a str, name: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    series(text)
        .into_iter()
        .filter(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .collect()
}

fn has(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    !matching(text, name, labels).is_empty()
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(text, name, labels)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(c: &reqwest::Client, proxy: &TestProxy) -> String {
    let r = get(c, &proxy.admin_url("/metrics")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    r.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_configured_route_is_exported_and_traffic_is_counted() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let config = shipped_config(sim.addr(), &dir);
    let routes: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
    assert!(routes.len() > 30, "the shipped table: {}", routes.len());
    let proxy = TestProxy::start(config, &dir);
    let c = client();

    let text = scrape(&c, &proxy).await;
    for route in routes.iter().map(String::as_str).chain(["unmatched"]) {
        for family in [
            "knitcache_request_duration_seconds_bucket",
            "knitcache_upstream_duration_seconds_bucket",
            "knitcache_cache_lookups_total",
            "knitcache_cache_coalesced_total",
            "knitcache_upstream_errors_total",
        ] {
            assert!(
                has(&text, family, &[("route", route)]),
                "{family} has no series for {route}"
            );
        }
    }
    // Labels stay bounded: route names, never paths or client addresses.
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    get(&c, &proxy.url("/some/unknown/path?x=1")).await;
    sim.set_fail(Some(500));
    get(&c, &proxy.url("/api/reload-data")).await;
    sim.set_fail(None);
    sim.set_down(true).await.expect("down");
    get(&c, &proxy.url("/api/reload-data")).await;
    sim.set_down(false).await.expect("up");

    let text = scrape(&c, &proxy).await;
    let kpis = [("route", "kpis")];
    assert_eq!(
        value(
            &text,
            "knitcache_requests_total",
            &[
                ("route", "kpis"),
                ("cache", "hit"),
                ("status", "2xx"),
                ("method", "GET")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "knitcache_cache_lookups_total",
            &[("route", "kpis"), ("result", "miss")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "knitcache_request_duration_seconds_count",
            &[("route", "kpis"), ("cache", "hit")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, "knitcache_upstream_duration_seconds_count", &kpis),
        1.0
    );
    assert_eq!(
        value(&text, "knitcache_requests_total", &[("route", "unmatched")]),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "knitcache_upstream_errors_total",
            &[("route", "reload-data"), ("kind", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "knitcache_upstream_errors_total",
            &[("route", "reload-data"), ("kind", "connect")]
        ),
        1.0
    );
    assert!(
        !text.contains("/some/unknown/path") && !text.contains("127.0.0.1:"),
        "no paths or addresses in labels"
    );
    assert!(has(&text, "knitcache_downstream_requests_in_flight", &[]));
    assert_eq!(
        value(&text, "knitcache_downstream_requests_in_flight", &[]),
        0.0,
        "every request ended"
    );
    assert!(value(&text, "knitcache_process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&text, "knitcache_cache_entries", &[("tier", "memory")]) >= 1.0);
    assert!(
        has(&text, "foyer_memory_op_total", &[("op", "evict")]),
        "foyer's metrics share the registry"
    );
}

/// Runs promtool with `args`, feeding `stdin`; fails the test (never skips) without promtool.
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package (make setup does)"
            )
        });
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool finished");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_scrape_passes_promtool_and_the_deploy_files_use_real_names() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start(shipped_config(sim.addr(), &dir), &dir);
    let c = client();
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    let text = scrape(&c, &proxy).await;

    // The same config as one replica of a cluster (what `--cluster URL` turns on), at start.
    let redis = common::redis_server::RedisServer::start();
    let (_ctmp, cdir) = cache_dir();
    let mut clustered = shipped_config(sim.addr(), &cdir);
    clustered.cluster = Some(knitcache::config::ClusterSettings::with_url(redis.url()));
    let replica = TestProxy::start(clustered, &cdir);
    let replica_text = scrape(&c, &replica).await;
    assert!(
        replica_text.contains("knitcache_cluster_redis_up"),
        "cluster mode exports its metrics from the start"
    );

    for text in [&text, &replica_text] {
        let (ok, out) = tokio::task::spawn_blocking({
            let text = text.clone();
            move || promtool(&["check", "metrics"], &text)
        })
        .await
        .expect("promtool task");
        assert!(ok, "promtool check metrics:\n{out}");
    }

    // Every knitcache metric the rules and the dashboard query exists in a scrape (the breaker
    // gauge belongs to the circuit breaker, which exports it itself); cluster mode's in a
    // replica's, which has every single-node metric too.
    let exported: BTreeSet<String> = series(&text)
        .into_iter()
        .chain(series(&replica_text))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_owned()
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in ["prometheus/knitcache.rules.yml", "grafana/knitcache.json"] {
        let body = std::fs::read_to_string(root.join(file)).expect("deploy file");
        let used: BTreeSet<String> = body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("knitcache_") || w.starts_with("foyer_"))
            .map(|w| {
                w.trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .to_owned()
            })
            .collect();
        for name in used {
            if name == "knitcache_breaker_state" {
                continue;
            }
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which /metrics does not export"
            );
        }
    }
}
