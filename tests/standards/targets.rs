//! The request target under `upstream.url_form: rfc3986` (RFC 9110 §7.7: "A proxy MUST NOT
//! modify the 'absolute-path' and 'query' parts of the received target URI when forwarding it
//! to the next inbound server except as required by that forwarding protocol"). Only RFC 3986's
//! normalisation is applied: an origin that tells `%2F` from `/` gets what the client sent, and
//! keeps its two resources apart in the cache.

use crate::common::raw::{Raw, RawResponse};
use crate::*;

/// GET `target` exactly as written, on a connection of its own.
async fn raw_get(rig: &Rig, target: &str) -> RawResponse {
    let mut c = Raw::connect(rig.proxy.addrs.proxy).await;
    c.send(format!("GET {target} HTTP/1.1\r\nHost: origin\r\n\r\n").as_bytes())
        .await;
    c.response(false).await.expect("an answer")
}

/// Answers `path` with `max-age=60` and the body `name`.
fn serve_named(rig: &Rig, path: &str, name: &'static str) {
    rig.origin.on(path, move |_, _| {
        Reply::ok(name).header("cache-control", "max-age=60")
    });
}

// An API with encoded slashes in its identifiers: `/t/group%2Fapp` is one project, not the
// path `/t/group/app`. Both reach the origin as sent, and each is stored on its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_slash_reaches_the_origin_as_sent_and_keys_apart() {
    let rig = Rig::rfc3986(&[]).await;
    serve_named(&rig, "/t/group%2Fapp", "project");
    serve_named(&rig, "/t/group/app", "path");
    for _ in 0..2 {
        assert_eq!(raw_get(&rig, "/t/group%2Fapp").await.body, b"project");
        assert_eq!(raw_get(&rig, "/t/group/app").await.body, b"path");
    }
    assert_eq!(rig.count("/t/group%2Fapp"), 1, "stored, under its own key");
    assert_eq!(rig.count("/t/group/app"), 1, "stored, under its own key");
    // Lower-case hex is the same byte: the same entry.
    let hit = raw_get(&rig, "/t/group%2fapp").await;
    assert_eq!(hit.body, b"project");
    assert_eq!(rig.count("/t/group%2Fapp"), 1);
}

// `//`, `+` and `;` mean nothing to a WSGI server's reading but may to another origin.
#[tokio::test(flavor = "multi_thread")]
async fn slashes_plus_and_semicolons_reach_the_origin_as_sent() {
    let rig = Rig::rfc3986(&[]).await;
    serve_named(&rig, "/t//x", "x");
    let target = "/t//x?q=a+b;c=d&e=%2B";
    assert_eq!(raw_get(&rig, target).await.status, 200);
    assert_eq!(rig.origin.last("/t//x").uri, target);
}

// RFC 3986 §6.2.2.2: an escape of an unreserved character is that character, to every origin.
#[tokio::test(flavor = "multi_thread")]
async fn unreserved_escapes_are_decoded_into_one_entry() {
    let rig = Rig::rfc3986(&[]).await;
    serve_named(&rig, "/t/hi~", "hi");
    assert_eq!(raw_get(&rig, "/t/%68i%7e").await.body, b"hi");
    let hit = raw_get(&rig, "/t/hi~").await;
    assert!(
        hit.header("cache-status")
            .is_some_and(|s| s.contains("hit")),
        "{}",
        hit.head
    );
    assert_eq!(rig.origin.last("/t/hi~").uri, "/t/hi~");
    assert_eq!(rig.count("/t/hi~"), 1);
}

// What is refused in one form is refused in the other: a dot segment however spelled.
#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_are_still_refused() {
    let rig = Rig::rfc3986(&[]).await;
    for target in ["/t/../x", "/t/%2e%2E/x", "/t/%00"] {
        assert_eq!(raw_get(&rig, target).await.status, 400, "{target}");
    }
    assert_eq!(rig.count("/x"), 0);
    assert_eq!(rig.count("/t/%00"), 0);
}

// A purge is read in the same form: it names the encoded-slash entry, not the other.
#[tokio::test(flavor = "multi_thread")]
async fn a_purge_names_the_entry_in_the_same_form() {
    let rig = Rig::rfc3986(&[]).await;
    serve_named(&rig, "/t/a%2Fb", "encoded");
    serve_named(&rig, "/t/a/b", "plain");
    raw_get(&rig, "/t/a%2Fb").await;
    raw_get(&rig, "/t/a/b").await;
    let mut c = Raw::connect(rig.proxy.addrs.proxy).await;
    c.send(b"PURGE /t/a%2fb HTTP/1.1\r\nHost: origin\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.expect("answer").status, 200);
    raw_get(&rig, "/t/a%2Fb").await;
    raw_get(&rig, "/t/a/b").await;
    assert_eq!(rig.count("/t/a%2Fb"), 2, "purged, so fetched again");
    assert_eq!(rig.count("/t/a/b"), 1, "another URL: still stored");
}
