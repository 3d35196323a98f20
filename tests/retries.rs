//! Retries stay within the policy: a client request makes at most `1 + retries.max_per_request`
//! ERP requests, whichever way the ERP failed. pingora on its own retries an idempotent request
//! whose reused connection fails (an ERP that closes kept-alive connections) up to 16 times.

mod common;

use common::origin::{Origin, Reply};
use common::*;

const ROUTES: &str = "  - name: pass\n    prefix: /\n    cache: false\n";

fn retries(max: u32) -> String {
    format!("protection:\n  retries:\n    max_per_request: {max}\n    budget_percent: 100\n")
}

/// Sends `n` GETs one after the other on one client connection, each of which reaches the ERP
/// on a pooled (reused) ERP connection after the first; returns the statuses.
async fn sequential(proxy: &TestProxy, path: &str, n: usize) -> Vec<u16> {
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(get(&c, &proxy.url(path)).await.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread")]
async fn no_retries_means_one_erp_request_per_client_request() {
    let origin = Origin::start().await;
    // Every request after the first on a connection is read, then the connection is dropped.
    origin.on("/r/zero", |_, n| {
        if n == 0 {
            Reply::ok("ok")
        } else {
            Reply::drop()
        }
    });
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &retries(0), ROUTES);
    let statuses = sequential(&proxy, "/r/zero", 4).await;
    assert_eq!(statuses[0], 200);
    assert_eq!(
        origin.count("/r/zero"),
        4,
        "one ERP request per client request, failures included: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_on_reused_connections_stop_at_the_policy() {
    let origin = Origin::start().await;
    origin.on("/r/one", |_, n| {
        if n == 0 {
            Reply::ok("ok")
        } else {
            Reply::drop()
        }
    });
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &retries(1), ROUTES);
    let statuses = sequential(&proxy, "/r/one", 3).await;
    assert_eq!(statuses[0], 200);
    assert!(
        origin.count("/r/one") <= 1 + 2 * 2,
        "at most 1 + max_per_request ERP requests per client request: {} for {statuses:?}",
        origin.count("/r/one")
    );
    assert!(
        origin.count("/r/one") >= 4,
        "the failed requests were retried once: {} for {statuses:?}",
        origin.count("/r/one")
    );
}
