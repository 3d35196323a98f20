//! Each `clients:` limit through the real proxy, with a raw TCP client sending exact bytes: a
//! slow head gets `408`, an idle kept-alive connection is closed, a long target `414`, too many
//! or too large header fields `431`, a body on a caching route's GET `413`, a slow body `408`,
//! connections beyond the per-address cap `429`, and a client that stops reading a hit written
//! straight to its socket loses its connection instead of holding the proxy's task. Timeouts are
//! short here; what is asserted is the status or the close, never how long it took.

mod common;

use std::time::Duration;

use common::origin::{Origin, Reply};
use common::raw::Raw;
use common::*;

const ROUTES: &str = "  - name: cached\n    prefix: /c/\n    ttl_secs: 60\n  - name: pass\n    prefix: /\n    cache: false\n";

/// A proxy in front of an origin answering `/c/page` and `/p/write` (echoing the body's
/// length), with `clients:` keys `clients` (indented by two spaces).
async fn setup(clients: &str) -> (Origin, TestProxy) {
    let origin = Origin::start().await;
    origin.always("/c/page", Reply::ok("page"));
    origin.on("/p/write", |req, _| {
        Reply::ok(format!("{}", req.body.len()))
    });
    let sections = format!("clients:\n{clients}");
    let proxy = TestProxy::in_front_of_origin_with(origin.addr(), &sections, ROUTES);
    (origin, proxy)
}

