//! The rate limiter under a flood of distinct client addresses, through the real proxy: a
//! client already tracked keeps its own bucket (what it has left, no more and no less), every
//! newcomer has a bucket of its own and is limited by it, a whole IPv6 /64 is one client, and
//! the table of clients stays within `max_clients`.
//!
//! Clients are told apart two ways, both real: a socket bound to its own loopback address
//! (Linux routes all of 127.0.0.0/8 to the host), and `X-Forwarded-For` sent from 127.0.0.1,
//! the one trusted proxy.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::origin::{Origin, Reply};
use common::*;

const ROUTES: &str =
    "  - name: cached\n    prefix: /t/cached\n    ttl_secs: 600\n    rate_limit_hits: true\n";

/// Most clients tracked, in these tests.
const MAX_CLIENTS: usize = 64;

async fn proxy(origin: &Origin, per_sec: u32, burst: u32) -> TestProxy {
    origin.always("/t/cached", Reply::ok("cached"));
    let protection = format!(
        "protection:\n  rate_limit:\n    enabled: true\n    requests_per_sec: {per_sec}\n    \
         burst: {burst}\n    trusted_proxies: [\"127.0.0.1/32\"]\n    max_clients: {MAX_CLIENTS}\n"
    );
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &protection, ROUTES);
    let r = get(&client(), &proxy.url("/t/cached")).await;
    assert_eq!(r.status, 200, "the first request fills the cache");
    proxy
}

/// A client whose connections come from `source`.
fn client_from(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().expect("source address");
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .local_address(source)
        .build()
        .expect("client")
}

/// One request from each of `addrs`, forwarded by the trusted proxy (127.0.0.1), 16 at a time.
/// Returns the statuses, in no particular order.
async fn flood(proxy: &TestProxy, addrs: Vec<String>) -> Vec<u16> {
    let url = proxy.url("/t/cached");
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in addrs.chunks(addrs.len().div_ceil(16)) {
        let (url, chunk, c) = (url.clone(), chunk.to_vec(), client());
        tasks.spawn(async move {
            let mut statuses = Vec::with_capacity(chunk.len());
            for addr in chunk {
                statuses.push(
                    send(c.get(&url).header("x-forwarded-for", addr))
                        .await
                        .status,
                );
            }
            statuses
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("flood task"));
    }
    all
}

/// `n` distinct IPv4 addresses in 198.18.0.0/15 (set aside for benchmarks).
fn v4_addresses(n: u32) -> Vec<String> {
    (0..n)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

/// Requests `c` gets through (of at most `max`) before its first `429`.
async fn allowance(c: &reqwest::Client, url: &str, max: u32) -> u32 {
    for n in 0..max {
        if get(c, url).await.status == 429 {
            return n;
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tracked_client_keeps_its_allowance_while_thousands_of_addresses_flood() {
    let origin = Origin::start().await;
    // One request a second: the refill over the test's few seconds stays far below the burst.
    let proxy = proxy(&origin, 1, 200).await;
    let url = proxy.url("/t/cached");

    let tracked = client_from("127.0.0.2");
    for _ in 0..150 {
        assert_eq!(get(&tracked, &url).await.status, 200);
    }
    let spent_at = Instant::now();

    let statuses = flood(&proxy, v4_addresses(3_000)).await;
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(
        refused, 0,
        "each newcomer has a bucket of its own, none is charged for the flood"
    );

    let left = allowance(&tracked, &url, 400).await;
    // 50 were left; at one request a second a few more may have refilled since.
    let refilled = spent_at.elapsed().as_secs() as u32 + 1;
    assert!(
        left >= 50,
        "the tracked client lost allowance to the flood: {left} of 50 left"
    );
    assert!(
        left <= 50 + refilled,
        "the tracked client's bucket was forgotten or reset by the flood: {left} granted, \
         at most {} expected",
        50 + refilled
    );

    // The gauge is sampled every second: wait until it has seen the flood, then check the bound.
    let deadline = Instant::now() + TIMEOUT;
    let clients = loop {
        let n = metric(&proxy, "knitcache_rate_limit_clients").await;
        if n >= (MAX_CLIENTS / 2) as f64 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        clients >= (MAX_CLIENTS / 2) as f64 && clients <= MAX_CLIENTS as f64,
        "3,001 clients were seen; {MAX_CLIENTS} at most may be tracked, the gauge says {clients}"
    );
    assert_eq!(
        origin.count("/t/cached"),
        1,
        "every other request was a hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn newcomers_are_limited_and_an_ipv6_64_is_one_client() {
    let origin = Origin::start().await;
    let proxy = proxy(&origin, 1, 5).await;
    let url = proxy.url("/t/cached");

    // The table fills with the flood's addresses.
    let statuses = flood(&proxy, v4_addresses(1_000)).await;
    assert!(statuses.iter().all(|s| *s == 200), "one request each");

    // A newcomer arriving through a socket of its own gets its own burst, then 429.
    let started = Instant::now();
    let newcomer = client_from("127.0.0.3");
    let granted = allowance(&newcomer, &url, 50).await;
    let refilled = started.elapsed().as_secs() as u32 + 1;
    assert!(
        (5..=5 + refilled).contains(&granted),
        "a newcomer has a burst of 5: {granted} granted"
    );

    // 200 addresses of one /64 are one client, whatever the address of each request.
    let started = Instant::now();
    let same_64: Vec<String> = (1..=200).map(|i| format!("2001:db8:1:2::{i:x}")).collect();
    let statuses = flood(&proxy, same_64).await;
    let granted = statuses.iter().filter(|s| **s == 200).count() as u32;
    let refilled = started.elapsed().as_secs() as u32 + 1;
    assert!(
        (5..=5 + refilled).contains(&granted),
        "one /64 has one burst of 5: {granted} of 200 granted"
    );
    let other_64 = send(
        client()
            .get(&url)
            .header("x-forwarded-for", "2001:db8:1:3::1"),
    )
    .await;
    assert_eq!(other_64.status, 200, "the next /64 is another client");
}
