//! One ERP endpoint broken persistently (the simulator's per-path fail switch), through the real
//! proxy on the shipped route table: the broken route's own breaker opens and keeps its
//! requests away from the ERP, while every other route, cached or not, is still answered, with
//! no refusal, and the ERP-wide breaker stays closed.

mod common;

use common::*;

/// The broken endpoint: the production tab's plan, polled every 30 s by the dashboard.
const BROKEN: &str = "/api/production-planning";
const BROKEN_ROUTE: &str = "production-planning";

/// Other dashboard reads, one per route.
const HEALTHY: [&str; 5] = [
    "/api/comprehensive-kpis",
    "/api/production-pipeline",
    "/api/knit-orders",
    "/api/factory-floor-ai-dashboard",
    "/api/executive-insights",
];

#[tokio::test(flavor = "multi_thread")]
async fn one_broken_endpoint_opens_only_its_own_breaker() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let proxy = TestProxy::start(shipped_config(sim.addr(), &dir), &dir);
    let c = client();

    // Broken through the simulator's control API, as an operator or the load suite would.
    let set = send(c.post(format!(
        "http://{}/__sim/fail?path={BROKEN}&status=500",
        sim.addr()
    )))
    .await;
    assert_eq!(set.status, 200, "{}", set.text());

    // Five 500s in a row (the shipped consecutive_failures) open the route's breaker; from
    // then on its requests are refused without reaching the ERP. In a row, so that an ERP-wide
    // breaker counting them would open too.
    let mut broken = Vec::new();
    for _ in 0..6 {
        broken.push(get(&c, &proxy.url(BROKEN)).await.status);
    }
    assert_eq!(broken, [500, 500, 500, 500, 500, 503]);

    for round in 0..5 {
        // Every round the healthy routes miss again, so they reach the ERP while the broken
        // route's breaker is open.
        let purged = post_json(&c, &proxy.admin_url("/purge"), r#"{"prefix":"/"}"#, None).await;
        assert_eq!(purged.status, 200, "{}", purged.text());
        for path in HEALTHY {
            let r = get(&c, &proxy.url(path)).await;
            assert_eq!(r.status, 200, "round {round}: {path}: {}", r.text());
        }
        let r = get(&c, &proxy.url(BROKEN)).await;
        assert_eq!(r.status, 503, "round {round}: {}", r.text());
    }
    assert_eq!(
        sim.hits(BROKEN),
        5,
        "the open breaker keeps the ERP out of it"
    );
    for path in HEALTHY {
        assert_eq!(sim.hits(path), 5, "{path}: every round reached the ERP");
    }
    assert_eq!(
        metric(
            &proxy,
            &format!(r#"knitcache_route_breaker_state{{route="{BROKEN_ROUTE}"}}"#)
        )
        .await,
        1.0,
        "the broken route's breaker is open"
    );
    for route in ["kpis", "production-pipeline", "knit-orders"] {
        assert_eq!(
            metric(
                &proxy,
                &format!(r#"knitcache_route_breaker_state{{route="{route}"}}"#)
            )
            .await,
            0.0,
            "{route}'s breaker stays closed"
        );
    }
    assert_eq!(
        metric(&proxy, "knitcache_breaker_state").await,
        0.0,
        "one broken endpoint is not a broken ERP"
    );
}
