//! Readiness through the real proxy: `/readyz` says whether this process can serve, never
//! whether the ERP is up. With the ERP down the proxy stays ready and keeps answering from its
//! cache (fresh hits, stale-if-error copies); the ERP's state is only reported.

mod common;

use std::time::Duration;

use common::*;

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 1
    stale_while_revalidate_secs: 0
    stale_if_error_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
"#;

async fn readyz(c: &reqwest::Client, proxy: &TestProxy) -> (u16, serde_json::Value) {
    let r = get(c, &proxy.admin_url("/readyz")).await;
    let doc = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("readyz JSON ({e}): {}", r.text()));
    (r.status, doc)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_erp_going_down_leaves_the_proxy_ready_and_serving() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = with_health_interval(&config_yaml(sim.addr(), &dir, ROUTES), 100);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    wait_ready(&c, &proxy).await;
    assert!(sim.hits("/hello") >= 1, "the probe asked the ERP's /hello");

    let kpis = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(kpis.status, 200, "{}", kpis.text());
    let orders = get(&c, &proxy.url("/api/knit-orders")).await;
    assert_eq!(orders.status, 200, "{}", orders.text());

    sim.set_down(true).await.expect("down");
    // Every answer while the probe notices stays 200.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let doc = loop {
        let (status, doc) = readyz(&c, &proxy).await;
        assert_eq!(status, 200, "ready while the ERP goes down: {doc}");
        if doc["erp_healthy"] == false {
            break doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe never saw the ERP down: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["reasons"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["degraded"], false, "{doc}");
    assert!(
        doc["erp"]
            .as_str()
            .is_some_and(|s| s.starts_with("ERP did not answer its last health probe")),
        "{doc}"
    );
    let live = get(&c, &proxy.admin_url("/healthz")).await;
    assert_eq!((live.status, live.text().trim()), (200, "ok"));
    let doc = stats(&c, &proxy).await;
    assert_eq!(doc["erp"]["healthy"], false, "{}", doc["erp"]);
    assert_eq!(metric(&proxy, "knitcache_upstream_up").await, 0.0);

    // A fresh key is a hit ...
    let hit = get(&c, &proxy.url("/api/knit-orders")).await;
    assert_eq!(hit.status, 200);
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(hit.body, orders.body);
    // ... and an expired one is served stale within its stale-if-error window.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert!(
        stale.cache_status().contains("stale-if-error"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(stale.body, kpis.body);
    let (status, doc) = readyz(&c, &proxy).await;
    assert_eq!(status, 200, "{doc}");

    sim.set_down(false).await.expect("up");
    let back = wait_ready(&c, &proxy).await;
    let back: serde_json::Value = serde_json::from_slice(&back.body).expect("JSON");
    assert_eq!(back["erp"], serde_json::Value::Null, "{back}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_before_the_first_probe_answers() {
    // An "ERP" that accepts and never answers: the first probe is still running.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (_tmp, dir) = cache_dir();
    let yaml = with_health_interval(
        &config_yaml(silent.local_addr().expect("addr"), &dir, ROUTES),
        30_000,
    );
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    let (status, doc) = readyz(&c, &proxy).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["reasons"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["erp_healthy"], serde_json::Value::Null, "{doc}");
    assert_eq!(doc["erp"], "waiting for first ERP health probe", "{doc}");
    assert_eq!(doc["cache"], "memory+disk", "{doc}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_only_cache_is_ready_and_degraded() {
    let sim = start_sim(0.01).await;
    let (tmp, _) = cache_dir();
    // The cache directory's parent is a file: no disk tier can be created or moved aside.
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, b"a file").expect("write file");
    let dir = blocker.join("cache");
    let yaml = config_yaml(sim.addr(), &dir, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    let ready = wait_ready(&c, &proxy).await;
    let doc: serde_json::Value = serde_json::from_slice(&ready.body).expect("JSON");
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["degraded"], true, "{doc}");
    assert_eq!(doc["cache"], "memory-only", "{doc}");
    assert_eq!(doc["reasons"], serde_json::json!([]), "{doc}");
    assert!(
        doc["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disk tier unavailable, memory only")),
        "{doc}"
    );
    // And it serves from memory.
    get(&c, &proxy.url("/api/knit-orders")).await;
    let hit = get(&c, &proxy.url("/api/knit-orders")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
}
