//! Keeping the cache right, through the real proxy: a successful write purges the routes its
//! rule names (a failed one does not), a side-effect GET purges everything, tags purge what
//! carries them, PURGE works from allowed clients only, and a re-warming rule refreshes the
//! purged key before a client asks again.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use erp_sim::ScriptedResponse;

const ROUTES: &str = r#"  - name: knit-orders
    exact: /api/knit-orders
    ttl_secs: 600
    tags: [production]
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 600
  - name: tagged
    prefix: /t/
    ttl_secs: 600
"#;

const RULES: &str = r#"invalidation:
  - name: orders-written
    exact: /api/knit-orders/generate
    purge: { routes: [knit-orders] }
  - name: reload
    exact: /api/reload-data
    methods: [GET]
    purge: { everything: true }
"#;

async fn warm(c: &reqwest::Client, proxy: &TestProxy, path: &str) {
    get(c, &proxy.url(path)).await;
    let again = get(c, &proxy.url(path)).await;
    assert!(again.is_hit(), "{path} is cached: {}", again.cache_status());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_write_purges_its_routes_and_a_failed_one_does_not() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start_yaml(&config_yaml_sections(sim.addr(), &dir, RULES, ROUTES), &dir);
    let c = client();
    warm(&c, &proxy, "/api/knit-orders").await;
    warm(&c, &proxy, "/api/comprehensive-kpis").await;

    sim.set_fail(Some(500));
    let failed = send(c.post(proxy.url("/api/knit-orders/generate")).body("{}")).await;
    assert_eq!(failed.status, 500);
    sim.set_fail(None);
    assert!(
        get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "a failed write purges nothing"
    );

    let ok = send(c.post(proxy.url("/api/knit-orders/generate")).body("{}")).await;
    assert_eq!(ok.status, 200);
    let after = get(&c, &proxy.url("/api/knit-orders")).await;
    assert!(
        !after.is_hit(),
        "the write purged knit-orders: {}",
        after.cache_status()
    );
    assert_eq!(
        sim.hits("/api/knit-orders"),
        2,
        "the next GET went to the ERP"
    );
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .is_hit(),
        "other routes stay"
    );
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_invalidations_total{rule="orders-written"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_data_purges_everything() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start_yaml(&config_yaml_sections(sim.addr(), &dir, RULES, ROUTES), &dir);
    let c = client();
    warm(&c, &proxy, "/api/knit-orders").await;
    warm(&c, &proxy, "/api/comprehensive-kpis").await;
    assert_eq!(get(&c, &proxy.url("/api/reload-data")).await.status, 200);
    assert!(!get(&c, &proxy.url("/api/knit-orders")).await.is_hit());
    assert!(
        !get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .is_hit()
    );
    assert_eq!(sim.hits("/api/comprehensive-kpis"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_from_the_route_and_the_erp_header_purge_what_carries_them() {
    let sim = start_sim(0.01).await;
    let tagged = ScriptedResponse::ok(Bytes::from_static(b"y"))
        .with_header("surrogate-key", "yarn inventory");
    sim.add_route("/t/tagged", tagged);
    sim.add_route("/t/plain", ScriptedResponse::ok(Bytes::from_static(b"p")));
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    for p in ["/t/tagged", "/t/plain", "/api/knit-orders"] {
        warm(&c, &proxy, p).await;
    }

    let r = post_json(
        &c,
        &proxy.admin_url("/purge"),
        r#"{"tag": "inventory"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !get(&c, &proxy.url("/t/tagged")).await.is_hit(),
        "tagged by the ERP's header"
    );
    assert!(
        get(&c, &proxy.url("/t/plain")).await.is_hit(),
        "untagged stays"
    );
    assert!(get(&c, &proxy.url("/api/knit-orders")).await.is_hit());

    let r = post_json(
        &c,
        &proxy.admin_url("/purge"),
        r#"{"tag": "production"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        !get(&c, &proxy.url("/api/knit-orders")).await.is_hit(),
        "tagged by its route"
    );
    assert_eq!(sim.hits("/t/tagged"), 2);
    assert_eq!(sim.hits("/t/plain"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_on_the_proxy_port_is_for_allowed_clients_only() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let c = client();
    let purge = reqwest::Method::from_bytes(b"PURGE").expect("method");

    // Loopback is not in the allowed list: refused, nothing purged.
    let refused = "admin:\n  purge_from: [\"10.9.9.9/32\"]\n";
    let proxy = TestProxy::start_yaml(
        &config_yaml_sections(sim.addr(), &dir, refused, ROUTES),
        &dir,
    );
    warm(&c, &proxy, "/api/comprehensive-kpis").await;
    let r = send(c.request(purge.clone(), proxy.url("/api/comprehensive-kpis"))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        get(&c, &proxy.url("/api/comprehensive-kpis"))
            .await
            .is_hit()
    );
    drop(proxy);

    // The default allows loopback: the entry goes, the next GET asks the ERP.
    let (_tmp2, dir2) = cache_dir();
    let proxy = TestProxy::start_yaml(&config_yaml(sim.addr(), &dir2, ROUTES), &dir2);
    warm(&c, &proxy, "/api/knit-orders").await;
    let before = sim.hits("/api/knit-orders");
    let r = send(c.request(purge, proxy.url("/api/knit-orders"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"removed\":"), "{}", r.text());
    assert!(!get(&c, &proxy.url("/api/knit-orders")).await.is_hit());
    assert_eq!(
        sim.hits("/api/knit-orders"),
        before + 1,
        "only the GET reached the ERP, not PURGE"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewarming_rule_refreshes_the_purged_key_before_the_next_request() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let sections = "warming:\n  enabled: true\ninvalidation:\n  - name: orders\n    exact: /api/knit-orders/generate\n    purge: { routes: [knit-orders] }\n    rewarm: true\n";
    let proxy = TestProxy::start_yaml(
        &config_yaml_sections(sim.addr(), &dir, sections, ROUTES),
        &dir,
    );
    let c = client();
    warm(&c, &proxy, "/api/knit-orders").await;
    assert_eq!(sim.hits("/api/knit-orders"), 1);

    send(c.post(proxy.url("/api/knit-orders/generate")).body("{}")).await;
    eventually("the warmer refreshed the purged key", || {
        sim.hits("/api/knit-orders") == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = get(&c, &proxy.url("/api/knit-orders")).await;
    assert!(
        next.is_hit(),
        "the client finds it refreshed: {}",
        next.cache_status()
    );
    assert_eq!(sim.hits("/api/knit-orders"), 2);
}
