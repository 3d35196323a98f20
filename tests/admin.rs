//! The admin listener through real HTTP against a real proxy and the simulator: status codes,
//! JSON shapes, and `/stats` counting what happened.

mod common;

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
