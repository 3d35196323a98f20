//! Request coalescing: many concurrent misses for one key make exactly one ERP request.

mod common;

use common::*;

const ROUTES: &str = r#"  - name: fabric-forecast
    exact: /api/fabric-forecast-integrated
    ttl_secs: 60
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_misses_make_one_erp_request() {
    // The forecast takes 1.2-2.5 s on the real ERP; at this scale ~100 ms, long enough for all
    // 200 requests to arrive while the first fill is in flight.
    let sim = start_sim(0.05).await;
    let proxy = TestProxy::in_front_of(&sim, ROUTES);
    let c = client();

    let url = proxy.url("/api/fabric-forecast-integrated");
    let requests = (0..200).map(|_| {
        let c = c.clone();
        let url = url.clone();
        tokio::spawn(async move { get(&c, &url).await })
    });
    let mut bodies = std::collections::HashSet::new();
    for r in requests {
        let r = r.await.expect("task");
        assert_eq!(r.status, 200);
        bodies.insert(r.body);
    }
    assert_eq!(
        sim.hits("/api/fabric-forecast-integrated"),
        1,
        "200 concurrent misses, one ERP request"
    );
    assert_eq!(
        bodies.len(),
        1,
        "everyone got the one body the ERP produced"
    );
}
