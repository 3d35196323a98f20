//! Shutdown: a graceful stop lets a request that is already in flight finish, and the proxy
//! stops accepting new connections.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_drains_in_flight_requests() {
    let sim = start_sim(0.01).await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(
        sim.addr(),
        &dir,
        "  - name: kpis\n    exact: /api/comprehensive-kpis\n    ttl_secs: 60\n",
    )
    .replace("grace_period_secs: 0", "grace_period_secs: 3");
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let proxy_addr = proxy.addrs.proxy;
    let c = client();

    sim.set_extra_latency(Duration::from_millis(1000));
    let url = proxy.url("/api/comprehensive-kpis");
    let in_flight = tokio::spawn(async move { get(&c, &url).await });
    // (hits, not in_flight: the health probe is in flight at startup too)
    eventually("the request reached the ERP", || {
        sim.hits("/api/comprehensive-kpis") == 1
    })
    .await;

    let stopper = std::thread::spawn(move || proxy.stop(true));
    let r = in_flight.await.expect("task");
    assert_eq!(
        r.status, 200,
        "the in-flight request finished during the grace period"
    );
    assert_eq!(r.cache_status(), "knitcache; fwd=miss; stored");

    // Listeners close at the start of the grace period: new connections are refused.
    eventually("the proxy stopped accepting", || {
        std::net::TcpStream::connect(proxy_addr).is_err()
    })
    .await;
    stopper.join().expect("stop");
}
