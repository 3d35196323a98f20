//! Protecting the ERP, through the real proxy against the simulator's fault switches: rate
//! limits (429 with the right headers, the ERP sees only the allowed rate, hits are free,
//! X-Forwarded-For cannot be spoofed), the cap on concurrent ERP requests, the circuit breaker
//! (stale for cached keys, 503 for the rest, closed again once the ERP answers), timeouts
//! against a hanging ERP, and retries only for idempotent requests.

mod common;

use std::time::Duration;

use common::*;
use erp_sim::ScriptedResponse;

const ROUTES: &str = r#"  - name: writes
    prefix: /t/write
    cache: false
  - name: slow
    prefix: /t/slow
    cache: false
  - name: hang
    prefix: /t/hang
    cache: false
    first_byte_timeout_ms: 300
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 1
    stale_while_revalidate_secs: 0
    stale_if_error_secs: 600
    first_byte_timeout_ms: 500
  - name: cached
    prefix: /t/cached
    ttl_secs: 60
"#;

fn rate_limit(per_sec: u32, burst: u32, trusted: &str) -> String {
    format!(
        "  rate_limit:\n    enabled: true\n    requests_per_sec: {per_sec}\n    burst: {burst}\n    trusted_proxies: [{trusted}]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_over_the_limit_gets_429_and_the_erp_sees_only_the_allowed_rate() {
    let sim = start_sim(0.01).await;
    sim.add_route("/t/write", ScriptedResponse::ok("ok"));
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml_with(sim.addr(), &dir, &rate_limit(1, 5, ""), ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    let mut ok = 0;
    let mut limited = Vec::new();
    for _ in 0..20 {
        let r = send(c.post(proxy.url("/t/write")).body("x")).await;
        match r.status {
            200 => ok += 1,
            429 => limited.push(r),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (5..=6).contains(&ok),
        "burst of 5 (+1 refilled at most): {ok} passed"
    );
    assert_eq!(
        sim.hits("/t/write"),
        ok as u64,
        "only allowed requests reach the ERP"
    );
    let r = &limited[0];
    let retry_after: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(r.header("ratelimit-policy"), "\"default\";q=5;w=5");
    assert_eq!(
        r.header("ratelimit"),
        format!("\"default\";r=0;t={retry_after}")
    );
    assert!(r.text().contains("rate limited"), "{}", r.text());
    let counted = metric(&proxy, r#"knitcache_rate_limited_total{class="default"}"#).await;
    assert_eq!(counted as usize, limited.len(), "every 429 is counted");
    let refusals = metric(
        &proxy,
        r#"knitcache_refusals_total{reason="rate_limited",route="writes"}"#,
    )
    .await;
    assert_eq!(
        refusals as usize,
        limited.len(),
        "and counted as the route's refusals"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_hits_are_not_charged_unless_the_route_says_so() {
    let sim = start_sim(0.01).await;
    sim.add_route("/t/cached", ScriptedResponse::ok("c"));
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml_with(sim.addr(), &dir, &rate_limit(1, 2, ""), ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    for i in 0..30 {
        let r = get(&c, &proxy.url("/t/cached")).await;
        assert_eq!(r.status, 200, "request {i}: hits are free");
    }
    assert_eq!(sim.hits("/t/cached"), 1);
    // misses are still charged: distinct keys exhaust the bucket of 2
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(
                get(&c, &proxy.url(&format!("/t/cached?k={i}")))
                    .await
                    .status,
            );
        }
        v
    };
    assert!(statuses.contains(&429), "misses are charged: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_client_cannot_pick_its_bucket_with_x_forwarded_for() {
    let sim = start_sim(0.01).await;
    sim.add_route("/t/write", ScriptedResponse::ok("ok"));
    let (_tmp, dir) = cache_dir();
    let c = client();

    // Nobody is trusted: forged X-Forwarded-For values all land in the peer's bucket.
    let yaml = config_yaml_with(sim.addr(), &dir, &rate_limit(1, 3, ""), ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = send(
            c.post(proxy.url("/t/write"))
                .header("x-forwarded-for", format!("198.51.100.{i}")),
        )
        .await;
        statuses.push(r.status);
    }
    assert!(
        statuses[3..].iter().all(|s| *s == 429),
        "spoofed addresses share one bucket: {statuses:?}"
    );
    drop(proxy);

    // Loopback is a trusted proxy: each forwarded client has its own bucket.
    let (_tmp2, dir2) = cache_dir();
    let yaml = config_yaml_with(
        sim.addr(),
        &dir2,
        &rate_limit(1, 3, "\"127.0.0.1/32\""),
        ROUTES,
    );
    let proxy = TestProxy::start_yaml(&yaml, &dir2);
    for i in 0..6 {
        let r = send(
            c.post(proxy.url("/t/write"))
                .header("x-forwarded-for", format!("198.51.100.{i}")),
        )
        .await;
        assert_eq!(
            r.status, 200,
            "client {i} behind a trusted proxy has its own bucket"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_put_more_than_the_cap_in_flight_at_the_erp() {
    let sim = start_sim(0.01).await;
    sim.add_route(
        "/t/slow",
        ScriptedResponse::ok("s").with_latency(Duration::from_millis(40)),
    );
    let (_tmp, dir) = cache_dir();
    let protection =
        "  upstream_cap:\n    max_in_flight: 3\n    queue: 100\n    queue_timeout_ms: 15000\n";
    let yaml = config_yaml_with(sim.addr(), &dir, protection, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    // The health probe goes to the ERP outside the cap: let its first round pass, then count.
    eventually("the first health probe", || sim.hits("/hello") >= 1).await;
    sim.reset_counters();
    let c = client();

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (c, url) = (c.clone(), proxy.url(&format!("/t/slow?i={i}")));
            tokio::spawn(async move { get(&c, &url).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.expect("task"),
            200,
            "queued requests are served, not refused"
        );
    }
    assert_eq!(sim.hits("/t/slow"), 50);
    assert!(
        sim.max_in_flight() <= 3,
        "the ERP saw {} at once; the cap is 3",
        sim.max_in_flight()
    );
    assert!(
        sim.max_in_flight() >= 2,
        "the cap was actually used: {}",
        sim.max_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_503_with_retry_after() {
    let sim = start_sim(0.01).await;
    sim.add_route(
        "/t/slow",
        ScriptedResponse::ok("s").with_latency(Duration::from_millis(500)),
    );
    let (_tmp, dir) = cache_dir();
    let protection = "  retry_after_secs: 7\n  upstream_cap:\n    max_in_flight: 1\n    queue: 1\n    queue_timeout_ms: 15000\n";
    let yaml = config_yaml_with(sim.addr(), &dir, protection, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (c, url) = (c.clone(), proxy.url(&format!("/t/slow?i={i}")));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    let mut refused = Vec::new();
    for t in tasks {
        let r = t.await.expect("task");
        if r.status == 503 {
            refused.push(r);
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(
        refused.len() >= 3,
        "one in flight and one queued; the rest refused: {}",
        refused.len()
    );
    assert_eq!(refused[0].header("retry-after"), "7");
    assert!(
        refused[0].text().contains("queue full"),
        "{}",
        refused[0].text()
    );
    assert_eq!(
        sim.hits("/t/slow") as usize,
        6 - refused.len(),
        "refused requests never reach the ERP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_serves_stale_and_closes_when_the_erp_is_back() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let protection = "  retry_after_secs: 3\n  breaker:\n    consecutive_failures: 3\n    open_secs: 3\n  retries:\n    max_per_request: 0\n";
    let yaml = config_yaml_with(sim.addr(), &dir, protection, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    let fresh = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(fresh.status, 200);
    sim.set_down(true).await.expect("down");
    for i in 0..3 {
        let r = get(&c, &proxy.url(&format!("/t/write?i={i}"))).await;
        assert_eq!(r.status, 502, "the ERP is down: failure {i}");
    }
    eventually_async("the breaker opened", || async {
        metric(&proxy, "knitcache_breaker_state").await == 1.0
    })
    .await;

    // Open: an uncached request gets a 503 without touching the ERP ...
    let before = metric(
        &proxy,
        r#"knitcache_upstream_refused_total{reason="breaker_open"}"#,
    )
    .await;
    let refused = get(&c, &proxy.url("/t/write?uncached")).await;
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("circuit open"),
        "{}",
        refused.text()
    );
    let retry_after: u64 = refused.header("retry-after").parse().expect("Retry-After");
    assert!(
        (1..=3).contains(&retry_after),
        "the breaker's remaining cool-down: {retry_after}"
    );
    let after = metric(
        &proxy,
        r#"knitcache_upstream_refused_total{reason="breaker_open"}"#,
    )
    .await;
    assert_eq!(
        after,
        before + 1.0,
        "the breaker, not a failed connect, refused it"
    );
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_refusals_total{reason="breaker_open",route="writes"}"#
        )
        .await,
        1.0,
        "one refusal answered on the writes route"
    );
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_upstream_errors_total{kind="other",route="writes"}"#
        )
        .await,
        0.0,
        "a refusal never reached the ERP: it is no ERP error"
    );

    // ... and an expired cached key is served stale, still without asking the ERP.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.set_down(false).await.expect("up");
    sim.reset_counters();
    let stale = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(stale.status, 200);
    assert!(
        stale.cache_status().ends_with("detail=stale-if-error"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(stale.body, fresh.body);
    assert_eq!(sim.total_hits(), 0, "while open, nothing reaches the ERP");
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_refusals_total{reason="breaker_open",route="kpis"}"#
        )
        .await,
        0.0,
        "a copy served stale is no refusal"
    );

    // The cool-down is over and the ERP answers: a probe closes the breaker.
    eventually_async("the breaker closed", || async {
        get(&c, &proxy.url("/t/write?probe")).await;
        metric(&proxy, "knitcache_breaker_state").await == 0.0
    })
    .await;
    let again = get(&c, &proxy.url("/t/write?closed")).await;
    assert!(again.status < 500, "traffic flows again: {}", again.status);
    let opened = metric(
        &proxy,
        r#"knitcache_breaker_transitions_total{reason="consecutive_failures",to="open"}"#,
    )
    .await;
    assert_eq!(opened, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_erp_times_out_and_nothing_hangs() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let protection = "  breaker:\n    enabled: false\n";
    let yaml = config_yaml_with(sim.addr(), &dir, protection, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    let fresh = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.set_hang(true);
    let timed_out = get(&c, &proxy.url("/t/hang")).await;
    assert_eq!(
        timed_out.status,
        504,
        "first_byte_timeout_ms fired: {}",
        timed_out.text()
    );
    // An expired cached key on a hanging ERP: its route's timeout fires, the stale copy answers.
    let stale = get(&c, &proxy.url("/api/comprehensive-kpis")).await;
    assert_eq!(stale.status, 200);
    assert!(
        stale.cache_status().ends_with("detail=stale-if-error"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(stale.body, fresh.body);
    sim.set_hang(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_idempotent_requests_are_retried() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let protection = "  breaker:\n    enabled: false\n";
    let yaml = config_yaml_with(sim.addr(), &dir, protection, ROUTES);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    sim.set_down(true).await.expect("down");

    let post = send(c.post(proxy.url("/t/write")).body("x")).await;
    assert_eq!(post.status, 502);
    assert_eq!(
        metric(&proxy, "knitcache_upstream_retries_total").await,
        0.0,
        "a POST is never retried"
    );
    let get_r = get(&c, &proxy.url("/t/write")).await;
    assert_eq!(get_r.status, 502);
    assert_eq!(
        metric(&proxy, "knitcache_upstream_retries_total").await,
        1.0,
        "a GET is retried once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_open_the_breaker_without_traffic_and_end_its_cool_down() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let protection = "  breaker:\n    consecutive_failures: 3\n    open_secs: 600\n";
    let yaml = with_health_interval(&config_yaml_with(sim.addr(), &dir, protection, ROUTES), 100);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    sim.set_down(true).await.expect("down");
    eventually_async("failed health checks opened the breaker", || async {
        metric(&proxy, "knitcache_breaker_state").await == 1.0
    })
    .await;
    let refused = get(&c, &proxy.url("/t/write?while-down")).await;
    assert_eq!(
        refused.status, 503,
        "nobody had to fail first: the breaker was already open"
    );

    // The 600 s cool-down is cut short by the first passing check, and a probe closes it.
    sim.set_down(false).await.expect("up");
    eventually_async(
        "a passing check let a probe through and closed the breaker",
        || async {
            get(&c, &proxy.url("/t/write?probe")).await;
            metric(&proxy, "knitcache_breaker_state").await == 0.0
        },
    )
    .await;
    let via_health = metric(
        &proxy,
        r#"knitcache_breaker_transitions_total{reason="health_check",to="half_open"}"#,
    )
    .await;
    assert!(
        via_health >= 1.0,
        "the cool-down ended through the health check"
    );
}

/// One endpoint that always fails opens its own route's breaker, never the ERP's: every other
/// route keeps reaching the ERP, and the broken one gets fast 503s (or its stale copy).
#[tokio::test(flavor = "multi_thread")]
async fn one_broken_endpoint_never_takes_the_others_down() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let protection = "  breaker:\n    consecutive_failures: 3\n    open_secs: 30\n  retries:\n    max_per_request: 0\n";
    let routes = format!("{ROUTES}  - name: broken\n    prefix: /t/broken\n    cache: false\n");
    let yaml = config_yaml_with(sim.addr(), &dir, protection, &routes);
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    sim.add_route(
        "/t/broken",
        ScriptedResponse {
            status: 500,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{\"error\":\"import failed\"}"),
            latency: Duration::ZERO,
        },
    );
    for i in 0..3 {
        let r = get(&c, &proxy.url("/t/broken")).await;
        assert_eq!(r.status, 500, "the ERP's own answer {i}");
    }
    let refused = get(&c, &proxy.url("/t/broken")).await;
    assert_eq!(refused.status, 503, "its route's breaker is open");
    assert!(
        refused.text().contains("route circuit open"),
        "{}",
        refused.text()
    );
    assert_eq!(
        sim.hits("/t/broken"),
        3,
        "the open breaker kept it from the ERP"
    );
    assert_eq!(
        metric(&proxy, r#"knitcache_route_breaker_state{route="broken"}"#).await,
        1.0
    );
    for i in 0..10 {
        let r = get(&c, &proxy.url(&format!("/t/write?healthy={i}"))).await;
        assert_ne!(
            r.status,
            503,
            "another route is not refused ({i}): {}",
            r.text()
        );
    }
    assert_eq!(sim.hits("/t/write"), 10, "every one reached the ERP");
    let doc = stats(&c, &proxy).await;
    assert_eq!(route_stats(&doc, "broken")["refused"], 1, "{doc}");
    assert_eq!(route_stats(&doc, "writes")["refused"], 0);
    for (route, reason, n) in [
        ("broken", "route_breaker_open", 1.0),
        ("writes", "route_breaker_open", 0.0),
        ("writes", "breaker_open", 0.0),
    ] {
        let sample = format!("knitcache_refusals_total{{reason=\"{reason}\",route=\"{route}\"}}");
        assert_eq!(metric(&proxy, &sample).await, n, "{sample}");
    }
    assert_eq!(
        route_stats(&doc, "broken")["upstream_errors"],
        3,
        "the ERP's three 500s, not the refusal"
    );
    assert_eq!(
        metric(&proxy, "knitcache_breaker_state").await,
        0.0,
        "the ERP is up"
    );
    assert_eq!(
        metric(
            &proxy,
            r#"knitcache_upstream_refused_total{reason="breaker_open"}"#
        )
        .await,
        0.0
    );
}
