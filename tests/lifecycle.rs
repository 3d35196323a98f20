//! Shutdown: a graceful stop lets a request that is already in flight finish, and the proxy
//! stops accepting new connections. The binary, sent SIGTERM, exits as soon as nothing is in
//! flight (never sleeping out its grace period), with the cache closed.

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
    assert_eq!(r.cache_status(), "knitcache; fwd=miss");

    // Listeners close at the start of the grace period: new connections are refused.
    eventually("the proxy stopped accepting", || {
        std::net::TcpStream::connect(proxy_addr).is_err()
    })
    .await;
    stopper.join().expect("stop");
}

/// A grace period no test waits out: a stop that sleeps it fails the test's bound instead.
const LONG_GRACE_SECS: u64 = 120;

/// A config for the binary in front of `origin`, caching `/slow` and `/items`, on fixed ports.
fn binary_config(
    origin: std::net::SocketAddr,
    tmp: &std::path::Path,
) -> (std::path::PathBuf, u16, std::path::PathBuf) {
    let dir = tmp.join("cache");
    let port = free_port();
    let routes = "  - name: slow\n    exact: /slow\n    ttl_secs: 600\n  - name: items\n    exact: /items\n    ttl_secs: 600\n";
    let yaml = config_yaml_on_ports(origin, &dir, routes, (port, free_port()), LONG_GRACE_SECS);
    let file = tmp.join("knitcache.yaml");
    std::fs::write(&file, yaml).expect("write config");
    (file, port, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_an_idle_proxy_without_waiting_out_the_grace_period() {
    let origin = common::origin::Origin::start().await;
    origin.always("/items", common::origin::Reply::ok("items"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (file, port, dir) = binary_config(origin.addr(), tmp.path());
    let c = client();
    let mut proxy = spawn_binary(&file, "log");
    until_ok(&c, &format!("http://127.0.0.1:{port}/items")).await;

    signal(&proxy.0, "-TERM");
    // Nothing is in flight: the stop must not sleep the 120 s grace period (TIMEOUT is 20 s).
    let status = exit_within(&mut proxy, TIMEOUT).await.unwrap_or_else(|| {
        panic!(
            "an idle proxy still runs {TIMEOUT:?} after SIGTERM (grace period {LONG_GRACE_SECS} s)"
        )
    });
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        !dir.with_extension("pid").exists(),
        "the pid file is removed on the way out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_with_the_cache_flushed() {
    use common::origin::{Origin, Reply};
    let origin = Origin::start().await;
    let body: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let slow = Reply::ok(body.clone()).delay(Duration::from_millis(1500));
    origin.always("/slow", slow);
    origin.always("/items", Reply::ok("items"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (file, port, _dir) = binary_config(origin.addr(), tmp.path());
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let c = client();
    let mut proxy = spawn_binary(&file, "log");
    until_ok(&c, &url("/items")).await;

    let in_flight = {
        let (c, u) = (c.clone(), url("/slow"));
        tokio::spawn(async move { get(&c, &u).await })
    };
    eventually("the request reached the origin", || {
        origin.count("/slow") == 1
    })
    .await;
    signal(&proxy.0, "-TERM");

    let r = in_flight.await.expect("request task");
    assert_eq!(r.status, 200, "the request in flight was answered");
    assert_eq!(r.text(), body, "and whole");
    let status = exit_within(&mut proxy, TIMEOUT)
        .await
        .expect("the proxy exits once its last request is answered, long before the grace period");
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens any more"
    );

    // The fill that finished during the stop reached the disk tier before the process ended.
    // (foyer writes an entry to disk as it is stored, so this holds with or without the close;
    // what it guards is that the drained request's fill completed and nothing was cut.)
    let mut proxy = spawn_binary(&file, "restart.log");
    until_ok(&c, &url("/items")).await;
    let again = get(&c, &url("/slow")).await;
    assert!(
        again.is_hit(),
        "the restarted proxy serves the entry filled while stopping: {}",
        again.cache_status()
    );
    assert_eq!(again.text(), body);
    assert_eq!(origin.count("/slow"), 1, "the origin was not asked again");
    signal(&proxy.0, "-TERM");
    exit_within(&mut proxy, TIMEOUT).await.expect("exits");
}
