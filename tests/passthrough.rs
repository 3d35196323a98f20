//! What the proxy must never cache, and must pass through untouched: writes (byte for byte),
//! side-effect GETs, pass-through routes, unmatched paths, CORS preflights; and redirects,
//! which pass through and are cacheable.

mod common;

use common::*;
use erp_sim::Mode;

const ROUTES: &str = r#"  - name: reload
    exact: /api/reload-data
    cache: false
  - name: backtest
    prefix: /api/backtest/
    cache: false
  - name: knit-orders
    prefix: /api/knit-orders
    ttl_secs: 60
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 60
    statuses: [200, 301, 308]
  - name: legacy
    prefix: /api/yarn-data
    ttl_secs: 60
    statuses: [200, 301, 308]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn writes_pass_byte_for_byte_and_are_never_cached() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    // Every byte value, an odd length, and a JSON-looking prefix: nothing may be re-encoded.
    let mut body: Vec<u8> = br#"{"style":"K-101","qty":12}"#.to_vec();
    body.extend((0..=255u8).cycle().take(70_001));
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        for _ in 0..2 {
            let r = send(
                c.request(method.clone(), proxy.url("/api/knit-orders/generate"))
                    .header("content-type", "application/octet-stream")
                    .body(body.clone()),
            )
            .await;
            assert!(
                r.status < 500,
                "{method}: {} {} {}",
                r.status,
                r.cache_status(),
                r.text()
            );
            assert!(!r.is_hit(), "{method} must never be a hit");
            let got = sim
                .last_body("/api/knit-orders/generate")
                .expect("the ERP saw a body");
            assert_eq!(got.len(), body.len(), "{method}: body length changed");
            assert!(
                got[..] == body[..],
                "{method}: body bytes changed on the way to the ERP"
            );
        }
    }
    assert_eq!(
        sim.hits("/api/knit-orders/generate"),
        8,
        "every write reaches the ERP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn side_effect_gets_always_reach_the_erp() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    for _ in 0..3 {
        let r = get(&c, &proxy.url("/api/reload-data")).await;
        assert_eq!(r.cache_status(), "knitcache; fwd=bypass");
        get(&c, &proxy.url("/api/backtest/models")).await;
    }
    assert_eq!(sim.hits("/api/reload-data"), 3);
    assert_eq!(sim.hits("/api/backtest/models"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_paths_pass_through_untouched() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    for _ in 0..2 {
        let r = send(
            c.get(proxy.url("/api/planning-phases?x=1"))
                .header("accept-encoding", "gzip")
                .header("x-client", "dashboard"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers.get("content-encoding").is_none(),
            "pass-through is never recompressed"
        );
    }
    assert_eq!(sim.hits_with_query("/api/planning-phases?x=1"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflights_pass_through() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    for _ in 0..2 {
        let r = send(
            c.request(
                reqwest::Method::OPTIONS,
                proxy.url("/api/comprehensive-kpis"),
            )
            .header("origin", "http://localhost:5006")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "content-type"),
        )
        .await;
        assert!(
            r.status < 300,
            "preflight answered: {} {}",
            r.status,
            r.text()
        );
        assert_eq!(r.header("access-control-allow-origin"), "*");
    }
    assert_eq!(
        sim.hits("/api/comprehensive-kpis"),
        2,
        "preflights are never cached"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_pass_through_and_are_cached() {
    let sim = start_sim_mode(Mode::Shipped, 0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    for (path, status) in [("/api/comprehensive-kpis", 308), ("/api/yarn-data", 301)] {
        let first = get(&c, &proxy.url(path)).await;
        assert_eq!(first.status, status, "{path}");
        let location = first.header("location");
        assert!(!location.is_empty(), "{path}: Location passes through");
        let second = get(&c, &proxy.url(path)).await;
        assert_eq!(second.status, status);
        assert_eq!(second.header("location"), location);
        assert!(
            second.is_hit(),
            "{path}: redirect is cacheable: {}",
            second.cache_status()
        );
        assert_eq!(sim.hits(path), 1, "{path}");
    }
}
