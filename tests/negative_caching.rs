//! Negative caching through the real proxy: a route's `error_statuses` are stored for
//! `error_ttl_secs`, then fetched from the ERP again, never served stale; without the setting a
//! 4xx is never stored. Storage is proven by the simulator's request counters.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use erp_sim::ScriptedResponse;

/// Long route windows, so that an error served stale would show.
const ROUTES: &str = r#"  - name: errors
    prefix: /t/err/
    ttl_secs: 60
    stale_while_revalidate_secs: 30
    stale_if_error_secs: 600
    error_statuses: [400, 404]
    error_ttl_secs: 2
  - name: plain
    prefix: /t/plain/
    ttl_secs: 60
"#;

fn scripted(status: u16, body: &'static str) -> ScriptedResponse {
    ScriptedResponse {
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Bytes::from_static(body.as_bytes()),
        latency: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_error_is_a_hit_until_its_own_ttl_ends() {
    let sim = start_sim(0.01).await;
    let bad = "/t/err/bad";
    let missing = "/t/err/missing";
    sim.add_route(
        bad,
        scripted(400, r#"{"error":"Invalid parameter combination"}"#),
    );
    sim.add_route(missing, scripted(404, r#"{"error":"Not found"}"#));
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    for path in [bad, missing] {
        let first = get(&c, &proxy.url(path)).await;
        assert_eq!(
            first.cache_status(),
            "knitcache; fwd=miss",
            "{path}: a miss, whose fill the next request shows was stored"
        );
        let second = get(&c, &proxy.url(path)).await;
        assert!(second.is_hit(), "{path}: {}", second.cache_status());
        assert_eq!(second.status, first.status, "{path}: the stored status");
        assert_eq!(second.body, first.body, "{path}: the stored body");
        assert!(
            second.header("etag").is_empty(),
            "{path}: no computed validator on an error"
        );
        assert_eq!(
            sim.hits(path),
            1,
            "{path}: the second request stays off the ERP"
        );
    }

    // error_ttl_secs: 2, whatever the route's ttl_secs (60) and windows say; 404 is in the
    // default statuses too, and the error rule wins. (Stored lifetimes keep whole seconds, so a
    // 1 s TTL could end a few milliseconds after the fill.)
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for path in [bad, missing] {
        let after = get(&c, &proxy.url(path)).await;
        assert!(
            !after.is_hit(),
            "{path}: an expired error is neither fresh nor served stale: {}",
            after.cache_status()
        );
        assert_eq!(
            sim.hits(path),
            2,
            "{path}: expiry sends the next request to the ERP"
        );
        assert!(
            get(&c, &proxy.url(path)).await.is_hit(),
            "{path}: the refetched error is stored again"
        );
        assert_eq!(sim.hits(path), 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_error_is_not_served_when_the_erp_fails() {
    let sim = start_sim(0.01).await;
    let path = "/t/err/flaky";
    sim.add_route(path, scripted(400, r#"{"error":"bad"}"#));
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    get(&c, &proxy.url(path)).await;
    assert!(get(&c, &proxy.url(path)).await.is_hit());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    sim.add_route(path, scripted(500, r#"{"error":"boom"}"#));
    let failed = get(&c, &proxy.url(path)).await;
    assert_eq!(
        failed.status,
        500,
        "stale_if_error_secs does not cover a stored error: {}",
        failed.cache_status()
    );
    assert!(!failed.cache_status().contains("stale-if-error"));
    assert_eq!(sim.hits(path), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_error_statuses_a_400_is_never_stored() {
    let sim = start_sim(0.01).await;
    let path = "/t/plain/bad";
    sim.add_route(path, scripted(400, r#"{"error":"bad"}"#));
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    for n in 1..=3 {
        let r = get(&c, &proxy.url(path)).await;
        assert_eq!(r.status, 400);
        assert!(!r.is_hit(), "request {n}: {}", r.cache_status());
        assert!(!r.cache_status().contains("stored"), "{}", r.cache_status());
        assert_eq!(sim.hits(path), n, "request {n} reaches the ERP");
    }
}
