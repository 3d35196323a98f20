//! The admin listener through real HTTP against a real proxy and the simulator: status codes,
//! JSON shapes, readiness following the ERP's health, and `/stats` counting what happened.

mod common;

use std::time::Duration;

use common::*;

const ROUTES: &str = r#"  - name: reload-data
    exact: /api/reload-data
    cache: false
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
"#;

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_answer_with_status_and_shape() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    let live = get(&c, &proxy.admin_url("/healthz")).await;
    assert_eq!((live.status, live.text().trim()), (200, "ok"));
    let ready = wait_ready(&c, &proxy).await;
    let ready: serde_json::Value = serde_json::from_slice(&ready.body).expect("readyz JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["cache"], "memory+disk", "{ready}");
    assert!(
        ready["config_version"]
            .as_str()
            .is_some_and(|v| v.len() == 16),
        "{ready}"
    );

    for path in ["/nope", "/stats/x"] {
        assert_eq!(get(&c, &proxy.admin_url(path)).await.status, 404, "{path}");
    }
    let wrong = send(c.post(proxy.admin_url("/stats"))).await;
    assert_eq!(
        (wrong.status, wrong.header("allow").as_str()),
        (405, "GET, HEAD")
    );
    let wrong = get(&c, &proxy.admin_url("/purge")).await;
    assert_eq!(
        (wrong.status, wrong.header("allow").as_str()),
        (405, "POST")
    );
    let page = get(&c, &proxy.admin_url("/dashboard")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{:?}",
        page.headers
    );

    // Traffic: one miss and one hit on kpis, one pass-through, one unmatched path.
    get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .is_hit()
    );
    get(&c, &proxy.url("/api/reload-data")).await;
    get(&c, &proxy.url("/api/yarn-data?token=s3cret")).await;

    let doc = stats(&c, &proxy).await;
    let names: Vec<&str> = doc["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["reload-data", "kpis", "knit-orders", "unmatched"]);
    let kpis = route_stats(&doc, "kpis");
    assert_eq!(
        (
            kpis["requests"].as_u64(),
            kpis["hits"].as_u64(),
            kpis["misses"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{kpis}"
    );
    assert_eq!(kpis["hit_ratio"], 0.5);
    for class in ["all", "hit", "miss", "upstream"] {
        for field in ["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"] {
            assert!(
                kpis["latency"][class][field].is_number(),
                "latency.{class}.{field}: {kpis}"
            );
            assert!(
                kpis["recent"][class][field].is_number(),
                "recent.{class}.{field}: {kpis}"
            );
        }
    }
    assert_eq!(kpis["latency"]["hit"]["count"], 1);
    assert_eq!(kpis["latency"]["upstream"]["count"], 1);
    assert_eq!(
        route_stats(&doc, "reload-data")["hit_ratio"],
        serde_json::Value::Null
    );
    assert_eq!(route_stats(&doc, "unmatched")["requests"], 1);
    assert_eq!(doc["totals"]["requests"], 4, "{}", doc["totals"]);

    assert_eq!(doc["erp"]["healthy"], true, "{}", doc["erp"]);
    assert_eq!(doc["erp"]["health_path"], "/hello");
    assert!(
        doc["process"]["rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1 << 20),
        "{}",
        doc["process"]
    );
    assert!(doc["uptime_secs"].as_f64().is_some_and(|s| s > 0.0));
    assert!(
        doc["cache"]["memory"]["entries"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{}",
        doc["cache"]
    );
    assert!(doc["cache"]["disk"]["bytes"].is_u64(), "{}", doc["cache"]);
    assert_eq!(doc["cache"]["disk"]["state"], "open");
    assert_eq!(doc["config_version"], ready["config_version"]);

    let slowest = doc["slowest"].as_array().expect("slowest");
    assert!(!slowest.is_empty() && slowest.len() <= 10, "{slowest:?}");
    let hot = doc["hot_keys"].as_array().expect("hot keys");
    assert_eq!(hot[0]["key"], "GET /api/comprehensive-kpis", "{hot:?}");
    assert_eq!(hot[0]["count"], 2);
    assert!(
        !doc.to_string().contains("s3cret"),
        "no query value of an unmatched path leaks"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_the_erp() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = with_health_interval(&config_yaml(sim.addr(), &dir, ROUTES), 100);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    wait_ready(&c, &proxy).await;
    assert!(sim.hits("/hello") >= 1, "the probe asked the ERP's /hello");

    sim.set_down(true).await.expect("down");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let not_ready = loop {
        let r = get(&c, &proxy.admin_url("/readyz")).await;
        if r.status == 503 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready with the ERP down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body: serde_json::Value = serde_json::from_slice(&not_ready.body).expect("JSON");
    assert_eq!(body["ready"], false);
    let reason = body["reasons"][0].as_str().unwrap_or("");
    assert!(
        reason.starts_with("ERP did not answer its last health probe"),
        "{body}"
    );
    let doc = stats(&c, &proxy).await;
    assert_eq!(doc["erp"]["healthy"], false, "{}", doc["erp"]);
    assert!(
        doc["erp"]["consecutive_failures"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );

    sim.set_down(false).await.expect("up");
    wait_ready(&c, &proxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_probe() {
    // An "ERP" that accepts and never answers: the first probe is still running.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (_tmp, dir) = cache_dir();
    let yaml = with_health_interval(
        &config_yaml(silent.local_addr().expect("addr"), &dir, ROUTES),
        30_000,
    );
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    let r = get(&c, &proxy.admin_url("/readyz")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        body["reasons"][0], "waiting for first ERP health probe",
        "{body}"
    );
    assert_eq!(body["erp_healthy"], serde_json::Value::Null);
    drop(silent);
}
