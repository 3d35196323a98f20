//! `POST /purge` against a real proxy and the simulator: who may purge, and that each kind of
//! purge really makes the next request go to the ERP (proven by the simulator's hit counter),
//! including a ban made before a restart.

mod common;

use std::io::Read;

use common::*;

const TOKEN: &str = "test-admin-token-0123456789";

const ROUTES: &str = r#"  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
  - name: yarn
    prefix: /api/yarn-
    ttl_secs: 600
  - name: reload-data
    exact: /api/reload-data
    cache: false
"#;

fn yaml_with_token(sim: std::net::SocketAddr, dir: &std::path::Path) -> String {
    format!(
        "{}admin:\n  token: \"{TOKEN}\"\n",
        config_yaml(sim, dir, ROUTES)
    )
}

/// GETs `path` twice through the proxy: the second must be a hit.
async fn warm(c: &reqwest::Client, proxy: &TestProxy, path: &str) {
    get(c, &proxy.url(path)).await;
    let again = get(c, &proxy.url(path)).await;
    assert!(again.is_hit(), "{path} is cached: {}", again.cache_status());
}

#[tokio::test(flavor = "multi_thread")]
async fn url_purge_needs_the_token_and_removes_every_variant() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start_yaml(&yaml_with_token(sim.addr(), &dir), &dir);
    let c = client();
    let url = "/api/knit-orders?b=2&a=1";
    // Two stored variants of one key: identity and gzip.
    warm(&c, &proxy, url).await;
    let gz = send(c.get(proxy.url(url)).header("accept-encoding", "gzip")).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert!(
        send(c.get(proxy.url(url)).header("accept-encoding", "gzip"))
            .await
            .is_hit()
    );
    assert_eq!(
        sim.hits("/api/knit-orders"),
        1,
        "one fill; the gzip variant was made from it"
    );

    let purge = proxy.admin_url("/purge");
    let body = r#"{"url": "/api/knit-orders?a=1&b=2"}"#;
    let none = post_json(&c, &purge, body, None).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert!(none.header("www-authenticate").starts_with("Bearer"));
    let wrong = post_json(&c, &purge, body, Some("not-the-token-at-all")).await;
    assert_eq!(
        (wrong.status, wrong.text().trim()),
        (401, "wrong admin token")
    );
    assert!(
        get(&c, &proxy.url(url)).await.is_hit(),
        "a refused purge purges nothing"
    );

    let done = post_json(&c, &purge, body, Some(TOKEN)).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let done: serde_json::Value = serde_json::from_slice(&done.body).expect("JSON");
    assert_eq!(done["purged"], "url");
    assert_eq!(done["route"], "knit-orders");
    assert_eq!(done["key"], "GET /api/knit-orders?a=1&b=2");
    assert_eq!(done["removed"], 2, "both variants: {done}");

    let gz = send(c.get(proxy.url(url)).header("accept-encoding", "gzip")).await;
    assert!(
        gz.cache_status().contains("fwd=miss"),
        "the gzip variant is gone: {}",
        gz.cache_status()
    );
    // The identity variant is gone too: what is served now is made from the new gzip copy
    // (the ERP's body carries the time it was made), not the identity copy stored before.
    let after = get(&c, &proxy.url(url)).await;
    let mut refetched = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut refetched)
        .expect("gzip");
    assert!(
        after.body == refetched,
        "identity made from the refetched copy"
    );
    assert_eq!(sim.hits("/api/knit-orders"), 2, "one fetch after the purge");

    let metrics = String::from_utf8_lossy(&proxy.metrics.render()).to_string();
    assert!(
        metrics.contains("knitcache_purges_total{kind=\"url\"} 1"),
        "purge counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_and_route_purges_ban_what_they_match_only() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start_yaml(&yaml_with_token(sim.addr(), &dir), &dir);
    let c = client();
    for path in [
        "/api/comprehensive-kpis",
        "/api/knit-orders",
        "/api/yarn-data",
        "/api/yarn-inventory",
    ] {
        warm(&c, &proxy, path).await;
    }
    let purge = proxy.admin_url("/purge");

    let r = post_json(&c, &purge, r#"{"prefix": "/api/yarn"}"#, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        (r["purged"].as_str(), r["persisted"].as_bool()),
        (Some("prefix"), Some(true)),
        "{r}"
    );
    for path in ["/api/yarn-data", "/api/yarn-inventory"] {
        let again = get(&c, &proxy.url(path)).await;
        assert!(
            again.cache_status().contains("fwd=miss"),
            "{path}: {}",
            again.cache_status()
        );
        assert_eq!(sim.hits(path), 2, "{path} went to the ERP once more");
        assert!(
            get(&c, &proxy.url(path)).await.is_hit(),
            "{path}: the refill is served again"
        );
    }
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "outside the prefix"
    );

    let r = post_json(&c, &purge, r#"{"route": "kpis"}"#, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .cache_status()
            .contains("fwd=miss")
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 2);
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "another route"
    );
    assert_eq!(sim.hits("/api/knit-orders"), 1);

    let doc = stats(&c, &proxy).await;
    assert_eq!(doc["cache"]["bans"], 2, "{}", doc["cache"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_survives_a_restart() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = yaml_with_token(sim.addr(), &dir);
    let c = client();

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    warm(&c, &proxy, "/api/comprehensive-kpis").await;
    warm(&c, &proxy, "/api/knit-orders").await;
    let r = post_json(
        &c,
        &proxy.admin_url("/purge"),
        r#"{"route": "kpis"}"#,
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    proxy.stop(true);

    let proxy = TestProxy::start_yaml(&yaml, &dir);
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "unbanned entries come back from disk"
    );
    let kpis = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert!(
        kpis.cache_status().contains("fwd=miss"),
        "the ban outlived the restart: {}",
        kpis.cache_status()
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 2);
    assert_eq!(sim.hits("/api/knit-orders"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_purges_get_a_status_and_a_reason() {
    let sim = start_sim(0.01).await;
    // No token configured: loopback clients may purge.
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    let purge = proxy.admin_url("/purge");
    let cases = [
        (r#"{"route": "nope"}"#, 404, "no route named \"nope\""),
        (r#"{"route": "reload-data"}"#, 400, "passes through"),
        (r#"{"url": "/api/reload-data"}"#, 400, "passes through"),
        (r#"{"url": "/not/routed"}"#, 400, "matches no route"),
        (r#"{"prefix": "api"}"#, 400, "must be a path"),
        (r#"{"url": "/a", "prefix": "/b"}"#, 400, "exactly one"),
        ("{", 400, "not a purge request"),
    ];
    for (body, status, reason) in cases {
        let r = post_json(&c, &purge, body, None).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(reason), "{body}: {}", r.text());
    }
    let ok = post_json(
        &c,
        &purge,
        r#"{"url": "http://erp:5006/api/comprehensive-kpis"}"#,
        None,
    )
    .await;
    assert_eq!(
        ok.status,
        200,
        "loopback may purge without a token: {}",
        ok.text()
    );
    let ok: serde_json::Value = serde_json::from_slice(&ok.body).expect("JSON");
    assert_eq!(ok["removed"], 0, "nothing was stored");
}
