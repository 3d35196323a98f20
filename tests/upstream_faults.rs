//! An ERP answer that breaks off mid-body: the client sees the break (the connection closes
//! before `Content-Length` is reached, or before the chunked body's last chunk), nothing is
//! stored (the next request goes to the ERP again), `Cache-Status` never claims `stored`, and
//! `knitcache_cache_fills_total` says how each fill ended. Bodies over `max_object_bytes` are
//! served whole and not stored, with the reason.

mod common;

use common::raw::Raw;
use common::raw_origin::{End, RawOrigin, Script};
use common::*;

const ROUTES: &str = "  - name: items\n    prefix: /items\n    ttl_secs: 600\n";

/// A deterministic body of `len` bytes.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Sends a GET for `path` on a fresh connection and reads until the proxy closes it: the
/// response head (lower-case names) and whatever body bytes arrived.
async fn get_until_closed(proxy: &TestProxy, path: &str) -> (String, Vec<u8>) {
    let mut raw = Raw::connect(proxy.addrs.proxy).await;
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let bytes = raw.until_closed().await;
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&bytes)))
        + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    (head, bytes[end..].to_vec())
}

async fn fills(proxy: &TestProxy, outcome: &str) -> f64 {
    metric(
        proxy,
        &format!("knitcache_cache_fills_total{{outcome=\"{outcome}\",route=\"items\"}}"),
    )
    .await
}

/// Waits until the fill counter of `outcome` reads `n` (a request's metrics are recorded as it
/// ends, which may be just after its client saw the connection close).
async fn until_fills(proxy: &TestProxy, outcome: &str, n: f64) {
    eventually_async(&format!("{n} fill(s) counted as {outcome}"), || async {
        fills(proxy, outcome).await == n
    })
    .await;
}

