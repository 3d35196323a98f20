//! Serving stale: stale-while-revalidate refreshes once in the background while clients get
//! the stored copy; stale-if-error keeps answering when the ERP is down or failing.

mod common;

use std::time::Duration;

use common::*;

const ROUTES: &str = r#"  - name: swr
    exact: /api/production-planning
    ttl_secs: 1
    stale_while_revalidate_secs: 60
    stale_if_error_secs: 0
  - name: sie
    prefix: /api/yarn-intelligence
    ttl_secs: 1
    stale_while_revalidate_secs: 0
    stale_if_error_secs: 60
"#;

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    let url = proxy.url("/api/production-planning");

    let first = get(&c, &url).await;
    assert_eq!(sim.hits("/api/production-planning"), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // Several clients arrive after expiry: all get the stale copy at once, one refresh goes out.
    sim.set_extra_latency(Duration::from_millis(300));
    let stale: Vec<Resp> = futures_join((0..5).map(|_| {
        let (c, url) = (c.clone(), url.clone());
        async move { get(&c, &url).await }
    }))
    .await;
    for r in &stale {
        assert_eq!(r.status, 200);
        assert!(
            r.cache_status().ends_with("detail=stale-while-revalidate"),
            "expired entry served stale: {}",
            r.cache_status()
        );
        assert_eq!(r.body, first.body, "the stale copy is the stored body");
    }
    eventually("the background refresh reached the ERP", || {
        sim.hits("/api/production-planning") == 2
    })
    .await;
    sim.set_extra_latency(Duration::ZERO);
    // Give the refresh time to be stored, then the next request is a fresh hit on new content.
    let mut refreshed = None;
    for _ in 0..100 {
        let r = get(&c, &url).await;
        if r.is_hit() && !r.cache_status().contains("stale") {
            refreshed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refreshed = refreshed.expect("the refreshed entry is served fresh");
    assert_ne!(
        refreshed.body, first.body,
        "the refresh stored the ERP's new body (new timestamp)"
    );
    assert_eq!(
        sim.hits("/api/production-planning"),
        2,
        "exactly one refresh for five stale reads"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_answers_while_the_erp_is_down() {
    let sim = start_sim(0.01).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();
    let url = proxy.url("/api/yarn-intelligence?view=full");

    let first = get(&c, &url).await;
    assert_eq!(first.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;

    sim.set_down(true).await.expect("simulator goes down");
    let stale = get(&c, &url).await;
    assert_eq!(
        stale.status, 200,
        "cached key answers while the ERP is down"
    );
    assert!(
        stale.cache_status().ends_with("detail=stale-if-error"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(stale.body, first.body);

    let uncached = get(&c, &proxy.url("/api/yarn-intelligence?view=other")).await;
    assert!(
        uncached.status >= 500,
        "an uncached key cannot be served: {}",
        uncached.status
    );

    sim.set_down(false).await.expect("simulator comes back");
    sim.set_fail(Some(500));
    let during_500 = get(&c, &url).await;
    assert_eq!(
        during_500.status, 200,
        "an ERP 500 is also answered with the stale copy"
    );
    assert!(during_500.cache_status().ends_with("detail=stale-if-error"));

    sim.set_fail(None);
    let recovered = get(&c, &url).await;
    assert_eq!(recovered.status, 200);
    assert!(
        !recovered.cache_status().contains("stale-if-error"),
        "{}",
        recovered.cache_status()
    );
    assert_ne!(
        recovered.body, first.body,
        "after recovery the ERP's new body is served"
    );
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future<Output = Resp> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<Resp> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
