//! An origin that sends more than one answer's bytes, or frames an answer two ways: nothing past
//! an answer's end is ever taken for the next request's answer on that connection (which would
//! store one URL's response under another's key: response queue poisoning), and an answer framed
//! two ways is forwarded one way (RFC 9112 §6.3) or refused, never stored as sent.

mod common;

use common::raw_origin::{End, RawOrigin, Script};
use common::*;

const ROUTES: &str = "  - name: items\n    prefix: /items\n    ttl_secs: 600\n";

/// `head` (the status line and fields, without the blank line) and `body`, exactly.
fn raw(head: &str, body: &[u8], end: End) -> Script {
    let mut bytes = format!("{head}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    Script { bytes, end }
}

/// A complete `200` of `body` that leaves the connection open.
fn kept_open(body: &[u8]) -> Script {
    Script {
        end: End::KeepOpen,
        ..Script::complete(body)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_after_an_answer_never_answer_the_next_request() {
    let origin = RawOrigin::start(|path, _| match path {
        // Five bytes of body, then a whole second answer nobody asked for yet.
        "/items/a" => raw(
            "HTTP/1.1 200 OK\r\nContent-Length: 5",
            b"helloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON",
            End::KeepOpen,
        ),
        _ => kept_open(b"good"),
    })
    .await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();

    let a = get(&c, &proxy.url("/items/a")).await;
    assert_eq!(a.body.as_ref(), b"hello");
    for path in ["/items/b", "/items/c", "/items/d"] {
        let miss = get(&c, &proxy.url(path)).await;
        assert_eq!(
            miss.body.as_ref(),
            b"good",
            "{path}: the origin's own answer"
        );
        assert_eq!(origin.count(path), 1, "{path} reached the origin");
        let hit = get(&c, &proxy.url(path)).await;
        assert!(hit.is_hit(), "{path}: {}", hit.cache_status());
        assert_eq!(hit.body.as_ref(), b"good", "{path}: what was stored");
        assert_ne!(
            origin.connections(path),
            origin.connections("/items/a"),
            "{path} was not sent on the connection with bytes left over"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_beside_transfer_encoding_is_framed_by_the_chunks() {
    let origin = RawOrigin::start(|path, _| match path {
        // Content-Length says 3; the chunks carry 5 bytes.
        "/items/te" => raw(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
            b"5\r\nhello\r\n0\r\n\r\n",
            End::KeepOpen,
        ),
        _ => kept_open(b"good"),
    })
    .await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();

    let miss = get(&c, &proxy.url("/items/te")).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.body.as_ref(), b"hello", "framed by the chunks");
    assert!(
        miss.headers.get("content-length").is_none(),
        "the received Content-Length is removed before forwarding: {:?}",
        miss.headers
    );
    let hit = get(&c, &proxy.url("/items/te")).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(hit.body.as_ref(), b"hello");
    assert_eq!(
        hit.header("content-length"),
        "5",
        "the stored body's own length"
    );
    let next = get(&c, &proxy.url("/items/next")).await;
    assert_eq!(next.body.as_ref(), b"good");
}

#[tokio::test(flavor = "multi_thread")]
async fn differing_content_lengths_are_refused_and_not_stored() {
    let origin = RawOrigin::start(|path, n| match (path, n) {
        ("/items/cl", 0) => raw(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7",
            b"hello!!",
            End::KeepOpen,
        ),
        _ => kept_open(b"good"),
    })
    .await;
    let proxy = TestProxy::in_front_of_origin(origin.addr(), ROUTES);
    let c = client();

    let refused = get(&c, &proxy.url("/items/cl")).await;
    assert_eq!(
        refused.status, 502,
        "an answer that cannot be framed one way"
    );
    let again = get(&c, &proxy.url("/items/cl")).await;
    assert_eq!(again.body.as_ref(), b"good");
    assert_eq!(origin.count("/items/cl"), 2, "nothing was stored");
}