/// What the operator sees of one broken answer: one ERP failure of kind `other` on the route,
/// and a proxy still ready (a broken answer is the ERP's fault, not the proxy's).
async fn one_erp_failure_and_still_ready(proxy: &TestProxy) {
    let failures = metric(
        proxy,
        "knitcache_upstream_errors_total{kind=\"other\",route=\"items\"}",
    )
    .await;
    assert_eq!(
        failures, 1.0,
        "the broken answer is counted as an ERP failure"
    );
    let ready = get(&client(), &proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
}

/// After a broken answer: the next request goes to the ERP again and gets the whole body (a
/// miss, not said to be stored), and the one after is a hit of the same bytes.
async fn nothing_was_stored(proxy: &TestProxy, origin: &RawOrigin, path: &str, full: &[u8]) {
    let c = client();
    let before = origin.count(path);
    let again = get(&c, &proxy.url(path)).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        origin.count(path),
        before + 1,
        "nothing was stored: the next request went to the ERP"
    );
    assert_eq!(again.body.as_ref(), full);
    assert_eq!(again.cache_status(), "knitcache; fwd=miss");
    until_fills(proxy, "stored", 1.0).await;
    let hit = get(&c, &proxy.url(path)).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(hit.body.as_ref(), full);
    assert_eq!(origin.count(path), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cut_short_of_its_content_length_is_cut_for_the_client_and_not_stored() {
    let full = body(1000);
    let script_body = full.clone();
    let origin = RawOrigin::start(move |path, n| match (path, n) {
        ("/items/cut", 0) => Script::cut(1000, &script_body[..500], End::Close),
        _ => Script::complete(&script_body),
    })
    .await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);

    let (head, got) = get_until_closed(&proxy, "/items/cut").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000\r\n"), "{head}");
    assert!(
        head.contains("cache-status: knitcache; fwd=miss\r\n"),
        "the header went out before the body: it cannot say stored: {head}"
    );
    assert_eq!(
        got,
        &full[..500],
        "the client got the 500 bytes that came, then the connection closed"
    );
    assert_eq!(origin.count("/items/cut"), 1, "the ERP was asked once");
    until_fills(&proxy, "truncated", 1.0).await;
    assert_eq!(fills(&proxy, "stored").await, 0.0);

    one_erp_failure_and_still_ready(&proxy).await;
    nothing_was_stored(&proxy, &origin, "/items/cut", &full).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_without_its_last_chunk_is_unterminated_for_the_client_and_not_stored() {
    let full = body(700);
    let script_body = full.clone();
    let origin = RawOrigin::start(move |path, n| match (path, n) {
        ("/items/chunks", 0) => Script::chunked(&script_body[..300], false),
        _ => Script::complete(&script_body),
    })
    .await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);

    let (head, got) = get_until_closed(&proxy, "/items/chunks").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(
        head.contains("cache-status: knitcache; fwd=miss\r\n"),
        "{head}"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(&String::from_utf8_lossy(&full[..300]).into_owned()),
        "the chunk that came was passed on: {text:?}"
    );
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "the client's chunked body is not terminated either: {text:?}"
    );
    assert_eq!(origin.count("/items/chunks"), 1);
    until_fills(&proxy, "truncated", 1.0).await;

    one_erp_failure_and_still_ready(&proxy).await;
    nothing_was_stored(&proxy, &origin, "/items/chunks", &full).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_mid_body_is_cut_for_the_client_and_not_stored() {
    let full = body(1000);
    let script_body = full.clone();
    let origin = RawOrigin::start(move |path, n| match (path, n) {
        ("/items/reset", 0) => Script::cut(1000, &script_body[..400], End::Reset),
        _ => Script::complete(&script_body),
    })
    .await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);

    let (head, got) = get_until_closed(&proxy, "/items/reset").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000\r\n"), "{head}");
    assert!(
        head.contains("cache-status: knitcache; fwd=miss\r\n"),
        "{head}"
    );
    assert!(
        got.len() < 1000 && full.starts_with(&got),
        "the client got a prefix of the body, never all of it: {} bytes",
        got.len()
    );
    assert_eq!(
        origin.count("/items/reset"),
        1,
        "no retry after the ERP began answering"
    );
    until_fills(&proxy, "truncated", 1.0).await;

    one_erp_failure_and_still_ready(&proxy).await;
    nothing_was_stored(&proxy, &origin, "/items/reset", &full).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_size_cap_is_served_whole_and_not_stored_with_the_reason() {
    let big = body(10_000);
    let script_body = big.clone();
    let origin = RawOrigin::start(move |path, _| match path {
        "/items/chunked-big" => Script::chunked(&script_body, true),
        _ => Script::complete(&script_body),
    })
    .await;
    let (_tmp, dir) = cache_dir();
    let yaml = config_yaml(origin.addr(), &dir, ROUTES)
        .replace("max_object_bytes: 1048576", "max_object_bytes: 4096");
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();

    // The size is only known at the end: the client gets it all, the cache nothing.
    for n in 1..=2 {
        let r = get(&c, &proxy.url("/items/chunked-big")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_ref(), &big[..], "served whole");
        assert_eq!(r.cache_status(), "knitcache; fwd=miss");
        assert_eq!(origin.count("/items/chunked-big"), n, "never stored");
        until_fills(&proxy, "too_large", n as f64).await;
    }

    // A Content-Length over the cap is known at once, and said in the header.
    for n in 1..=2 {
        let r = get(&c, &proxy.url("/items/big")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_ref(), &big[..]);
        assert_eq!(r.cache_status(), "knitcache; fwd=miss; detail=too-large");
        assert_eq!(origin.count("/items/big"), n, "never stored");
    }
    assert_eq!(fills(&proxy, "stored").await, 0.0);
    assert_eq!(
        fills(&proxy, "too_large").await,
        2.0,
        "a response refused at its header is no fill"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_body_is_stored_before_its_header_goes_out_and_says_so() {
    let origin = RawOrigin::start(|_, _| Script::complete(b"")).await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();
    let r = get(&c, &proxy.url("/items/empty")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.cache_status(), "knitcache; fwd=miss; stored");
    until_fills(&proxy, "stored", 1.0).await;
    let hit = get(&c, &proxy.url("/items/empty")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(origin.count("/items/empty"), 1);
}