/// `knitcache_client_refusals_total{reason}` once it has reached `n` (a refusal answered in a
/// proxy phase is counted just after its answer is sent), or after `TIMEOUT`.
async fn refusals(proxy: &TestProxy, reason: &str, n: f64) -> f64 {
    let sample = format!("knitcache_client_refusals_total{{reason=\"{reason}\"}}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let value = metric(proxy, &sample).await;
        if value >= n || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_that_does_not_arrive_in_time_gets_408_and_a_close() {
    let (origin, proxy) = setup("  header_timeout_ms: 300\n").await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\nX-Slow: ")
        .await;
    let resp = c.response(false).await.expect("an answer");
    assert_eq!(resp.status, 408);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(c.until_closed().await.is_empty(), "closed after the 408");
    assert_eq!(origin.count("/c/page"), 0, "nothing reached the origin");
    assert_eq!(refusals(&proxy, "header_timeout", 1.0).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_dribbling_its_next_head_gets_408() {
    let (origin, proxy) = setup("  header_timeout_ms: 300\n  idle_timeout_ms: 20000\n").await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\n\r\n").await;
    assert_eq!(c.response(false).await.expect("first").status, 200);
    // pingora alone waits for a kept-alive connection's next head without any limit.
    c.send(b"GET /c/page HTTP/1.1\r\n").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if !c.try_send(b"X: y\r\n").await {
            break;
        }
    }
    let resp = c.response(false).await.expect("an answer");
    assert_eq!(resp.status, 408);
    assert_eq!(
        origin.count("/c/page"),
        1,
        "only the first request was proxied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_kept_alive_connection_is_closed_without_an_answer() {
    let (_origin, proxy) = setup("  idle_timeout_ms: 300\n").await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\n\r\n").await;
    let resp = c.response(false).await.expect("answer");
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    assert!(
        c.until_closed().await.is_empty(),
        "closed, with no 408 for a request never started"
    );
    assert_eq!(refusals(&proxy, "header_timeout", 0.0).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_request_target_gets_414() {
    let (origin, proxy) = setup("  max_uri_bytes: 64\n").await;
    let at_limit = format!("/c/page?{}", "a".repeat(64 - 8));
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(format!("GET {at_limit} HTTP/1.1\r\nHost: erp\r\n\r\n").as_bytes())
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 200);
    let over = format!("{at_limit}a");
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(format!("GET {over} HTTP/1.1\r\nHost: erp\r\n\r\n").as_bytes())
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 414);
    assert_eq!(origin.count("/c/page"), 1, "only the request at the limit");
    assert_eq!(refusals(&proxy, "uri_too_long", 1.0).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_header_fields_get_431() {
    let (origin, proxy) = setup("  max_headers: 5\n").await;
    let head = |fields: usize| {
        let mut h = String::from("GET /c/page HTTP/1.1\r\nHost: erp\r\n");
        for i in 1..fields {
            h.push_str(&format!("X-{i}: v\r\n"));
        }
        h.push_str("\r\n");
        h
    };
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(head(5).as_bytes()).await;
    assert_eq!(c.response(false).await.expect("answer").status, 200);
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(head(6).as_bytes()).await;
    assert_eq!(c.response(false).await.expect("answer").status, 431);
    assert_eq!(origin.count("/c/page"), 1);
    assert_eq!(refusals(&proxy, "too_many_headers", 1.0).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn more_fields_than_the_parser_takes_get_431_not_400() {
    // pingora's parser takes 256 fields and answers 400 beyond; the default limit is below.
    let (origin, proxy) = setup("  header_timeout_ms: 5000\n").await;
    let mut h = String::from("GET /c/page HTTP/1.1\r\nHost: erp\r\n");
    for i in 0..300 {
        h.push_str(&format!("X-{i}: v\r\n"));
    }
    h.push_str("\r\n");
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(h.as_bytes()).await;
    assert_eq!(c.response(false).await.expect("answer").status, 431);
    assert_eq!(origin.count("/c/page"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_over_the_byte_limit_gets_431_before_it_is_all_sent() {
    let (origin, proxy) = setup("  max_header_bytes: 2048\n  max_uri_bytes: 1024\n").await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    let ok = format!(
        "GET /c/page HTTP/1.1\r\nHost: erp\r\nX-Big: {}\r\n\r\n",
        "v".repeat(1800)
    );
    c.send(ok.as_bytes()).await;
    assert_eq!(c.response(false).await.expect("answer").status, 200);
    // A head far larger than the limit, never finished: refused once the limit is passed.
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    let big = format!(
        "GET /c/page HTTP/1.1\r\nHost: erp\r\nX-Big: {}",
        "v".repeat(4000)
    );
    c.send(big.as_bytes()).await;
    assert_eq!(c.response(false).await.expect("answer").status, 431);
    assert_eq!(origin.count("/c/page"), 1);
    assert_eq!(refusals(&proxy, "header_too_large", 1.0).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_on_a_caching_routes_get_gets_413_and_writes_pass_whole() {
    let (origin, proxy) = setup("  max_read_body_bytes: 0\n").await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 413);
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 413);
    // Nor through a target that only becomes the caching route's once canonical.
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /%63/page HTTP/1.1\r\nHost: erp\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 413);
    // Content-Length: 0 is no body.
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 200);
    assert_eq!(
        origin.count("/c/page"),
        1,
        "only the request without a body"
    );
    assert_eq!(refusals(&proxy, "body_too_large", 3.0).await, 3.0);

    // A write of 3 MiB is no read: it reaches the origin byte for byte.
    let body: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let resp = send(client().post(proxy.url("/p/write")).body(body.clone())).await;
    assert_eq!(resp.status, 200);
    assert_eq!(origin.last("/p/write").body.as_ref(), body.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_over_the_cap_on_a_caching_routes_get_gets_413() {
    let (origin, proxy) = setup("  max_read_body_bytes: 4\n").await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page?x HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 413);
    assert!(
        origin.requests("/c/page").iter().all(|r| r.body.len() <= 4),
        "no body over the cap was delivered whole"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_stalls_or_dribbles_past_the_deadline_gets_408() {
    let (_origin, proxy) = setup("  body_timeout_ms: 400\n").await;
    // Stalls: pingora's read timeout, set from body_timeout_ms.
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"POST /p/write HTTP/1.1\r\nHost: erp\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 408);
    // Dribbles, each piece well within the time left: the whole body has a deadline. Without
    // one the body would be complete after 3 s and answered 200.
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"POST /p/write HTTP/1.1\r\nHost: erp\r\nContent-Length: 30\r\n\r\n")
        .await;
    for _ in 0..30 {
        if c.answered_within(Duration::from_millis(100)).await || !c.try_send(b"x").await {
            break;
        }
    }
    assert_eq!(c.response(false).await.expect("answer").status, 408);
    assert_eq!(refusals(&proxy, "body_timeout", 2.0).await, 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_per_address_cap_get_429() {
    let (_origin, proxy) = setup("  max_connections_per_address: 2\n").await;
    let mut a = Raw::connect(proxy.addrs.proxy).await;
    let mut b = Raw::connect(proxy.addrs.proxy).await;
    for c in [&mut a, &mut b] {
        c.send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\n\r\n").await;
        assert_eq!(c.response(false).await.expect("answer").status, 200);
    }
    let mut third = Raw::connect(proxy.addrs.proxy).await;
    let resp = third.response(false).await.expect("an answer");
    assert_eq!(resp.status, 429);
    assert!(third.until_closed().await.is_empty());
    assert_eq!(refusals(&proxy, "too_many_connections", 1.0).await, 1.0);
    drop(a);
    // The closed connection's place is free again once the proxy has seen it close.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let mut c = Raw::connect(proxy.addrs.proxy).await;
        if c.try_send(b"GET /c/page HTTP/1.1\r\nHost: erp\r\n\r\n")
            .await
            && let Some(resp) = c.response(false).await
            && resp.status == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_direct_hit_loses_its_connection() {
    let origin = Origin::start().await;
    // Larger than the socket buffers can hold (4 MiB of send buffer at most here), and stored:
    // the test config's object limit is raised for it.
    let body: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    origin.always(
        "/c/big",
        Reply::ok(body.clone()).header("content-type", "application/octet-stream"),
    );
    let (tmp, dir) = cache_dir();
    let yaml = config_yaml_sections(
        origin.addr(),
        &dir,
        "clients:\n  send_timeout_ms: 300\n",
        ROUTES,
    )
    .replace("max_object_bytes: 1048576", "max_object_bytes: 16777216")
    .replace("memory_mib: 16", "memory_mib: 64");
    let proxy = TestProxy::start_yaml(&yaml, &dir);
    let c = client();
    // Stored, then served from memory straight to the socket (the fast path).
    assert_eq!(get(&c, &proxy.url("/c/big")).await.status, 200);
    let warm = get(&c, &proxy.url("/c/big")).await;
    assert!(
        warm.is_hit(),
        "a fresh copy in memory: {}",
        warm.cache_status()
    );

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = socket.connect(proxy.addrs.proxy).await.expect("connect");
    let mut slow = Raw::over(stream);
    slow.send(b"GET /c/big HTTP/1.1\r\nHost: erp\r\nAccept-Encoding: identity\r\n\r\n")
        .await;
    // The response cannot fit the socket buffers: the write waits, then gives up.
    let in_flight = "knitcache_downstream_requests_in_flight";
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if metric(&proxy, in_flight).await == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request still holds its task"
        );
    }
    let got = slow.until_closed().await;
    drop((proxy, tmp));
    assert!(
        got.len() < body.len(),
        "the connection was closed before the whole hit was sent ({} bytes)",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_proxied_response_loses_its_connection() {
    // The same deadline on pingora's own writer: a pass-through response, never stored.
    let (origin, proxy) = setup("  send_timeout_ms: 300\n").await;
    let body: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    origin.always("/p/big", Reply::ok(body.clone()));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = socket.connect(proxy.addrs.proxy).await.expect("connect");
    let mut slow = Raw::over(stream);
    slow.send(b"GET /p/big HTTP/1.1\r\nHost: erp\r\n\r\n").await;
    let in_flight = "knitcache_downstream_requests_in_flight";
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if origin.count("/p/big") == 1 && metric(&proxy, in_flight).await == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request still holds its task"
        );
    }
    let got = slow.until_closed().await;
    assert!(got.len() < body.len(), "closed early ({} bytes)", got.len());
}

/// HTTP/2 decodes a request's head whole (HPACK), out of the head reader's sight: its target and
/// its fields are held to the same limits, decoded, with the same answers.
#[tokio::test(flavor = "multi_thread")]
async fn http2_requests_get_the_same_target_and_field_limits() {
    let (origin, proxy) = setup("  max_uri_bytes: 64\n  max_headers: 5\nh2c: true\n").await;
    let tcp = tokio::net::TcpStream::connect(proxy.addrs.proxy)
        .await
        .expect("connect");
    let h2 = common::tls::H2::on(tcp).await;
    let at_limit = format!("/c/page?{}", "a".repeat(64 - 8));
    assert_eq!(h2.get(&at_limit).await.status, 200);
    assert_eq!(h2.get(&format!("{at_limit}a")).await.status, 414);

    let extra: Vec<(String, String)> = (1..=6).map(|i| (format!("x-{i}"), "v".into())).collect();
    let fields = |n: usize| -> Vec<(&str, &str)> {
        extra[..n]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    };
    // Host (from `:authority`) and three more: within the limit, however the host is counted.
    assert_eq!(h2.request("GET", "/c/page", &fields(3)).await.status, 200);
    assert_eq!(h2.request("GET", "/c/page", &fields(6)).await.status, 431);
    assert_eq!(
        origin.count("/c/page"),
        2,
        "the two requests within the limits (two keys), and neither refused one"
    );
    assert_eq!(refusals(&proxy, "uri_too_long", 1.0).await, 1.0);
    assert_eq!(refusals(&proxy, "too_many_headers", 1.0).await, 1.0);
}
