//! Requests whose framing could be read two ways, sent byte for byte through the real proxy:
//! each gets `400` (or `501` for a transfer coding knitcache does not decode), or is handled as
//! RFC 9112 §6.1/§6.3 say, and nothing ever reaches the origin that it could read as a second,
//! smuggled request. Each smuggling attempt hides `GET /smuggled` where a parser that disagrees
//! with the proxy on where the body ends would find it; the origin must never see it.
//!
//! What pingora 0.9 already refuses (these tests pin it): differing or invalid
//! `Content-Length`, `Transfer-Encoding` on HTTP/1.0, a final coding other than `chunked`,
//! obs-fold. What knitcache refuses itself (`proxy::client_limits`): `Content-Length` beside
//! `Transfer-Encoding`, `chunked` twice, other codings.

mod common;

use common::origin::{Origin, Reply};
use common::raw::Raw;
use common::*;

const ROUTES: &str = "  - name: cached\n    prefix: /c/\n    ttl_secs: 60\n  - name: pass\n    prefix: /\n    cache: false\n";

/// What hides behind each attempt.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: erp\r\n\r\n";

async fn setup() -> (Origin, TestProxy) {
    let origin = Origin::start().await;
    origin.always("/c/page", Reply::ok("page"));
    origin.on("/p/write", |req, _| Reply::ok(req.body.clone()));
    origin.always("/smuggled", Reply::ok("smuggled"));
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    (origin, proxy)
}

/// Sends `request` on a new connection and reads every answer until the proxy closes it.
async fn exchange(proxy: &TestProxy, request: &str) -> Vec<u16> {
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(request.as_bytes()).await;
    let mut statuses = Vec::new();
    while let Some(resp) = c.response(false).await {
        statuses.push(resp.status);
        if resp.header("connection") != Some("keep-alive") {
            break;
        }
        if !c
            .answered_within(std::time::Duration::from_millis(300))
            .await
        {
            break;
        }
    }
    statuses
}

/// `request` is refused with `status`, and neither it nor what it hides reaches the origin.
async fn refused(request: &str, status: u16) {
    let (origin, proxy) = setup().await;
    let statuses = exchange(&proxy, request).await;
    assert_eq!(statuses, [status], "{request:?}");
    assert_eq!(
        origin.count("/p/write"),
        0,
        "{request:?} reached the origin"
    );
    assert_eq!(
        origin.count("/smuggled"),
        0,
        "{request:?} smuggled a request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_beside_transfer_encoding_is_refused() {
    let req = format!(
        "POST /p/write HTTP/1.1\r\nHost: erp\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused(&req, 400).await;
    let req = format!(
        "POST /p/write HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused(&req, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn differing_or_invalid_content_lengths_are_refused() {
    for lengths in [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5, 6",
        "Content-Length: -5",
        "Content-Length: 5x",
        "Content-Length: +5",
        "Content-Length: 0x5",
        "Content-Length: ",
    ] {
        let req =
            format!("POST /p/write HTTP/1.1\r\nHost: erp\r\n{lengths}\r\n\r\nhello{SMUGGLED}");
        refused(&req, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_duplicate_content_lengths_frame_one_body() {
    // RFC 9110 §8.6: a list of equal values may be taken as that one value.
    let (origin, proxy) = setup().await;
    let req = "POST /p/write HTTP/1.1\r\nHost: erp\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(exchange(&proxy, req).await, [200]);
    let seen = origin.last("/p/write");
    assert_eq!(seen.body.as_ref(), b"hello");
    let lengths: Vec<_> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        lengths
            .iter()
            .all(|v| v.split(',').all(|x| x.trim() == "5")),
        "the origin is told 5 and nothing else: {lengths:?}"
    );
    assert_eq!(origin.count("/smuggled"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_transfer_encodings_are_refused() {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for (te, status) in [
        ("chunked, identity", 400),
        ("xchunked", 400),
        ("chunked, chunked", 400),
        ("chunked\r\nTransfer-Encoding: chunked", 400),
        ("identity, chunked", 501),
        ("gzip, chunked", 501),
        ("identity", 400),
    ] {
        let req =
            format!("POST /p/write HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: {te}\r\n\r\n{body}");
        refused(&req, status).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_encoding_on_http_1_0_is_refused() {
    let req = format!(
        "POST /p/write HTTP/1.0\r\nHost: erp\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused(&req, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn obs_fold_is_refused() {
    let req = format!(
        "POST /p/write HTTP/1.1\r\nHost: erp\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"
    );
    refused(&req, 400).await;
    let req = format!(
        "POST /p/write HTTP/1.1\r\nHost: erp\r\nContent-Length: 0\r\n\tTransfer-Encoding: chunked\r\n\r\n{SMUGGLED}"
    );
    refused(&req, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_write_arrives_whole_and_alone() {
    let (origin, proxy) = setup().await;
    let req = "POST /p/write HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
    assert_eq!(exchange(&proxy, req).await, [200]);
    assert_eq!(origin.last("/p/write").body.as_ref(), b"hello world");
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_lf_line_endings_frame_the_same_request() {
    // RFC 9112 §2.2: a recipient may take a lone LF as a line end. The origin gets the request
    // rewritten with CRLF, the body as framed, and nothing after it.
    let (origin, proxy) = setup().await;
    let req = format!(
        "POST /p/write HTTP/1.1\nHost: erp\nContent-Length: 5\nConnection: close\n\nhello{SMUGGLED}"
    );
    let statuses = exchange(&proxy, &req).await;
    assert_eq!(statuses, [200]);
    assert_eq!(origin.last("/p/write").body.as_ref(), b"hello");
    assert_eq!(origin.count("/smuggled"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_cr_is_refused() {
    let req = format!(
        "POST /p/write HTTP/1.1\r\nHost: erp\r\nX-A: a\rContent-Length: 40\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"
    );
    refused(&req, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_1_0_keep_alive_is_honoured_on_hits_and_misses() {
    let (origin, proxy) = setup().await;
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    for _ in 0..3 {
        c.send(b"GET /c/page HTTP/1.0\r\nHost: erp\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let resp = c
            .response(false)
            .await
            .expect("answer on the same connection");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"page");
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
    assert_eq!(origin.count("/c/page"), 1, "the later ones were hits");
    // Without keep-alive, HTTP/1.0 closes after each response.
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    c.send(b"GET /c/page HTTP/1.0\r\nHost: erp\r\n\r\n").await;
    let resp = c.response(false).await.expect("answer");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(c.until_closed().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_pipelined_behind_a_direct_hit_are_not_lost_or_mixed() {
    let (origin, proxy) = setup().await;
    // Stored and fresh in memory: the next GET is written straight to the socket.
    assert_eq!(get(&client(), &proxy.url("/c/page")).await.status, 200);
    let mut c = Raw::connect(proxy.addrs.proxy).await;
    let two = format!("GET /c/page HTTP/1.1\r\nHost: erp\r\n\r\n{SMUGGLED}");
    c.send(two.as_bytes()).await;
    let first = c.response(false).await.expect("the hit");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"page");
    assert!(
        first
            .header("cache-status")
            .is_some_and(|v| v.contains("hit"))
    );
    // Pipelining is off (pingora's default): the connection closes after the first answer,
    // whatever its `Connection` said, and the pipelined request is never proxied or answered
    // out of order; the client retries it (RFC 9112 §9.3.2).
    assert!(c.until_closed().await.is_empty(), "nothing after the hit");
    assert_eq!(origin.count("/smuggled"), 0);
    assert_eq!(origin.count("/c/page"), 1);
}
