//! An ERP whose health path lies (the simulator's health switch): it says healthy while every
//! other request fails. knitcache's probe believes it (`/readyz` reports the ERP healthy, the
//! ERP-wide breaker stays closed), yet the failures still protect the ERP: each route's own
//! breaker opens on its 5xx and keeps its requests away.

mod common;

use common::*;

const ROUTES: &str = r#"  - name: orders
    exact: /api/knit-orders
    cache: false
  - name: kpis
    exact: /api/comprehensive-kpis
    cache: false
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_health_path_saying_healthy_cannot_keep_failing_routes_open() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let protection = "  breaker:\n    consecutive_failures: 3\n    open_secs: 600\n  retries:\n    max_per_request: 0\n";
    let yaml = with_health_interval(&config_yaml_with(sim.addr(), &dir, protection, ROUTES), 100);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    // Everything 500s, but the health path (/hello, the default probe) says all is well.
    for switch in ["fail?status=500", "health?says=healthy"] {
        let r = send(c.post(format!("http://{}/__sim/{switch}", sim.addr()))).await;
        assert_eq!(r.status, 200, "{switch}: {}", r.text());
    }
    let probes = sim.hits("/hello");
    eventually_async("the probe ran against the lying path", || async {
        sim.hits("/hello") >= probes + 2
    })
    .await;
    // Believed: /readyz reports the ERP healthy.
    wait_ready(&c, &proxy).await;

    for path in ["/api/knit-orders", "/api/comprehensive-kpis"] {
        let statuses = {
            let mut s = Vec::new();
            for _ in 0..5 {
                s.push(get(&c, &proxy.url(path)).await.status);
            }
            s
        };
        assert_eq!(statuses, [500, 500, 500, 503, 503], "{path}");
        assert_eq!(
            sim.hits(path),
            3,
            "{path}: the open breaker keeps the ERP out of it"
        );
    }
    for route in ["orders", "kpis"] {
        assert_eq!(
            metric(
                &proxy,
                &format!(r#"knitcache_route_breaker_state{{route="{route}"}}"#)
            )
            .await,
            1.0,
            "{route}"
        );
    }
    assert_eq!(
        metric(&proxy, "knitcache_breaker_state").await,
        0.0,
        "the ERP-wide breaker believes the health path"
    );
    // Passing probes do not end a route breaker's cool-down: the route still fails.
    let probes = sim.hits("/hello");
    eventually_async("more passing probes", || async {
        sim.hits("/hello") >= probes + 3
    })
    .await;
    assert_eq!(get(&c, &proxy.url("/api/knit-orders")).await.status, 503);
    assert_eq!(sim.hits("/api/knit-orders"), 3);
}
